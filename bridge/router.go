package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/store"
)

// Consumer groups of the pipeline's handlers.
const (
	GroupMap   = "map"
	GroupAudit = "audit"
)

// PoisonStore keeps what no retry can fix.
type PoisonStore interface {
	StorePoison(ctx context.Context, m store.PoisonMessage) error
}

// RouterConfig wires the pipeline's handlers to a queue transport.
type RouterConfig struct {
	// Subscriber returns the transport's subscriber for a consumer group
	// (the store's SQL queue, or NATS JetStream).
	Subscriber func(group string) (message.Subscriber, error)
	Poison     PoisonStore
	Map        *MapStage
	Audit      *AuditStage
	Deliver    *DeliverStage
	Logger     *slog.Logger
	// Retries is how often a transient failure is retried (with
	// exponential backoff from RetryInterval) before the message is left
	// to the transport's redelivery. Defaults 5 and 100 ms.
	Retries       int
	RetryInterval time.Duration
	Now           func() time.Time

	// Relay, when set, is where the stages' queue lives instead of the
	// store (NATS JetStream), and RelaySubscriber the store's own queue:
	// the events every transaction writes to the store (the outbox) are
	// forwarded to Relay by the consumer group "relay", in order, each
	// under its own UUID (JetStream drops a copy republished after a crash
	// by that id), and acknowledged in the store only once Relay has them.
	Relay           message.Publisher
	RelaySubscriber func(group string) (message.Subscriber, error)
}

// GroupRelay is the consumer group that forwards the store's outbox to the
// queue transport.
const GroupRelay = "relay"

// MapPartitions is how many map handlers run side by side, each a
// consumer group of its own ("map", "map-1", …) taking the messages whose
// inbound.Received.OrderKey falls to it: one patient's messages are mapped
// in order, different patients' on different cores. Changing it moves
// keys between groups that have read the queue to different points, so it
// is a constant, not a setting: a change needs a migration of the groups'
// offsets.
const MapPartitions = 2

// partition is the map handler of partition i: the others' messages are
// acknowledged and left to them. A payload that cannot be read goes to
// partition 0, which sets it aside.
func partition(i int, h message.NoPublishHandlerFunc) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		var ev inbound.Received
		if json.Unmarshal(msg.Payload, &ev) != nil || ev.InboundID == "" {
			if i != 0 {
				return nil
			}
		} else if int(ev.OrderKey%MapPartitions) != i {
			return nil
		}
		return h(msg)
	}
}

// NewRouter returns the router running the map (in MapPartitions
// partitions), audit and deliver stages. Every handler runs behind the
// same middleware, outermost first:
//   - poison: an error IsPermanent recognises (a bad payload, a panic) sets
//     the message aside in the poison store with its reason and acks it;
//     nothing is dropped, and "carebridge replay" sends it again;
//   - recover: a panic becomes a permanent error, its stack logged;
//   - retry: any other error is retried with backoff, then nacked, so the
//     transport redelivers it later.
func NewRouter(cfg RouterConfig) (*message.Router, error) {
	if cfg.Subscriber == nil || cfg.Poison == nil || cfg.Map == nil || cfg.Audit == nil || cfg.Deliver == nil || cfg.Logger == nil {
		return nil, errors.New("bridge: RouterConfig needs Subscriber, Poison, Map, Audit, Deliver and Logger")
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	wlog := watermill.NewSlogLogger(cfg.Logger)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("creating the router: %w", err)
	}
	type stage struct {
		group, topic string
		fn           message.NoPublishHandlerFunc
	}
	stages := []stage{
		{GroupAudit, TopicAuditRecorded, cfg.Audit.Handle},
		{GroupDeliver, TopicCommunicationCreated, cfg.Deliver.Handle},
	}
	for i := range MapPartitions {
		g := GroupMap
		if i > 0 {
			g = fmt.Sprintf("%s-%d", GroupMap, i)
		}
		stages = append(stages, stage{g, inbound.TopicReceived, partition(i, cfg.Map.Handle)})
	}
	for _, h := range stages {
		sub, err := cfg.Subscriber(h.group)
		if err != nil {
			return nil, fmt.Errorf("subscribing %s to %s: %w", h.group, h.topic, err)
		}
		handler := r.AddConsumerHandler(h.group, h.topic, sub, h.fn)
		handler.AddMiddleware(
			poisonMiddleware(cfg.Poison, h.group, cfg.Now, cfg.Logger),
			recoverMiddleware(h.group, cfg.Logger),
			middleware.Retry{
				MaxRetries: cfg.Retries, InitialInterval: cfg.RetryInterval, MaxInterval: 10 * time.Second, Multiplier: 2,
				ShouldRetry: func(p middleware.RetryParams) bool { return !IsPermanent(p.Err) },
				Logger:      wlog,
			}.Middleware,
		)
	}
	if cfg.Relay != nil {
		if cfg.RelaySubscriber == nil {
			return nil, errors.New("bridge: RouterConfig.Relay needs RelaySubscriber")
		}
		sub, err := cfg.RelaySubscriber(GroupRelay)
		if err != nil {
			return nil, fmt.Errorf("subscribing the relay to the store's queue: %w", err)
		}
		for _, topic := range Topics() {
			handler := r.AddHandler(GroupRelay+"."+topic, topic, sub, topic, cfg.Relay, forward)
			handler.AddMiddleware(
				recoverMiddleware(GroupRelay, cfg.Logger),
				middleware.Retry{
					MaxRetries: cfg.Retries, InitialInterval: cfg.RetryInterval, MaxInterval: 10 * time.Second, Multiplier: 2,
					Logger: wlog,
				}.Middleware,
			)
		}
	}
	return r, nil
}

// forward passes a message on unchanged: same UUID, payload and metadata.
func forward(msg *message.Message) ([]*message.Message, error) {
	out := message.NewMessage(msg.UUID, msg.Payload)
	for k, v := range msg.Metadata {
		out.Metadata.Set(k, v)
	}
	return []*message.Message{out}, nil
}

func poisonMiddleware(st PoisonStore, group string, now func() time.Time, log *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil || !IsPermanent(err) {
				return out, err
			}
			p := store.PoisonMessage{
				ID: msg.UUID, Handler: group, Topic: message.SubscribeTopicFromCtx(msg.Context()),
				Payload: msg.Payload, Metadata: msg.Metadata, Reason: err.Error(), FailedAt: now().UTC(),
			}
			if perr := st.StorePoison(context.WithoutCancel(msg.Context()), p); perr != nil {
				log.Error("could not set a failed message aside; it will be redelivered", "handler", group, "message_id", msg.UUID, "error", perr)
				return nil, err
			}
			log.Warn("message set aside as poison; replay it with carebridge replay", "handler", group, "message_id", msg.UUID,
				"correlation_id", msg.Metadata.Get(inbound.CorrelationIDKey), "reason", err.Error())
			return nil, nil
		}
	}
}

// recoverMiddleware turns a panic into a permanent error. The panic value
// is not kept (it might quote data); the stack goes to the log.
func recoverMiddleware(group string, log *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (out []*message.Message, err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panicked", "handler", group, "message_id", msg.UUID, "stack", string(debug.Stack()))
					out, err = nil, fmt.Errorf("%w: the %s handler panicked (stack in the log)", errPermanent, group)
				}
			}()
			return h(msg)
		}
	}
}
