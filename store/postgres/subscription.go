package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// PutSubscription stores a subscription. See store.Subscriptions.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription, events ...store.Event) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO subscription (id, criteria, endpoint, header, active, created_at, reason, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO UPDATE SET criteria = excluded.criteria, endpoint = excluded.endpoint, header = excluded.header, active = excluded.active,
			reason = excluded.reason, owner = excluded.owner`,
			sub.ID, sub.Criteria, sub.Endpoint, sub.Header, sub.Active, sub.Created, sub.Reason, sub.Owner)
		if err != nil {
			return err
		}
		return s.publishIn(ctx, tx, events)
	})
	if err != nil {
		return fmt.Errorf("storing subscription %s: %w", sub.ID, err)
	}
	return nil
}

const subscriptionColumns = `id, criteria, endpoint, header, active, created_at, reason, events, owner`

func scanSubscription(row pgx.Row) (store.Subscription, error) {
	var sub store.Subscription
	err := row.Scan(&sub.ID, &sub.Criteria, &sub.Endpoint, &sub.Header, &sub.Active, &sub.Created, &sub.Reason, &sub.Events, &sub.Owner)
	sub.Created = sub.Created.UTC()
	return sub, err
}

// ListSubscriptions returns every subscription. See store.Subscriptions.
func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+subscriptionColumns+` FROM subscription ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Subscription, error) { return scanSubscription(row) })
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions: %w", err)
	}
	return out, nil
}

// GetSubscription returns one subscription. See store.Subscriptions.
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	sub, err := scanSubscription(s.pool.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM subscription WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return sub, fmt.Errorf("reading subscription %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return sub, fmt.Errorf("reading subscription %s: %w", id, err)
	}
	return sub, nil
}

// DeleteSubscription removes a subscription. See store.Subscriptions.
func (s *Store) DeleteSubscription(ctx context.Context, id string, events ...store.Event) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM subscription WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		if _, err = tx.Exec(ctx, `DELETE FROM subscription_notice WHERE subscription_id = $1`, id); err != nil {
			return err
		}
		return s.publishIn(ctx, tx, events)
	})
	if err != nil {
		return fmt.Errorf("deleting subscription %s: %w", id, err)
	}
	return nil
}

// QueueNotices queues notices of a Communication. See store.Subscriptions.
func (s *Store) QueueNotices(ctx context.Context, communicationID string, subscriptionIDs []string, at time.Time) error {
	if len(subscriptionIDs) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, sub := range subscriptionIDs {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM subscription_notice WHERE subscription_id = $1 AND communication_id = $2)`,
				sub, communicationID).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			var event int64
			err := tx.QueryRow(ctx, `UPDATE subscription SET events = events + 1 WHERE id = $1 RETURNING events`, sub).Scan(&event)
			if errors.Is(err, pgx.ErrNoRows) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO subscription_notice (subscription_id, communication_id, event_no, state, attempts, first_at, next_at)
				VALUES ($1, $2, $3, 'pending', 0, $4, $4) ON CONFLICT DO NOTHING`, sub, communicationID, event, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queueing subscription notices: %w", err)
	}
	return nil
}

const noticeColumns = `subscription_id, communication_id, event_no, state, attempts, first_at, next_at, last_error`

func (s *Store) notices(ctx context.Context, what, query string, args ...any) ([]store.SubscriptionNotice, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.SubscriptionNotice, error) {
		var n store.SubscriptionNotice
		var next *time.Time
		err := row.Scan(&n.SubscriptionID, &n.CommunicationID, &n.EventNumber, &n.State, &n.Attempts, &n.FirstAt, &next, &n.LastError)
		n.FirstAt = n.FirstAt.UTC()
		if next != nil {
			n.NextAt = next.UTC()
		}
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// DueNotices returns due notices. See store.Subscriptions.
func (s *Store) DueNotices(ctx context.Context, now time.Time, limit int) ([]store.SubscriptionNotice, error) {
	return s.notices(ctx, "finding due subscription notices", `SELECT `+noticeColumns+` FROM subscription_notice
		WHERE next_at IS NOT NULL AND next_at <= $1 ORDER BY next_at LIMIT $2`, now, limit)
}

// DeadNotices returns dead notices. See store.Subscriptions.
func (s *Store) DeadNotices(ctx context.Context, limit int) ([]store.SubscriptionNotice, error) {
	return s.notices(ctx, "listing dead subscription notices", `SELECT `+noticeColumns+` FROM subscription_notice
		WHERE state = 'dead' ORDER BY first_at DESC LIMIT $1`, limit)
}

// SubscriptionNotices returns one subscription's notices. See
// store.Subscriptions.
func (s *Store) SubscriptionNotices(ctx context.Context, subscriptionID, state string, limit int) ([]store.SubscriptionNotice, error) {
	return s.notices(ctx, "listing the notices of subscription "+subscriptionID, `SELECT `+noticeColumns+` FROM subscription_notice
		WHERE subscription_id = $1 AND ($2 = '' OR state = $2) ORDER BY event_no DESC LIMIT $3`, subscriptionID, state, limit)
}

// NewestNotices returns each subscription's newest notice. See
// store.Subscriptions.
func (s *Store) NewestNotices(ctx context.Context) (map[string]store.SubscriptionNotice, error) {
	ns, err := s.notices(ctx, "reading the newest subscription notices", `SELECT DISTINCT ON (subscription_id) `+noticeColumns+`
		FROM subscription_notice ORDER BY subscription_id, event_no DESC`)
	out := make(map[string]store.SubscriptionNotice, len(ns))
	for _, n := range ns {
		out[n.SubscriptionID] = n
	}
	return out, err
}

// UpdateNotice stores a notice's progress. See store.Subscriptions.
func (s *Store) UpdateNotice(ctx context.Context, n store.SubscriptionNotice) error {
	var next *time.Time
	if !n.NextAt.IsZero() {
		next = &n.NextAt
	}
	_, err := s.pool.Exec(ctx, `UPDATE subscription_notice SET state = $1, attempts = $2, next_at = $3, last_error = $4
		WHERE subscription_id = $5 AND communication_id = $6`, n.State, n.Attempts, next, n.LastError, n.SubscriptionID, n.CommunicationID)
	if err != nil {
		return fmt.Errorf("updating a subscription notice: %w", err)
	}
	return nil
}

// NoticeCounts counts notices. See store.Subscriptions.
func (s *Store) NoticeCounts(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT subscription_id, state, count(*) FROM subscription_notice GROUP BY subscription_id, state`)
	if err != nil {
		return nil, fmt.Errorf("counting subscription notices: %w", err)
	}
	out := map[string]map[string]int{}
	var sub, state string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&sub, &state, &n}, func() error {
		if out[sub] == nil {
			out[sub] = map[string]int{}
		}
		out[sub][state] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("counting subscription notices: %w", err)
	}
	return out, nil
}
