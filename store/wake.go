package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Waker lets the queue's subscribers in this process know that a
// transaction committed events on their topic, so that they read them at
// once instead of at their next poll. Both backends wake the topics a
// commit published on; the poll remains for what other processes commit.
// Only those topics' subscribers look again: a commit on one topic does
// not send every other stage to the database for nothing.
type Waker struct {
	mu sync.Mutex
	ch map[string]chan struct{} // topic → closed on its next wake
}

// Wake tells the subscribers waiting on topics to look again.
func (w *Waker) Wake(topics ...string) {
	if len(topics) == 0 {
		return
	}
	w.mu.Lock()
	for _, t := range topics {
		if ch, ok := w.ch[t]; ok {
			close(ch)
			delete(w.ch, t)
		}
	}
	w.mu.Unlock()
}

func (w *Waker) wait(topic string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.ch[topic]
	if !ok {
		if w.ch == nil {
			w.ch = make(map[string]chan struct{})
		}
		ch = make(chan struct{})
		w.ch[topic] = ch
	}
	return ch
}

// Backoff returns watermill-sql's BackoffManager for a subscriber of
// topic: after a read that found nothing it waits until the topic's Wake
// or poll, whichever is first; after an error, retry (a deadlock is
// retried at once, as watermill-sql's default does).
func (w *Waker) Backoff(topic string, poll, retry time.Duration) *WakeBackoff {
	return &WakeBackoff{w: w, topic: topic, poll: poll, retry: retry, armed: w.wait(topic)}
}

// SettlingBackoff is Backoff for a queue whose rows become visible a
// little after their commit: PostgreSQL's adapter shows a row only once
// every older transaction has ended. After a wake that found nothing, the
// subscriber looks again after settle, then twice that, and so on up to
// settleMax (or poll, if shorter), instead of waiting a whole poll; then
// it waits for the next wake or poll again.
func (w *Waker) SettlingBackoff(topic string, poll, retry, settle, settleMax time.Duration) *WakeBackoff {
	return &WakeBackoff{w: w, topic: topic, poll: poll, retry: retry, settle: settle, settleMax: min(settleMax, poll), armed: w.wait(topic)}
}

// WakeBackoff is a subscriber's BackoffManager; see Waker.Backoff.
type WakeBackoff struct {
	w           *Waker
	topic       string
	poll, retry time.Duration
	settle      time.Duration // 0: none
	settleMax   time.Duration
	closing     <-chan struct{}

	mu   sync.Mutex
	next time.Duration // the next look after a wake; 0: wait for a wake
	// armed is the topic's wake as the last read began: a commit that
	// wakes the topic while the read runs closes it, and the wait after
	// the read ends at once. Taken only once the read had found nothing,
	// that wake would be lost, and its messages would wait for the poll.
	armed <-chan struct{}
}

// HandleError is called by the subscriber after each read: it returns how
// long to wait before the next, having already waited for a wake.
func (b *WakeBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	b.mu.Lock()
	armed := b.armed
	b.mu.Unlock()
	defer b.arm() // for the next read
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
		wait, b.next = b.next, min(2*b.next, b.settleMax)
		if wait >= b.settleMax {
			b.next = 0
		}
	}
	b.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-armed:
		b.setNext(b.settle)
	case <-t.C:
	case <-b.closing:
		// The subscriber sleeps this long unless its own Close comes
		// first, which it is about to: no query loop meanwhile.
		return b.poll
	}
	return 0
}

// Until ends every wait once closing is closed, so that a subscriber
// being closed is not held for the rest of its poll interval; the wait
// then returned is the poll, for the subscriber's own sleep, which its
// Close ends.
func (b *WakeBackoff) Until(closing <-chan struct{}) *WakeBackoff {
	b.closing = closing
	return b
}

// arm takes the topic's wake for the read about to begin.
func (b *WakeBackoff) arm() {
	ch := b.w.wait(b.topic)
	b.mu.Lock()
	b.armed = ch
	b.mu.Unlock()
}

func (b *WakeBackoff) setNext(d time.Duration) {
	b.mu.Lock()
	b.next = d
	b.mu.Unlock()
}

// TopicRecorder notes the topics a transaction publishes on, for the wake
// after its commit.
type TopicRecorder interface {
	PublishedOn(topic string)
}

// RecordingPublisher is a transaction's publisher that tells rec each
// topic it publishes on.
type RecordingPublisher struct {
	message.Publisher
	Rec TopicRecorder
}

// Publish publishes and notes the topic.
func (p RecordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	if p.Rec != nil && len(msgs) > 0 {
		p.Rec.PublishedOn(topic)
	}
	return nil
}

// PerTopic is a message.Subscriber that gives each Subscribe a subscriber
// of its own, made by newSub for that topic (so that its backoff waits on
// that topic's wake), and closes them all on Close. closing is closed as
// Close begins (for WakeBackoff.Until).
type PerTopic struct {
	newSub  func(topic string, closing <-chan struct{}) (message.Subscriber, error)
	closing chan struct{}

	mu     sync.Mutex
	closed bool
	subs   []message.Subscriber
}

// NewPerTopic returns a PerTopic subscriber.
func NewPerTopic(newSub func(topic string, closing <-chan struct{}) (message.Subscriber, error)) *PerTopic {
	return &PerTopic{newSub: newSub, closing: make(chan struct{})}
}

// Subscribe subscribes a new subscriber for topic.
func (p *PerTopic) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("subscriber closed")
	}
	sub, err := p.newSub(topic, p.closing)
	if err != nil {
		return nil, err
	}
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		sub.Close()
		return nil, err
	}
	p.subs = append(p.subs, sub)
	return msgs, nil
}

// QueueSubscriber is a backend's Subscriber for consumerGroup: a PerTopic
// of watermill-sql subscribers on db, each waiting with backoff(topic).
func QueueSubscriber(db wsql.Beginner, consumerGroup string, schema wsql.SchemaAdapter, offsets wsql.OffsetsAdapter,
	log watermill.LoggerAdapter, backoff func(topic string) *WakeBackoff) *PerTopic {
	return NewPerTopic(func(topic string, closing <-chan struct{}) (message.Subscriber, error) {
		sub, err := wsql.NewSubscriber(db, wsql.SubscriberConfig{
			ConsumerGroup:    consumerGroup,
			ResendInterval:   50 * time.Millisecond,
			BackoffManager:   backoff(topic).Until(closing),
			SchemaAdapter:    schema,
			OffsetsAdapter:   offsets,
			InitializeSchema: false,
		}, log)
		if err != nil {
			return nil, fmt.Errorf("creating subscriber: %w", err)
		}
		return sub, nil
	})
}

// Close closes every subscriber made.
func (p *PerTopic) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	close(p.closing)
	var errs []error
	for _, s := range p.subs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
