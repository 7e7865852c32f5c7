package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// DueEscalations returns the escalations due at now, but not those of a
// recalled Communication (entered-in-error), which must not be re-notified
// or escalated. See store.Escalations.
func (s *Store) DueEscalations(ctx context.Context, now time.Time, limit int) ([]store.Escalation, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT e.communication_id, e.unit, e.every_us, e.step, e.due_at FROM escalation e
		WHERE e.due_at IS NOT NULL AND e.due_at <= ? AND NOT EXISTS (SELECT 1 FROM communication c
			WHERE c.id = e.communication_id AND c.status = '`+store.StatusEnteredInError+`')
		ORDER BY e.due_at LIMIT ?`, now.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("finding due escalations: %w", err)
	}
	defer rows.Close()
	var out []store.Escalation
	for rows.Next() {
		var e store.Escalation
		var due, every int64
		if err := rows.Scan(&e.CommunicationID, &e.Unit, &every, &e.Step, &due); err != nil {
			return nil, fmt.Errorf("finding due escalations: %w", err)
		}
		e.DueAt, e.Every = time.UnixMicro(due).UTC(), time.Duration(every)*time.Microsecond
		out = append(out, e)
	}
	return out, rows.Err()
}

// AdvanceEscalation moves an escalation on. See store.Escalations.
func (s *Store) AdvanceEscalation(ctx context.Context, communicationID string, step int, next time.Time, events ...store.Event) (_ bool, err error) {
	if s.write == nil {
		return false, fmt.Errorf("advancing an escalation: %w", ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("advancing an escalation: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	due := sql.NullInt64{Int64: next.UnixMicro(), Valid: !next.IsZero()}
	res, err := tx.ExecContext(ctx, `UPDATE escalation SET step = step + 1, due_at = ? WHERE communication_id = ? AND step = ?`, due, communicationID, step)
	if err != nil {
		return false, fmt.Errorf("advancing the escalation of %s: %w", communicationID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_ = tx.Rollback()
		return false, nil
	}
	if len(events) > 0 {
		pub, perr := s.txPublisher(tx)
		if perr != nil {
			err = fmt.Errorf("creating publisher: %w", perr)
			return false, err
		}
		var byTopic store.EventsByTopic
		byTopic.Add(events)
		if err = byTopic.Publish(pub); err != nil {
			return false, err
		}
	}
	if err = s.commit(tx); err != nil {
		return false, fmt.Errorf("advancing an escalation: %w", err)
	}
	return true, nil
}
