package store

import "context"

// AuditQuery is a search over the audit trail. Every constraint given must
// hold; an empty list constrains nothing.
type AuditQuery struct {
	EventIDs []string    // the AuditEvent ids (AuditRecord.EventID)
	Actions  []string    // any of these actions
	Outcomes []uint8     // any of these outcomes
	Patients []string    // "Patient/id", any of: the record's patient or one among its entities
	Actors   []string    // actor ids, any of
	Entities []string    // entities ("Type/id" or other) or the patient, any of
	At       []TimeBound // on the record's time
	Oldest   bool        // oldest first; default newest first (then chain, seq)
	Offset   int
	Limit    int // 0 or less: none are returned; capped at MaxSearchPage
}

// AuditSearch finds audit records for the FHIR API's AuditEvent.
type AuditSearch interface {
	SearchAudit(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
	CountAudit(ctx context.Context, q AuditQuery) (int, error)
	// BackfillAuditEventIDs gives every record stored without an EventID
	// the one id computes, and returns how many it changed.
	BackfillAuditEventIDs(ctx context.Context, id func(AuditRecord) string) (int, error)
}
