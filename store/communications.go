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
	// UpdateCommunication makes row the current version (the current one
	// plus one), keeping the one it replaces in the history, replacing the
	// index tokens, queueing a delivery for each recipient that has none
	// and forgetting those of recipients it no longer has, and publishing
	// events, in one transaction; it returns the new
	// version. ifVersion > 0 must be the current version, else
	// ErrVersionConflict. An unknown id: ErrNotFound.
	UpdateCommunication(ctx context.Context, row CommunicationRow, ifVersion int, events ...Event) (version int, err error)
	// CommunicationVersion returns one version, current or past, or
	// ErrNotFound.
	CommunicationVersion(ctx context.Context, id string, version int) (CommunicationRow, error)
	// CommunicationHistory returns every version, newest first; an unknown
	// id: ErrNotFound.
	CommunicationHistory(ctx context.Context, id string) ([]CommunicationRow, error)
}
