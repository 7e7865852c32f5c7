package bridge

// NATS JetStream queue transport: the scale-out alternative to Watermill SQL,
// for several carebridge instances sharing one stream of work.
//
// Mapping from Watermill to JetStream:
//
//   - topic "hl7.received" with StreamPrefix "carebridge" is published on the
//     subject "carebridge.hl7.received" and stored in the stream
//     "carebridge_hl7_received" (stream names may not contain dots). Streams
//     keep messages by limits (no age limit), so a message published while no
//     subscriber runs waits for one, and every consumer group sees every
//     message. Operators who want an age or size limit set it on the stream;
//     an existing stream's configuration is left alone.
//   - consumer group "map" is the durable pull consumer "map" on each topic's
//     stream. Every process subscribing with the same group pulls from that
//     one consumer, so each message goes to exactly one of them; a different
//     group is a different consumer and gets every message again. The durable
//     outlives its subscribers: it is never deleted on Close.
//   - acknowledgement is explicit: Ack waits for the server to confirm it,
//     Nack asks for immediate redelivery, and a message left unacknowledged
//     for AckWait is redelivered (to any member of the group). Delivery is at
//     least once, so handlers must be idempotent.
//
// The wire format is watermill-nats's (NATSMarshaler: payload as the body,
// metadata as headers, the UUID in the _watermill_message_uuid header), so
// messages interoperate with watermill-nats publishers and subscribers.
//
// Why not the watermill-nats subscribers (v2.1.3):
//   - pkg/nats (JetStream mode) rests on nats.go's legacy push API, which
//     deletes a durable consumer it created when that subscription
//     unsubscribes, and the Subscriber unsubscribes on Close: restarting the
//     first instance of a group resets or removes the group's position while
//     other instances still consume. Its stream auto-provisioning names the
//     stream after the topic, which JetStream rejects for dotted topics.
//   - pkg/jetstream (pull consumers, the right model) publishes to a subject
//     equal to the stream name; its grouped consumer uses a work-queue stream,
//     which refuses a second consumer group; it closes the output channel
//     while buffered messages can still be sent to it (send on a closed
//     channel when the context is cancelled with messages prefetched); it
//     dereferences a nil message when a header cannot be unmarshalled; and it
//     logs every message at info level.
// So both sides are written here directly on nats.go's jetstream package, in
// watermill-nats's wire format.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// DefaultNATSStreamPrefix namespaces carebridge's subjects and streams.
	DefaultNATSStreamPrefix = "carebridge"
	// DefaultNATSAckWait is how long a delivered message may stay
	// unacknowledged before JetStream redelivers it.
	DefaultNATSAckWait = 30 * time.Second

	// natsRequestTimeout bounds one JetStream API call or publish.
	natsRequestTimeout = 10 * time.Second
	// natsPullBatch is how many messages one subscription may hold before its
	// handler gets to them. Messages are handled one at a time and their
	// AckWait runs from delivery, so a small buffer keeps waiting messages
	// from timing out and spreads work evenly across a group.
	natsPullBatch = 10
	// natsFetchWait bounds one pull request: an idle subscription asks
	// again this often, and a request the server lost costs at most this.
	natsFetchWait = 5 * time.Second
	// natsCloseGrace is how long a closing subscription still waits for the
	// handler to ack or nack the message it holds. After that the message is
	// left to redelivery after AckWait.
	natsCloseGrace = 5 * time.Second
	// natsErrorBackoff paces retries after an unexpected consumer error.
	natsErrorBackoff = time.Second
)

// ErrNATSClosed is returned by a NATS publisher or subscriber used after Close.
var ErrNATSClosed = errors.New("nats transport closed")

// NATSConfig configures the NATS JetStream queue transport.
type NATSConfig struct {
	// URL of the NATS server, e.g. nats://127.0.0.1:4222; may be a
	// comma-separated list of a cluster's servers. It may carry credentials
	// and is never logged.
	URL string
	// StreamPrefix namespaces subjects ("<prefix>.<topic>") and streams
	// ("<prefix>_<topic with _ for .>") so that deployments and test runs do
	// not collide. Dot-separated tokens of letters, digits, '-' and '_'.
	// Default "carebridge".
	StreamPrefix string
	// AckWait is how long a delivered message may stay unacknowledged
	// before JetStream redelivers it. Default 30s. It applies when a
	// consumer group subscribes, so the last subscriber to start sets it.
	AckWait time.Duration
	// Logger receives transport events (identifiers only, never payloads).
	// Default slog.Default().
	Logger *slog.Logger
}

func (c NATSConfig) withDefaults() (NATSConfig, error) {
	if c.URL == "" {
		return c, errors.New("nats config: URL is required")
	}
	if c.StreamPrefix == "" {
		c.StreamPrefix = DefaultNATSStreamPrefix
	}
	if err := validateNATSSubject(c.StreamPrefix); err != nil {
		return c, fmt.Errorf("nats config: stream prefix: %w", err)
	}
	if c.AckWait < 0 {
		return c, fmt.Errorf("nats config: negative AckWait %s", c.AckWait)
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultNATSAckWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// validateNATSSubject accepts dot-separated, non-empty tokens of ASCII
// letters, digits, '-' and '_': valid subjects without wildcards, and valid
// stream names once the dots are replaced.
func validateNATSSubject(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty dot-separated token", s)
		}
		if err := validateNATSToken(tok); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	return nil
}

func validateNATSToken(tok string) error {
	for _, r := range tok {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return fmt.Errorf("character %q not allowed (letters, digits, '-', '_')", r)
		}
	}
	return nil
}

// natsSubject is the subject a topic is published on.
func natsSubject(prefix, topic string) string {
	return prefix + "." + topic
}

// natsStreamName is the stream that stores a topic. Distinct topics can map to
// the same name ("a.b" and "a_b"); ensureNATSStream then fails, because the
// stream it finds does not hold the topic's subject, instead of mixing them.
func natsStreamName(prefix, topic string) string {
	return strings.ReplaceAll(natsSubject(prefix, topic), ".", "_")
}

// ensureNATSStream returns the stream for topic, creating it if missing.
func ensureNATSStream(ctx context.Context, js jetstream.JetStream, prefix, topic string) (jetstream.Stream, error) {
	if err := validateNATSSubject(topic); err != nil {
		return nil, fmt.Errorf("nats topic: %w", err)
	}
	name, subject := natsStreamName(prefix, topic), natsSubject(prefix, topic)
	ctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	defer cancel()

	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        name,
			Description: "carebridge topic " + topic,
			Subjects:    []string{subject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another instance created it first.
			stream, err = js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensuring stream %s: %w", name, err)
	}
	if !slices.Contains(stream.CachedInfo().Config.Subjects, subject) {
		return nil, fmt.Errorf("stream %s exists but does not hold subject %s (topic name collision?)", name, subject)
	}
	return stream, nil
}

func connectNATS(cfg NATSConfig, role string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(cfg.URL,
		nats.Name("carebridge "+role),
		nats.MaxReconnects(-1), // a long-running service keeps trying
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("opening JetStream: %w", err)
	}
	return nc, js, nil
}

// natsPublisher publishes Watermill messages to JetStream, one confirmed
// publish per message.
type natsPublisher struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
	logger watermill.LoggerAdapter

	mu      sync.Mutex
	closed  bool
	streams map[string]bool // topics whose stream is known to exist
}

// NewNATSPublisher connects to NATS and returns a publisher that stores each
// message in its topic's JetStream stream (created on first use) before
// Publish returns. The message UUID is the JetStream message ID, so a
// publish retried within the stream's duplicate window (2 minutes) is stored
// once.
func NewNATSPublisher(cfg NATSConfig) (message.Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	nc, js, err := connectNATS(cfg, "publisher")
	if err != nil {
		return nil, err
	}
	return &natsPublisher{
		nc:      nc,
		js:      js,
		prefix:  cfg.StreamPrefix,
		logger:  watermill.NewSlogLogger(cfg.Logger).With(watermill.LogFields{"transport": "nats"}),
		streams: make(map[string]bool),
	}, nil
}

func (p *natsPublisher) ensureStream(topic string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrNATSClosed
	}
	if p.streams[topic] {
		return nil
	}
	if _, err := ensureNATSStream(context.Background(), p.js, p.prefix, topic); err != nil {
		return err
	}
	p.streams[topic] = true
	return nil
}

// Publish stores messages in order; it stops at the first failure, and the
// messages before it stay published.
func (p *natsPublisher) Publish(topic string, messages ...*message.Message) error {
	if err := p.ensureStream(topic); err != nil {
		return fmt.Errorf("publishing to %s: %w", topic, err)
	}
	subject := natsSubject(p.prefix, topic)
	var marshaler wmnats.NATSMarshaler
	for _, msg := range messages {
		nm, err := marshaler.Marshal(subject, msg)
		if err != nil {
			return fmt.Errorf("marshalling message %s for %s: %w", msg.UUID, topic, err)
		}
		var opts []jetstream.PublishOpt
		if msg.UUID != "" {
			opts = append(opts, jetstream.WithMsgID(msg.UUID))
		}
		ctx, cancel := context.WithTimeout(context.Background(), natsRequestTimeout)
		ack, err := p.js.PublishMsg(ctx, nm, opts...)
		cancel()
		if err != nil {
			return fmt.Errorf("publishing message %s to %s: %w", msg.UUID, topic, err)
		}
		p.logger.Trace("published", watermill.LogFields{
			"topic": topic, "message_uuid": msg.UUID, "stream": ack.Stream,
			"sequence": ack.Sequence, "duplicate": ack.Duplicate,
		})
	}
	return nil
}

// Close closes the connection. Publish has already waited for every
// message's confirmation, so nothing is pending.
func (p *natsPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.nc.Close()
	return nil
}

// natsSubscriber consumes topics through one durable consumer per topic,
// named after the consumer group.
type natsSubscriber struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	prefix  string
	group   string
	ackWait time.Duration
	logger  watermill.LoggerAdapter

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup // one per running subscription
}

// NewNATSSubscriber connects to NATS and returns a subscriber in
// consumerGroup: each Subscribe binds (creating if needed) the durable
// JetStream consumer consumerGroup on the topic's stream, with explicit
// acknowledgement and AckWait. Processes subscribing with the same group
// share the messages, each delivered to one of them; Nack redelivers at
// once, an ack that never comes redelivers after AckWait. The group's
// position survives restarts: messages published while no member runs are
// delivered when one subscribes. consumerGroup is a single token of letters,
// digits, '-' and '_' (no dots).
func NewNATSSubscriber(cfg NATSConfig, consumerGroup string) (message.Subscriber, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if consumerGroup == "" {
		return nil, errors.New("nats subscriber: consumer group is required")
	}
	if err := validateNATSToken(consumerGroup); err != nil {
		return nil, fmt.Errorf("nats subscriber: consumer group %q: %w", consumerGroup, err)
	}
	nc, js, err := connectNATS(cfg, "subscriber "+consumerGroup)
	if err != nil {
		return nil, err
	}
	return &natsSubscriber{
		nc:      nc,
		js:      js,
		prefix:  cfg.StreamPrefix,
		group:   consumerGroup,
		ackWait: cfg.AckWait,
		logger: watermill.NewSlogLogger(cfg.Logger).With(watermill.LogFields{
			"transport": "nats", "consumer_group": consumerGroup,
		}),
		closing: make(chan struct{}),
	}, nil
}

// Subscribe starts consuming topic. The channel is closed when ctx is
// cancelled or the subscriber is closed. Each message must be acked or
// nacked before the next one is sent.
func (s *natsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrNATSClosed
	}

	stream, err := ensureNATSStream(ctx, s.js, s.prefix, topic)
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s: %w", topic, err)
	}
	cctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	consumer, err := stream.CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{
		Durable:       s.group,
		Description:   "carebridge consumer group " + s.group,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.ackWait,
		MaxDeliver:    -1, // never give up on a message: nothing accepted is lost
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s: consumer %s: %w", topic, s.group, err)
	}
	out := make(chan *message.Message)
	stop := make(chan struct{})
	done := make(chan struct{})
	pulls, stopPulling := context.WithCancel(context.Background())
	s.wg.Add(2)
	go func() {
		// Stop pulling when asked; the consume loop then hands back
		// (nacks) whatever is already buffered.
		defer s.wg.Done()
		select {
		case <-ctx.Done():
		case <-s.closing:
		case <-done:
		}
		close(stop)
		stopPulling()
	}()
	go func() {
		defer s.wg.Done()
		defer close(done)
		defer close(out)
		s.consume(ctx, pulls, topic, consumer, out, stop)
	}()
	return out, nil
}

// consume is the only sender on out, so out is closed only after the last
// send. It pulls one batch at a time, each a request of its own that ends
// when the batch is full or natsFetchWait has passed, and handles the batch
// before asking for the next. nats.go's continuous Messages iterator is not
// used: it skips a refill while its previous pull request is still being
// sent and does not try again until a message arrives, so under CPU pressure
// a consumer with work waiting stalled until the missing-heartbeat timeout
// (30 s), or for good on older nats.go versions.
func (s *natsSubscriber) consume(ctx, pulls context.Context, topic string, consumer jetstream.Consumer, out chan<- *message.Message, stop <-chan struct{}) {
	logFields := watermill.LogFields{"topic": topic}
	for pulls.Err() == nil {
		fetchCtx, cancel := context.WithTimeout(pulls, natsFetchWait)
		batch, err := consumer.Fetch(natsPullBatch, jetstream.FetchContext(fetchCtx))
		if err == nil {
			for jm := range batch.Messages() {
				s.handle(ctx, jm, out, stop, logFields)
			}
			err = batch.Error()
		}
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			continue
		}
		if pulls.Err() != nil {
			return
		}
		s.logger.Error("consuming", err, logFields)
		select {
		case <-stop:
		case <-time.After(natsErrorBackoff):
		}
	}
}

// handle passes one message to the handler and settles it with the server.
func (s *natsSubscriber) handle(ctx context.Context, jm jetstream.Msg, out chan<- *message.Message, stop <-chan struct{}, logFields watermill.LogFields) {
	msg := natsToMessage(jm)
	fields := logFields.Add(watermill.LogFields{"message_uuid": msg.UUID})
	if md, err := jm.Metadata(); err == nil {
		fields = fields.Add(watermill.LogFields{"stream_sequence": md.Sequence.Stream, "delivery": md.NumDelivered})
	}
	msgCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(msgCtx)

	select {
	case <-stop:
		// Not handed over: give it back for another member now rather
		// than after AckWait.
		s.nak(jm, fields)
		return
	default:
	}
	select {
	case out <- msg:
	case <-stop:
		s.nak(jm, fields)
		return
	}

	select {
	case <-msg.Acked():
		s.ack(jm, fields)
	case <-msg.Nacked():
		s.nak(jm, fields)
	case <-stop:
		select {
		case <-msg.Acked():
			s.ack(jm, fields)
		case <-msg.Nacked():
			s.nak(jm, fields)
		case <-time.After(natsCloseGrace):
			s.logger.Info("closing with message unsettled; JetStream redelivers it after AckWait", fields)
		}
	}
}

func (s *natsSubscriber) ack(jm jetstream.Msg, fields watermill.LogFields) {
	ctx, cancel := context.WithTimeout(context.Background(), natsRequestTimeout)
	defer cancel()
	// DoubleAck waits for the server's confirmation, so an ack that
	// returns is not followed by a redelivery.
	if err := jm.DoubleAck(ctx); err != nil {
		s.logger.Error("acking message; it will be redelivered", err, fields)
		return
	}
	s.logger.Trace("acked", fields)
}

func (s *natsSubscriber) nak(jm jetstream.Msg, fields watermill.LogFields) {
	if err := jm.Nak(); err != nil {
		s.logger.Error("nacking message; it will be redelivered after AckWait", err, fields)
		return
	}
	s.logger.Trace("nacked", fields)
}

// natsToMessage converts a JetStream message written by NATSMarshaler. It
// never fails: a header with several values keeps the first one.
func natsToMessage(jm jetstream.Msg) *message.Message {
	hdr := jm.Headers()
	msg := message.NewMessage(hdr.Get(wmnats.WatermillUUIDHdr), jm.Data())
	for k, v := range hdr {
		switch k {
		case wmnats.WatermillUUIDHdr, nats.MsgIdHdr, nats.ExpectedLastMsgIdHdr,
			nats.ExpectedStreamHdr, nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastSeqHdr:
			continue
		}
		if len(v) > 0 {
			msg.Metadata.Set(k, v[0])
		}
	}
	return msg
}

// Close stops every subscription, waits (at most natsCloseGrace per message
// in hand) for their handlers to settle, and closes the connection.
// Unsettled messages are redelivered by JetStream.
func (s *natsSubscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()

	s.wg.Wait()
	if err := s.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("closing NATS connection: %w", err)
	}
	return nil
}
