package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/bridge"
)

// inboxReaders resolves the inbox's bearer tokens to signed-in users
// (access.Users sessions) and the recipients they stand for. Only a role
// that reads Communications (physician, nurse) has an inbox: a clerk's
// view is cut to what the FHIR API shows them.
type inboxReaders struct{ users *access.Users }

func (r inboxReaders) Reader(ctx context.Context, token string) (bridge.Reader, error) {
	p, err := r.users.VerifySession(ctx, token)
	if err != nil {
		return bridge.Reader{}, inboxError(err)
	}
	return readerOf(p)
}

func (r inboxReaders) Recheck(ctx context.Context, token string) (bridge.Reader, error) {
	p, err := r.users.CheckSession(ctx, token)
	if err != nil {
		return bridge.Reader{}, inboxError(err)
	}
	return readerOf(p)
}

func readerOf(p access.Principal) (bridge.Reader, error) {
	if !p.Scopes.Allows(p.Contexts, "Communication", access.Read) || len(p.Recipients) == 0 {
		return bridge.Reader{User: p.ID}, fmt.Errorf("%w: user %s (%s)", bridge.ErrNoInbox, p.ID, p.Role)
	}
	return bridge.Reader{User: p.ID, Recipients: p.Recipients}, nil
}

func inboxError(err error) error {
	if errors.Is(err, access.ErrToken) {
		return fmt.Errorf("%w: %v", bridge.ErrNotSignedIn, err)
	}
	return err
}
