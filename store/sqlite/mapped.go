package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/carebridge/carebridge/store"
)

// StoreMapped stores the map stage's output in one transaction. See
// store.Mapping.
func (s *Store) StoreMapped(ctx context.Context, m store.Mapped) (bool, error) {
	if s.write == nil {
		return false, fmt.Errorf("storing mapped message %s: %w", m.InboundID, ErrReadOnly)
	}
	stored, err := s.storeMapped(ctx, m)
	if err != nil {
		return false, fmt.Errorf("storing mapped message %s: %w", m.InboundID, err)
	}
	return stored, nil
}

func (s *Store) storeMapped(ctx context.Context, m store.Mapped) (_ bool, err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	res, err := s.txExec(ctx, tx, sqlInsertMapped,
		m.InboundID, m.MappedAt.UnixMicro(), nonNil(m.Outcome))
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		_ = tx.Rollback()
		return false, err // mapped before: a redelivery
	}
	for _, r := range m.Resources {
		_, err := s.txExec(ctx, tx, sqlUpsertResource,
			r.Type, r.ID, m.MappedAt.UnixMicro(), r.Sealed)
		if err != nil {
			return false, fmt.Errorf("writing %s/%s: %w", r.Type, r.ID, err)
		}
		if err := s.indexResource(ctx, tx, r); err != nil {
			return false, fmt.Errorf("indexing %s/%s: %w", r.Type, r.ID, err)
		}
	}
	for _, c := range m.Communications {
		if _, err := s.insertCommunication(ctx, tx, m.InboundID, c); err != nil {
			return false, fmt.Errorf("writing Communication/%s: %w", c.ID, err)
		}
		for _, r := range c.Recipients {
			if _, err := s.txExec(ctx, tx, sqlQueueDelivery, c.ID, r, m.MappedAt.UnixMicro()); err != nil {
				return false, fmt.Errorf("queueing the delivery of %s to %s: %w", c.ID, r, err)
			}
		}
	}
	for _, e := range m.Escalations {
		if _, err := s.txExec(ctx, tx, sqlInsertEscalation,
			e.CommunicationID, e.Unit, e.Every.Microseconds(), e.DueAt.UnixMicro()); err != nil {
			return false, fmt.Errorf("scheduling the escalation of %s: %w", e.CommunicationID, err)
		}
	}
	var events store.EventsByTopic
	events.Add(m.Events)
	if events.Len() > 0 {
		pub, err := s.txPublisher(tx)
		if err != nil {
			return false, fmt.Errorf("creating publisher: %w", err)
		}
		if err := events.Publish(pub); err != nil {
			return false, err
		}
	}
	if err := s.commit(tx); err != nil {
		return false, fmt.Errorf("committing: %w", err)
	}
	return true, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// IsMapped reports whether an inbound message was mapped. See
// store.Mapping.
func (s *Store) IsMapped(ctx context.Context, inboundID string) (bool, error) {
	var n int
	if err := s.queryRow(ctx, `SELECT count(*) FROM mapped WHERE inbound_id = ?`, inboundID).Scan(&n); err != nil {
		return false, fmt.Errorf("looking up the mapping of %s: %w", inboundID, err)
	}
	return n > 0, nil
}

// GetResource returns one stored resource. See store.Mapping.
func (s *Store) GetResource(ctx context.Context, typ, id string) (store.SealedResource, error) {
	r := store.SealedResource{Type: typ, ID: id}
	err := s.queryRow(ctx, `SELECT sealed FROM resource WHERE type = ? AND id = ?`, typ, id).Scan(&r.Sealed)
	if errors.Is(err, sql.ErrNoRows) {
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
	rows, err := s.read.QueryContext(ctx, `SELECT `+communicationColumns+` FROM communication c WHERE c.inbound_id = ? AND c.inbound_id <> '' ORDER BY c.id`, inboundID)
	if err != nil {
		return nil, fmt.Errorf("reading the Communications of %s: %w", inboundID, err)
	}
	defer rows.Close()
	var out []store.CommunicationRow
	for rows.Next() {
		c, err := scanCommunication(rows)
		if err != nil {
			return nil, fmt.Errorf("reading the Communications of %s: %w", inboundID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the Communications of %s: %w", inboundID, err)
	}
	return out, nil
}
