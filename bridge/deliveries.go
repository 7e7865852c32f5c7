package bridge

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/store"
)

// maxDeliveryBatch caps how many deliveries share one transaction.
const maxDeliveryBatch = 256

// deliveryRecorder records what inbox sessions were sent: each delivery's
// state and its audit entry, as many as are waiting in one transaction
// (group commit: while one batch commits, the next gathers), then
// completes the Communications every recipient now has. There is no
// goroutine while nothing waits; a burst starts one, which ends when the
// queue is empty.
type deliveryRecorder struct {
	api *InboxAPI

	mu      sync.Mutex
	pending []*sentItem
	busy    bool       // a flush goroutine runs
	idle    *sync.Cond // on mu: broadcast when busy ends
}

func newDeliveryRecorder(api *InboxAPI) *deliveryRecorder {
	r := &deliveryRecorder{api: api}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// sentItem is one message sent to one recipient's session.
type sentItem struct {
	user, recipient, id, patient, addr string
	done                               chan error // the outcome, once
}

// record queues the delivery and returns where its outcome will be sent;
// it does not wait.
func (r *deliveryRecorder) record(user, recipient, id, patient, addr string) <-chan error {
	it := &sentItem{user: user, recipient: recipient, id: id, patient: patient, addr: addr, done: make(chan error, 1)}
	r.mu.Lock()
	r.pending = append(r.pending, it)
	if !r.busy {
		r.busy = true
		go r.flush()
	}
	r.mu.Unlock()
	return it.done
}

// wait returns once every delivery queued so far is recorded (or failed).
func (r *deliveryRecorder) wait() {
	r.mu.Lock()
	for r.busy {
		r.idle.Wait()
	}
	r.mu.Unlock()
}

func (r *deliveryRecorder) flush() {
	for {
		r.mu.Lock()
		n := min(len(r.pending), maxDeliveryBatch)
		if n == 0 {
			r.busy = false
			r.idle.Broadcast()
			r.mu.Unlock()
			return
		}
		batch := make([]*sentItem, n)
		copy(batch, r.pending)
		r.pending = append(r.pending[:0], r.pending[n:]...)
		r.mu.Unlock()
		r.commit(batch)
	}
}

// commit records a batch in one transaction; should one of its deliveries
// no longer exist, each is recorded on its own instead, so that the rest
// are not lost with it.
func (r *deliveryRecorder) commit(batch []*sentItem) {
	a := r.api
	ctx := context.Background() // the sessions may be gone; their deliveries happened
	now := a.Now().UTC()
	updates := make([]store.DeliveryUpdate, len(batch))
	entries := make([]audit.Entry, len(batch))
	for i, it := range batch {
		updates[i] = store.DeliveryUpdate{CommunicationID: it.id, Recipient: it.recipient, State: store.DeliveryDelivered, At: now}
		entries[i] = deliveryEntry(now, it.user, it.recipient, it.addr, it.id, it.patient, "communication.delivered")
	}
	ev, err := auditEvent(batch[0].id, entries...)
	if err == nil {
		err = a.Store.SetDeliveries(ctx, updates, ev)
	}
	if errors.Is(err, store.ErrNotFound) && len(batch) > 1 {
		for _, it := range batch {
			r.commit([]*sentItem{it})
		}
		return
	}
	if err != nil {
		// The clients have the messages; the record of it is what failed.
		// They stay undelivered, and are sent again (clients dedupe by id).
		a.Log.Error("recording deliveries", "deliveries", len(batch), "error", err)
	}
	for _, it := range batch {
		it.done <- err
	}
	if err != nil {
		return
	}
	// The Communications every recipient now has become completed, all in
	// one transaction.
	seen := map[string]bool{}
	var done []store.Completion
	for _, it := range batch {
		if seen[it.id] {
			continue
		}
		seen[it.id] = true
		c, ok, err := a.completion(ctx, it.id)
		if err != nil {
			a.Log.Error("completing a Communication", "communication_id", it.id, "error", err)
		} else if ok {
			done = append(done, c)
		}
	}
	if len(done) > 0 {
		if _, err := a.Store.CompleteCommunications(ctx, done); err != nil {
			a.Log.Error("completing Communications", "communications", len(done), "error", err)
		}
	}
}

// deliveryEntry is the audit entry of a delivery to, or a read by,
// recipient: the signed-in user (at addr) who stands for it, or without a
// user (a development token) the recipient itself.
func deliveryEntry(at time.Time, user, recipient, addr, id, patient, action string) audit.Entry {
	e := audit.Entry{
		At: at, Action: action, Outcome: audit.OutcomeSuccess,
		Actor:    audit.Actor{Kind: audit.ActorUser, ID: recipient, Address: addr},
		Entities: []string{"Communication/" + id}, Patient: patient,
	}
	if user != "" {
		e.Actor.ID = user
		e.Entities = append(e.Entities, recipient)
	}
	return e
}
