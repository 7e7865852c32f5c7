package store

import (
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// Waker lets the queue's subscribers in this process know that a
// transaction committed, so that they read the new events at once instead
// of at their next poll. Both backends wake it after every write; the
// poll remains for what other processes commit.
type Waker struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wake tells every waiting subscriber to look again.
func (w *Waker) Wake() {
	w.mu.Lock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}

func (w *Waker) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// Backoff returns watermill-sql's BackoffManager for a subscriber: after a
// read that found nothing it waits until Wake or poll, whichever is first;
// after an error, retry (a deadlock is retried at once, as watermill-sql's
// default does).
func (w *Waker) Backoff(poll, retry time.Duration) *WakeBackoff {
	return &WakeBackoff{w: w, poll: poll, retry: retry}
}

// SettlingBackoff is Backoff for a queue whose rows become visible a
// little after their commit: PostgreSQL's adapter shows a row only once
// every older transaction has ended. After a wake that found nothing, the
// subscriber looks again after settle, then twice that, and so on up to
// poll, instead of waiting a whole poll.
func (w *Waker) SettlingBackoff(poll, retry, settle time.Duration) *WakeBackoff {
	return &WakeBackoff{w: w, poll: poll, retry: retry, settle: settle}
}

// WakeBackoff is a subscriber's BackoffManager; see Waker.Backoff.
type WakeBackoff struct {
	w           *Waker
	poll, retry time.Duration
	settle      time.Duration // 0: none

	mu   sync.Mutex
	next time.Duration // the next look after a wake; 0: wait for a wake
}

// HandleError is called by the subscriber after each read: it returns how
// long to wait before the next, having already waited for a wake.
func (b *WakeBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if err != nil {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "deadlock") || strings.Contains(msg, "concurrent update") {
			return 0
		}
		logger.Error("reading the queue", err, watermill.LogFields{"wait_time": b.retry})
		return b.retry
	}
	if !noMsg {
		b.setNext(0)
		return 0
	}
	wait := b.poll
	b.mu.Lock()
	if b.next > 0 {
		wait, b.next = b.next, min(2*b.next, b.poll)
		if wait >= b.poll {
			b.next = 0
		}
	}
	b.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-b.w.wait():
		b.setNext(b.settle)
	case <-t.C:
	}
	return 0
}

func (b *WakeBackoff) setNext(d time.Duration) {
	b.mu.Lock()
	b.next = d
	b.mu.Unlock()
}
