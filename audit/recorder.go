package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/carebridge/carebridge/store"
)

// EntryAppender appends entries to an audit chain in one transaction,
// skipping those stored already (*Log has it).
type EntryAppender interface {
	AppendEntries(ctx context.Context, entries []Entry) (int, error)
}

// Recorder appends audit entries to this process's chain as they come, as
// many as are waiting in one transaction (group commit: while one batch
// commits, the next gathers), and Record returns once its entries are
// committed. There is no goroutine while nothing waits. It is safe for
// concurrent use.
//
// It is how the API audits what writes nothing (reads, searches,
// refusals): one transaction per batch. Work that must commit its audit
// entries atomically with its own writes appends them in its own
// transaction (the API's writes, through Writers) or publishes them on the
// audit topic for the audit stage (the pipeline stages).
type Recorder struct {
	log      EntryAppender
	parallel int

	mu       sync.Mutex
	pending  []*recording
	flushing int // flush goroutines running, at most parallel
	idle     *sync.Cond
}

type recording struct {
	entries []Entry
	done    chan error
}

// maxRecorderBatch caps the entries of one transaction.
const maxRecorderBatch = 4 * MaxBatch

// NewRecorder returns a Recorder that appends to log, with up to parallel
// transactions at once (at least 1). More than one needs a log that
// appends concurrently, such as Writers, whose chains let a batch commit
// while the one before still waits for its commit to be flushed.
func NewRecorder(log EntryAppender, parallel int) (*Recorder, error) {
	if log == nil {
		return nil, errors.New("audit: a recorder needs a log")
	}
	r := &Recorder{log: log, parallel: max(parallel, 1)}
	r.idle = sync.NewCond(&r.mu)
	return r, nil
}

// Record appends entries (each given a fresh id) and waits until they
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
	if r.flushing < r.parallel {
		r.flushing++
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
	for r.flushing > 0 {
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
			r.flushing--
			if r.flushing == 0 {
				r.idle.Broadcast()
			}
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		r.append(batch)
	}
}

// append appends a batch in one transaction. A record that cannot be
// linked (ErrInvalid: no retry makes it fit) fails only its own Record
// call: the batch is then appended recording by recording.
func (r *Recorder) append(batch []*recording) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var all []Entry
	for _, rec := range batch {
		all = append(all, rec.entries...)
	}
	_, err := r.log.AppendEntries(ctx, all)
	if errors.Is(err, store.ErrConflict) {
		// Another writer took the chain's next position (two processes
		// given one --node): the log has reloaded its head; link again.
		_, err = r.log.AppendEntries(ctx, all)
	}
	if err == nil || !errors.Is(err, ErrInvalid) || len(batch) == 1 {
		if err != nil {
			err = fmt.Errorf("recording audit entries: %w", err)
		}
		for _, rec := range batch {
			rec.done <- err
		}
		return
	}
	for _, rec := range batch {
		_, err := r.log.AppendEntries(ctx, rec.entries)
		if err != nil {
			err = fmt.Errorf("recording audit entries: %w", err)
		}
		rec.done <- err
	}
}
