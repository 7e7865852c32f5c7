package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// PutSubscription stores a subscription. See store.Subscriptions.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription, events ...store.Event) (err error) {
	if s.write == nil {
		return fmt.Errorf("storing subscription %s: %w", sub.ID, ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storing subscription %s: %w", sub.ID, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	_, err = tx.ExecContext(ctx, `INSERT INTO subscription (id, criteria, endpoint, header, active, created_at, reason, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET criteria = excluded.criteria, endpoint = excluded.endpoint, header = excluded.header, active = excluded.active,
		reason = excluded.reason, owner = excluded.owner`,
		sub.ID, sub.Criteria, sub.Endpoint, sub.Header, sub.Active, sub.Created.UnixMicro(), sub.Reason, sub.Owner)
	if err == nil {
		err = s.publishIn(ctx, tx, events)
	}
	if err == nil {
		err = s.commit(tx)
	}
	if err != nil {
		return fmt.Errorf("storing subscription %s: %w", sub.ID, err)
	}
	return nil
}

const subscriptionColumns = `id, criteria, endpoint, header, active, created_at, reason, events, owner`

func scanSubscription(sc scanner) (store.Subscription, error) {
	var sub store.Subscription
	var created int64
	if err := sc.Scan(&sub.ID, &sub.Criteria, &sub.Endpoint, &sub.Header, &sub.Active, &created, &sub.Reason, &sub.Events, &sub.Owner); err != nil {
		return sub, err
	}
	sub.Created = time.UnixMicro(created).UTC()
	return sub, nil
}

// ListSubscriptions returns every subscription. See store.Subscriptions.
func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+subscriptionColumns+` FROM subscription ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions: %w", err)
	}
	defer rows.Close()
	var out []store.Subscription
	for rows.Next() {
		sub, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("listing subscriptions: %w", err)
		}
		out = append(out, sub)
	}
	return out, rows.Err()
}

// GetSubscription returns one subscription. See store.Subscriptions.
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	sub, err := scanSubscription(s.read.QueryRowContext(ctx, `SELECT `+subscriptionColumns+` FROM subscription WHERE id = ?`, id))
	if isNoRows(err) {
		return sub, fmt.Errorf("reading subscription %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return sub, fmt.Errorf("reading subscription %s: %w", id, err)
	}
	return sub, nil
}

// DeleteSubscription removes a subscription. See store.Subscriptions.
func (s *Store) DeleteSubscription(ctx context.Context, id string, events ...store.Event) (err error) {
	if s.write == nil {
		return fmt.Errorf("deleting subscription %s: %w", id, ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("deleting subscription %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	res, err := tx.ExecContext(ctx, `DELETE FROM subscription WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("deleting subscription %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("deleting subscription %s: %w", id, store.ErrNotFound)
	}
	if _, err = tx.ExecContext(ctx, `DELETE FROM subscription_notice WHERE subscription_id = ?`, id); err != nil {
		return fmt.Errorf("deleting subscription %s: %w", id, err)
	}
	if err = s.publishIn(ctx, tx, events); err != nil {
		return fmt.Errorf("deleting subscription %s: %w", id, err)
	}
	return s.commit(tx)
}

// QueueNotices queues notices of a Communication. See store.Subscriptions.
func (s *Store) QueueNotices(ctx context.Context, communicationID string, subscriptionIDs []string, at time.Time) (err error) {
	if len(subscriptionIDs) == 0 {
		return nil
	}
	if s.write == nil {
		return fmt.Errorf("queueing subscription notices: %w", ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queueing subscription notices: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, sub := range subscriptionIDs {
		var exists int
		if err = tx.QueryRowContext(ctx, `SELECT count(*) FROM subscription_notice WHERE subscription_id = ? AND communication_id = ?`,
			sub, communicationID).Scan(&exists); err != nil {
			return fmt.Errorf("queueing subscription notices: %w", err)
		}
		if exists > 0 {
			continue
		}
		var event int64
		if err = tx.QueryRowContext(ctx, `UPDATE subscription SET events = events + 1 WHERE id = ? RETURNING events`, sub).Scan(&event); err != nil {
			if isNoRows(err) {
				err = nil // deleted meanwhile
				continue
			}
			return fmt.Errorf("queueing subscription notices: %w", err)
		}
		if _, err = tx.ExecContext(ctx, `INSERT INTO subscription_notice (subscription_id, communication_id, event_no, state, attempts, first_at, next_at)
			VALUES (?, ?, ?, 'pending', 0, ?, ?)`, sub, communicationID, event, at.UnixMicro(), at.UnixMicro()); err != nil {
			return fmt.Errorf("queueing subscription notices: %w", err)
		}
	}
	return s.commit(tx)
}

const noticeColumns = `subscription_id, communication_id, event_no, state, attempts, first_at, next_at, last_error`

func scanNotice(sc scanner) (store.SubscriptionNotice, error) {
	var n store.SubscriptionNotice
	var first int64
	var next sql.NullInt64
	if err := sc.Scan(&n.SubscriptionID, &n.CommunicationID, &n.EventNumber, &n.State, &n.Attempts, &first, &next, &n.LastError); err != nil {
		return n, err
	}
	n.FirstAt = time.UnixMicro(first).UTC()
	if next.Valid {
		n.NextAt = time.UnixMicro(next.Int64).UTC()
	}
	return n, nil
}

func (s *Store) notices(ctx context.Context, what, query string, args ...any) ([]store.SubscriptionNotice, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []store.SubscriptionNotice
	for rows.Next() {
		n, err := scanNotice(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// DueNotices returns due notices. See store.Subscriptions.
func (s *Store) DueNotices(ctx context.Context, now time.Time, limit int) ([]store.SubscriptionNotice, error) {
	return s.notices(ctx, "finding due subscription notices", `SELECT `+noticeColumns+` FROM subscription_notice
		WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?`, now.UnixMicro(), limit)
}

// DeadNotices returns dead notices. See store.Subscriptions.
func (s *Store) DeadNotices(ctx context.Context, limit int) ([]store.SubscriptionNotice, error) {
	return s.notices(ctx, "listing dead subscription notices", `SELECT `+noticeColumns+` FROM subscription_notice
		WHERE state = 'dead' ORDER BY first_at DESC LIMIT ?`, limit)
}

// SubscriptionNotices returns one subscription's notices. See
// store.Subscriptions.
func (s *Store) SubscriptionNotices(ctx context.Context, subscriptionID, state string, limit int) ([]store.SubscriptionNotice, error) {
	return s.notices(ctx, "listing the notices of subscription "+subscriptionID, `SELECT `+noticeColumns+` FROM subscription_notice
		WHERE subscription_id = ? AND (? = '' OR state = ?) ORDER BY event_no DESC LIMIT ?`, subscriptionID, state, state, limit)
}

// NewestNotices returns each subscription's newest notice. See
// store.Subscriptions.
func (s *Store) NewestNotices(ctx context.Context) (map[string]store.SubscriptionNotice, error) {
	ns, err := s.notices(ctx, "reading the newest subscription notices", `SELECT `+noticeColumns+` FROM subscription_notice
		WHERE (subscription_id, event_no) IN (SELECT subscription_id, max(event_no) FROM subscription_notice GROUP BY subscription_id)`)
	out := make(map[string]store.SubscriptionNotice, len(ns))
	for _, n := range ns {
		out[n.SubscriptionID] = n
	}
	return out, err
}

// UpdateNotice stores a notice's progress. See store.Subscriptions.
func (s *Store) UpdateNotice(ctx context.Context, n store.SubscriptionNotice) error {
	if s.write == nil {
		return fmt.Errorf("updating a subscription notice: %w", ErrReadOnly)
	}
	next := sql.NullInt64{Int64: n.NextAt.UnixMicro(), Valid: !n.NextAt.IsZero()}
	_, err := s.write.ExecContext(ctx, `UPDATE subscription_notice SET state = ?, attempts = ?, next_at = ?, last_error = ?
		WHERE subscription_id = ? AND communication_id = ?`, n.State, n.Attempts, next, n.LastError, n.SubscriptionID, n.CommunicationID)
	if err != nil {
		return fmt.Errorf("updating a subscription notice: %w", err)
	}
	return nil
}

// NoticeCounts counts notices. See store.Subscriptions.
func (s *Store) NoticeCounts(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT subscription_id, state, count(*) FROM subscription_notice GROUP BY subscription_id, state`)
	if err != nil {
		return nil, fmt.Errorf("counting subscription notices: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var sub, state string
		var n int
		if err := rows.Scan(&sub, &state, &n); err != nil {
			return nil, fmt.Errorf("counting subscription notices: %w", err)
		}
		if out[sub] == nil {
			out[sub] = map[string]int{}
		}
		out[sub][state] = n
	}
	return out, rows.Err()
}
