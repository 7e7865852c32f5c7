package store

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Helpers both backends use to carry out AcceptInbound.

// ValidateBatch checks what a database cannot: states, sizes, events.
func ValidateBatch(batch []Accept) error {
	for i := range batch {
		m := &batch[i].Message
		if m.ID == "" {
			return fmt.Errorf("message %d of the batch has no ID", i)
		}
		if !m.State.Valid() {
			return fmt.Errorf("message %s has invalid state %q", m.ID, m.State)
		}
		if m.Size < 0 || m.Size > 1<<31-1 {
			return fmt.Errorf("message %s has invalid size %d", m.ID, m.Size)
		}
		for _, e := range batch[i].Events {
			if e.Message == nil || e.Topic == "" {
				return fmt.Errorf("message %s has an event without topic or message", m.ID)
			}
			if len(e.Message.UUID) > 36 {
				return fmt.Errorf("message %s has an event whose UUID is longer than 36 characters", m.ID)
			}
		}
	}
	return nil
}

// EarlierInBatch returns the first of the candidates (indices of accepted
// messages stored earlier in batch, same dedupe key) received at or after since.
func EarlierInBatch(batch []Accept, candidates []int, since time.Time) (int, bool) {
	for _, j := range candidates {
		if !batch[j].Message.ReceivedAt.Truncate(time.Microsecond).Before(since.Truncate(time.Microsecond)) {
			return j, true
		}
	}
	return 0, false
}

// EventsByTopic collects events so that each topic is published in one call,
// topics in order of first appearance and messages in batch order.
type EventsByTopic struct {
	topics []string
	msgs   map[string][]*message.Message
	audit  int // audit appends given, which Publish refuses
}

func (e *EventsByTopic) Add(events []Event) {
	for _, ev := range events {
		if e.msgs == nil {
			e.msgs = map[string][]*message.Message{}
		}
		if ev.Audit != nil {
			e.audit++
			continue
		}
		if _, ok := e.msgs[ev.Topic]; !ok {
			e.topics = append(e.topics, ev.Topic)
		}
		e.msgs[ev.Topic] = append(e.msgs[ev.Topic], ev.Message)
	}
}

func (e *EventsByTopic) Publish(pub message.Publisher) error {
	if e.audit > 0 {
		// The writes that take audit appenders link them themselves.
		return fmt.Errorf("%d audit appends given to a write that does not take them", e.audit)
	}
	for _, t := range e.topics {
		if err := pub.Publish(t, e.msgs[t]...); err != nil {
			return fmt.Errorf("publishing %d events on %s: %w", len(e.msgs[t]), t, err)
		}
	}
	return nil
}

// PublishEvents publishes events, each topic in one call, with the
// publisher newPub makes (only when there are events to publish).
func PublishEvents(events []Event, newPub func() (message.Publisher, error)) error {
	if len(events) == 0 {
		return nil
	}
	pub, err := newPub()
	if err != nil {
		return fmt.Errorf("creating publisher: %w", err)
	}
	var byTopic EventsByTopic
	byTopic.Add(events)
	return byTopic.Publish(pub)
}

// PublishWrite publishes the message events of a write with the
// publisher newPub makes, and returns its audit appender (nil if none),
// which the write links as its last step.
func PublishWrite(events []Event, newPub func() (message.Publisher, error)) (AuditAppender, error) {
	a, rest, err := auditAppenderOf(events)
	if err != nil {
		return nil, err
	}
	return a, PublishEvents(rest, newPub)
}

// Len is the number of topics with events.
func (e *EventsByTopic) Len() int { return len(e.topics) }

// DeliveryRank orders delivery states: an update to a lower rank is
// ignored. It returns -1 for an unknown state.
func DeliveryRank(state string) int {
	switch state {
	case DeliveryQueued:
		return 0
	case DeliveryFailed:
		return 1
	case DeliveryDelivered:
		return 2
	case DeliveryRead:
		return 3
	}
	return -1
}
