package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// Writers is a pool of chains that writes append their audit records to
// inside their own transactions (store.AuditAppender), so that a write is
// never stored without its record, nor its record without the write, and
// no queue or stage stands between them.
//
// A chain is one sequence: its next record needs the one before it, so a
// write holds the chain it took from linking its records until its
// commit. A pool of them lets that many writes commit at once; a write
// that finds every chain taken waits for one. The configured chain is
// the chains' prefix: "node.w" names them "node.w1" to "node.wN".
//
// A chain is held by whoever took it from the pool, and by no one else.
// A write waits for one while holding its database connection, so what
// waits for a connection while holding a chain must leave the others to
// the writes: Checkpoint takes one chain at a time; a Recorder appending
// through AppendEntries may take them all, and needs a pool of its own.
type Writers struct {
	free chan *Log
	logs []*Log
}

// NewWriters returns a pool of n chains (at least 1), each a Log as
// NewLog configures it.
func NewWriters(st Store, signer Signer, cfg LogConfig, n int) (*Writers, error) {
	n = max(n, 1)
	w := &Writers{free: make(chan *Log, n)}
	for i := 1; i <= n; i++ {
		c := cfg
		c.Chain = fmt.Sprintf("%s%d", cfg.Chain, i)
		l, err := NewLog(st, signer, c)
		if err != nil {
			return nil, err
		}
		w.logs = append(w.logs, l)
		w.free <- l
	}
	return w, nil
}

// Entries returns the appender of entries for one write: the event to pass
// with it (store.Event.Audit).
func (w *Writers) Entries(entries ...Entry) store.AuditAppender {
	return &appender{w: w, entries: entries}
}

// AppendEntries appends entries in a transaction of their own to a free
// chain (see Log.AppendEntries): a Recorder with several transactions at
// once appends this way, on a pool of its own (see Writers).
func (w *Writers) AppendEntries(ctx context.Context, entries []Entry) (int, error) {
	var l *Log
	select {
	case l = <-w.free:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for a free audit chain: %w", ctx.Err())
	}
	defer func() { w.free <- l }()
	return l.AppendEntries(ctx, entries)
}

// Checkpoint signs the last record of each free chain that has records
// since its last checkpoint, taking them from the pool one at a time. A
// chain in a write's hands is skipped: it is busy, and its writes sign it
// when a checkpoint is due. Call it every Every (serve does).
func (w *Writers) Checkpoint(ctx context.Context, now time.Time) error {
	var errs []error
	for range w.logs { // the pool is first in, first out: each free chain once
		var l *Log
		select {
		case l = <-w.free:
		default:
			return errors.Join(errs...)
		}
		errs = append(errs, l.Checkpoint(ctx, now))
		w.free <- l
	}
	return errors.Join(errs...)
}

// Every is how often Checkpoint should be called.
func (w *Writers) Every() time.Duration { return w.logs[0].Every() }

// appender is one write's entries; see store.AuditAppender.
type appender struct {
	w       *Writers
	entries []Entry

	held   *Log // from LinkAudit to AuditDone, with its mu locked
	linked linked
}

// LinkAudit takes a free chain and links the entries onto it. A chain
// whose head is not known (at first, after a failure) reads it with head,
// in the write's own transaction: a write holding a chain never waits for
// a second connection, which writes waiting for a chain might all hold.
func (a *appender) LinkAudit(ctx context.Context, head store.AuditHeadFunc) ([]store.AuditRecord, []store.AuditCheckpoint, error) {
	if a.held != nil {
		return nil, nil, errors.New("audit entries linked twice in one transaction")
	}
	var l *Log
	select {
	case l = <-a.w.free:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("waiting for a free audit chain: %w", ctx.Err())
	}
	l.mu.Lock()
	a.held = l
	records := make([]Record, 0, len(a.entries))
	for _, e := range a.entries {
		records = append(records, e.Record())
	}
	p, err := l.link(ctx, records, head)
	if err != nil {
		return nil, nil, err
	}
	a.linked = p
	return p.rows, p.checkpoints, nil
}

// AuditDone makes the linked records the chain's head if the write
// committed, and frees the chain. After any failure the chain reloads its
// head before its next records: a failed commit may still have stored
// them, and another writer may have moved it.
func (a *appender) AuditDone(err error) {
	l := a.held
	if l == nil {
		return
	}
	if err == nil {
		l.advance(a.linked)
	} else {
		l.loaded = false
	}
	a.held, a.linked = nil, linked{}
	l.mu.Unlock()
	a.w.free <- l
}
