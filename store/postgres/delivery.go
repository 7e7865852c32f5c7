package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// QueueDeliveries records queued deliveries. See store.Deliveries.
func (s *Store) QueueDeliveries(ctx context.Context, communicationID string, recipients []string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO delivery (communication_id, recipient, state, rank, updated_at)
		SELECT $1, r, 'queued', 0, $3 FROM unnest($2::text[]) AS r ON CONFLICT DO NOTHING`, communicationID, recipients, at)
	if err != nil {
		return fmt.Errorf("queueing the deliveries of %s: %w", communicationID, err)
	}
	return nil
}

// SetDelivery moves a delivery forward. See store.Deliveries.
func (s *Store) SetDelivery(ctx context.Context, communicationID, recipient, state string, at time.Time) error {
	rank := store.DeliveryRank(state)
	if rank < 0 {
		return fmt.Errorf("setting a delivery: unknown state %q", state)
	}
	var exists bool
	err := s.pool.QueryRow(ctx, `WITH u AS (
			UPDATE delivery SET state = $3, rank = $4, updated_at = $5
			WHERE communication_id = $1 AND recipient = $2 AND rank < $4 RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM delivery WHERE communication_id = $1 AND recipient = $2)`,
		communicationID, recipient, state, rank, at).Scan(&exists)
	if err != nil {
		return fmt.Errorf("setting the delivery of %s to %s: %w", communicationID, recipient, err)
	}
	if !exists {
		return fmt.Errorf("setting the delivery of %s to %s: %w", communicationID, recipient, store.ErrNotFound)
	}
	return nil
}

// DeliveriesOf returns a Communication's deliveries. See store.Deliveries.
func (s *Store) DeliveriesOf(ctx context.Context, communicationID string) ([]store.Delivery, error) {
	rows, err := s.pool.Query(ctx, `SELECT recipient, state, updated_at FROM delivery WHERE communication_id = $1 ORDER BY recipient`, communicationID)
	if err != nil {
		return nil, fmt.Errorf("reading the deliveries of %s: %w", communicationID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Delivery, error) {
		d := store.Delivery{CommunicationID: communicationID}
		err := row.Scan(&d.Recipient, &d.State, &d.UpdatedAt)
		d.UpdatedAt = d.UpdatedAt.UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the deliveries of %s: %w", communicationID, err)
	}
	return out, nil
}

// Unread counts a recipient's unread deliveries. See store.Deliveries.
func (s *Store) Unread(ctx context.Context, recipient string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM delivery WHERE recipient = $1 AND state <> 'read'`, recipient).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting unread messages: %w", err)
	}
	return n, nil
}
