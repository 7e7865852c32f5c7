package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// The filed AuditEvents (migration 20).
const (
	sqlFileAuditEvent = `INSERT INTO audit_filed (id, recorded, updated_at, sealed) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`
	// sqlFileAuditTokens adds tokens given as three arrays (param,
	// system, code); one given twice is stored once.
	sqlFileAuditTokens = `INSERT INTO audit_filed_token (id, param, system, code)
		SELECT $1, t.param, t.system, t.code FROM unnest($2::text[], $3::text[], $4::text[]) AS t(param, system, code)
		ON CONFLICT DO NOTHING`
	sqlGetFiledAudit = `SELECT id, recorded, updated_at, sealed FROM audit_filed WHERE id = $1`
)

// FileAuditEvent stores a filed AuditEvent with its tokens and publishes
// events, in one transaction. See store.AuditImport.
func (s *Store) FileAuditEvent(ctx context.Context, row store.FiledAuditEvent, events ...store.Event) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sqlFileAuditEvent, row.ID, row.Recorded.UTC(), row.Updated.UTC(), nonNil(row.Sealed))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("its id exists: %w", store.ErrConflict)
		}
		if len(row.Tokens) > 0 {
			params, systems, codes := tokenArrays(row.Tokens)
			if _, err := tx.Exec(ctx, sqlFileAuditTokens, row.ID, params, systems, codes); err != nil {
				return fmt.Errorf("writing the tokens: %w", err)
			}
		}
		return s.publishIn(ctx, tx, events)
	})
	if err != nil {
		return fmt.Errorf("filing AuditEvent/%s: %w", row.ID, err)
	}
	return nil
}

// scanFiled reads the columns of sqlGetFiledAudit.
func scanFiled(row pgx.Row) (store.FiledAuditEvent, error) {
	var r store.FiledAuditEvent
	var recorded, updated time.Time
	if err := row.Scan(&r.ID, &recorded, &updated, &r.Sealed); err != nil {
		return r, err
	}
	r.Recorded, r.Updated = recorded.UTC(), updated.UTC()
	return r, nil
}

// GetFiledAuditEvent returns one filed AuditEvent. See store.AuditImport.
func (s *Store) GetFiledAuditEvent(ctx context.Context, id string) (store.FiledAuditEvent, error) {
	r, err := scanFiled(s.pool.QueryRow(ctx, sqlGetFiledAudit, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("reading AuditEvent/%s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("reading AuditEvent/%s: %w", id, err)
	}
	return r, nil
}

// SearchFiledAuditEvents returns a page of matching filed AuditEvents.
// See store.AuditImport.
func (s *Store) SearchFiledAuditEvents(ctx context.Context, q store.FiledAuditQuery) ([]store.FiledAuditEvent, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	where, order, args, err := q.SQL(dialect)
	if err != nil {
		return nil, fmt.Errorf("searching filed AuditEvents: %w", err)
	}
	n := len(args)
	rows, err := s.pool.Query(ctx, `SELECT f.id, f.recorded, f.updated_at, f.sealed FROM audit_filed f WHERE `+where+
		` ORDER BY `+order+` LIMIT `+dialect.Placeholder(n+1)+` OFFSET `+dialect.Placeholder(n+2), append(planEachTime(args), limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("searching filed AuditEvents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.FiledAuditEvent, error) { return scanFiled(row) })
	if err != nil {
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
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit_filed f WHERE `+where, planEachTime(args)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting filed AuditEvents: %w", err)
	}
	return n, nil
}
