package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// StoreMapped stores the map stage's output as one batch (see inBatch).
// See store.Mapping.
func (s *Store) StoreMapped(ctx context.Context, m store.Mapped) (bool, error) {
	b := &pgx.Batch{}
	// A redelivered message was mapped before: this insert fails, and with
	// it the batch.
	b.Queue(`INSERT INTO mapped (inbound_id, mapped_at, outcome) VALUES ($1, $2, $3)`, m.InboundID, m.MappedAt, nonNil(m.Outcome))
	for _, r := range m.Resources {
		b.Queue(`INSERT INTO resource (type, id, version, updated_at, sealed) VALUES ($1, $2, 1, $3, $4)
			ON CONFLICT (type, id) DO UPDATE SET version = resource.version + 1, updated_at = excluded.updated_at, sealed = excluded.sealed`,
			r.Type, r.ID, m.MappedAt, r.Sealed)
		queueIndexResource(b, r)
	}
	for _, c := range m.Communications {
		recipients := c.Recipients
		if recipients == nil {
			recipients = []string{}
		}
		queueInsertCommunication(b, m.InboundID, c)
		for _, r := range recipients {
			b.Queue(`INSERT INTO delivery (communication_id, recipient, state, rank, updated_at)
				VALUES ($1, $2, 'queued', 0, $3) ON CONFLICT DO NOTHING`, c.ID, r, m.MappedAt)
		}
	}
	for _, e := range m.Escalations {
		b.Queue(`INSERT INTO escalation (communication_id, unit, every_us, step, due_at) VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING`,
			e.CommunicationID, e.Unit, e.Every.Microseconds(), e.DueAt)
	}
	err := s.inBatch(ctx, b, m.Events)
	if uniqueConstraint(err) == "mapped_pkey" {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storing mapped message %s: %w", m.InboundID, err)
	}
	return true, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// IsMapped reports whether an inbound message was mapped. See
// store.Mapping.
func (s *Store) IsMapped(ctx context.Context, inboundID string) (bool, error) {
	var done bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mapped WHERE inbound_id = $1)`, inboundID).Scan(&done); err != nil {
		return false, fmt.Errorf("looking up the mapping of %s: %w", inboundID, err)
	}
	return done, nil
}

// GetResource returns one stored resource. See store.Mapping.
func (s *Store) GetResource(ctx context.Context, typ, id string) (store.SealedResource, error) {
	r := store.SealedResource{Type: typ, ID: id}
	err := s.pool.QueryRow(ctx, `SELECT sealed FROM resource WHERE type = $1 AND id = $2`, typ, id).Scan(&r.Sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("reading %s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("reading %s/%s: %w", typ, id, err)
	}
	return r, nil
}

// CommunicationsOf returns the Communications of an inbound message. See
// store.Mapping.
func (s *Store) CommunicationsOf(ctx context.Context, inboundID string) ([]store.CommunicationRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+communicationColumns+` FROM communication c WHERE c.inbound_id = $1 AND c.inbound_id <> '' ORDER BY c.id`, inboundID)
	if err != nil {
		return nil, fmt.Errorf("reading the Communications of %s: %w", inboundID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.CommunicationRow, error) {
		return scanCommunication(row)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the Communications of %s: %w", inboundID, err)
	}
	return out, nil
}
