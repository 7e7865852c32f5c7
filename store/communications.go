package store

import (
	"context"
	"errors"
)

// ErrVersionConflict is returned when a write names a version that is not
// the current one (HTTP 412 to an API client).
var ErrVersionConflict = errors.New("version conflict")

// Parameters of the index tokens a Communication is searched by, beyond
// the columns of CommunicationRow.
const (
	TokenIdentifier   = "identifier"     // System: the identifier's system; Code: its value
	TokenCategory     = "category"       // a coding of category
	TokenPartOf       = "part-of"        // Code: "Type/id"
	TokenBasedOn      = "based-on"       // Code: "Type/id"
	TokenInResponseTo = "in-response-to" // Code: "Type/id"
)

// StatusEnteredInError is the status of a Communication its sender
// recalled: it leaves its recipients' inboxes (Deliveries.Inbox, Waiting
// and Unread pass it over), its escalation stops, and completing it
// (Deliveries.CompleteCommunications) changes nothing.
const StatusEnteredInError = "entered-in-error"

// Method is the HTTP method a version of a Communication was written with,
// as its history (a FHIR history Bundle's entry.request.method) tells it.
type Method string

// Methods of Version.
const (
	MethodPost Method = "POST"
	MethodPut  Method = "PUT"
)

// MethodOf is how version of a Communication was written, given how the
// Communication was created (createdBy: "PUT" for update as create, ""
// for POST and for what the pipeline stored): version 1 by that, every
// later one by PUT (an update or a patch, which the history tells as the
// update it amounts to).
func MethodOf(version int, createdBy string) Method {
	if version <= 1 && createdBy != string(MethodPut) {
		return MethodPost
	}
	return MethodPut
}

// Version is one version of a Communication as its history tells it.
type Version struct {
	CommunicationRow
	// Method is how the version was written: POST for a version 1 created
	// by POST, by the pipeline or stored before this was kept; PUT for a
	// version 1 a client created by update (PutCommunication) and for
	// every later version.
	Method Method
}

// IndexToken is one multi-valued search value of a Communication.
type IndexToken struct {
	Param  string
	System string // "" for references and for codes without a system
	Code   string
}

// CommunicationWrites are the Communications written through the API,
// each kept in every version (sealed).
type CommunicationWrites interface {
	// CreateCommunication stores a new Communication as version 1, with
	// its index tokens and a queued delivery per recipient, and publishes
	// events, in one transaction. An id or Identifier that exists:
	// ErrConflict, nothing written.
	CreateCommunication(ctx context.Context, row CommunicationRow, events ...Event) error
	// PutCommunication is CreateCommunication for a Communication a client
	// created by update (PUT to an id not known yet): its history says
	// that version 1 was written by PUT.
	PutCommunication(ctx context.Context, row CommunicationRow, events ...Event) error
	// UpdateCommunication makes row the current version (the current one
	// plus one), keeping the one it replaces in the history, replacing the
	// index tokens, queueing a delivery for each recipient that has none
	// and forgetting those of recipients it no longer has, and publishing
	// events, in one transaction; it returns the new
	// version. A row whose status is StatusEnteredInError (a recall) also
	// ends the Communication's pending escalation. ifVersion > 0 must be
	// the current version, else ErrVersionConflict. An unknown id:
	// ErrNotFound.
	UpdateCommunication(ctx context.Context, row CommunicationRow, ifVersion int, events ...Event) (version int, err error)
	// CommunicationVersion returns one version, current or past, or
	// ErrNotFound.
	CommunicationVersion(ctx context.Context, id string, version int) (CommunicationRow, error)
	// CommunicationHistory returns every version, newest first; an unknown
	// id: ErrNotFound.
	CommunicationHistory(ctx context.Context, id string) ([]CommunicationRow, error)
	// CommunicationVersions is CommunicationHistory with how each version
	// was written, read in one snapshot.
	CommunicationVersions(ctx context.Context, id string) ([]Version, error)
}
