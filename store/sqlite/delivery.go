package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// QueueDeliveries records queued deliveries. See store.Deliveries.
func (s *Store) QueueDeliveries(ctx context.Context, communicationID string, recipients []string, at time.Time) (err error) {
	if s.write == nil {
		return fmt.Errorf("queueing deliveries: %w", ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queueing deliveries: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, r := range recipients {
		if _, err = s.txExec(ctx, tx, sqlQueueDelivery, communicationID, r, at.UnixMicro()); err != nil {
			return fmt.Errorf("queueing the delivery of %s to %s: %w", communicationID, r, err)
		}
	}
	if err = s.commit(tx); err != nil {
		return fmt.Errorf("queueing deliveries: %w", err)
	}
	return nil
}

// SetDelivery moves one delivery forward. See store.Deliveries.
func (s *Store) SetDelivery(ctx context.Context, communicationID, recipient, state string, at time.Time, events ...store.Event) error {
	return s.SetDeliveries(ctx, []store.DeliveryUpdate{{CommunicationID: communicationID, Recipient: recipient, State: state, At: at}}, events...)
}

// SetDeliveries moves deliveries forward in one transaction. See
// store.Deliveries.
func (s *Store) SetDeliveries(ctx context.Context, updates []store.DeliveryUpdate, events ...store.Event) (err error) {
	for _, u := range updates {
		if store.DeliveryRank(u.State) < 0 {
			return fmt.Errorf("setting deliveries: unknown state %q", u.State)
		}
	}
	if s.write == nil {
		return fmt.Errorf("setting deliveries: %w", ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("setting deliveries: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	exists, _ := s.txStmt(ctx, tx, sqlDeliveryExists)
	for _, u := range updates {
		var n int
		if err = exists.QueryRowContext(ctx, u.CommunicationID, u.Recipient).Scan(&n); err != nil {
			return fmt.Errorf("setting the delivery of %s to %s: %w", u.CommunicationID, u.Recipient, err)
		}
		if n == 0 {
			err = fmt.Errorf("setting the delivery of %s to %s: %w", u.CommunicationID, u.Recipient, store.ErrNotFound)
			return err
		}
		rank := store.DeliveryRank(u.State)
		if _, err = s.txExec(ctx, tx, sqlSetDelivery, u.State, rank, u.At.UnixMicro(), u.CommunicationID, u.Recipient, rank); err != nil {
			return fmt.Errorf("setting the delivery of %s to %s: %w", u.CommunicationID, u.Recipient, err)
		}
	}
	if len(events) > 0 {
		pub, perr := s.txPublisher(tx)
		if perr != nil {
			err = fmt.Errorf("creating publisher: %w", perr)
			return err
		}
		var byTopic store.EventsByTopic
		byTopic.Add(events)
		if err = byTopic.Publish(pub); err != nil {
			return err
		}
	}
	if err = s.commit(tx); err != nil {
		return fmt.Errorf("setting deliveries: %w", err)
	}
	return nil
}

// DeliveriesOf returns a Communication's deliveries. See store.Deliveries.
func (s *Store) DeliveriesOf(ctx context.Context, communicationID string) ([]store.Delivery, error) {
	rows, err := s.query(ctx, `SELECT recipient, state, updated_at FROM delivery WHERE communication_id = ? ORDER BY recipient`, communicationID)
	if err != nil {
		return nil, fmt.Errorf("reading the deliveries of %s: %w", communicationID, err)
	}
	defer rows.Close()
	var out []store.Delivery
	for rows.Next() {
		d := store.Delivery{CommunicationID: communicationID}
		var at int64
		if err := rows.Scan(&d.Recipient, &d.State, &at); err != nil {
			return nil, fmt.Errorf("reading the deliveries of %s: %w", communicationID, err)
		}
		d.UpdatedAt = time.UnixMicro(at).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// Unread counts a recipient's unread deliveries of Communications not
// recalled. See store.Deliveries.
func (s *Store) Unread(ctx context.Context, recipient string) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM delivery WHERE recipient = ? AND state <> 'read'
		AND status <> '`+store.StatusEnteredInError+`'`, recipient).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting unread messages: %w", err)
	}
	return n, nil
}

// communicationColumns are a CommunicationRow's columns of "communication
// c" (or of "communication_version c"), in scanCommunication's order.
const communicationColumns = `c.id, c.identifier, c.status, c.priority, c.category, c.subject, c.encounter, c.recipients, c.sent, c.sealed,
	c.sender, c.received, c.version, c.updated_at`

// scanCommunication reads communicationColumns, and extra after them.
// Tokens are left nil.
func scanCommunication(sc scanner, extra ...any) (store.CommunicationRow, error) {
	var c store.CommunicationRow
	var recipients string
	var sent, updated int64
	var received sql.NullInt64
	if err := sc.Scan(append([]any{&c.ID, &c.Identifier, &c.Status, &c.Priority, &c.Category, &c.Subject, &c.Encounter,
		&recipients, &sent, &c.Sealed, &c.Sender, &received, &c.Version, &updated}, extra...)...); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(recipients), &c.Recipients); err != nil {
		return c, fmt.Errorf("reading the recipients of Communication/%s: %w", c.ID, err)
	}
	c.Sent = time.UnixMicro(sent).UTC()
	c.Updated = time.UnixMicro(updated).UTC()
	if received.Valid {
		c.Received = time.UnixMicro(received.Int64).UTC()
	}
	return c, nil
}

// Inbox returns a recipient's newest Communications, those recalled
// (entered-in-error) left out. See store.Deliveries.
func (s *Store) Inbox(ctx context.Context, recipient string, limit int) ([]store.InboxEntry, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+communicationColumns+`, d.state FROM delivery d
		JOIN communication c ON c.id = d.communication_id WHERE d.recipient = ? AND d.status <> '`+store.StatusEnteredInError+`'
		ORDER BY c.sent DESC, c.id LIMIT ?`, recipient, limit)
	if err != nil {
		return nil, fmt.Errorf("reading an inbox: %w", err)
	}
	defer rows.Close()
	var out []store.InboxEntry
	for rows.Next() {
		var e store.InboxEntry
		if e.Communication, err = scanCommunication(rows, &e.State); err != nil {
			return nil, fmt.Errorf("reading an inbox: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Waiting returns a recipient's undelivered Communications, those
// recalled left out. See store.Deliveries.
func (s *Store) Waiting(ctx context.Context, recipient string, limit int) ([]store.InboxEntry, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+communicationColumns+`, d.state FROM delivery d
		JOIN communication c ON c.id = d.communication_id WHERE d.recipient = ? AND d.state IN ('queued', 'failed')
		AND d.status <> '`+store.StatusEnteredInError+`' ORDER BY c.sent, c.id LIMIT ?`, recipient, limit)
	if err != nil {
		return nil, fmt.Errorf("reading undelivered messages: %w", err)
	}
	defer rows.Close()
	var out []store.InboxEntry
	for rows.Next() {
		var e store.InboxEntry
		if e.Communication, err = scanCommunication(rows, &e.State); err != nil {
			return nil, fmt.Errorf("reading undelivered messages: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// GetCommunication returns one Communication. See store.Deliveries.
func (s *Store) GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error) {
	c, err := scanCommunication(s.queryRow(ctx, `SELECT `+communicationColumns+` FROM communication c WHERE c.id = ?`, id))
	if isNoRows(err) {
		return c, fmt.Errorf("reading Communication/%s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading Communication/%s: %w", id, err)
	}
	return c, nil
}

// PublishEvents publishes events in one transaction. See store.Deliveries.
func (s *Store) PublishEvents(ctx context.Context, events []store.Event) (err error) {
	if len(events) == 0 {
		return nil
	}
	if s.write == nil {
		return fmt.Errorf("publishing events: %w", ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("publishing events: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	pub, err := s.txPublisher(tx)
	if err != nil {
		return fmt.Errorf("creating publisher: %w", err)
	}
	var byTopic store.EventsByTopic
	byTopic.Add(events)
	if err = byTopic.Publish(pub); err != nil {
		return err
	}
	return s.commit(tx)
}

// CompleteCommunication marks a Communication completed. See store.Deliveries.
func (s *Store) CompleteCommunication(ctx context.Context, id string, sealed []byte) (bool, error) {
	n, err := s.CompleteCommunications(ctx, []store.Completion{{ID: id, Sealed: sealed}})
	return n > 0, err
}

// CompleteCommunications completes many in one transaction, each as a new
// version: the one it replaces is copied into the history. Received is
// kept (zero: the one stored, if any) and is the time of the new version
// (zero: now). See store.Deliveries.
func (s *Store) CompleteCommunications(ctx context.Context, cs []store.Completion) (n int, err error) {
	if s.write == nil {
		return 0, fmt.Errorf("completing Communications: %w", ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("completing Communications: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	now := time.Now()
	for _, c := range cs {
		at := c.Received
		if at.IsZero() {
			at = now
		}
		if _, err := s.txExec(ctx, tx, sqlKeepIncomplete, c.ID); err != nil {
			return 0, fmt.Errorf("keeping the version of Communication/%s: %w", c.ID, err)
		}
		res, err := s.txExec(ctx, tx, sqlCompleteCommunication, nonNil(c.Sealed), microsOrNull(c.Received), at.UnixMicro(), c.ID)
		if err != nil {
			return 0, fmt.Errorf("completing Communication/%s: %w", c.ID, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		n += int(k)
	}
	if err = tx.Commit(); err != nil {
		return 0, fmt.Errorf("completing Communications: %w", err)
	}
	return n, nil
}
