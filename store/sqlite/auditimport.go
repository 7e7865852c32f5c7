package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// The filed AuditEvents (migration 20).
const (
	sqlFileAuditEvent = `INSERT INTO audit_filed (id, recorded, updated_at, sealed) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlFileAuditToken = `INSERT INTO audit_filed_token (id, param, system, code) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlGetFiledAudit  = `SELECT id, recorded, updated_at, sealed FROM audit_filed WHERE id = ?`
)

// FileAuditEvent stores a filed AuditEvent with its tokens and publishes
// events, in one transaction. See store.AuditImport.
func (s *Store) FileAuditEvent(ctx context.Context, row store.FiledAuditEvent, events ...store.Event) error {
	if s.write == nil {
		return fmt.Errorf("filing AuditEvent/%s: %w", row.ID, ErrReadOnly)
	}
	if err := s.fileAuditEvent(ctx, row, events); err != nil {
		return fmt.Errorf("filing AuditEvent/%s: %w", row.ID, err)
	}
	return nil
}

func (s *Store) fileAuditEvent(ctx context.Context, row store.FiledAuditEvent, events []store.Event) (err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	res, err := s.txExec(ctx, tx, sqlFileAuditEvent, row.ID, row.Recorded.UnixMicro(), row.Updated.UnixMicro(), nonNil(row.Sealed))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("its id exists: %w", store.ErrConflict)
	}
	for _, t := range row.Tokens {
		if _, err := s.txExec(ctx, tx, sqlFileAuditToken, row.ID, t.Param, t.System, t.Code); err != nil {
			return fmt.Errorf("writing the %s tokens: %w", t.Param, err)
		}
	}
	if err := s.publishIn(ctx, tx, events); err != nil {
		return err
	}
	if err := s.commit(tx); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// scanFiled reads the columns of sqlGetFiledAudit.
func scanFiled(sc interface{ Scan(...any) error }) (store.FiledAuditEvent, error) {
	var r store.FiledAuditEvent
	var recorded, updated int64
	if err := sc.Scan(&r.ID, &recorded, &updated, &r.Sealed); err != nil {
		return r, err
	}
	r.Recorded, r.Updated = time.UnixMicro(recorded).UTC(), time.UnixMicro(updated).UTC()
	return r, nil
}

// GetFiledAuditEvent returns one filed AuditEvent. See store.AuditImport.
func (s *Store) GetFiledAuditEvent(ctx context.Context, id string) (store.FiledAuditEvent, error) {
	r, err := scanFiled(s.read.QueryRowContext(ctx, sqlGetFiledAudit, id))
	if isNoRows(err) {
		return r, fmt.Errorf("reading AuditEvent/%s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("reading AuditEvent/%s: %w", id, err)
	}
	return r, nil
}

// SearchFiledAuditEvents returns a page of matching filed AuditEvents,
// read from the read pool. See store.AuditImport.
func (s *Store) SearchFiledAuditEvents(ctx context.Context, q store.FiledAuditQuery) ([]store.FiledAuditEvent, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	where, order, args, err := q.SQL(dialect)
	if err != nil {
		return nil, fmt.Errorf("searching filed AuditEvents: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT f.id, f.recorded, f.updated_at, f.sealed FROM audit_filed f WHERE `+where+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("searching filed AuditEvents: %w", err)
	}
	defer rows.Close()
	var out []store.FiledAuditEvent
	for rows.Next() {
		r, err := scanFiled(rows)
		if err != nil {
			return nil, fmt.Errorf("searching filed AuditEvents: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching filed AuditEvents: %w", err)
	}
	return out, nil
}

// CountFiledAuditEvents counts matching filed AuditEvents. See
// store.AuditImport.
func (s *Store) CountFiledAuditEvents(ctx context.Context, q store.FiledAuditQuery) (int, error) {
	where, _, args, err := q.SQL(dialect)
	if err != nil {
		return 0, fmt.Errorf("counting filed AuditEvents: %w", err)
	}
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM audit_filed f WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting filed AuditEvents: %w", err)
	}
	return n, nil
}
