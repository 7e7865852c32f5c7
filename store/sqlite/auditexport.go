package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// AuditChains returns the head of every chain. See store.AuditExport.
func (s *Store) AuditChains(ctx context.Context) ([]store.AuditChainHead, error) {
	// A loose index scan: one index probe per chain, not a scan of the trail.
	rows, err := s.read.QueryContext(ctx, `WITH RECURSIVE c(chain) AS (
			SELECT min(chain) FROM audit
			UNION ALL
			SELECT (SELECT min(chain) FROM audit WHERE chain > c.chain) FROM c WHERE c.chain IS NOT NULL)
		SELECT chain, (SELECT max(seq) FROM audit WHERE audit.chain = c.chain) FROM c WHERE chain IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	defer rows.Close()
	var out []store.AuditChainHead
	for rows.Next() {
		var h store.AuditChainHead
		var seq int64
		if err := rows.Scan(&h.Chain, &seq); err != nil {
			return nil, fmt.Errorf("listing audit chains: %w", err)
		}
		h.Seq = uint64(seq)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit chains: %w", err)
	}
	return out, nil
}

// ReadAudit returns records of chain after seq. See store.AuditExport.
func (s *Store) ReadAudit(ctx context.Context, chain string, after uint64, limit int) ([]store.AuditRecord, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?`,
		chain, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("reading audit chain %q after %d: %w", chain, after, err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("reading audit chain %q after %d: %w", chain, after, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading audit chain %q after %d: %w", chain, after, err)
	}
	return out, nil
}

// AddAuditTarget registers an export target. See store.AuditExport.
func (s *Store) AddAuditTarget(ctx context.Context, target string, at time.Time) error {
	if s.write == nil {
		return fmt.Errorf("adding audit export target: %w", ErrReadOnly)
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO audit_export_target (target, added_at) VALUES (?, ?) ON CONFLICT DO NOTHING`,
		target, at.UnixMicro())
	if err != nil {
		return fmt.Errorf("adding audit export target: %w", err)
	}
	return nil
}

// AuditTargets returns the export targets. See store.AuditExport.
func (s *Store) AuditTargets(ctx context.Context) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT target FROM audit_export_target ORDER BY target`)
	if err != nil {
		return nil, fmt.Errorf("listing audit export targets: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("listing audit export targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit export targets: %w", err)
	}
	return out, nil
}

// AuditExported returns a target's positions. See store.AuditExport.
func (s *Store) AuditExported(ctx context.Context, target string) (map[string]uint64, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT chain, seq FROM audit_export WHERE target = ?`, target)
	if err != nil {
		return nil, fmt.Errorf("reading audit export positions: %w", err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var chain string
		var seq int64
		if err := rows.Scan(&chain, &seq); err != nil {
			return nil, fmt.Errorf("reading audit export positions: %w", err)
		}
		out[chain] = uint64(seq)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading audit export positions: %w", err)
	}
	return out, nil
}

// AdvanceAuditExport moves positions forward and keeps dead letters. See
// store.AuditExport.
func (s *Store) AdvanceAuditExport(ctx context.Context, target string, positions map[string]uint64, dead []store.AuditDeadLetter, at time.Time) (err error) {
	if s.write == nil {
		return fmt.Errorf("advancing the audit export: %w", ErrReadOnly)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("advancing the audit export: %w", err)
		}
	}()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for chain, seq := range positions {
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_export (target, chain, seq, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (target, chain) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
			WHERE excluded.seq > audit_export.seq`, target, chain, int64(seq), at.UnixMicro())
		if err != nil {
			return err
		}
	}
	for _, d := range dead {
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_dead_letter (target, chain, seq, at, reason) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET at = excluded.at, reason = excluded.reason`,
			target, d.Chain, int64(d.Seq), d.At.UnixMicro(), d.Reason)
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// AuditDeadLetters returns a target's dead letters. See store.AuditExport.
func (s *Store) AuditDeadLetters(ctx context.Context, target string, limit int) ([]store.AuditDeadLetter, int, error) {
	var total int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM audit_dead_letter WHERE target = ?`, target).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("counting audit dead letters: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT chain, seq, at, reason FROM audit_dead_letter WHERE target = ?
		ORDER BY at, chain, seq LIMIT ?`, target, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("reading audit dead letters: %w", err)
	}
	defer rows.Close()
	var out []store.AuditDeadLetter
	for rows.Next() {
		d := store.AuditDeadLetter{Target: target}
		var seq, at int64
		if err := rows.Scan(&d.Chain, &seq, &at, &d.Reason); err != nil {
			return nil, 0, fmt.Errorf("reading audit dead letters: %w", err)
		}
		d.Seq, d.At = uint64(seq), time.UnixMicro(at).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading audit dead letters: %w", err)
	}
	return out, total, nil
}

// TakeLease takes or renews a lease. See store.AuditExport.
func (s *Store) TakeLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	if s.write == nil {
		return false, fmt.Errorf("taking lease %s: %w", name, ErrReadOnly)
	}
	res, err := s.write.ExecContext(ctx, `INSERT INTO lease (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE lease.holder = excluded.holder OR lease.expires_at <= ?`, name, holder, until.UnixMicro(), now.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("taking lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("taking lease %s: %w", name, err)
	}
	return n == 1, nil
}
