// Package audit keeps carebridge's tamper-evident trail: every action is a
// Record, records form a SHA-256 hash chain, and checkpoints signed with an
// Ed25519 key pin the chain so that rewriting its tail is caught too. A
// record says who did what, to which resources, when and with what outcome;
// it never holds message content.
//
// This file is the chain itself, pure: linking, checkpoint signing and
// verification. Storage, the audit.recorded consumer and the FHIR AuditEvent
// export build on it.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ActorKind says what kind of party acted.
type ActorKind string

const (
	ActorSystem ActorKind = "system" // carebridge itself
	ActorPeer   ActorKind = "peer"   // an interface engine or other network peer
	ActorUser   ActorKind = "user"   // a person signed in
	ActorClient ActorKind = "client" // a registered EHR system (SMART backend services)
)

// Actor is who acted: a kind, an id (user id, client id, peer certificate
// name) and a network address where there is one.
type Actor struct {
	Kind    ActorKind `json:"kind"`
	ID      string    `json:"id,omitempty"`
	Address string    `json:"address,omitempty"`
}

// Outcome is the FHIR AuditEvent outcome code: 0 success, 4 minor failure,
// 8 serious failure, 12 major failure.
type Outcome uint8

const (
	OutcomeSuccess Outcome = 0
	OutcomeMinor   Outcome = 4
	OutcomeSerious Outcome = 8
	OutcomeMajor   Outcome = 12
)

// Hash is a SHA-256 digest.
type Hash [sha256.Size]byte

// String is the hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Record is one audited action, linked into its chain.
type Record struct {
	Chain       string    // the chain it belongs to (one per writer)
	Seq         uint64    // 1-based position in the chain
	At          time.Time // when, kept to the microsecond in UTC
	Actor       Actor
	Action      string   // "message.accepted", "communication.read", …
	Outcome     Outcome  //
	Correlation string   // the correlation id set at the front door
	Entities    []string // references or ids of what was acted on; never content
	Patient     string   // the Patient reference, where there is one
	EntryID     string   // the id of the entry it was appended from, so a redelivered entry is appended once
	Prev        Hash     // Hash of the record before; zero for the first
	Hash        Hash     // SHA-256 of this record's canonical form, Prev included
}

// Limits on a record's text, so that one record stays small and a bad
// caller cannot fill the log.
const (
	MaxFieldBytes = 1024
	MaxEntities   = 64
)

// ErrInvalid marks a record that cannot be linked.
var ErrInvalid = errors.New("invalid audit record")

// Link returns r placed after prev in prev's chain (prev nil: r starts the
// chain named r.Chain): its Seq, Prev and Hash are set; At is truncated to
// the microsecond in UTC, the precision storage keeps.
func Link(prev *Record, r Record) (Record, error) {
	if prev != nil {
		if r.Chain != "" && r.Chain != prev.Chain {
			return Record{}, fmt.Errorf("%w: chain %q after a record of chain %q", ErrInvalid, r.Chain, prev.Chain)
		}
		r.Chain, r.Seq, r.Prev = prev.Chain, prev.Seq+1, prev.Hash
	} else {
		r.Seq, r.Prev = 1, Hash{}
	}
	r.At = r.At.UTC().Truncate(time.Microsecond)
	if err := r.check(); err != nil {
		return Record{}, err
	}
	r.Hash = r.digest()
	return r, nil
}

func (r *Record) check() error {
	switch {
	case r.Chain == "":
		return fmt.Errorf("%w: no chain", ErrInvalid)
	case r.Action == "":
		return fmt.Errorf("%w: no action", ErrInvalid)
	case r.At.IsZero():
		return fmt.Errorf("%w: no time", ErrInvalid)
	case len(r.Entities) > MaxEntities:
		return fmt.Errorf("%w: %d entities, at most %d", ErrInvalid, len(r.Entities), MaxEntities)
	}
	for _, f := range [...]struct{ name, s string }{
		{"chain", r.Chain}, {"actor kind", string(r.Actor.Kind)}, {"actor id", r.Actor.ID},
		{"actor address", r.Actor.Address}, {"action", r.Action}, {"correlation", r.Correlation},
		{"patient", r.Patient}, {"entry id", r.EntryID},
	} {
		if len(f.s) > MaxFieldBytes {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, f.name, MaxFieldBytes)
		}
	}
	for _, e := range r.Entities {
		if len(e) > MaxFieldBytes {
			return fmt.Errorf("%w: an entity longer than %d bytes", ErrInvalid, MaxFieldBytes)
		}
	}
	return nil
}

// canonicalVersion starts every canonical form, so that a later format
// can never be confused with this one.
const canonicalVersion = "carebridge-audit-v1"

// canonical is the byte form that is hashed: every field in a fixed order,
// each string length-prefixed, so that no two records share a form.
func (r *Record) canonical() []byte {
	b := make([]byte, 0, 256)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(canonicalVersion)
	str(r.Chain)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixMicro()))
	str(string(r.Actor.Kind))
	str(r.Actor.ID)
	str(r.Actor.Address)
	str(r.Action)
	b = append(b, byte(r.Outcome))
	str(r.Correlation)
	b = binary.AppendUvarint(b, uint64(len(r.Entities)))
	for _, e := range r.Entities {
		str(e)
	}
	str(r.Patient)
	str(r.EntryID)
	return append(b, r.Prev[:]...)
}

func (r *Record) digest() Hash { return sha256.Sum256(r.canonical()) }

// ProblemKind names what verification found wrong.
type ProblemKind string

const (
	ProblemAltered      ProblemKind = "altered"       // the record's content does not give its stored hash
	ProblemBrokenLink   ProblemKind = "broken-link"   // Prev is not the hash of the record before
	ProblemGap          ProblemKind = "gap"           // a sequence number is missing
	ProblemOutOfOrder   ProblemKind = "out-of-order"  // a sequence number repeats or goes back
	ProblemBadSignature ProblemKind = "bad-signature" // a checkpoint's signature does not verify
	ProblemUnknownKey   ProblemKind = "unknown-key"   // a checkpoint names a key the ring does not have
	ProblemCheckpoint   ProblemKind = "checkpoint"    // the chain's hash at a checkpoint is not the signed one
	ProblemTruncated    ProblemKind = "truncated"     // a checkpoint covers records that are gone
)

// Problem is the first thing wrong with a chain: where (chain and
// sequence number, which name the row) and what.
type Problem struct {
	Kind   ProblemKind
	Chain  string
	Seq    uint64
	Detail string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("audit chain %q record %d: %s: %s", p.Chain, p.Seq, p.Kind, p.Detail)
}

// Entry is an audit record before it is linked: what a pipeline stage
// publishes on audit.recorded, for the audit consumer to append to its
// chain. Its JSON form is the event payload.
type Entry struct {
	ID          string    `json:"id"` // unique per entry; a redelivery is recognised by it
	At          time.Time `json:"at"`
	Actor       Actor     `json:"actor"`
	Action      string    `json:"action"`
	Outcome     Outcome   `json:"outcome"`
	Correlation string    `json:"correlation,omitempty"`
	Entities    []string  `json:"entities,omitempty"`
	Patient     string    `json:"patient,omitempty"`
}

// MaxBatch is the most entries one audit.recorded payload may carry.
const MaxBatch = 1024

// DecodeEntries reads an audit.recorded payload: one entry (a JSON
// object) or a batch of them (a JSON array, each with its own id), which
// the audit stage appends in one transaction.
func DecodeEntries(payload []byte) ([]Entry, error) {
	p := bytes.TrimLeft(payload, " \t\r\n")
	if len(p) > 0 && p[0] == '[' {
		var batch []Entry
		if err := json.Unmarshal(p, &batch); err != nil {
			return nil, fmt.Errorf("%w: the batch is not JSON audit entries", ErrInvalid)
		}
		if len(batch) == 0 || len(batch) > MaxBatch {
			return nil, fmt.Errorf("%w: a batch of %d entries (want 1 to %d)", ErrInvalid, len(batch), MaxBatch)
		}
		for i, e := range batch {
			if e.ID == "" || e.Action == "" || e.At.IsZero() {
				return nil, fmt.Errorf("%w: entry %d of the batch lacks an id, action or time", ErrInvalid, i)
			}
		}
		return batch, nil
	}
	var e Entry
	if err := json.Unmarshal(p, &e); err != nil || e.Action == "" || e.At.IsZero() {
		return nil, fmt.Errorf("%w: the payload is not an audit entry", ErrInvalid)
	}
	return []Entry{e}, nil
}

// Record is the entry as an unlinked record.
func (e Entry) Record() Record {
	return Record{At: e.At, Actor: e.Actor, Action: e.Action, Outcome: e.Outcome,
		Correlation: e.Correlation, Entities: e.Entities, Patient: e.Patient, EntryID: e.ID}
}
