package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
)

// clientRegistry is the token service's view of the store's clients.
type clientRegistry struct {
	st   store.Clients
	keys *access.KeyCache
}

func (r clientRegistry) Client(ctx context.Context, id string) (access.Client, error) {
	c, err := r.st.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return access.Client{}, fmt.Errorf("client %s: %w", id, access.ErrUnknownClient)
	}
	if err != nil {
		return access.Client{}, err
	}
	scopes, _, err := access.ParseScopes(c.Scope)
	if err != nil {
		return access.Client{}, fmt.Errorf("reading the scopes of client %s: %w", id, err)
	}
	out := access.Client{ID: c.ID, Scopes: scopes, Disabled: c.Disabled}
	if c.JWKSURL != "" {
		out.Keys = r.keys.For(c.JWKSURL)
	} else if out.Keys, err = access.ParseJWKS(c.JWKS); err != nil {
		return access.Client{}, fmt.Errorf("reading the keys of client %s: %w", id, err)
	}
	return out, nil
}

func (r clientRegistry) SpendAssertion(ctx context.Context, clientID, jti string, expires time.Time) (bool, error) {
	return r.st.UseAssertion(ctx, clientID, jti, expires, time.Now())
}

// fhirBase is the FHIR base URL EHRs reach carebridge at: --public-url,
// or the HTTP listener's own address.
func fhirBase(publicURL, scheme string, ln net.Addr) string {
	if publicURL != "" {
		return strings.TrimRight(publicURL, "/")
	}
	return scheme + "://" + ln.String() + "/fhir"
}

// newUsers is the sign-in service over the store's users, shared by the
// FHIR API and the inbox.
func newUsers(st store.Store, keys *secure.KeyRing, sessions sessionFlags) (*access.Users, error) {
	users, err := access.NewUsers(userStore{st}, keys, access.UsersConfig{IdleTimeout: sessions.idle, Lifetime: sessions.lifetime})
	if err != nil {
		return nil, fmt.Errorf("--session-idle, --session-lifetime: %w", err)
	}
	return users, nil
}

// apiAuditChains is how many audit chains the API's writes append to in
// their own transactions: how many of them may commit at once. A write
// holds one only for its last statement and its commit, but a commit can
// wait long for its WAL flush (after a PostgreSQL checkpoint, full-page
// images make the WAL heavy): with fewer chains than the pool's 16
// connections, the chains, not the connections, would then bound how
// many commits share a flush.
const apiAuditChains = 16

// apiAuditParallel is how many transactions the recorder of reads and
// refusals runs at once, each on a chain of its own: while one batch
// waits for its commit, the next gathers and commits beside it.
const apiAuditParallel = 2

// apiAudit are the audit chains of this process's API, and what signs
// their tails.
type apiAudit struct {
	writes *audit.Writers // "<node>.w1"…: appended in the writes' transactions
	reads  *audit.Writers // "<node>.r1"…: the recorder's
}

func newAPIAudit(st store.Store, keys *secure.KeyRing, node string) (apiAudit, error) {
	w, err := audit.NewWriters(st, keys, audit.LogConfig{Chain: node + ".w"}, apiAuditChains)
	if err != nil {
		return apiAudit{}, err
	}
	r, err := audit.NewWriters(st, keys, audit.LogConfig{Chain: node + ".r"}, apiAuditParallel)
	if err != nil {
		return apiAudit{}, err
	}
	return apiAudit{writes: w, reads: r}, nil
}

// Checkpoint signs both pools' tails.
func (a apiAudit) Checkpoint(ctx context.Context, now time.Time) error {
	return errors.Join(a.writes.Checkpoint(ctx, now), a.reads.Checkpoint(ctx, now))
}

func (a apiAudit) Every() time.Duration { return a.writes.Every() }

// newFHIRAPI wires the FHIR REST API: the token service over the store's
// clients, the login service users, the audit records on chains (a
// write's in its own transaction; reads' and refusals' through the
// recorder, in transactions of their own), the handlers. The recorder
// must be waited for after the HTTP server stops, before the store closes.
func newFHIRAPI(st store.Store, keys *secure.KeyRing, in *inbound.Service, chains apiAudit, node, base string, log *slog.Logger, users *access.Users, rules subscriptionRules, hooks *bridge.RestHook) (http.Handler, *audit.Recorder, error) {
	root := strings.TrimSuffix(base, "/fhir")
	if root == base {
		return nil, nil, fmt.Errorf("--public-url %q: want carebridge's FHIR base URL, ending in /fhir", base)
	}
	tokens, err := access.NewService(clientRegistry{st: st, keys: &access.KeyCache{}}, keys, access.Config{
		Issuer: root, TokenURL: root + "/auth/token", Audience: base,
	})
	if err != nil {
		return nil, nil, err
	}
	rec, err := audit.NewRecorder(chains.reads, apiAuditParallel)
	if err != nil {
		return nil, nil, err
	}
	v, err := fhir.NewValidator()
	if err != nil {
		return nil, nil, err
	}
	gin.SetMode(gin.ReleaseMode)
	srv, err := api.New(api.Config{Store: st, Keys: keys, Tokens: tokens, Audit: rec, HL7: hl7Acceptor{in}, BaseURL: root, Log: log,
		Writes: st, Sealer: keys, Validator: v, Events: pipelineEvents{chains.writes},
		AuditEvents: st, AuditImport: st, Source: audit.Source{Site: node}, Users: users,
		Subscriptions: notifyingSubscriptions{st, hooks}, SubscriptionRules: rules})
	if err != nil {
		return nil, nil, err
	}
	return srv.Handler(), rec, nil
}

// hl7Acceptor is the front door for messages POSTed to /hl7/v2.
type hl7Acceptor struct{ in *inbound.Service }

func (a hl7Acceptor) AcceptHL7(ctx context.Context, peer string, msg []byte) ([]byte, error) {
	res, err := a.in.Accept(ctx, inbound.Peer{Addr: peer, Transport: "http"}, msg)
	if err != nil {
		return nil, err
	}
	return res.ACK, nil
}

// pipelineEvents are the bridge's events an API write publishes, and its
// audit records, appended in its transaction to one of writers' chains.
type pipelineEvents struct{ writers *audit.Writers }

func (pipelineEvents) Created(row store.CommunicationRow, corr string) (store.Event, error) {
	return bridge.CreatedEvent(row, corr)
}

func (pipelineEvents) Recalled(row store.CommunicationRow, corr string) (store.Event, error) {
	return bridge.RecalledEvent(row, corr)
}

func (e pipelineEvents) Audited(_ string, entries ...audit.Entry) (store.Event, error) {
	return store.Event{Audit: e.writers.Entries(entries...)}, nil
}

// subscriptionRules are the pipeline's rules for the Subscriptions the
// API takes, the same the CLI applies.
// notifyingSubscriptions are the store's subscriptions as the FHIR API
// changes them: this process's notifier hears of each change at once, so
// that the next Communication is matched against it.
type notifyingSubscriptions struct {
	store.Store
	hooks *bridge.RestHook
}

func (s notifyingSubscriptions) PutSubscription(ctx context.Context, sub store.Subscription, events ...store.Event) error {
	err := s.Store.PutSubscription(ctx, sub, events...)
	s.hooks.Changed()
	return err
}

func (s notifyingSubscriptions) DeleteSubscription(ctx context.Context, id string, events ...store.Event) error {
	err := s.Store.DeleteSubscription(ctx, id, events...)
	s.hooks.Changed()
	return err
}

// allowPrivate lets clients subscribe endpoints on loopback, private and
// link-local addresses (serve --hooks-allow-private).
type subscriptionRules struct{ allowPrivate bool }

func (subscriptionRules) CheckCriteria(criteria string) error {
	_, err := bridge.ParseCriteria(criteria)
	return err
}

func (r subscriptionRules) CheckEndpoint(endpoint string) error {
	if r.allowPrivate {
		return bridge.CheckEndpoint(endpoint)
	}
	return bridge.CheckPublicEndpoint(endpoint)
}

func (subscriptionRules) CheckHeader(line string) error {
	_, err := bridge.ParseHeaderLines(line)
	return err
}
