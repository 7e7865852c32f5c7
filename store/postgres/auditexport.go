package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// AuditChains returns the head of every chain. See store.AuditExport.
func (s *Store) AuditChains(ctx context.Context) ([]store.AuditChainHead, error) {
	// A loose index scan: one index probe per chain, not a scan of the trail.
	rows, err := s.pool.Query(ctx, `WITH RECURSIVE c(chain) AS (
			SELECT min(chain) FROM audit
			UNION ALL
			SELECT (SELECT min(chain) FROM audit WHERE chain > c.chain) FROM c WHERE c.chain IS NOT NULL)
		SELECT chain, (SELECT max(seq) FROM audit WHERE audit.chain = c.chain) FROM c WHERE chain IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditChainHead, error) {
		var h store.AuditChainHead
		var seq int64
		err := row.Scan(&h.Chain, &seq)
		h.Seq = uint64(seq)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	return out, nil
}

// ReadAudit returns records of chain after seq. See store.AuditExport.
func (s *Store) ReadAudit(ctx context.Context, chain string, after uint64, limit int) ([]store.AuditRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		chain, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("reading audit chain %q after %d: %w", chain, after, err)
	}
	out, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("reading audit chain %q after %d: %w", chain, after, err)
	}
	return out, nil
}

// AddAuditTarget registers an export target. See store.AuditExport.
func (s *Store) AddAuditTarget(ctx context.Context, target string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_export_target (target, added_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, target, at)
	if err != nil {
		return fmt.Errorf("adding audit export target: %w", err)
	}
	return nil
}

// AuditTargets returns the export targets. See store.AuditExport.
func (s *Store) AuditTargets(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT target FROM audit_export_target ORDER BY target`)
	if err != nil {
		return nil, fmt.Errorf("listing audit export targets: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing audit export targets: %w", err)
	}
	return out, nil
}

// AuditExported returns a target's positions. See store.AuditExport.
func (s *Store) AuditExported(ctx context.Context, target string) (map[string]uint64, error) {
	rows, err := s.pool.Query(ctx, `SELECT chain, seq FROM audit_export WHERE target = $1`, target)
	if err != nil {
		return nil, fmt.Errorf("reading audit export positions: %w", err)
	}
	out := map[string]uint64{}
	var chain string
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&chain, &seq}, func() error {
		out[chain] = uint64(seq)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading audit export positions: %w", err)
	}
	return out, nil
}

// AdvanceAuditExport moves positions forward and keeps dead letters. See
// store.AuditExport.
func (s *Store) AdvanceAuditExport(ctx context.Context, target string, positions map[string]uint64, dead []store.AuditDeadLetter, at time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for chain, seq := range positions {
			b.Queue(`INSERT INTO audit_export (target, chain, seq, updated_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (target, chain) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
				WHERE excluded.seq > audit_export.seq`, target, chain, int64(seq), at)
		}
		for _, d := range dead {
			b.Queue(`INSERT INTO audit_dead_letter (target, chain, seq, at, reason) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (target, chain, seq) DO UPDATE SET at = excluded.at, reason = excluded.reason`,
				target, d.Chain, int64(d.Seq), d.At, d.Reason)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("advancing the audit export: %w", err)
	}
	return nil
}

// AuditDeadLetters returns a target's dead letters. See store.AuditExport.
func (s *Store) AuditDeadLetters(ctx context.Context, target string, limit int) ([]store.AuditDeadLetter, int, error) {
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit_dead_letter WHERE target = $1`, target).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("counting audit dead letters: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT chain, seq, at, reason FROM audit_dead_letter WHERE target = $1
		ORDER BY at, chain, seq LIMIT $2`, target, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("reading audit dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditDeadLetter, error) {
		d := store.AuditDeadLetter{Target: target}
		var seq int64
		err := row.Scan(&d.Chain, &seq, &d.At, &d.Reason)
		d.Seq, d.At = uint64(seq), d.At.UTC()
		return d, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reading audit dead letters: %w", err)
	}
	return out, total, nil
}

// TakeLease takes or renews a lease. See store.AuditExport.
func (s *Store) TakeLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO lease (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE lease.holder = excluded.holder OR lease.expires_at <= $4`, name, holder, until, now)
	if err != nil {
		return false, fmt.Errorf("taking lease %s: %w", name, err)
	}
	return tag.RowsAffected() == 1, nil
}
