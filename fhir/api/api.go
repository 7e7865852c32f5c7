// Package api is carebridge's FHIR R4 REST surface
// (https://hl7.org/fhir/R4/http.html), on Gin: the EHR reads and searches
// the Communications carebridge made, and the resources mapping stored
// for them to point at, with SMART Backend Services tokens
// (https://hl7.org/fhir/smart-app-launch/backend-services.html).
//
// Handlers stay thin: they authorise the request against the token's
// scopes, ask the store, open the sealed resource for the reader, audit
// the read (IHE BALP) and answer application/fhir+json. Every error is an
// OperationOutcome whose issue.expression names what was wrong.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// Store is what the API reads.
type Store interface {
	GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error)
	SearchCommunications(ctx context.Context, q store.CommunicationQuery) ([]store.CommunicationRow, error)
	CountCommunications(ctx context.Context, q store.CommunicationQuery) (int, error)
	GetResource(ctx context.Context, typ, id string) (store.SealedResource, error)
	SearchResources(ctx context.Context, q store.ResourceQuery) ([]store.SealedResource, error)
	CountResources(ctx context.Context, q store.ResourceQuery) (int, error)
}

// AuditEvents is what AuditEvent read and search need of the store.
type AuditEvents interface {
	SearchAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error)
	CountAudit(ctx context.Context, q store.AuditQuery) (int, error)
}

// Opener opens sealed records (*secure.KeyRing).
type Opener interface {
	Open(sealed, aad []byte) ([]byte, error)
}

// Tokens issues and verifies access tokens (*access.Service).
type Tokens interface {
	Exchange(ctx context.Context, form url.Values) (access.Token, error)
	Verify(ctx context.Context, raw string) (access.Principal, error)
}

// Auditor records audit entries durably before the answer leaves
// (*audit.Recorder).
type Auditor interface {
	Record(ctx context.Context, entries ...audit.Entry) error
}

// Config wires a Server.
type Config struct {
	Store  Store
	Keys   Opener
	Tokens Tokens
	Audit  Auditor
	// AuditEvents serves AuditEvent read and search; Source names this
	// deployment in them, as in the AuditEvents exported to the EHR.
	AuditEvents AuditEvents
	Source      audit.Source
	// AuditImport files other systems' AuditEvents (create, append
	// only) and serves them with the trail's in read and search; create
	// also needs AuditEvents, Validator, Sealer and Events, and is left
	// out without them.
	AuditImport AuditImport
	// Writes, Sealer, Validator and Events serve create, update, patch,
	// vread and history; a nil Writes leaves them out.
	Writes    Writes
	Sealer    Sealer
	Validator *fhir.Validator
	Events    EventMaker
	// Subscriptions serves Subscription create, read, delete, search and
	// $status, with SubscriptionRules checking them by the pipeline's
	// rules, the Validator and the Sealer (for their header lines); they
	// are left out unless all four are set.
	Subscriptions     SubscriptionStore
	SubscriptionRules SubscriptionRules
	// HL7 takes messages POSTed to /hl7/v2; nil leaves that endpoint out.
	HL7 HL7Acceptor
	// Users signs clinicians in at /auth/login and verifies their session
	// tokens; nil leaves those out, and bearer tokens are client tokens.
	Users UserAuth
	// BaseURL is the public URL carebridge is reached at, such as
	// https://bridge.example.org; the FHIR base is BaseURL + "/fhir".
	BaseURL string
	Log     *slog.Logger
	Now     func() time.Time
	// Version is carebridge's version, for the CapabilityStatement.
	Version string
}

// Server is the FHIR REST API.
type Server struct {
	cfg    Config
	base   string // the FHIR base URL
	engine *gin.Engine
}

// Limits of a request.
const (
	maxFormBytes = 64 << 10
	maxRequestID = 64
)

// New returns the API. Call gin.SetMode before, once per process.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Tokens == nil || cfg.Audit == nil {
		return nil, errors.New("api: the FHIR API needs a store, the key ring, a token service and an auditor")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("api: base URL %q is not http(s)://host[:port]", cfg.BaseURL)
	}
	if cfg.Writes != nil && (cfg.Sealer == nil || cfg.Validator == nil || cfg.Events == nil) {
		return nil, errors.New("api: writing Communications needs a sealer, the validator and the pipeline's events")
	}
	if (cfg.Subscriptions == nil) != (cfg.SubscriptionRules == nil) || cfg.Subscriptions != nil && (cfg.Validator == nil || cfg.Sealer == nil || cfg.Events == nil) {
		return nil, errors.New("api: Subscription needs the store's subscriptions, the pipeline's rules and events, the validator and a sealer")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/") + "/fhir"}
	s.engine = s.routes()
	return s, nil
}

// Handler serves /fhir/…, /auth/token, /hl7/v2 and
// /.well-known/smart-configuration.
func (s *Server) Handler() http.Handler { return s.engine }

// FHIRBase is the FHIR base URL.
func (s *Server) FHIRBase() string { return s.base }

func (s *Server) routes() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(s.recoverer, s.requestID)
	e.NoRoute(func(c *gin.Context) {
		s.fail(c, http.StatusNotFound, problem{Code: "not-found", Details: "no such endpoint; see /fhir/metadata"})
	})
	e.NoMethod(func(c *gin.Context) {
		s.fail(c, http.StatusMethodNotAllowed, problem{Code: "not-supported", Details: "this interaction is not supported; see /fhir/metadata"})
	})
	e.GET("/.well-known/smart-configuration", s.smartConfiguration)
	e.POST("/auth/token", s.token)
	if s.cfg.Users != nil {
		e.POST("/auth/login", s.login)
		e.POST("/auth/logout", s.logout)
		e.POST("/auth/break-glass", s.breakGlass)
	}
	if s.cfg.HL7 != nil {
		// An interface engine's token needs system/MessageHeader.c: it
		// creates messages, as MessageHeader stands for one in FHIR.
		e.POST("/hl7/v2", s.authorize("MessageHeader", access.Create, "create"), s.acceptHL7)
	}

	f := e.Group("/fhir", s.negotiate)
	// The base itself is no resource: a client that GETs it, or POSTs a
	// batch or transaction Bundle to it, is told so in FHIR, not
	// redirected to "/fhir/" with an HTML body to find a 404 there.
	e.Any("/fhir", s.negotiate, s.atBase)
	f.Any("/", s.atBase)
	f.GET("/metadata", s.metadata)
	f.GET("/.well-known/smart-configuration", s.smartConfiguration)
	f.GET("/SearchParameter/:id", s.searchParameter)

	f.GET("/Communication", s.authorize("Communication", access.Search, "search-type"), s.searchCommunications)
	f.POST("/Communication/_search", s.authorize("Communication", access.Search, "search-type"), s.searchCommunications)
	f.GET("/Communication/:id", s.authorize("Communication", access.Read, "read"), s.readCommunication)
	if s.cfg.Writes != nil {
		f.POST("/Communication", s.authorize("Communication", access.Create, "create"), s.createCommunication)
		f.PUT("/Communication/:id", s.authorize("Communication", access.Update, "update"), s.updateCommunication)
		f.PATCH("/Communication/:id", s.authorize("Communication", access.Update, "patch"), s.patchCommunication)
		f.GET("/Communication/:id/_history", s.authorize("Communication", access.Read, "history-instance"), s.historyCommunication)
		f.GET("/Communication/:id/_history/:vid", s.authorize("Communication", access.Read, "vread"), s.vreadCommunication)
	}
	s.auditEventRoutes(f)
	s.resourceRoutes(f)
	s.subscriptionRoutes(f)
	return e
}

// atBase answers a request for the FHIR base URL itself.
func (s *Server) atBase(c *gin.Context) {
	if c.Request.Method == http.MethodPost {
		s.fail(c, http.StatusMethodNotAllowed, problem{Code: "not-supported", Details: "batch and transaction Bundles are not supported; see /fhir/metadata"})
		return
	}
	s.fail(c, http.StatusNotFound, problem{Code: "not-found", Details: "the base URL is no resource, and there is no search across all types; see /fhir/metadata"})
}

// mappedTypes are the resources mapping stores for Communications to
// point at, readable by id.
var mappedTypes = []string{"Patient", "Encounter", "ServiceRequest", "Observation"}

// Context keys.
const (
	keyPrincipal = "carebridge.principal"
	keyRequestID = "carebridge.request-id"
)

func (s *Server) recoverer(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.cfg.Log.Error("FHIR API handler panicked", "path", c.FullPath(), "request_id", c.GetString(keyRequestID), "panic", fmt.Sprint(r))
			s.fail(c, http.StatusInternalServerError, problem{Code: "exception", Details: "internal error"})
		}
	}()
	c.Next()
}

// requestID carries the caller's X-Request-Id (when it is short and
// plain) or a new one into the audit trail, and echoes it.
func (s *Server) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-Id")
	if !plainID(id) {
		id = newID()
	}
	c.Set(keyRequestID, id)
	c.Header("X-Request-Id", id)
	c.Next()
}

func plainID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// negotiate accepts _format and Accept asking for FHIR JSON (or anything);
// XML, Turtle and the rest are 406.
func (s *Server) negotiate(c *gin.Context) {
	if f := c.Query("_format"); f != "" {
		switch f {
		case "json", "application/json", "application/fhir+json":
		default:
			s.fail(c, http.StatusNotAcceptable, problem{Expression: "_format", Code: "not-supported", Details: "only json (application/fhir+json) is supported"})
			return
		}
	} else if a := c.GetHeader("Accept"); a != "" && !acceptsJSON(a) {
		s.fail(c, http.StatusNotAcceptable, problem{Code: "not-supported", Details: "only application/fhir+json is supported"})
		return
	}
	c.Next()
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") && !strings.Contains(params, "q=0.") {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "application/fhir+json", "application/json", "application/json+fhir", "*/*", "application/*":
			return true
		}
	}
	return false
}

// authorize admits a request whose bearer token verifies and whose scopes
// permit perm on typ; others get 401 or 403, with an audit entry.
func (s *Server) authorize(typ string, perm access.Perm, interaction string) gin.HandlerFunc {
	return func(c *gin.Context) {
		raw := access.Bearer(c.GetHeader("Authorization"))
		if raw == "" {
			s.refuse(c, http.StatusUnauthorized, `Bearer realm="carebridge"`, interaction, typ, audit.Actor{Kind: audit.ActorPeer, Address: c.Request.RemoteAddr},
				"an access token is required (Authorization: Bearer …; see /.well-known/smart-configuration)")
			return
		}
		p, err := s.verify(c.Request.Context(), raw)
		if errors.Is(err, access.ErrToken) {
			s.refuse(c, http.StatusUnauthorized, `Bearer realm="carebridge", error="invalid_token"`, interaction, typ, audit.Actor{Kind: audit.ActorPeer, Address: c.Request.RemoteAddr},
				"the access token is not valid: expired, revoked or not issued by carebridge")
			return
		}
		if err != nil {
			s.internal(c, "verifying an access token", err)
			return
		}
		if !p.Scopes.Allows(p.Contexts, typ, perm) {
			s.refuse(c, http.StatusForbidden, fmt.Sprintf(`Bearer realm="carebridge", error="insufficient_scope", scope="%s/%s.%s"`, p.Contexts, typ, perm), interaction, typ,
				actorOf(c, p), fmt.Sprintf("the token's scopes do not permit this; it needs %s/%s.%s", p.Contexts, typ, perm))
			return
		}
		c.Set(keyPrincipal, p)
		c.Next()
	}
}

func actorOf(c *gin.Context, p access.Principal) audit.Actor {
	kind := audit.ActorClient
	if p.Kind == access.KindUser {
		kind = audit.ActorUser
	}
	return audit.Actor{Kind: kind, ID: p.ID, Address: c.Request.RemoteAddr}
}

func (s *Server) refuse(c *gin.Context, status int, challenge, interaction, typ string, who audit.Actor, details string) {
	if !s.auditRefusal(c, interaction, typ, who) {
		return
	}
	c.Header("WWW-Authenticate", challenge)
	code := fhirCodeSecurity
	if status == http.StatusForbidden {
		code = fhirCodeForbidden
	}
	s.fail(c, status, problem{Code: code, Details: details})
}

// auditRefusal audits a refused request for typ (and the id of its path,
// if any) by who; false when that failed, and the request is answered.
func (s *Server) auditRefusal(c *gin.Context, interaction, typ string, who audit.Actor) bool {
	what := typ
	if id := c.Param("id"); validID(id) {
		what += "/" + id
	}
	err := s.cfg.Audit.Record(c.Request.Context(), audit.Entry{At: s.cfg.Now().UTC(), Actor: who, Action: "rest." + interaction,
		Outcome: audit.OutcomeMinor, Correlation: c.GetString(keyRequestID), Entities: []string{what}})
	if err != nil {
		s.internal(c, "auditing a refused request", err)
		return false
	}
	return true
}

// record audits a successful read or search before the answer leaves:
// one entry per audit.MaxEntities resources returned (at least one).
func (s *Server) record(c *gin.Context, interaction, patient string, entities []string) error {
	return s.recordAs(c, interaction, patient, entities, false)
}

// breakGlassEntity flags the audit entries of what a user saw only by
// breaking the glass: in the AuditEvent, an entity identified as
// urn:carebridge:entity|break-glass.
const breakGlassEntity = "break-glass"

// recordAs is record, with every entry flagged by breakGlassEntity when
// breakGlass is set.
func (s *Server) recordAs(c *gin.Context, interaction, patient string, entities []string, breakGlass bool) error {
	p, _ := c.Get(keyPrincipal)
	e := audit.Entry{At: s.cfg.Now().UTC(), Actor: actorOf(c, p.(access.Principal)), Action: "rest." + interaction,
		Outcome: audit.OutcomeSuccess, Correlation: c.GetString(keyRequestID), Patient: patient}
	per := audit.MaxEntities
	if breakGlass {
		per--
		e.Entities = []string{breakGlassEntity}
	}
	entries := []audit.Entry{e}
	for i := 0; i < len(entities); i += per {
		if i > 0 {
			entries = append(entries, e)
		}
		chunk := entities[i:min(i+per, len(entities))]
		if breakGlass {
			chunk = append(slices.Clip(chunk), breakGlassEntity)
		}
		entries[len(entries)-1].Entities = chunk
	}
	return s.cfg.Audit.Record(c.Request.Context(), entries...)
}

// auditedEvent is the audit entry of a successful write, as the event to
// publish in the write's own transaction (so that a write is never
// stored unaudited, nor audited unstored).
func (s *Server) auditedEvent(c *gin.Context, interaction, patient string, entities []string) (store.Event, error) {
	p := c.MustGet(keyPrincipal).(access.Principal)
	corr := c.GetString(keyRequestID)
	return s.cfg.Events.Audited(corr, audit.Entry{At: s.cfg.Now().UTC(), Actor: actorOf(c, p), Action: "rest." + interaction,
		Outcome: audit.OutcomeSuccess, Correlation: corr, Entities: entities, Patient: patient})
}

func (s *Server) internal(c *gin.Context, what string, err error) {
	s.cfg.Log.Error("FHIR API: "+what, "request_id", c.GetString(keyRequestID), "error", err)
	s.fail(c, http.StatusInternalServerError, problem{Code: "exception", Details: "internal error (request " + c.GetString(keyRequestID) + ")"})
}

// notFound is 404 for a resource id the store does not hold.
func (s *Server) notFound(c *gin.Context, typ, id string) {
	s.fail(c, http.StatusNotFound, problem{Code: "not-found", Details: typ + "/" + id + " is not known"})
}

// isNotFound reports a store miss.
func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
