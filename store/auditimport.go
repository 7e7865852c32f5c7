package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Params of a filed AuditEvent's index tokens (FiledAuditEvent.Tokens).
// Codings keep their system and code; references keep the type as System
// and the id as Code, so that a search by bare id finds any type;
// identifiers keep their system and value.
const (
	FiledType             = "type"              // AuditEvent.type
	FiledSubtype          = "subtype"           // AuditEvent.subtype, each coding
	FiledAction           = "action"            // AuditEvent.action (system http://hl7.org/fhir/audit-event-action)
	FiledOutcome          = "outcome"           // AuditEvent.outcome (system http://hl7.org/fhir/audit-event-outcome)
	FiledAgent            = "agent"             // AuditEvent.agent.who.reference
	FiledAgentIdentifier  = "agent-identifier"  // AuditEvent.agent.who.identifier
	FiledEntity           = "entity"            // AuditEvent.entity.what.reference
	FiledEntityIdentifier = "entity-identifier" // AuditEvent.entity.what.identifier
	FiledPatient          = "patient"           // the entity.what references that are Patients
)

// FiledAuditEvent is one AuditEvent another system filed with carebridge
// (an IHE Audit Record Repository's record): the whole resource sealed,
// with the PHI-minimal tokens it is searched by.
type FiledAuditEvent struct {
	ID       string
	Recorded time.Time // AuditEvent.recorded; microsecond precision, UTC
	Updated  time.Time // when it was filed (meta.lastUpdated)
	Sealed   []byte    // the AuditEvent, sealed with "AuditEvent/" + ID
	Tokens   []IndexToken
}

// FiledAuditQuery is a search over the filed AuditEvents. Every
// constraint given must hold; an empty list constrains nothing.
type FiledAuditQuery struct {
	IDs    []string      // any of these ids
	Tokens []TokenFilter // each must hold (Any and Not; Missing is not supported)
	At     []TimeBound   // on Recorded
	Oldest bool          // oldest first; default newest first (by Recorded, then id)
	Offset int
	Limit  int // 0 or less: none are returned; capped at MaxSearchPage
}

// AuditImport is the repository of filed AuditEvents: append only, no
// update or delete.
type AuditImport interface {
	// FileAuditEvent stores row (its tokens too) and publishes events in
	// one transaction; an id that exists fails with ErrConflict.
	FileAuditEvent(ctx context.Context, row FiledAuditEvent, events ...Event) error
	// GetFiledAuditEvent returns one filed AuditEvent (Tokens nil), or
	// ErrNotFound.
	GetFiledAuditEvent(ctx context.Context, id string) (FiledAuditEvent, error)
	// SearchFiledAuditEvents returns the page of matches that q's Offset
	// and Limit select, in q's order (Tokens nil).
	SearchFiledAuditEvents(ctx context.Context, q FiledAuditQuery) ([]FiledAuditEvent, error)
	// CountFiledAuditEvents counts every match of q (Oldest, Offset and
	// Limit are ignored).
	CountFiledAuditEvents(ctx context.Context, q FiledAuditQuery) (int, error)
}

// Page is q's Offset and Limit made safe: offset at least 0, limit
// between 0 and MaxSearchPage.
func (q FiledAuditQuery) Page() (offset, limit int) {
	return max(q.Offset, 0), min(max(q.Limit, 0), MaxSearchPage)
}

// SQL is the WHERE clause (without the keyword; "TRUE" when q constrains
// nothing) and ORDER BY clause of q over "audit_filed f" (id, recorded),
// with the WHERE clause's arguments; tokens are matched through
// audit_filed_token (id, param, system, code). A time bound whose
// comparator is not one of GE, GT, LE, LT, or a token filter with
// Missing, is an error.
func (q FiledAuditQuery) SQL(d SQLDialect) (where, order string, args []any, err error) {
	var conds []string
	arg := func(v any) string {
		args = append(args, v)
		return d.Placeholder(len(args))
	}
	if len(q.IDs) > 0 {
		ps := make([]string, len(q.IDs))
		for i, id := range q.IDs {
			ps[i] = arg(id)
		}
		conds = append(conds, "f.id IN ("+strings.Join(ps, ", ")+")")
	}
	for _, f := range q.Tokens {
		if f.Missing != nil {
			return "", "", nil, fmt.Errorf("a filed AuditEvent search cannot ask for missing %s", f.Param)
		}
	}
	conds = append(conds, tokenConds("SELECT 1 FROM audit_filed_token t WHERE t.id = f.id AND t.param = ", q.Tokens, arg)...)
	at, err := timeConds("f.recorded", q.At, func(t time.Time) string { return arg(d.Time(t)) })
	if err != nil {
		return "", "", nil, err
	}
	where = allOf(append(conds, at...))
	order = "f.recorded DESC, f.id DESC"
	if q.Oldest {
		order = "f.recorded, f.id"
	}
	return where, order, args, nil
}
