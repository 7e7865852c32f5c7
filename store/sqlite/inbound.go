package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// metadataColumns are the inbound columns ListInbound returns, in scan order.
const metadataColumns = `id, received_at, peer, transport, sending_application, sending_facility,
	receiving_application, receiving_facility, control_id, message_type, version,
	state, ack_code, error, correlation_id, size`

// AcceptInbound stores batch in one BEGIN IMMEDIATE transaction, publishing
// the events of the messages it stores in the same transaction. See
// store.Inbound.
func (s *Store) AcceptInbound(ctx context.Context, batch []store.Accept) ([]store.AcceptResult, error) {
	if s.write == nil {
		return nil, fmt.Errorf("storing inbound batch: %w", ErrReadOnly)
	}
	if len(batch) == 0 {
		return nil, nil
	}
	results, err := s.acceptInbound(ctx, batch)
	if err != nil {
		return nil, fmt.Errorf("storing inbound batch: %w", err)
	}
	return results, nil
}

func (s *Store) acceptInbound(ctx context.Context, batch []store.Accept) (_ []store.AcceptResult, err error) {
	if err := store.ValidateBatch(batch); err != nil {
		return nil, err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	dedupe := tx.StmtContext(ctx, s.dedupeStmt)
	insert := tx.StmtContext(ctx, s.insertStmt)

	results := make([]store.AcceptResult, len(batch))
	stored := map[store.DedupeKey][]int{} // accepted messages stored by this batch
	var events store.EventsByTopic
	for i := range batch {
		a := &batch[i]
		m := &a.Message
		if a.Dedupe {
			var id, ack string
			err := dedupe.QueryRowContext(ctx, m.SendingApplication, m.SendingFacility, m.ControlID,
				a.DedupeSince.UnixMicro()).Scan(&id, &ack)
			switch {
			case err == nil:
				results[i] = store.AcceptResult{ID: id, Duplicate: true, State: store.StateAccepted, AckCode: ack}
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return nil, fmt.Errorf("looking up duplicates of %s: %w", m.ID, err)
			}
			if j, ok := store.EarlierInBatch(batch, stored[m.Key()], a.DedupeSince); ok {
				e := &batch[j].Message
				results[i] = store.AcceptResult{ID: e.ID, Duplicate: true, State: e.State, AckCode: e.AckCode}
				continue
			}
		}
		res, err := insert.ExecContext(ctx,
			m.ID, m.ReceivedAt.UnixMicro(), m.Peer, m.Transport,
			m.SendingApplication, m.SendingFacility, m.ReceivingApplication, m.ReceivingFacility,
			m.ControlID, m.MessageType, m.Version, string(m.State), m.AckCode, m.Error,
			m.CorrelationID, m.Size, nonNil(m.Sealed))
		if err != nil {
			return nil, fmt.Errorf("inserting inbound message %s: %w", m.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return nil, fmt.Errorf("inserting inbound message %s: %d rows affected (%v)", m.ID, n, err)
		}
		results[i] = store.AcceptResult{ID: m.ID, State: m.State, AckCode: m.AckCode}
		if m.State == store.StateAccepted {
			stored[m.Key()] = append(stored[m.Key()], i)
		}
		events.Add(a.Events)
	}

	if events.Len() > 0 {
		pub, err := s.txPublisher(tx)
		if err != nil {
			return nil, fmt.Errorf("creating publisher: %w", err)
		}
		if err := events.Publish(pub); err != nil {
			return nil, err
		}
	}
	if err := s.commit(tx); err != nil {
		return nil, fmt.Errorf("committing: %w", err)
	}
	return results, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ListInbound returns metadata of inbound messages in id order. See
// store.Inbound.
func (s *Store) ListInbound(ctx context.Context, f store.InboundFilter) ([]store.InboundMessage, error) {
	q := `SELECT ` + metadataColumns + ` FROM inbound WHERE id > ?`
	args := []any{f.AfterID}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, string(f.State))
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, f.PageSize())
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing inbound messages: %w", err)
	}
	defer rows.Close()
	var out []store.InboundMessage
	for rows.Next() {
		var m store.InboundMessage
		if err := rows.Scan(scanTargets(&m)...); err != nil {
			return nil, fmt.Errorf("listing inbound messages: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing inbound messages: %w", err)
	}
	return out, nil
}

// GetInbound returns one inbound message including Sealed, or an error
// wrapping store.ErrNotFound.
func (s *Store) GetInbound(ctx context.Context, id string) (store.InboundMessage, error) {
	var m store.InboundMessage
	err := s.queryRow(ctx, `SELECT `+metadataColumns+`, sealed FROM inbound WHERE id = ?`, id).
		Scan(append(scanTargets(&m), &m.Sealed)...)
	if errors.Is(err, sql.ErrNoRows) {
		return store.InboundMessage{}, fmt.Errorf("getting inbound message %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.InboundMessage{}, fmt.Errorf("getting inbound message %s: %w", id, err)
	}
	return m, nil
}

// microsTime scans received_at (Unix microseconds) into a UTC time.
type microsTime struct{ t *time.Time }

func (u microsTime) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("received_at: want INTEGER, got %T", src)
	}
	*u.t = time.UnixMicro(v).UTC()
	return nil
}

func scanTargets(m *store.InboundMessage) []any {
	return []any{&m.ID, microsTime{&m.ReceivedAt}, &m.Peer, &m.Transport,
		&m.SendingApplication, &m.SendingFacility, &m.ReceivingApplication, &m.ReceivingFacility,
		&m.ControlID, &m.MessageType, &m.Version, &m.State, &m.AckCode, &m.Error,
		&m.CorrelationID, &m.Size}
}
