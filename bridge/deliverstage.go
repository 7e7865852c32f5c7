package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/store"
)

// GroupDeliver is the deliver stage's consumer group.
const GroupDeliver = "deliver"

// DeliveryStore is what the deliver stage needs of storage.
type DeliveryStore interface {
	QueueDeliveries(ctx context.Context, communicationID string, recipients []string, at time.Time) error
	DeliveriesOf(ctx context.Context, communicationID string) ([]store.Delivery, error)
	Unread(ctx context.Context, recipient string) (int, error)
	GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error)
}

// Pusher sends a push notification (PushWebhook does).
type Pusher interface {
	Send(ctx context.Context, n PushNotification) error
}

// DeliverStage is the handler of TopicCommunicationCreated: it announces
// the new message to its recipients' inbox sessions, queues the EHR's
// rest-hook notices and, with a Pusher, tells each recipient's devices
// that a message waits (id, priority, unread count: nothing more).
// Clinicians' sessions then fetch the message itself.
type DeliverStage struct {
	Store DeliveryStore
	Push  Pusher    // nil: no push gateway configured
	Inbox Announcer // nil: no inbox sessions
	Hooks *RestHook // nil: no EHR subscriptions
	Now   func() time.Time
	Log   *slog.Logger
}

// Handle processes one communication.created event. Redelivery queues
// nothing twice; a push may be sent again, with the same message id, which
// devices deduplicate.
func (s *DeliverStage) Handle(msg *message.Message) error {
	ctx := msg.Context()
	var ev CommunicationCreated
	if err := json.Unmarshal(msg.Payload, &ev); err != nil || ev.CommunicationID == "" {
		return fmt.Errorf("%w: %s payload is not a Communication reference", errPermanent, TopicCommunicationCreated)
	}
	if ev.Recalled {
		// Nothing new to queue, notify or push: the sessions that show it
		// are told it is withdrawn.
		if s.Inbox == nil {
			return nil
		}
		return s.Inbox.Announce(ctx, ev.CommunicationID, ev.Recipients)
	}
	// Writes queue the deliveries with the Communication; one stored
	// before they did has them queued here. The stage's turn comes after
	// every busy request's (it is one consumer among many connections), so
	// what it need not ask the database, it does not.
	if !ev.Queued {
		if ds, err := s.Store.DeliveriesOf(ctx, ev.CommunicationID); err != nil {
			return err
		} else if len(ds) == 0 {
			if err := s.Store.QueueDeliveries(ctx, ev.CommunicationID, ev.Recipients, s.Now().UTC()); err != nil {
				return err
			}
		}
	}
	if s.Inbox != nil {
		if err := s.Inbox.Announce(ctx, ev.CommunicationID, ev.Recipients); err != nil {
			return err
		}
	}
	if s.Hooks != nil {
		// The Communication is read only when some EHR subscribed.
		if active, err := s.Hooks.Active(ctx); err != nil {
			return err
		} else if active {
			c, err := s.Store.GetCommunication(ctx, ev.CommunicationID)
			if err != nil {
				return err
			}
			if err := s.Hooks.Queue(ctx, c); err != nil {
				return err
			}
		}
	}
	if s.Push == nil {
		return nil
	}
	for _, r := range ev.Recipients {
		unread, err := s.Store.Unread(ctx, r)
		if err != nil {
			return err
		}
		n, err := NewPushNotification(ev.CommunicationID, r, ev.Priority, unread)
		if err != nil {
			// A recipient the gateway cannot address (a fixed reference
			// of another type): the inbox still has the message.
			s.Log.Warn("no push for this recipient", "communication_id", ev.CommunicationID, "recipient", r, "reason", err.Error())
			continue
		}
		if err := s.Push.Send(ctx, n); err != nil {
			if errors.Is(err, ErrPushRejected) {
				s.Log.Warn("the push gateway refused a notification", "communication_id", ev.CommunicationID, "recipient", r,
					"correlation_id", msg.Metadata.Get(inbound.CorrelationIDKey), "error", err.Error())
				continue
			}
			return err
		}
	}
	return nil
}
