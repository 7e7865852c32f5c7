package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// StorePoison keeps a message a handler failed on for good. See store.Poison.
func (s *Store) StorePoison(ctx context.Context, m store.PoisonMessage) error {
	md := m.Metadata
	if md == nil {
		md = map[string]string{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO poison (id, handler, topic, payload, metadata, reason, failed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id, handler) DO UPDATE SET reason = excluded.reason, failed_at = excluded.failed_at`,
		m.ID, m.Handler, m.Topic, nonNil(m.Payload), md, m.Reason, m.FailedAt)
	if err != nil {
		return fmt.Errorf("storing poison message %s: %w", m.ID, err)
	}
	return nil
}

// ListPoison returns every poison message, oldest first. See store.Poison.
func (s *Store) ListPoison(ctx context.Context) ([]store.PoisonMessage, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, handler, topic, payload, metadata, reason, failed_at FROM poison ORDER BY failed_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing poison messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.PoisonMessage, error) {
		var m store.PoisonMessage
		err := row.Scan(&m.ID, &m.Handler, &m.Topic, &m.Payload, &m.Metadata, &m.Reason, &m.FailedAt)
		m.FailedAt = m.FailedAt.UTC()
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing poison messages: %w", err)
	}
	return out, nil
}

// ReplayPoison publishes a poison message again and forgets it. See
// store.Poison.
func (s *Store) ReplayPoison(ctx context.Context, id, handler string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var topic string
		var payload []byte
		var md map[string]string
		err := tx.QueryRow(ctx, `DELETE FROM poison WHERE id = $1 AND handler = $2 RETURNING topic, payload, metadata`, id, handler).
			Scan(&topic, &payload, &md)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		msg := message.NewMessage(id, payload)
		for k, v := range md {
			msg.Metadata.Set(k, v)
		}
		pub, err := s.txPublisher(tx)
		if err != nil {
			return fmt.Errorf("creating publisher: %w", err)
		}
		if err := pub.Publish(topic, msg); err != nil {
			return fmt.Errorf("publishing on %s: %w", topic, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replaying poison message %s: %w", id, err)
	}
	return nil
}
