package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/mapping"
	"github.com/carebridge/carebridge/store"
)

// EscalationStore is what escalation needs of storage.
type EscalationStore interface {
	DueEscalations(ctx context.Context, now time.Time, limit int) ([]store.Escalation, error)
	AdvanceEscalation(ctx context.Context, communicationID string, step int, next time.Time, events ...store.Event) (bool, error)
	DeliveriesOf(ctx context.Context, communicationID string) ([]store.Delivery, error)
	QueueDeliveries(ctx context.Context, communicationID string, recipients []string, at time.Time) error
	GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error)
	Unread(ctx context.Context, recipient string) (int, error)
}

// Escalator re-notifies and escalates urgent messages left unread. Steps,
// each after the priority's deadline and each a new audit record:
//  1. the recipients who have not read it are notified again;
//  2. the unit's on-call is added;
//  3. the unit's care teams (charge nurse, unit) are added; then it stops.
//
// A message everyone has read stops escalating. Due steps are found by the
// database (Tick), so there is no timer per message and any instance may
// take a step; each step is taken once.
type Escalator struct {
	Store     EscalationStore
	Rules     *mapping.Rules
	Inbox     Announcer // may be nil
	Push      Pusher    // may be nil
	Deadlines map[string]time.Duration
	Now       func() time.Time
	Log       *slog.Logger
}

// Tick takes every escalation step due now and says how many it took.
func (e *Escalator) Tick(ctx context.Context) (int, error) {
	now := e.Now().UTC()
	due, err := e.Store.DueEscalations(ctx, now, 100)
	if err != nil {
		return 0, err
	}
	taken := 0
	for _, esc := range due {
		ok, err := e.step(ctx, esc, now)
		if err != nil {
			return taken, fmt.Errorf("escalating Communication/%s: %w", esc.CommunicationID, err)
		}
		if ok {
			taken++
		}
	}
	return taken, nil
}

func (e *Escalator) step(ctx context.Context, esc store.Escalation, now time.Time) (bool, error) {
	ds, err := e.Store.DeliveriesOf(ctx, esc.CommunicationID)
	if err != nil {
		return false, err
	}
	var all, unread []string
	for _, d := range ds {
		all = append(all, d.Recipient)
		if d.State != store.DeliveryRead {
			unread = append(unread, d.Recipient)
		}
	}
	if len(unread) == 0 {
		return e.Store.AdvanceEscalation(ctx, esc.CommunicationID, esc.Step, time.Time{}) // read by all: done
	}
	c, err := e.Store.GetCommunication(ctx, esc.CommunicationID)
	if err != nil {
		return false, err
	}
	every := esc.Every
	if every <= 0 {
		deadlines := e.Deadlines
		if deadlines == nil {
			deadlines = DefaultDeadlines
		}
		every = deadlines[c.Priority]
	}
	next := now.Add(every)
	notify := unread
	if esc.Step >= 1 {
		notify = nil
		for _, r := range e.Rules.EscalationTier(esc.Unit, esc.Step, now) {
			if !slices.Contains(all, r) {
				notify = append(notify, r)
			}
		}
		if err := e.Store.QueueDeliveries(ctx, c.ID, notify, now); err != nil {
			return false, err
		}
		if esc.Step >= 2 {
			next = time.Time{} // the last tier
		}
	}
	e.notify(ctx, c, notify)
	ev, err := auditEvent(c.ID, audit.Entry{
		At: now, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "carebridge"}, Action: "communication.escalated",
		Outcome: audit.OutcomeSuccess, Correlation: c.ID, Patient: c.Subject,
		Entities: capEntities(append([]string{"Communication/" + c.ID}, notify...)),
	})
	if err != nil {
		return false, err
	}
	ok, err := e.Store.AdvanceEscalation(ctx, c.ID, esc.Step, next, ev)
	if ok {
		e.Log.Info("message escalated", "communication_id", c.ID, "step", esc.Step+1, "notified", len(notify))
	}
	return ok, err
}

func (e *Escalator) notify(ctx context.Context, c store.CommunicationRow, recipients []string) {
	if len(recipients) == 0 {
		return
	}
	if e.Inbox != nil {
		if err := e.Inbox.Announce(ctx, c.ID, recipients); err != nil {
			e.Log.Warn("handing an escalated message to inbox sessions failed; they will list it", "communication_id", c.ID, "error", err.Error())
		}
	}
	if e.Push == nil {
		return
	}
	for _, r := range recipients {
		unread, err := e.Store.Unread(ctx, r)
		if err != nil {
			continue
		}
		if n, err := NewPushNotification(c.ID, r, c.Priority, unread); err == nil {
			if err := e.Push.Send(ctx, n); err != nil {
				e.Log.Warn("escalation push failed", "communication_id", c.ID, "recipient", r, "error", err.Error())
			}
		}
	}
}

func capEntities(e []string) []string {
	if len(e) > audit.MaxEntities {
		return e[:audit.MaxEntities]
	}
	return e
}

// Run ticks every interval until ctx ends.
func (e *Escalator) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := e.Tick(ctx); err != nil && ctx.Err() == nil {
				e.Log.Error("escalation", "error", err)
			}
		}
	}
}
