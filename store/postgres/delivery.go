package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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

// SetDelivery moves one delivery forward. See store.Deliveries.
func (s *Store) SetDelivery(ctx context.Context, communicationID, recipient, state string, at time.Time, events ...store.Event) error {
	return s.SetDeliveries(ctx, []store.DeliveryUpdate{{CommunicationID: communicationID, Recipient: recipient, State: state, At: at}}, events...)
}

// SetDeliveries moves deliveries forward in one transaction, the updates
// sent as one pipelined batch. See store.Deliveries.
func (s *Store) SetDeliveries(ctx context.Context, updates []store.DeliveryUpdate, events ...store.Event) error {
	for _, u := range updates {
		if store.DeliveryRank(u.State) < 0 {
			return fmt.Errorf("setting deliveries: unknown state %q", u.State)
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, u := range updates {
			b.Queue(`WITH u AS (
					UPDATE delivery SET state = $3, rank = $4, updated_at = $5
					WHERE communication_id = $1 AND recipient = $2 AND rank < $4 RETURNING 1)
				SELECT EXISTS (SELECT 1 FROM delivery WHERE communication_id = $1 AND recipient = $2)`,
				u.CommunicationID, u.Recipient, u.State, store.DeliveryRank(u.State), u.At)
		}
		res := tx.SendBatch(ctx, &b)
		for _, u := range updates {
			var exists bool
			if err := res.QueryRow().Scan(&exists); err != nil {
				res.Close()
				return err
			}
			if !exists {
				res.Close()
				return fmt.Errorf("no delivery of %s to %s: %w", u.CommunicationID, u.Recipient, store.ErrNotFound)
			}
		}
		if err := res.Close(); err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		pub, err := s.txPublisher(tx)
		if err != nil {
			return fmt.Errorf("creating publisher: %w", err)
		}
		var byTopic store.EventsByTopic
		byTopic.Add(events)
		return byTopic.Publish(pub)
	})
	if err != nil {
		return fmt.Errorf("setting deliveries: %w", err)
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

// Unread counts a recipient's unread deliveries of Communications not
// recalled. See store.Deliveries.
func (s *Store) Unread(ctx context.Context, recipient string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM delivery WHERE recipient = $1 AND state <> 'read'
		AND status <> '`+store.StatusEnteredInError+`'`, recipient).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting unread messages: %w", err)
	}
	return n, nil
}

// communicationColumns are a CommunicationRow's columns of "communication
// c" (or of "communication_version c"), in scanCommunication's order.
const communicationColumns = `c.id, c.identifier, c.status, c.priority, c.category, c.subject, c.encounter, c.recipients, c.sent, c.sealed,
	c.sender, c.received, c.version, c.updated_at`

// scanCommunication reads communicationColumns, and extra after them,
// times in UTC. Tokens are left nil.
func scanCommunication(row pgx.Row, extra ...any) (store.CommunicationRow, error) {
	var c store.CommunicationRow
	var received *time.Time
	err := row.Scan(append([]any{&c.ID, &c.Identifier, &c.Status, &c.Priority, &c.Category, &c.Subject, &c.Encounter,
		&c.Recipients, &c.Sent, &c.Sealed, &c.Sender, &received, &c.Version, &c.Updated}, extra...)...)
	c.Sent, c.Updated = c.Sent.UTC(), c.Updated.UTC()
	if received != nil {
		c.Received = received.UTC()
	}
	return c, err
}

// collectCommunications reads rows of communicationColumns into a slice
// made for limit rows. Every row is scanned into one scratch row through
// one set of destinations and appended, where scanCommunication's value
// and destinations cost allocations for every row of a search page.
func collectCommunications(rows pgx.Rows, limit int) ([]store.CommunicationRow, error) {
	defer rows.Close()
	out := make([]store.CommunicationRow, 0, limit)
	var c store.CommunicationRow
	var received pgtype.Timestamptz
	dest := []any{&c.ID, &c.Identifier, &c.Status, &c.Priority, &c.Category, &c.Subject, &c.Encounter,
		&c.Recipients, &c.Sent, &c.Sealed, &c.Sender, &received, &c.Version, &c.Updated}
	for rows.Next() {
		c = store.CommunicationRow{}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		c.Sent, c.Updated = c.Sent.UTC(), c.Updated.UTC()
		if received.Valid {
			c.Received = received.Time.UTC()
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Inbox returns a recipient's newest Communications, those recalled
// (entered-in-error) left out. See store.Deliveries.
func (s *Store) Inbox(ctx context.Context, recipient string, limit int) ([]store.InboxEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+communicationColumns+`, d.state FROM delivery d
		JOIN communication c ON c.id = d.communication_id WHERE d.recipient = $1 AND d.status <> '`+store.StatusEnteredInError+`'
		ORDER BY c.sent DESC, c.id LIMIT $2`, recipient, limit)
	if err != nil {
		return nil, fmt.Errorf("reading an inbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.InboxEntry, error) {
		var e store.InboxEntry
		var err error
		e.Communication, err = scanCommunication(row, &e.State)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading an inbox: %w", err)
	}
	return out, nil
}

// Waiting returns a recipient's undelivered Communications, those
// recalled left out. See store.Deliveries.
func (s *Store) Waiting(ctx context.Context, recipient string, limit int) ([]store.InboxEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+communicationColumns+`, d.state FROM delivery d
		JOIN communication c ON c.id = d.communication_id WHERE d.recipient = $1 AND d.state IN ('queued', 'failed')
		AND d.status <> '`+store.StatusEnteredInError+`' ORDER BY c.sent, c.id LIMIT $2`, recipient, limit)
	if err != nil {
		return nil, fmt.Errorf("reading undelivered messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.InboxEntry, error) {
		var e store.InboxEntry
		var err error
		e.Communication, err = scanCommunication(row, &e.State)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading undelivered messages: %w", err)
	}
	return out, nil
}

// GetCommunication returns one Communication. See store.Deliveries.
func (s *Store) GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error) {
	c, err := scanCommunication(s.pool.QueryRow(ctx, `SELECT `+communicationColumns+` FROM communication c WHERE c.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("reading Communication/%s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading Communication/%s: %w", id, err)
	}
	return c, nil
}

// PublishEvents publishes events in one transaction. See store.Deliveries.
func (s *Store) PublishEvents(ctx context.Context, events []store.Event) error {
	if len(events) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		pub, err := s.txPublisher(tx)
		if err != nil {
			return fmt.Errorf("creating publisher: %w", err)
		}
		var byTopic store.EventsByTopic
		byTopic.Add(events)
		return byTopic.Publish(pub)
	})
	if err != nil {
		return fmt.Errorf("publishing events: %w", err)
	}
	return nil
}

// CompleteCommunication marks a Communication completed. See store.Deliveries.
func (s *Store) CompleteCommunication(ctx context.Context, id string, sealed []byte) (bool, error) {
	n, err := s.CompleteCommunications(ctx, []store.Completion{{ID: id, Sealed: sealed}})
	return n > 0, err
}

// sqlComplete completes one Communication as a new version, copying the
// one it replaces into the history. FOR UPDATE makes a concurrent
// completion (or update) wait, and then see the row as it left it: a
// Communication completed meanwhile is not completed (or copied) again.
// A recalled one (entered-in-error) is not completed: reading it cannot
// undo the recall.
const sqlComplete = `WITH cur AS (
		SELECT * FROM communication WHERE id = $1 AND status NOT IN ('completed', '` + store.StatusEnteredInError + `') FOR UPDATE
	), kept AS (
		INSERT INTO communication_version (` + versionColumns + `) SELECT ` + versionColumns + ` FROM cur
	)
	UPDATE communication c SET status = 'completed', sealed = $2, received = coalesce($3, c.received),
		version = cur.version + 1, updated_at = $4
	FROM cur WHERE c.id = cur.id`

// CompleteCommunications completes many in one transaction, sent as one
// pipelined batch, each as a new version. Received is kept (zero: the one
// stored, if any) and is the time of the new version (zero: now). See
// store.Deliveries.
func (s *Store) CompleteCommunications(ctx context.Context, cs []store.Completion) (int, error) {
	n := 0
	now := time.Now()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, c := range cs {
			at := c.Received
			if at.IsZero() {
				at = now
			}
			b.Queue(sqlComplete, c.ID, nonNil(c.Sealed), timeOrNull(c.Received), at)
		}
		res := tx.SendBatch(ctx, &b)
		for range cs {
			tag, err := res.Exec()
			if err != nil {
				res.Close()
				return err
			}
			n += int(tag.RowsAffected())
		}
		return res.Close()
	})
	if err != nil {
		return 0, fmt.Errorf("completing Communications: %w", err)
	}
	return n, nil
}
