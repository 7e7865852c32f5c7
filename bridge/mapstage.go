package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/mapping"
	"github.com/carebridge/carebridge/store"
)

// Topics of the pipeline after the front door's inbound.TopicReceived.
const (
	// TopicCommunicationCreated carries a CommunicationCreated for each
	// new Communication, for the deliver stage.
	TopicCommunicationCreated = "communication.created"
	// TopicAuditRecorded carries an audit.Entry for the audit consumer.
	TopicAuditRecorded = "audit.recorded"
)

// Topics are the queue topics the pipeline publishes and consumes.
func Topics() []string {
	return []string{inbound.TopicReceived, TopicCommunicationCreated, TopicAuditRecorded}
}

// CommunicationCreated is the payload on TopicCommunicationCreated: ids
// and the priority only, never content.
type CommunicationCreated struct {
	CommunicationID string   `json:"communication_id"`
	InboundID       string   `json:"inbound_id"`
	Priority        string   `json:"priority"`
	Recipients      []string `json:"recipients"`
	// Recalled: the sender withdrew the message (entered-in-error), and
	// the deliver stage only has the recipients' sessions take it away.
	Recalled bool `json:"recalled,omitempty"`
	// Queued: the write that published the event queued the deliveries
	// with the Communication (every write does now); without it, the
	// deliver stage looks and queues those missing.
	Queued bool `json:"queued,omitempty"`
}

// MapStore is what the map stage needs of storage.
type MapStore interface {
	GetInbound(ctx context.Context, id string) (store.InboundMessage, error)
	StoreMapped(ctx context.Context, m store.Mapped) (bool, error)
	IsMapped(ctx context.Context, inboundID string) (bool, error)
}

// Sealer seals and opens records at rest (the key ring).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// MapStage is the handler of inbound.TopicReceived: it opens the stored
// message, parses, maps and routes it, validates every resource as R4 and
// stores the result sealed, in one transaction with the events of the
// next stages. A redelivered message changes nothing.
type MapStage struct {
	Store     MapStore
	Sealer    Sealer
	Mapper    *mapping.Mapper
	Rules     *mapping.Rules
	Validator *fhir.Validator
	Limits    hl7.Limits
	Now       func() time.Time
	Log       *slog.Logger
	// Deadlines say how long an unread message of a priority waits before
	// it is escalated; nil means DefaultDeadlines.
	Deadlines map[string]time.Duration
}

// DefaultDeadlines: an unread stat message is escalated after 2 minutes,
// asap after 3, urgent after 5; routine ones never.
var DefaultDeadlines = map[string]time.Duration{"stat": 2 * time.Minute, "asap": 3 * time.Minute, "urgent": 5 * time.Minute}

func (s *MapStage) deadline(priority string) time.Duration {
	if s.Deadlines != nil {
		return s.Deadlines[priority]
	}
	return DefaultDeadlines[priority]
}

// errPermanent marks a message that no retry can fix (its payload is not a
// Received, or the stored record cannot be opened).
var errPermanent = errors.New("permanent")

// IsPermanent reports whether err says retrying cannot help.
func IsPermanent(err error) bool { return errors.Is(err, errPermanent) }

// Handle processes one hl7.received message. It is a watermill
// NoPublishHandlerFunc: events go out through the store's transaction.
func (s *MapStage) Handle(msg *message.Message) error {
	ctx := msg.Context()
	var ev inbound.Received
	if err := json.Unmarshal(msg.Payload, &ev); err != nil || ev.InboundID == "" {
		return fmt.Errorf("%w: %s payload is not an inbound message reference", errPermanent, inbound.TopicReceived)
	}
	corr := msg.Metadata.Get(inbound.CorrelationIDKey)
	if corr == "" {
		corr = ev.InboundID
	}
	if done, err := s.Store.IsMapped(ctx, ev.InboundID); err != nil {
		return err
	} else if done {
		// A redelivery, or a partition catching up on what the others
		// mapped: nothing to do, and nothing worth a log line each.
		s.Log.Debug("message mapped before", "inbound_id", ev.InboundID, "correlation_id", corr)
		return nil
	}
	m, err := s.Store.GetInbound(ctx, ev.InboundID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: inbound message %s is not stored", errPermanent, ev.InboundID)
	}
	if err != nil {
		return fmt.Errorf("loading inbound message %s: %w", ev.InboundID, err)
	}
	raw, err := s.Sealer.Open(m.Sealed, []byte(m.ID))
	if err != nil {
		return fmt.Errorf("%w: opening inbound message %s: %v", errPermanent, m.ID, err)
	}
	out, err := s.mapped(m, raw, corr)
	if err != nil {
		return err
	}
	stored, err := s.Store.StoreMapped(ctx, out)
	if err != nil {
		return err
	}
	if !stored {
		// At-least-once delivery at work (a crash between commit and ack,
		// or another instance): the first mapping stands.
		s.Log.Info("message mapped before; the redelivery changed nothing", "inbound_id", m.ID, "correlation_id", corr)
		return nil
	}
	s.Log.Debug("mapped", "inbound_id", m.ID, "correlation_id", corr, "resources", len(out.Resources),
		"communications", len(out.Communications))
	return nil
}

// mapped builds what one message stores: sealed resources and
// Communications, the sealed outcome, and the events.
func (s *MapStage) mapped(m store.InboundMessage, raw []byte, corr string) (store.Mapped, error) {
	now := s.Now().UTC()
	out := store.Mapped{InboundID: m.ID, MappedAt: now}
	var res *mapping.Result
	msg, err := hl7.ParseWithLimits(raw, s.Limits)
	if err != nil {
		// Accepted messages parsed at the door; keep the reason all the same.
		res = &mapping.Result{}
		res.Outcome.Add(fhir.SeverityError, fhir.CodeInvalid, "message", "the stored message no longer parses: "+err.Error())
	} else {
		res = s.Mapper.Map(msg)
	}
	notes := s.Rules.Route(res, now) // appends the Communications to res.Resources
	escalateAfter := map[string]time.Duration{}
	for _, n := range notes {
		escalateAfter[n.Communication] = n.EscalateAfter
	}
	kept := s.Validator.Gate(res.Resources, &res.Outcome)

	valid := make(map[string]bool, len(kept))
	var patient string
	for _, r := range kept {
		valid[r.Reference()] = true
		if r.Type == "Communication" {
			continue
		}
		sealed, err := s.Sealer.Seal(r.JSON, []byte(r.Reference()))
		if err != nil {
			return out, fmt.Errorf("sealing %s: %w", r.Reference(), err)
		}
		res := store.SealedResource{Type: r.Type, ID: r.ID, Sealed: sealed}
		if store.IndexedType(r.Type) {
			ix, err := index.Resource(r.Type, r.JSON)
			if err != nil {
				return out, fmt.Errorf("indexing %s: %w", r.Reference(), err)
			}
			res.Index = &ix
		}
		out.Resources = append(out.Resources, res)
	}
	if p := res.Event.Patient; p != nil && valid[p.Ref] {
		patient = p.Ref
	}
	system := audit.Actor{Kind: audit.ActorSystem, ID: "carebridge"}
	var entries []audit.Entry // one event carries them all: one append to the chain
	entry := func(action string, outcome audit.Outcome, entities ...string) {
		entries = append(entries, audit.Entry{At: now, Actor: system, Action: action, Outcome: outcome,
			Correlation: corr, Entities: entities, Patient: patient})
	}
	for _, r := range kept {
		if r.Type != "Communication" {
			continue
		}
		c := r.Body.(*fhir.Communication)
		row, err := s.communicationRow(c, r.JSON)
		if err != nil {
			return out, err
		}
		out.Communications = append(out.Communications, row)
		d := escalateAfter[r.Reference()]
		if d == 0 {
			d = s.deadline(row.Priority)
		}
		if d > 0 && s.deadline(row.Priority) > 0 {
			out.Escalations = append(out.Escalations, store.Escalation{CommunicationID: row.ID, Unit: res.Event.Location.Unit, DueAt: now.Add(d), Every: d})
		}
		created, err := json.Marshal(CommunicationCreated{CommunicationID: row.ID, InboundID: m.ID, Priority: row.Priority, Recipients: row.Recipients, Queued: true})
		if err != nil {
			return out, err
		}
		ev := message.NewMessage(watermill.NewUUID(), created)
		ev.Metadata.Set(inbound.CorrelationIDKey, corr)
		out.Events = append(out.Events, store.Event{Topic: TopicCommunicationCreated, Message: ev})
		entities := append([]string{r.Reference()}, row.Recipients...)
		if len(entities) > audit.MaxEntities {
			entities = entities[:audit.MaxEntities] // the Communication names them all
		}
		entry("communication.created", audit.OutcomeSuccess, entities...)
	}
	outcome, err := json.Marshal(res.Outcome)
	if err != nil {
		return out, err
	}
	if out.Outcome, err = s.Sealer.Seal(outcome, []byte("mapped/"+m.ID)); err != nil {
		return out, fmt.Errorf("sealing the outcome: %w", err)
	}
	result := audit.OutcomeSuccess
	switch {
	case res.Outcome.HasErrors():
		result = audit.OutcomeSerious
	case len(res.Outcome) > 0:
		result = audit.OutcomeMinor
	}
	entry("message.mapped", result, "inbound/"+m.ID)
	a, err := auditEvent(corr, entries...)
	if err != nil {
		return out, err
	}
	out.Events = append(out.Events, a)
	return out, nil
}

// communicationRow is the stored form of a Communication: PHI-free search
// fields and the resource sealed.
func (s *MapStage) communicationRow(c *fhir.Communication, body []byte) (store.CommunicationRow, error) {
	row, err := index.Communication(c)
	if err != nil {
		return row, fmt.Errorf("storing Communication/%s: %w", *c.Id, err)
	}
	row.ID, row.Version, row.Updated = *c.Id, 1, row.Sent
	if len(c.Identifier) > 0 && c.Identifier[0].Value != nil {
		row.Identifier = *c.Identifier[0].Value
	}
	sealed, err := s.Sealer.Seal(body, []byte("Communication/"+row.ID))
	if err != nil {
		return row, fmt.Errorf("sealing Communication/%s: %w", row.ID, err)
	}
	row.Sealed = sealed
	return row, nil
}

// CreatedEvent is the communication.created event that has the deliver
// stage deliver a stored Communication to row.Recipients, published by a
// write that queued their deliveries with it.
func CreatedEvent(row store.CommunicationRow, corr string) (store.Event, error) {
	b, err := json.Marshal(CommunicationCreated{CommunicationID: row.ID, Priority: row.Priority, Recipients: row.Recipients, Queued: true})
	if err != nil {
		return store.Event{}, err
	}
	m := message.NewMessage(watermill.NewUUID(), b)
	m.Metadata.Set(inbound.CorrelationIDKey, corr)
	return store.Event{Topic: TopicCommunicationCreated, Message: m}, nil
}

// auditEvent is the audit.recorded event of entries, each given its own
// id: one entry as a JSON object, several as an array, which the audit
// stage appends in one transaction.
func auditEvent(corr string, entries ...audit.Entry) (store.Event, error) {
	if len(entries) == 0 || len(entries) > audit.MaxBatch {
		return store.Event{}, fmt.Errorf("an audit event of %d entries", len(entries))
	}
	for i := range entries {
		entries[i].ID = watermill.NewUUID()
	}
	var b []byte
	var err error
	if len(entries) == 1 {
		b, err = json.Marshal(entries[0])
	} else {
		b, err = json.Marshal(entries)
	}
	if err != nil {
		return store.Event{}, fmt.Errorf("encoding an audit entry: %w", err)
	}
	m := message.NewMessage(watermill.NewUUID(), b)
	m.Metadata.Set(inbound.CorrelationIDKey, corr)
	return store.Event{Topic: TopicAuditRecorded, Message: m}, nil
}
