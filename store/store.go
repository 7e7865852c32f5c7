// Package store defines carebridge's storage: the records it keeps, the
// interfaces its two backends implement, and the transactional outbox that
// makes "stored" and "queued" one commit.
//
// Two implementations exist: store/sqlite (the embedded default) and
// store/postgres (pgx). store/storetest is the one acceptance suite both
// must pass. Nothing in this package knows HL7 or HTTP: callers hand it
// ciphertext and PHI-free metadata.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrNotFound is returned when a record with the given id does not exist.
var ErrNotFound = errors.New("not found")

// State is where an inbound message stands.
type State string

// Inbound message states.
const (
	// StateAccepted: stored, acknowledged with AA/CA and queued on hl7.received.
	StateAccepted State = "accepted"
	// StateRejected: kept for inspection, answered AE/AR, not queued.
	StateRejected State = "rejected"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	switch s {
	case StateAccepted, StateRejected:
		return true
	}
	return false
}

// InboundMessage is one HL7v2 message as received, with the raw bytes
// sealed. Every field but Sealed is PHI-free metadata.
type InboundMessage struct {
	ID                   string // assigned by the caller (UUIDv7), also the AAD of Sealed
	ReceivedAt           time.Time
	Peer                 string // remote address of the sender, e.g. "127.0.0.1:53124"
	Transport            string // "mllp", "mllp+tls", "http"
	SendingApplication   string // MSH-3
	SendingFacility      string // MSH-4
	ReceivingApplication string // MSH-5
	ReceivingFacility    string // MSH-6
	ControlID            string // MSH-10
	MessageType          string // MSH-9.1^MSH-9.2, e.g. "ADT^A01"
	Version              string // MSH-12
	State                State
	AckCode              string // the code we answered: AA, AE, AR, CA, CE, CR
	Error                string // why it was rejected; PHI-free (positions and codes only)
	CorrelationID        string // carried through the pipeline and the audit trail
	Size                 int    // length of the raw message in bytes
	Sealed               []byte // the raw message, encrypted by package secure
}

// DedupeKey identifies a message for duplicate detection: same sending
// application, facility and control id.
type DedupeKey struct {
	SendingApplication string
	SendingFacility    string
	ControlID          string
}

// Key returns the dedupe key of m.
func (m *InboundMessage) Key() DedupeKey {
	return DedupeKey{m.SendingApplication, m.SendingFacility, m.ControlID}
}

// Event is what a write does in its own transaction besides storing: a
// Watermill message to publish on Topic, or, with Audit set instead,
// records appended to the audit trail. Audit events are taken by the
// writes of the FHIR API's resources (Communications, Subscriptions,
// filed AuditEvents); the pipeline's writes take messages only.
type Event struct {
	Topic   string
	Message *message.Message
	Audit   AuditAppender
}

// AuditAppender links audit records onto a chain inside a write's
// transaction, so that the write and its audit record commit together
// without a queue between them (package audit's Writers).
//
// The store calls LinkAudit once, as the last step of the transaction
// before its commit: from then on the appender holds the chain, so the
// transaction must wait on nothing but its own inserts. head reads a
// chain's last record (or ErrNotFound) in the transaction itself, so that
// linking needs no second connection. The store then calls
// AuditDone exactly once with how the transaction ended (nil: committed),
// whether LinkAudit succeeded or not. A transaction that fails before its
// last step calls neither, and the appender may be given to another.
type AuditAppender interface {
	LinkAudit(ctx context.Context, head AuditHeadFunc) ([]AuditRecord, []AuditCheckpoint, error)
	AuditDone(err error)
}

// AuditHeadFunc reads the last record of chain, or ErrNotFound.
type AuditHeadFunc func(ctx context.Context, chain string) (AuditRecord, error)

// auditAppenderOf returns the audit appender among events (nil if none)
// and the rest. A write takes one: holding a chain while waiting for
// another could leave two writes each waiting for the other's.
func auditAppenderOf(events []Event) (AuditAppender, []Event, error) {
	var a AuditAppender
	rest := make([]Event, 0, len(events))
	for _, e := range events {
		switch {
		case e.Audit == nil:
			rest = append(rest, e)
		case a != nil:
			return nil, nil, errors.New("a write takes one audit appender")
		default:
			a = e.Audit
		}
	}
	return a, rest, nil
}

// Accept is one inbound message to store, with the events that queue its next step.
type Accept struct {
	Message InboundMessage
	// Events are published only when Message is stored (not a duplicate).
	Events []Event
	// Dedupe, when true, makes the store look for an earlier ACCEPTED message
	// (state StateAccepted) with the same DedupeKey received at or after
	// DedupeSince; if one exists (earlier in the database, or earlier in the
	// same batch) nothing is stored or published and the result names the
	// earlier message. Rejected messages never count as originals (a sender
	// may fix a message and resend it under the same control id) and are
	// stored with Dedupe false.
	Dedupe      bool
	DedupeSince time.Time
}

// AcceptResult says what happened to one Accept.
type AcceptResult struct {
	ID        string // the stored message, or the earlier one when Duplicate
	Duplicate bool
	State     State  // of the stored (or earlier) message
	AckCode   string // of the stored (or earlier) message
}

// InboundFilter selects inbound messages for listing. Zero values match all.
type InboundFilter struct {
	State   State
	Limit   int    // 0 means 100; capped at 10000
	AfterID string // keyset paging: ids sort by time (UUIDv7)
}

// List limits of InboundFilter.
const (
	DefaultListLimit = 100
	MaxListLimit     = 10000
)

// PageSize returns the effective Limit of f: DefaultListLimit when Limit is
// zero or negative, at most MaxListLimit.
func (f InboundFilter) PageSize() int {
	switch {
	case f.Limit <= 0:
		return DefaultListLimit
	case f.Limit > MaxListLimit:
		return MaxListLimit
	}
	return f.Limit
}

// Inbound is the inbound message log.
type Inbound interface {
	// AcceptInbound stores a batch in ONE transaction together with the
	// events of the non-duplicate messages, and commits before returning.
	// Results are in batch order. On error nothing of the batch is stored.
	AcceptInbound(ctx context.Context, batch []Accept) ([]AcceptResult, error)
	// ListInbound returns metadata in id order (Sealed is left nil).
	ListInbound(ctx context.Context, f InboundFilter) ([]InboundMessage, error)
	// GetInbound returns one message including Sealed, or ErrNotFound.
	GetInbound(ctx context.Context, id string) (InboundMessage, error)
}

// ErrConflict is returned when a write collides with one already stored,
// such as an audit record whose chain and sequence number exist.
var ErrConflict = errors.New("conflict")

// ErrEntryStored is the ErrConflict of an audit record whose entry id is
// stored already: the entry was appended before (a redelivery).
var ErrEntryStored = fmt.Errorf("%w: audit entry stored already", ErrConflict)

// AuditRecord is one audit record as stored: package audit builds, links
// and verifies them; the store keeps them as given. PHI-free by contract.
type AuditRecord struct {
	Chain        string
	Seq          uint64
	At           time.Time // microsecond precision, UTC
	ActorKind    string
	ActorID      string
	ActorAddress string
	Action       string
	Outcome      uint8
	Correlation  string
	Entities     []string
	Patient      string
	EntryID      string // unique when not empty
	EventID      string // the id of its FHIR AuditEvent (audit.AuditEventID); not part of the hash
	Prev         []byte // 32 bytes
	Hash         []byte // 32 bytes
}

// AuditCheckpoint is a signed checkpoint of an audit chain, as stored.
type AuditCheckpoint struct {
	Chain     string
	Seq       uint64
	Hash      []byte
	At        time.Time
	KeyID     string
	Signature []byte
}

// Audit is the append-only audit trail.
type Audit interface {
	// AppendAudit stores records and checkpoints in one transaction. A
	// record whose chain and sequence number exist already fails the whole
	// call with ErrConflict; one whose entry id exists, with ErrEntryStored
	// (an ErrConflict too).
	AppendAudit(ctx context.Context, records []AuditRecord, checkpoints []AuditCheckpoint) error
	// AuditHead returns the last record of chain, or ErrNotFound.
	AuditHead(ctx context.Context, chain string) (AuditRecord, error)
	// WalkAudit calls fn for every record, by chain and then sequence
	// number, stopping at fn's first error.
	WalkAudit(ctx context.Context, fn func(AuditRecord) error) error
	// AuditCheckpoints returns every checkpoint, by chain and sequence.
	AuditCheckpoints(ctx context.Context) ([]AuditCheckpoint, error)
	// AuditEntryStored reports whether a record with this entry id exists.
	AuditEntryStored(ctx context.Context, entryID string) (bool, error)
}

// AuditChainHead is the last sequence number of one audit chain.
type AuditChainHead struct {
	Chain string
	Seq   uint64
}

// AuditDeadLetter is a record the EHR refused for good (or that failed
// validation before it left): kept, with a PHI-free reason, rather than
// retried forever or dropped.
type AuditDeadLetter struct {
	Target string
	Chain  string
	Seq    uint64
	At     time.Time
	Reason string
}

// AuditExport is how far each chain has been exported to each target (an
// EHR's FHIR base URL). The position of a chain only moves forward; a
// record behind it was sent or dead-lettered.
type AuditExport interface {
	// AuditChains returns the head of every chain, by chain.
	AuditChains(ctx context.Context) ([]AuditChainHead, error)
	// ReadAudit returns up to limit records of chain after seq, in order.
	ReadAudit(ctx context.Context, chain string, after uint64, limit int) ([]AuditRecord, error)
	// AddAuditTarget registers target (again: no change), so that its
	// backlog is known before the first export.
	AddAuditTarget(ctx context.Context, target string, at time.Time) error
	// AuditTargets returns the registered targets.
	AuditTargets(ctx context.Context) ([]string, error)
	// AuditExported returns the target's position in each chain it has
	// reached; a chain not in the map is at 0.
	AuditExported(ctx context.Context, target string) (map[string]uint64, error)
	// AdvanceAuditExport moves the target's positions forward (never
	// back) and keeps dead letters, in one transaction.
	AdvanceAuditExport(ctx context.Context, target string, positions map[string]uint64, dead []AuditDeadLetter, at time.Time) error
	// AuditDeadLetters returns a target's dead letters, oldest first, at
	// most limit, and how many there are in all.
	AuditDeadLetters(ctx context.Context, target string, limit int) ([]AuditDeadLetter, int, error)
	// TakeLease makes holder the holder of the lease name until until,
	// if it holds it already or nobody does (no lease, or one expired at
	// now); it reports whether holder has it.
	TakeLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
}

// SealedResource is one FHIR resource mapping produced, its JSON sealed
// (package secure, with "Type/id" as associated data).
type SealedResource struct {
	Type   string
	ID     string
	Sealed []byte
	// Index is what it is searched by, written with it (replacing the
	// index of an earlier version); nil leaves it without, for
	// ResourceSearch.BackfillResourceIndex to index.
	Index *ResourceIndex
}

// CommunicationRow is one secure message: the PHI-free fields the API
// searches on and delivery needs, and the whole resource sealed.
type CommunicationRow struct {
	ID         string
	Identifier string   // the source identifier (facility^MSH-10^rule)
	Status     string   // FHIR event status: in-progress, completed, …
	Priority   string   // routine, urgent, asap, stat
	Category   string   // alert, notification, reminder, instruction
	Subject    string   // Patient reference
	Encounter  string   // Encounter reference, or ""
	Recipients []string // references
	Sent       time.Time
	Sealed     []byte    // the Communication resource, sealed with "Communication/ID"
	Sender     string    // reference, or ""
	Received   time.Time // zero until received
	Tokens     []IndexToken
	Version    int       // 1, 2, …; 0 is read as 1 when storing
	Updated    time.Time // when this version was stored; zero is read as Sent
}

// Mapped is what the map stage stores for one inbound message, in one
// transaction with the events of the next stages.
type Mapped struct {
	InboundID      string
	MappedAt       time.Time
	Outcome        []byte // the mapping outcome, sealed (its diagnostics may quote content)
	Resources      []SealedResource
	Communications []CommunicationRow
	Escalations    []Escalation
	Events         []Event
}

// Escalation is a Communication's next escalation step, found by the
// database when due: no timer or goroutine per message.
type Escalation struct {
	CommunicationID string
	Unit            string // the patient's unit, whose on-call and teams are the next tiers
	Step            int    // steps taken so far
	DueAt           time.Time
	Every           time.Duration // the wait between steps (the rule's deadline)
}

// Escalations are the due-time queue of unread urgent messages.
type Escalations interface {
	// DueEscalations returns up to limit escalations due at now, oldest first.
	DueEscalations(ctx context.Context, now time.Time, limit int) ([]Escalation, error)
	// AdvanceEscalation moves an escalation from step to step+1, due again
	// at next (zero: finished), publishing events in the same transaction.
	// It returns false, changing nothing, when another worker advanced it
	// first.
	AdvanceEscalation(ctx context.Context, communicationID string, step int, next time.Time, events ...Event) (bool, error)
}

// Mapping is the output of the map stage.
type Mapping interface {
	// StoreMapped stores m in one transaction: resources are written
	// (replacing an earlier version of the same Type/id), Communications
	// are inserted unless their id exists with a queued delivery per
	// recipient, and the events are published.
	// When m.InboundID was stored before, nothing changes or is published
	// and stored is false: a redelivered message is a no-op.
	StoreMapped(ctx context.Context, m Mapped) (stored bool, err error)
	// IsMapped reports whether the map stage stored the output of the
	// inbound message inboundID: a cheap look before mapping it again.
	IsMapped(ctx context.Context, inboundID string) (bool, error)
	// GetResource returns one stored resource, or ErrNotFound.
	GetResource(ctx context.Context, typ, id string) (SealedResource, error)
	// CommunicationsOf returns the Communications produced from an
	// inbound message, by id.
	CommunicationsOf(ctx context.Context, inboundID string) ([]CommunicationRow, error)
}

// Delivery states of one Communication to one recipient.
const (
	DeliveryQueued    = "queued"
	DeliveryDelivered = "delivered"
	DeliveryRead      = "read"
	DeliveryFailed    = "failed"
)

// Delivery is where one Communication stands for one recipient.
type Delivery struct {
	CommunicationID string
	Recipient       string
	State           string
	UpdatedAt       time.Time
}

// Completion is a Communication every recipient has, with its resource
// re-sealed as completed.
type Completion struct {
	ID       string
	Sealed   []byte
	Received time.Time // when the last recipient had it
}

// DeliveryUpdate moves one recipient's delivery of a Communication to
// State (never back).
type DeliveryUpdate struct {
	CommunicationID string
	Recipient       string
	State           string
	At              time.Time
}

// Deliveries is the per-recipient delivery state.
type Deliveries interface {
	// QueueDeliveries records one queued delivery per recipient; one that
	// exists already is left as it is (a redelivered event).
	QueueDeliveries(ctx context.Context, communicationID string, recipients []string, at time.Time) error
	// SetDelivery moves a delivery to state and publishes events (its
	// audit entry) in the same transaction. It never moves one back: read
	// stays read, and delivered does not become queued again; the events
	// are published all the same.
	SetDelivery(ctx context.Context, communicationID, recipient, state string, at time.Time, events ...Event) error
	// SetDeliveries is SetDelivery for many deliveries in one transaction,
	// with events published in it too. If any of them does not exist,
	// nothing is written and the error is ErrNotFound.
	SetDeliveries(ctx context.Context, updates []DeliveryUpdate, events ...Event) error
	// DeliveriesOf returns the deliveries of a Communication, by recipient.
	DeliveriesOf(ctx context.Context, communicationID string) ([]Delivery, error)
	// Unread counts a recipient's deliveries not yet read; recalled
	// (entered-in-error) Communications do not count.
	Unread(ctx context.Context, recipient string) (int, error)
	// Inbox returns a recipient's newest Communications (at most limit),
	// newest first, each with its delivery state; recalled
	// (entered-in-error) ones are left out.
	Inbox(ctx context.Context, recipient string, limit int) ([]InboxEntry, error)
	// Waiting returns a recipient's Communications not yet delivered
	// (queued or failed), oldest first, at most limit; recalled
	// (entered-in-error) ones are left out.
	Waiting(ctx context.Context, recipient string, limit int) ([]InboxEntry, error)
	// GetCommunication returns one Communication, or ErrNotFound.
	GetCommunication(ctx context.Context, id string) (CommunicationRow, error)
	// PublishEvents publishes events in a transaction of their own.
	PublishEvents(ctx context.Context, events []Event) error
	// CompleteCommunication sets a Communication's status to completed with
	// its resource re-sealed; done is false if it was completed already.
	CompleteCommunication(ctx context.Context, id string, sealed []byte) (done bool, err error)
	// CompleteCommunications is CompleteCommunication for many, in one
	// transaction; it returns how many were not completed already.
	CompleteCommunications(ctx context.Context, cs []Completion) (int, error)
}

// InboxEntry is one Communication in a recipient's inbox.
type InboxEntry struct {
	Communication CommunicationRow
	State         string
}

// PoisonMessage is a queue message a handler failed on for good: kept with
// the reason until it is replayed. Pipeline payloads carry ids, never
// content, so they are kept as they are.
type PoisonMessage struct {
	ID       string // the queue message's UUID
	Handler  string // the consumer group that failed on it
	Topic    string
	Payload  []byte
	Metadata map[string]string
	Reason   string // PHI-free
	FailedAt time.Time
}

// Poison is where messages no retry can fix wait for an operator.
type Poison interface {
	// StorePoison keeps m; storing the same ID and Handler again replaces
	// the reason.
	StorePoison(ctx context.Context, m PoisonMessage) error
	// ListPoison returns every poison message, oldest first.
	ListPoison(ctx context.Context) ([]PoisonMessage, error)
	// ReplayPoison publishes the message again on its topic and forgets
	// it, in one transaction; ErrNotFound if there is no such message.
	ReplayPoison(ctx context.Context, id, handler string) error
}

// Subscription is an EHR's FHIR R4 rest-hook Subscription to
// Communications.
type Subscription struct {
	ID       string
	Criteria string // "Communication" or "Communication?priority=urgent,stat"
	Endpoint string
	Header   []byte // sealed header lines ("Authorization: Bearer …"), nil for none
	Active   bool
	Created  time.Time
	Reason   string // Subscription.reason as the EHR gave it; "" when added by the CLI
	// Owner is the client that created it through the FHIR API, the only
	// one that sees it there; "" when the operator added it (the CLI).
	Owner string
	// Events is the highest event number given to its notices; read
	// only (PutSubscription leaves it as it is).
	Events int64
}

// Notice states.
const (
	NoticePending = "pending"
	NoticeSent    = "sent"
	NoticeDead    = "dead"
)

// SubscriptionNotice is one id-only notification of a Communication to a
// subscription.
type SubscriptionNotice struct {
	SubscriptionID  string
	CommunicationID string
	EventNumber     int64 // 1, 2, … per subscription
	State           string
	Attempts        int
	FirstAt         time.Time
	NextAt          time.Time // zero once sent or dead
	LastError       string    // PHI-free
}

// Subscriptions are the EHR's subscriptions and their notifications, which
// are found by the database when due.
type Subscriptions interface {
	// PutSubscription stores s, replacing one with its id, with events
	// published in the same transaction.
	PutSubscription(ctx context.Context, s Subscription, events ...Event) error
	// ListSubscriptions returns every subscription, by id.
	ListSubscriptions(ctx context.Context) ([]Subscription, error)
	// GetSubscription returns one subscription, or ErrNotFound.
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	// DeleteSubscription removes a subscription and its notices, with
	// events published in the same transaction, or returns ErrNotFound.
	DeleteSubscription(ctx context.Context, id string, events ...Event) error
	// QueueNotices queues one notice of a Communication per subscription,
	// due at once; one that exists is left as it is. Each new notice takes
	// its subscription's next event number.
	QueueNotices(ctx context.Context, communicationID string, subscriptionIDs []string, at time.Time) error
	// DueNotices returns up to limit pending notices due at now, oldest first.
	DueNotices(ctx context.Context, now time.Time, limit int) ([]SubscriptionNotice, error)
	// UpdateNotice stores a notice's state, attempts, next time and error.
	UpdateNotice(ctx context.Context, n SubscriptionNotice) error
	// NewestNotices returns the newest notice (highest event number) of
	// each subscription that has one, by subscription id, in one query.
	NewestNotices(ctx context.Context) (map[string]SubscriptionNotice, error)
	// NoticeCounts counts notices per subscription and state.
	NoticeCounts(ctx context.Context) (map[string]map[string]int, error)
	// DeadNotices returns up to limit dead notices, newest first.
	DeadNotices(ctx context.Context, limit int) ([]SubscriptionNotice, error)
	// SubscriptionNotices returns up to limit notices of one subscription
	// in state ("" for any), the highest event number first.
	SubscriptionNotices(ctx context.Context, subscriptionID, state string, limit int) ([]SubscriptionNotice, error)
}

// Store is everything a backend provides.
type Store interface {
	Inbound
	Audit
	AuditExport
	Mapping
	Poison
	Deliveries
	Escalations
	Subscriptions
	Clients
	CommunicationSearch
	ResourceSearch
	CommunicationWrites
	AuditSearch
	AuditImport
	Users
	// Subscriber returns a Watermill subscriber on the store's own queue
	// tables for the given consumer group.
	Subscriber(consumerGroup string) (message.Subscriber, error)
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close() error
}
