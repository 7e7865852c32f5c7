package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/carebridge/carebridge/store"
)

const auditColumns = `chain, seq, at, actor_kind, actor_id, actor_address, action, outcome,
	correlation, entities, entry_id, patient, prev, hash, event_id`

// AppendAudit stores records and checkpoints in one transaction. See
// store.Audit.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord, checkpoints []store.AuditCheckpoint) error {
	if s.write == nil {
		return fmt.Errorf("appending audit records: %w", ErrReadOnly)
	}
	if err := s.appendAudit(ctx, records, checkpoints); err != nil {
		return fmt.Errorf("appending audit records: %w", err)
	}
	return nil
}

func (s *Store) appendAudit(ctx context.Context, records []store.AuditRecord, checkpoints []store.AuditCheckpoint) (err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := s.insertAudit(ctx, tx, records, checkpoints); err != nil {
		return err
	}
	return tx.Commit()
}

// insertAudit inserts records, their entities and checkpoints in tx.
func (s *Store) insertAudit(ctx context.Context, tx *sql.Tx, records []store.AuditRecord, checkpoints []store.AuditCheckpoint) error {
	for _, r := range records {
		entities, err := json.Marshal(r.Entities)
		if err != nil {
			return err
		}
		if r.Entities == nil {
			entities = []byte("[]")
		}
		_, err = s.txExec(ctx, tx, sqlInsertAudit,
			r.Chain, int64(r.Seq), r.At.UnixMicro(), r.ActorKind, r.ActorID, r.ActorAddress, r.Action, int64(r.Outcome),
			r.Correlation, string(entities), r.EntryID, r.Patient, r.Prev, r.Hash, r.EventID)
		if err != nil {
			return uniqueConflict(err)
		}
		for _, e := range store.AuditEntities(r) {
			if _, err := s.txExec(ctx, tx, sqlInsertAuditEntity, r.Chain, int64(r.Seq), e); err != nil {
				return fmt.Errorf("indexing audit entities: %w", err)
			}
		}
	}
	for _, c := range checkpoints {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoint (chain, seq, hash, at, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)`,
			c.Chain, int64(c.Seq), c.Hash, c.At.UnixMicro(), c.KeyID, c.Signature)
		if err != nil {
			return uniqueConflict(err)
		}
	}
	return nil
}

// uniqueConflict turns a primary key violation into store.ErrConflict, and
// an entry id's into store.ErrEntryStored.
func uniqueConflict(err error) error {
	if strings.Contains(err.Error(), "UNIQUE constraint failed: audit.entry_id") {
		return fmt.Errorf("%w: %v", store.ErrEntryStored, err)
	}
	if strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	}
	return err
}

// AuditHead returns the last record of chain. See store.Audit.
func (s *Store) AuditHead(ctx context.Context, chain string) (store.AuditRecord, error) {
	return auditHead(ctx, s.read, chain)
}

// auditHead reads the last record of chain with q (the read pool, or the
// write transaction).
func auditHead(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, chain string) (store.AuditRecord, error) {
	row := q.QueryRowContext(ctx, `SELECT `+auditColumns+` FROM audit WHERE chain = ? ORDER BY seq DESC LIMIT 1`, chain)
	r, err := scanAudit(row)
	if errors.Is(err, sql.ErrNoRows) {
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
	rows, err := s.read.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY chain, seq`)
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
	rows, err := s.read.QueryContext(ctx, `SELECT chain, seq, hash, at, key_id, signature FROM audit_checkpoint ORDER BY chain, seq`)
	if err != nil {
		return nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	defer rows.Close()
	var out []store.AuditCheckpoint
	for rows.Next() {
		var c store.AuditCheckpoint
		var seq, at int64
		if err := rows.Scan(&c.Chain, &seq, &c.Hash, &at, &c.KeyID, &c.Signature); err != nil {
			return nil, fmt.Errorf("reading audit checkpoints: %w", err)
		}
		c.Seq, c.At = uint64(seq), time.UnixMicro(at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	return out, nil
}

// AuditEntryStored reports whether an entry was appended. See store.Audit.
func (s *Store) AuditEntryStored(ctx context.Context, entryID string) (bool, error) {
	var n int
	if err := s.queryRow(ctx, `SELECT count(*) FROM audit WHERE entry_id = ? AND entry_id <> ''`, entryID).Scan(&n); err != nil {
		return false, fmt.Errorf("looking up audit entry %s: %w", entryID, err)
	}
	return n > 0, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanAudit(sc scanner) (store.AuditRecord, error) {
	var r store.AuditRecord
	var seq, at, outcome int64
	var entities string
	err := sc.Scan(&r.Chain, &seq, &at, &r.ActorKind, &r.ActorID, &r.ActorAddress, &r.Action, &outcome,
		&r.Correlation, &entities, &r.EntryID, &r.Patient, &r.Prev, &r.Hash, &r.EventID)
	if err != nil {
		return r, err
	}
	r.Seq, r.At, r.Outcome = uint64(seq), time.UnixMicro(at).UTC(), uint8(outcome)
	if err := json.Unmarshal([]byte(entities), &r.Entities); err != nil {
		return r, fmt.Errorf("audit record %s/%d: entities: %w", r.Chain, seq, err)
	}
	return r, nil
}
