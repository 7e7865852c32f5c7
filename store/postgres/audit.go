package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

const auditColumns = `chain, seq, at, actor_kind, actor_id, actor_address, action, outcome,
	correlation, entities, entry_id, patient, prev, hash, event_id`

// AppendAudit stores records and checkpoints in one transaction. See
// store.Audit.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord, checkpoints []store.AuditCheckpoint) error {
	// One batch is one implicit transaction (see inBatch): no BEGIN and
	// COMMIT round trips.
	b := &pgx.Batch{}
	queueAudit(b, records, checkpoints)
	err := s.pool.SendBatch(ctx, b).Close()
	switch {
	case uniqueConstraint(err) == "audit_entry":
		return fmt.Errorf("appending audit records: %w: %v", store.ErrEntryStored, err)
	case isUniqueViolation(err):
		return fmt.Errorf("appending audit records: %w: %v", store.ErrConflict, err)
	case err != nil:
		return fmt.Errorf("appending audit records: %w", err)
	}
	return nil
}

// queueAudit queues the inserts of records and checkpoints. A record's
// entities and patient are indexed with it (audit_entities).
func queueAudit(b *pgx.Batch, records []store.AuditRecord, checkpoints []store.AuditCheckpoint) {
	for _, r := range records {
		entities := r.Entities
		if entities == nil {
			entities = []string{}
		}
		b.Queue(`INSERT INTO audit (`+auditColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			r.Chain, int64(r.Seq), r.At, r.ActorKind, r.ActorID, r.ActorAddress, r.Action, int16(r.Outcome),
			r.Correlation, entities, r.EntryID, r.Patient, r.Prev, r.Hash, r.EventID)
	}
	for _, c := range checkpoints {
		b.Queue(`INSERT INTO audit_checkpoint (chain, seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.Chain, int64(c.Seq), c.Hash, c.At, c.KeyID, c.Signature)
	}
}

// AuditHead returns the last record of chain. See store.Audit.
func (s *Store) AuditHead(ctx context.Context, chain string) (store.AuditRecord, error) {
	return auditHead(ctx, s.pool, chain)
}

// auditHead reads the last record of chain with q (the pool, or a
// transaction).
func auditHead(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, chain string) (store.AuditRecord, error) {
	rows, err := q.Query(ctx, `SELECT `+auditColumns+` FROM audit WHERE chain = $1 ORDER BY seq DESC LIMIT 1`, chain)
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("reading the head of audit chain %q: %w", chain, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanAudit)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AuditRecord{}, fmt.Errorf("reading the head of audit chain %q: %w", chain, store.ErrNotFound)
	}
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("reading the head of audit chain %q: %w", chain, err)
	}
	return r, nil
}

// WalkAudit calls fn for every record by chain and sequence. See
// store.Audit.
func (s *Store) WalkAudit(ctx context.Context, fn func(store.AuditRecord) error) error {
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY chain, seq`)
	if err != nil {
		return fmt.Errorf("reading the audit trail: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return fmt.Errorf("reading the audit trail: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the audit trail: %w", err)
	}
	return nil
}

// AuditCheckpoints returns every checkpoint. See store.Audit.
func (s *Store) AuditCheckpoints(ctx context.Context) ([]store.AuditCheckpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT chain, seq, hash, at, key_id, signature FROM audit_checkpoint ORDER BY chain, seq`)
	if err != nil {
		return nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditCheckpoint, error) {
		var c store.AuditCheckpoint
		var seq int64
		err := row.Scan(&c.Chain, &seq, &c.Hash, &c.At, &c.KeyID, &c.Signature)
		c.Seq, c.At = uint64(seq), c.At.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	return out, nil
}

// AuditEntryStored reports whether an entry was appended. See store.Audit.
func (s *Store) AuditEntryStored(ctx context.Context, entryID string) (bool, error) {
	var found bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit WHERE entry_id = $1 AND entry_id <> '')`, entryID).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("looking up audit entry %s: %w", entryID, err)
	}
	return found, nil
}

func scanAudit(row pgx.CollectableRow) (store.AuditRecord, error) {
	var r store.AuditRecord
	var seq int64
	var outcome int16
	err := row.Scan(&r.Chain, &seq, &r.At, &r.ActorKind, &r.ActorID, &r.ActorAddress, &r.Action, &outcome,
		&r.Correlation, &r.Entities, &r.EntryID, &r.Patient, &r.Prev, &r.Hash, &r.EventID)
	r.Seq, r.At, r.Outcome = uint64(seq), r.At.UTC(), uint8(outcome)
	return r, err
}
