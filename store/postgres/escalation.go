package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// DueEscalations returns the escalations due at now, but not those of a
// recalled Communication (entered-in-error), which must not be re-notified
// or escalated. See store.Escalations.
func (s *Store) DueEscalations(ctx context.Context, now time.Time, limit int) ([]store.Escalation, error) {
	rows, err := s.pool.Query(ctx, `SELECT e.communication_id, e.unit, e.every_us, e.step, e.due_at FROM escalation e
		WHERE e.due_at IS NOT NULL AND e.due_at <= $1 AND NOT EXISTS (SELECT 1 FROM communication c
			WHERE c.id = e.communication_id AND c.status = '`+store.StatusEnteredInError+`')
		ORDER BY e.due_at LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("finding due escalations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Escalation, error) {
		var e store.Escalation
		var every int64
		err := row.Scan(&e.CommunicationID, &e.Unit, &every, &e.Step, &e.DueAt)
		e.DueAt, e.Every = e.DueAt.UTC(), time.Duration(every)*time.Microsecond
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("finding due escalations: %w", err)
	}
	return out, nil
}

var errNotAdvanced = errors.New("advanced by another worker")

// AdvanceEscalation moves an escalation on. See store.Escalations.
func (s *Store) AdvanceEscalation(ctx context.Context, communicationID string, step int, next time.Time, events ...store.Event) (bool, error) {
	var due *time.Time
	if !next.IsZero() {
		due = &next
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE escalation SET step = step + 1, due_at = $1 WHERE communication_id = $2 AND step = $3`, due, communicationID, step)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errNotAdvanced
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
	if errors.Is(err, errNotAdvanced) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("advancing the escalation of %s: %w", communicationID, err)
	}
	return true, nil
}
