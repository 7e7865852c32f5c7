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

// WakeBackoff is a subscriber's BackoffManager; see Waker.Backoff.
type WakeBackoff struct {
	w           *Waker
	poll, retry time.Duration
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
		return 0
	}
	t := time.NewTimer(b.poll)
	defer t.Stop()
	select {
	case <-b.w.wait():
	case <-t.C:
	}
	return 0
}
