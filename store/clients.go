package store

import (
	"context"
	"time"
)

// Client is an EHR system registered for SMART on FHIR backend services:
// the keys its assertions are signed with and the scopes it may be granted.
// None of it is PHI.
type Client struct {
	ID        string
	JWKS      []byte // the client's public keys, when registered from a file
	JWKSURL   string // where its public keys are published, when registered by URL
	Scope     string // the scopes it may ask for, space-separated
	Disabled  bool
	CreatedAt time.Time
}

// Clients is the registry of EHR systems and the assertions they spent.
type Clients interface {
	// AddClient registers c; a client with its id exists: ErrConflict.
	AddClient(ctx context.Context, c Client) error
	// GetClient returns one client, or ErrNotFound.
	GetClient(ctx context.Context, id string) (Client, error)
	// ListClients returns every client, by id.
	ListClients(ctx context.Context) ([]Client, error)
	// SetClientDisabled disables (or enables again) a client, or returns
	// ErrNotFound.
	SetClientDisabled(ctx context.Context, id string, disabled bool) error
	// UseAssertion records that the client spent the assertion jti, which
	// expires at expires; fresh is false when it was spent before (a
	// replay). Spent assertions that expired before now are forgotten.
	UseAssertion(ctx context.Context, clientID, jti string, expires, now time.Time) (fresh bool, err error)
}
