package sqlite

import (
	"context"
	"fmt"

	"github.com/carebridge/carebridge/store"
)

// SearchAudit returns the page of matching audit records that q's Offset
// and Limit select, read from the read pool. See store.AuditSearch.
//
// The statement is not prepared: its SQL varies with q's constraints.
func (s *Store) SearchAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	where, order, args, err := q.SQL(dialect)
	if err != nil {
		return nil, fmt.Errorf("searching the audit trail: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit a WHERE `+where+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("searching the audit trail: %w", err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("searching the audit trail: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching the audit trail: %w", err)
	}
	return out, nil
}

// CountAudit counts matching audit records. See store.AuditSearch.
func (s *Store) CountAudit(ctx context.Context, q store.AuditQuery) (int, error) {
	where, _, args, err := q.SQL(dialect)
	if err != nil {
		return 0, fmt.Errorf("counting audit records: %w", err)
	}
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM audit a WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting audit records: %w", err)
	}
	return n, nil
}

// backfillBatch is how many records one backfill transaction updates.
const backfillBatch = 500

// BackfillAuditEventIDs sets the event id of every audit record stored
// without one (those older than migration 12) to id(record), in
// transactions of a few hundred records, and returns how many it set. It
// is safe to run while records are appended, and again: a record that has
// its id is left as it is.
func (s *Store) BackfillAuditEventIDs(ctx context.Context, id func(store.AuditRecord) string) (int, error) {
	if s.write == nil {
		return 0, fmt.Errorf("backfilling AuditEvent ids: %w", ErrReadOnly)
	}
	done := 0
	var chain string
	var seq int64
	for {
		batch, err := s.withoutEventID(ctx, chain, seq)
		if err != nil {
			return done, fmt.Errorf("backfilling AuditEvent ids: %w", err)
		}
		if len(batch) == 0 {
			return done, nil
		}
		n, err := s.setEventIDs(ctx, batch, id)
		done += n
		if err != nil {
			return done, fmt.Errorf("backfilling AuditEvent ids: %w", err)
		}
		last := batch[len(batch)-1]
		chain, seq = last.Chain, int64(last.Seq)
	}
}

// withoutEventID returns the next records without an event id after
// (chain, seq), in chain and sequence order.
func (s *Store) withoutEventID(ctx context.Context, chain string, seq int64) ([]store.AuditRecord, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit
		WHERE (chain, seq) > (?, ?) AND event_id = '' ORDER BY chain, seq LIMIT ?`, chain, seq, backfillBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) setEventIDs(ctx context.Context, batch []store.AuditRecord, id func(store.AuditRecord) string) (n int, err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	st, err := tx.PrepareContext(ctx, `UPDATE audit SET event_id = ? WHERE chain = ? AND seq = ? AND event_id = ''`)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	for _, r := range batch {
		eid := id(r)
		if eid == "" {
			return 0, fmt.Errorf("audit record %s/%d: no event id", r.Chain, r.Seq)
		}
		res, err := st.ExecContext(ctx, eid, r.Chain, int64(r.Seq))
		if err != nil {
			return 0, err
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		n += int(k)
	}
	return n, tx.Commit()
}
