// Package inbound is carebridge's front door for HL7v2: it turns the bytes a
// peer sent into a durable, encrypted, queued record and tells the caller
// which acknowledgement to send.
//
// "ACK means durable": Accept returns an AA/CA only after the transaction
// that stores the message and queues it on hl7.received has committed. Bad
// input is stored too (state rejected) and answered AE/AR with ERR segments,
// so nothing that reaches carebridge is dropped silently. A message whose
// sending application, facility and control id (MSH-3, MSH-4, MSH-10) match
// an accepted one within the dedupe window is acknowledged again and neither
// stored nor queued twice (HL7 v2.5.1 chapter 2, section 2.9: the original
// acknowledgment rules).
//
// Concurrent callers are grouped into one transaction per batch (group
// commit), so throughput is not capped at one disk flush per message.
package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/store"
)

// TopicReceived is the Watermill topic on which accepted messages are queued.
const TopicReceived = "hl7.received"

// CorrelationIDKey is the Watermill metadata key of the correlation id, the
// same key Watermill's CorrelationID middleware uses.
const CorrelationIDKey = "correlation_id"

// ErrClosed is returned by Accept once the service has stopped.
var ErrClosed = errors.New("inbound: service stopped")

// Received is the payload of a message on TopicReceived. It carries ids
// only: the raw message stays sealed in the store.
type Received struct {
	InboundID   string `json:"inbound_id"`
	MessageType string `json:"message_type"`
	// OrderKey groups the messages whose order matters: those of one
	// patient (PID-3's first identifier) from one sending facility. It is
	// a hash reduced to OrderKeys values, so it says next to nothing of
	// the patient; consumers that work in parallel keep each key's
	// messages in order.
	OrderKey uint32 `json:"order_key"`
}

// OrderKeys is how many values Received.OrderKey takes.
const OrderKeys = 1024

// orderKey is the OrderKey of a message.
func orderKey(m *hl7.Message, facility string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(facility))
	for _, p := range []string{"PID-3.1", "PID-3.4"} {
		h.Write([]byte{0})
		if v, err := m.Get(p); err == nil {
			h.Write(v.Raw())
		}
	}
	return h.Sum32() % OrderKeys
}

// Store is what the service needs of the database.
type Store interface {
	AcceptInbound(ctx context.Context, batch []store.Accept) ([]store.AcceptResult, error)
}

// Sealer encrypts a raw message, binding it to aad (the record id).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
}

// Config tunes the service. The zero value is usable.
type Config struct {
	// DedupeWindow is how far back a duplicate control id is looked for.
	// Default 7 days; a negative value turns deduplication off.
	DedupeWindow time.Duration
	// MaxBatch caps how many messages share one transaction. Default 64.
	MaxBatch int
	// Writers is how many batches may commit at once. Default 1, which is
	// right for SQLite (one writer); PostgreSQL gains from a few.
	Writers int
	// CommitTimeout bounds one batch transaction. Default 30s.
	CommitTimeout time.Duration
	// Limits bound what the HL7 parser accepts.
	Limits hl7.Limits
	// Rules are checked on every well-formed message; nil means DefaultRules.
	Rules *Rules
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// AuditTopic, when set, is where each stored message's audit entry
	// (message.accepted or message.rejected) is published, in the same
	// transaction as the message.
	AuditTopic string
}

func (c *Config) setDefaults() {
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 7 * 24 * time.Hour
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 64
	}
	if c.Writers <= 0 {
		c.Writers = 1
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 30 * time.Second
	}
	if c.Limits == (hl7.Limits{}) {
		c.Limits = hl7.DefaultLimits()
	}
	if c.Rules == nil {
		r := DefaultRules()
		c.Rules = &r
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Peer describes where a message came from.
type Peer struct {
	Addr      string // remote address
	Transport string // "mllp", "mllp+tls", "http"
}

// Result is what happened to one message.
type Result struct {
	ID        string // the stored record (the earlier one for a duplicate)
	State     store.State
	Duplicate bool
	AckCode   hl7.AckCode
	ACK       []byte // the ER7 acknowledgement to send back
}

// Stats counts what the service has done since it started.
type Stats struct {
	Accepted, Rejected, Duplicates, Batches, Failures int64
}

// Service accepts inbound messages. Create it with New and run it with Run.
type Service struct {
	cfg    Config
	store  Store
	sealer Sealer
	log    *slog.Logger

	queue chan *request

	mu      sync.RWMutex // guards stopped against sends on queue
	stopped bool

	accepted, rejected, duplicates, batches, failures atomic.Int64
}

type request struct {
	accept store.Accept
	done   chan reply
}

type reply struct {
	res store.AcceptResult
	err error
}

// New returns a service that stores through st and seals with sealer.
func New(st Store, sealer Sealer, cfg Config) (*Service, error) {
	if st == nil || sealer == nil {
		return nil, errors.New("inbound: a store and a sealer are required")
	}
	cfg.setDefaults()
	return &Service{
		cfg:    cfg,
		store:  st,
		sealer: sealer,
		log:    cfg.Logger,
		queue:  make(chan *request, cfg.MaxBatch*cfg.Writers*4),
	}, nil
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{
		Accepted:   s.accepted.Load(),
		Rejected:   s.rejected.Load(),
		Duplicates: s.duplicates.Load(),
		Batches:    s.batches.Load(),
		Failures:   s.failures.Load(),
	}
}

// Run commits batches until ctx is done, then finishes what was already
// handed to it and returns. Accept calls made after that get ErrClosed.
// Stop the listeners that call Accept before cancelling ctx, so that their
// in-flight messages are still committed and acknowledged.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range s.cfg.Writers {
		wg.Go(func() { s.writer(ctx) })
	}
	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	close(s.queue)
	s.mu.Unlock()
	wg.Wait()
	return nil
}

// writer takes whatever has queued up while the previous commit ran and
// commits it as one batch: the group commit.
func (s *Service) writer(ctx context.Context) {
	batch := make([]*request, 0, s.cfg.MaxBatch)
	accepts := make([]store.Accept, 0, s.cfg.MaxBatch)
	for {
		var first *request
		var ok bool
		select {
		case first, ok = <-s.queue:
		case <-ctx.Done():
			// Drain: the queue is closed by Run once stopped is set.
			first, ok = <-s.queue
		}
		if !ok {
			return
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		accepts = accepts[:0]
		for _, r := range batch {
			accepts = append(accepts, r.accept)
		}
		s.commit(batch, accepts)
	}
}

func (s *Service) commit(batch []*request, accepts []store.Accept) {
	// The commit must finish even if the caller gave up or shutdown began:
	// a half-known outcome would only cause a duplicate on retry, but a
	// cancelled commit of a batch would fail every message in it.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CommitTimeout)
	defer cancel()
	results, err := s.store.AcceptInbound(ctx, accepts)
	s.batches.Add(1)
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("store returned %d results for %d messages", len(results), len(batch))
	}
	if err != nil {
		s.failures.Add(1)
		s.log.Error("storing inbound batch failed; messages are not acknowledged", "messages", len(batch), "err", err)
		for _, r := range batch {
			r.done <- reply{err: err}
		}
		return
	}
	for i, r := range batch {
		r.done <- reply{res: results[i]}
	}
}

// Accept stores raw and returns the acknowledgement to send. An error means
// the message could not be made durable (for example the database is
// down): send no ACK, so the peer retries.
func (s *Service) Accept(ctx context.Context, peer Peer, raw []byte) (Result, error) {
	now := s.cfg.Now().UTC()
	hdr, key, problems := s.check(raw)

	id, err := uuid.NewV7()
	if err != nil {
		return Result{}, fmt.Errorf("making record id: %w", err)
	}
	idStr := id.String()
	sealed, err := s.sealer.Seal(raw, []byte(idStr))
	if err != nil {
		return Result{}, fmt.Errorf("sealing inbound message: %w", err)
	}

	outcome := hl7.Accept
	var details []hl7.ErrorDetail
	var reasons []string
	for _, p := range problems {
		details = append(details, hl7.ErrorDetailFrom(p))
		reasons = append(reasons, p.Error())
		if o := rejectOutcome(p); o > outcome {
			outcome = o
		}
	}
	perr := error(nil)
	if len(problems) > 0 {
		perr = errors.New(strings.Join(reasons, "; "))
	}
	msgType := hdr.Type()
	rec := store.InboundMessage{
		ID:                   idStr,
		ReceivedAt:           now,
		Peer:                 peer.Addr,
		Transport:            peer.Transport,
		SendingApplication:   hdr.SendingApplication,
		SendingFacility:      hdr.SendingFacility,
		ReceivingApplication: hdr.ReceivingApplication,
		ReceivingFacility:    hdr.ReceivingFacility,
		ControlID:            hdr.ControlID,
		MessageType:          msgType,
		Version:              hdr.Version,
		CorrelationID:        idStr,
		Size:                 len(raw),
		Sealed:               sealed,
	}
	ackReq := hl7.AckRequest{Original: hdr, Outcome: outcome, Errors: details, ControlID: ackControlID(id), Time: now}
	ack := ackReq.Code()
	rec.AckCode = string(ack)
	acc := store.Accept{Message: rec}
	if perr != nil {
		rec.State = store.StateRejected
		rec.Error = perr.Error()
		acc.Message = rec
	} else {
		acc.Message.State = store.StateAccepted
		acc.Dedupe = s.cfg.DedupeWindow > 0 && hdr.ControlID != ""
		acc.DedupeSince = now.Add(-s.cfg.DedupeWindow)
		ev, err := receivedEvent(Received{InboundID: idStr, MessageType: msgType, OrderKey: key})
		if err != nil {
			return Result{}, err
		}
		acc.Events = []store.Event{{Topic: TopicReceived, Message: ev}}
	}

	if s.cfg.AuditTopic != "" {
		ev, err := auditEntryEvent(idStr, peer, hdr, outcome, perr != nil, now)
		if err != nil {
			return Result{}, err
		}
		acc.Events = append(acc.Events, store.Event{Topic: s.cfg.AuditTopic, Message: ev})
	}

	res, err := s.submit(ctx, acc)
	if err != nil {
		return Result{}, err
	}
	switch {
	case res.Duplicate:
		s.duplicates.Add(1)
		s.log.Debug("duplicate inbound message acknowledged again", "id", res.ID, "control_id", hdr.ControlID)
	case perr != nil:
		s.rejected.Add(1)
		s.log.Info("inbound message rejected", "id", res.ID, "control_id", hdr.ControlID, "ack", ack, "reason", perr.Error())
	default:
		s.accepted.Add(1)
	}
	return Result{
		ID:        res.ID,
		State:     res.State,
		Duplicate: res.Duplicate,
		AckCode:   ack,
		ACK:       hl7.BuildACK(ackReq),
	}, nil
}

func (s *Service) submit(ctx context.Context, acc store.Accept) (store.AcceptResult, error) {
	req := &request{accept: acc, done: make(chan reply, 1)}
	s.mu.RLock()
	if s.stopped {
		s.mu.RUnlock()
		return store.AcceptResult{}, ErrClosed
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		s.mu.RUnlock()
		return store.AcceptResult{}, fmt.Errorf("queueing inbound message: %w", ctx.Err())
	}
	s.mu.RUnlock()
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		return store.AcceptResult{}, fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

// auditEntryEvent is the audit entry of a stored message: the sending
// peer (MSH-3^MSH-4 and its address) accepted or rejected it. No content.
func auditEntryEvent(id string, peer Peer, hdr hl7.Header, outcome hl7.Outcome, rejected bool, now time.Time) (*message.Message, error) {
	e := audit.Entry{
		ID: uuid.NewString(), At: now, Action: "message.accepted", Outcome: audit.OutcomeSuccess,
		Actor:       audit.Actor{Kind: audit.ActorPeer, ID: hdr.SendingApplication + "^" + hdr.SendingFacility, Address: peer.Addr},
		Correlation: id, Entities: []string{"inbound/" + id},
	}
	if rejected {
		e.Action, e.Outcome = "message.rejected", audit.OutcomeMinor
		if outcome == hl7.Reject {
			e.Outcome = audit.OutcomeSerious
		}
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding an audit entry: %w", err)
	}
	m := message.NewMessage(e.ID, payload)
	m.Metadata.Set(CorrelationIDKey, id)
	return m, nil
}

func receivedEvent(r Received) (*message.Message, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding %s event: %w", TopicReceived, err)
	}
	m := message.NewMessage(r.InboundID, payload)
	m.Metadata.Set(CorrelationIDKey, r.InboundID)
	return m, nil
}

// check parses what it must of raw and returns its header (as much as could
// be read) and every problem found, each with its position.
func (s *Service) check(raw []byte) (hl7.Header, uint32, []error) {
	m, err := hl7.ParseWithLimits(raw, s.cfg.Limits)
	if err != nil {
		// Read what we can of the header so the negative ACK can echo it;
		// a header problem is the one to report.
		hdr, herr := hl7.ParseHeader(raw)
		if herr != nil {
			return hdr, 0, []error{herr}
		}
		return hdr, 0, []error{err}
	}
	var problems []error
	for _, p := range s.cfg.Rules.check(m) {
		problems = append(problems, p)
	}
	hdr := m.Header()
	return hdr, orderKey(m, hdr.SendingFacility), problems
}

// rejectOutcome chooses AR for a message we cannot take at all (its header
// is unusable or names what we do not support) and AE for errors in content.
func rejectOutcome(err error) hl7.Outcome {
	var pe *hl7.ParseError
	if errors.As(err, &pe) {
		if pe.Code >= 200 || pe.SegmentID == "MSH" || pe.Segment <= 1 {
			return hl7.Reject
		}
		return hl7.Error
	}
	return hl7.Reject
}

// ackControlID makes a 20-character MSH-10 for our ACK (ST is 20 characters
// in v2.3): "A", the 12 hex digits of the record's millisecond time, and 7
// of its random ones.
func ackControlID(id uuid.UUID) string {
	const hexdigits = "0123456789ABCDEF"
	var b [20]byte
	b[0] = 'A'
	n := 1
	for _, i := range []int{0, 1, 2, 3, 4, 5, 8, 9, 10, 11} {
		if n >= 20 {
			break
		}
		b[n] = hexdigits[id[i]>>4]
		n++
		if n >= 20 {
			break
		}
		b[n] = hexdigits[id[i]&0xF]
		n++
	}
	return string(b[:n])
}
