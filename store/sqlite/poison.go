package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// StorePoison keeps a message a handler failed on for good. See store.Poison.
func (s *Store) StorePoison(ctx context.Context, m store.PoisonMessage) error {
	if s.write == nil {
		return fmt.Errorf("storing poison message %s: %w", m.ID, ErrReadOnly)
	}
	md, err := json.Marshal(nonNilMap(m.Metadata))
	if err != nil {
		return err
	}
	_, err = s.write.ExecContext(ctx, `INSERT INTO poison (id, handler, topic, payload, metadata, reason, failed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id, handler) DO UPDATE SET reason = excluded.reason, failed_at = excluded.failed_at`,
		m.ID, m.Handler, m.Topic, nonNil(m.Payload), string(md), m.Reason, m.FailedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("storing poison message %s: %w", m.ID, err)
	}
	return nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// ListPoison returns every poison message, oldest first. See store.Poison.
func (s *Store) ListPoison(ctx context.Context) ([]store.PoisonMessage, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, handler, topic, payload, metadata, reason, failed_at FROM poison ORDER BY failed_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing poison messages: %w", err)
	}
	defer rows.Close()
	var out []store.PoisonMessage
	for rows.Next() {
		var m store.PoisonMessage
		var md string
		var at int64
		if err := rows.Scan(&m.ID, &m.Handler, &m.Topic, &m.Payload, &md, &m.Reason, &at); err != nil {
			return nil, fmt.Errorf("listing poison messages: %w", err)
		}
		if err := json.Unmarshal([]byte(md), &m.Metadata); err != nil {
			return nil, fmt.Errorf("poison message %s: metadata: %w", m.ID, err)
		}
		m.FailedAt = time.UnixMicro(at).UTC()
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing poison messages: %w", err)
	}
	return out, nil
}

// ReplayPoison publishes a poison message again and forgets it. See
// store.Poison.
func (s *Store) ReplayPoison(ctx context.Context, id, handler string) error {
	if s.write == nil {
		return fmt.Errorf("replaying poison message %s: %w", id, ErrReadOnly)
	}
	if err := s.replayPoison(ctx, id, handler); err != nil {
		return fmt.Errorf("replaying poison message %s: %w", id, err)
	}
	return nil
}

func (s *Store) replayPoison(ctx context.Context, id, handler string) (err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var topic, md string
	var payload []byte
	err = tx.QueryRowContext(ctx, `DELETE FROM poison WHERE id = ? AND handler = ? RETURNING topic, payload, metadata`, id, handler).
		Scan(&topic, &payload, &md)
	if err != nil {
		if isNoRows(err) {
			return store.ErrNotFound
		}
		return err
	}
	msg := message.NewMessage(id, payload)
	if err := json.Unmarshal([]byte(md), &msg.Metadata); err != nil {
		return err
	}
	pub, err := s.txPublisher(tx)
	if err != nil {
		return fmt.Errorf("creating publisher: %w", err)
	}
	if err := pub.Publish(topic, msg); err != nil {
		return fmt.Errorf("publishing on %s: %w", topic, err)
	}
	return s.commit(tx)
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
