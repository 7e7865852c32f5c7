package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// EventPublisher publishes events in one transaction of their own
// (store.Deliveries has it).
type EventPublisher interface {
	PublishEvents(ctx context.Context, events []store.Event) error
}

// Recorder hands audit entries to the audit stage: it publishes them on
// the audit topic, as many as are waiting in one transaction (group
// commit: while one batch commits, the next gathers), and Record returns
// once its entries are committed. There is no goroutine while nothing
// waits. It is safe for concurrent use.
type Recorder struct {
	pub            EventPublisher
	topic          string
	correlationKey string

	mu      sync.Mutex
	pending []*recording
	busy    bool
	idle    *sync.Cond
}

type recording struct {
	entries []Entry
	done    chan error
}

// maxRecorderBatch caps the entries of one transaction.
const maxRecorderBatch = 4 * MaxBatch

// NewRecorder returns a Recorder publishing on topic; correlationKey is the
// metadata key that carries an entry's correlation id.
func NewRecorder(pub EventPublisher, topic, correlationKey string) (*Recorder, error) {
	if pub == nil || topic == "" {
		return nil, errors.New("audit: a recorder needs a publisher and a topic")
	}
	r := &Recorder{pub: pub, topic: topic, correlationKey: correlationKey}
	r.idle = sync.NewCond(&r.mu)
	return r, nil
}

// Record publishes entries (each given a fresh id) and waits until they
// are committed, or ctx ends; an entry that is not committed is not lost
// to its caller, who gets the error.
func (r *Recorder) Record(ctx context.Context, entries ...Entry) error {
	if len(entries) == 0 {
		return nil
	}
	for i := range entries {
		if entries[i].Action == "" || entries[i].At.IsZero() {
			return errors.New("audit: an entry needs an action and a time")
		}
		entries[i].ID = watermill.NewUUID()
	}
	rec := &recording{entries: entries, done: make(chan error, 1)}
	r.mu.Lock()
	r.pending = append(r.pending, rec)
	if !r.busy {
		r.busy = true
		go r.flush()
	}
	r.mu.Unlock()
	select {
	case err := <-rec.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("recording an audit entry: %w", ctx.Err())
	}
}

// Wait returns once everything recorded so far is committed (or failed).
func (r *Recorder) Wait() {
	r.mu.Lock()
	for r.busy {
		r.idle.Wait()
	}
	r.mu.Unlock()
}

func (r *Recorder) flush() {
	for {
		r.mu.Lock()
		var batch []*recording
		n := 0
		for len(r.pending) > 0 && (n == 0 || n+len(r.pending[0].entries) <= maxRecorderBatch) {
			n += len(r.pending[0].entries)
			batch = append(batch, r.pending[0])
			r.pending = r.pending[1:]
		}
		if len(batch) == 0 {
			r.busy = false
			r.idle.Broadcast()
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		err := r.publish(batch)
		for _, rec := range batch {
			rec.done <- err
		}
	}
}

func (r *Recorder) publish(batch []*recording) error {
	var events []store.Event
	var chunk []Entry
	corr := ""
	emit := func() error {
		if len(chunk) == 0 {
			return nil
		}
		b, err := json.Marshal(chunk)
		if err != nil {
			return fmt.Errorf("encoding audit entries: %w", err)
		}
		m := message.NewMessage(watermill.NewUUID(), b)
		if r.correlationKey != "" && corr != "" {
			m.Metadata.Set(r.correlationKey, corr)
		}
		events = append(events, store.Event{Topic: r.topic, Message: m})
		chunk, corr = nil, ""
		return nil
	}
	for _, rec := range batch {
		for _, e := range rec.entries {
			if len(chunk) == MaxBatch {
				if err := emit(); err != nil {
					return err
				}
			}
			if corr == "" {
				corr = e.Correlation
			}
			chunk = append(chunk, e)
		}
	}
	if err := emit(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.pub.PublishEvents(ctx, events); err != nil {
		return fmt.Errorf("recording audit entries: %w", err)
	}
	return nil
}
