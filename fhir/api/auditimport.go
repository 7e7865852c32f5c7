package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/store"
)

// AuditEvent create (https://hl7.org/fhir/R4/http.html#create), as an
// IHE Audit Record Repository accepts it: other systems (the EHR,
// interface engines) file their AuditEvents with carebridge, which keeps
// them append only (no update, patch or delete, ever) beside its own
// trail, and serves both through AuditEvent read and search. Filing one
// is audited in carebridge's own chain, in the transaction that stores
// it.

// AuditImport is what AuditEvent create needs of the store, and read and
// search of the AuditEvents filed (store.AuditImport).
type AuditImport interface {
	FileAuditEvent(ctx context.Context, row store.FiledAuditEvent, events ...store.Event) error
	GetFiledAuditEvent(ctx context.Context, id string) (store.FiledAuditEvent, error)
	SearchFiledAuditEvents(ctx context.Context, q store.FiledAuditQuery) ([]store.FiledAuditEvent, error)
	CountFiledAuditEvents(ctx context.Context, q store.FiledAuditQuery) (int, error)
}

// appendOnlyDetails is what an update, patch or delete of an AuditEvent
// is told.
const appendOnlyDetails = "AuditEvents are append-only: carebridge never updates, patches or deletes one; file a new AuditEvent with POST instead"

// files reports whether the server accepts AuditEvent create: it needs
// the repository, the validator, a sealer and the pipeline's events (for
// the filing's own audit entry).
func (s *Server) files() bool {
	return s.cfg.AuditEvents != nil && s.cfg.AuditImport != nil && s.cfg.Validator != nil && s.cfg.Sealer != nil && s.cfg.Events != nil
}

// appendOnly answers an update, patch or delete of AuditEvents: 405,
// audited as a refusal (by whoever the bearer token names, when it
// verifies).
func (s *Server) appendOnly(interaction, allow string) gin.HandlerFunc {
	return func(c *gin.Context) {
		who := audit.Actor{Kind: audit.ActorPeer, Address: c.Request.RemoteAddr}
		if raw := access.Bearer(c.GetHeader("Authorization")); raw != "" {
			if p, err := s.verify(c.Request.Context(), raw); err == nil {
				who = actorOf(c, p)
			}
		}
		if !s.auditRefusal(c, interaction, "AuditEvent", who) {
			return
		}
		c.Header("Allow", allow)
		s.fail(c, http.StatusMethodNotAllowed, problem{Expression: "AuditEvent", Code: fhir.CodeNotSupported, Details: appendOnlyDetails})
	}
}

// createAuditEvent is POST /AuditEvent: the AuditEvent sent, valid R4,
// filed under a new id as version 1 (an id it has is ignored), with the
// entry that audits the filing in the same transaction.
func (s *Server) createAuditEvent(c *gin.Context) {
	body, ok := s.readBody(c, resourceTypes...)
	if !ok {
		return
	}
	if c.GetHeader("If-None-Exist") != "" {
		s.fail(c, http.StatusBadRequest, problem{Expression: "If-None-Exist", Code: fhir.CodeNotSupported,
			Details: "conditional create is not supported for AuditEvent: every AuditEvent sent is filed as a new record"})
		return
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	id := uuid.NewString()
	row, stored, ok := s.filedFrom(c, body, id, now)
	if !ok {
		return
	}
	corr := c.GetString(keyRequestID)
	p := c.MustGet(keyPrincipal).(access.Principal)
	ev, err := s.cfg.Events.Audited(corr, audit.Entry{At: now, Actor: actorOf(c, p), Action: "rest.create", Outcome: audit.OutcomeSuccess,
		Correlation: corr, Entities: []string{"AuditEvent/" + id}, Patient: index.AuditEventPatient(row)})
	if err != nil {
		s.internal(c, "making a create's events", err)
		return
	}
	err = s.cfg.AuditImport.FileAuditEvent(c.Request.Context(), row, ev)
	if errors.Is(err, store.ErrConflict) { // a new UUID that exists: not in this universe
		s.fail(c, http.StatusConflict, problem{Code: "conflict", Details: "AuditEvent/" + id + " exists"})
		return
	}
	if err != nil {
		s.internal(c, "filing an AuditEvent", err)
		return
	}
	s.answerFiled(c, http.StatusCreated, id, now, stored)
}

// filedFrom checks an AuditEvent a client sent and makes its stored row:
// valid R4 (every problem named), indexed within limits, sealed. id is
// the id it is filed under.
func (s *Server) filedFrom(c *gin.Context, body []byte, id string, now time.Time) (store.FiledAuditEvent, []byte, bool) {
	stored, ok := s.validBody(c, body, "AuditEvent", id, 1, now)
	if !ok {
		return store.FiledAuditEvent{}, nil, false
	}
	row, err := index.AuditEvent(stored)
	if errors.Is(err, index.ErrTooManyValues) {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "AuditEvent", Code: "too-costly",
			Details: fmt.Sprintf("more than %d values of one search parameter", fhir.MaxIndexValues)})
		return store.FiledAuditEvent{}, nil, false
	}
	if err != nil {
		s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "AuditEvent.recorded", Code: fhir.CodeInvalid, Details: "the AuditEvent cannot be indexed: recorded must be an instant"})
		return store.FiledAuditEvent{}, nil, false
	}
	row.ID, row.Updated = id, now
	if row.Sealed, err = s.cfg.Sealer.Seal(stored, []byte("AuditEvent/"+id)); err != nil {
		s.internal(c, "sealing an AuditEvent", err)
		return store.FiledAuditEvent{}, nil, false
	}
	return row, stored, true
}

// answerFiled answers a create of an AuditEvent: the resource (or less,
// as Prefer: return= asks), its ETag, Last-Modified and Location.
func (s *Server) answerFiled(c *gin.Context, status int, id string, updated time.Time, body []byte) {
	c.Header("ETag", etag(1))
	c.Header("Last-Modified", updated.UTC().Format(http.TimeFormat))
	c.Header("Location", s.base+"/AuditEvent/"+id+"/_history/1")
	switch prefer(c.Request, "return") {
	case "minimal":
		c.Status(status)
	case "OperationOutcome":
		b, _ := json.Marshal(outcome("information", problem{Code: "informational", Details: "AuditEvent/" + id + " version 1 filed"}))
		answer(c, status, b)
	default:
		answer(c, status, body)
	}
}

// openFiled opens a filed AuditEvent and sets its id and version meta.
func (s *Server) openFiled(row store.FiledAuditEvent) ([]byte, error) {
	body, err := s.cfg.Keys.Open(row.Sealed, []byte("AuditEvent/"+row.ID))
	if err != nil {
		return nil, fmt.Errorf("opening AuditEvent/%s: %w", row.ID, err)
	}
	return withMeta(body, row.ID, 1, row.Updated)
}

// readFiled answers GET /AuditEvent/{id} of a filed AuditEvent, audited;
// false when none is filed under id.
func (s *Server) readFiled(c *gin.Context, id, interaction string) bool {
	row, err := s.cfg.AuditImport.GetFiledAuditEvent(c.Request.Context(), id)
	if isNotFound(err) {
		return false
	}
	if err != nil {
		s.internal(c, "reading a filed AuditEvent", err)
		return true
	}
	body, err := s.openFiled(row)
	if err != nil {
		s.internal(c, "opening a filed AuditEvent", err)
		return true
	}
	patient := ""
	if ix, err := index.AuditEvent(body); err == nil {
		patient = index.AuditEventPatient(ix)
	}
	if err := s.record(c, interaction, patient, []string{"AuditEvent/" + id}); err != nil {
		s.internal(c, "auditing a read", err)
		return true
	}
	c.Header("ETag", etag(1))
	answer(c, http.StatusOK, body)
	return true
}

// auditHit is one AuditEvent a search found: carebridge's own (native)
// or a filed one.
type auditHit struct {
	at     time.Time
	id     string
	native *store.AuditRecord
	filed  *store.FiledAuditEvent
}

// searchAuditHits is the page of AuditEvents a search asks for, native
// and filed together, newest first (or oldest first) by time and then
// id, with the total (native and filed added) unless none is asked for,
// and whether a next page exists.
//
// Paging a merge of two sources reads, from each, every match up to the
// page's end: a deep _offset costs up to _offset + _count rows of each
// (the filed ones with their sealed bodies), in pages of
// store.MaxSearchPage. When nothing filed matches, the search is the
// native one alone, at no extra cost.
func (s *Server) searchAuditHits(ctx context.Context, sr auditEventSearch) (total *int, hits []auditHit, more bool, err error) {
	filedN := 0
	if s.cfg.AuditImport != nil {
		if filedN, err = s.cfg.AuditImport.CountFiledAuditEvents(ctx, sr.Filed); err != nil {
			return nil, nil, false, fmt.Errorf("counting filed AuditEvents: %w", err)
		}
	}
	ps := pageSpec{Count: sr.Count, CountOnly: sr.CountOnly, NoTotal: sr.NoTotal}
	if filedN == 0 {
		sized := func(n int) store.AuditQuery { q := sr.Query; q.Limit = n; return q }
		total, rows, more, err := searchPage(ctx, ps, sr.Query.Offset, sized, s.cfg.AuditEvents.CountAudit, s.cfg.AuditEvents.SearchAudit)
		if err != nil {
			return nil, nil, false, err
		}
		for i := range rows {
			hits = append(hits, auditHit{at: rows[i].At, id: rows[i].EventID, native: &rows[i]})
		}
		return total, hits, more, nil
	}
	if !ps.NoTotal || ps.CountOnly {
		q := sr.Query
		q.Limit = 0
		n, err := s.cfg.AuditEvents.CountAudit(ctx, q)
		if err != nil {
			return nil, nil, false, fmt.Errorf("counting: %w", err)
		}
		n += filedN
		total = &n
	}
	if ps.CountOnly {
		return total, nil, false, nil
	}
	offset := max(sr.Query.Offset, 0)
	need := offset + ps.Count + 1 // one more tells whether a next page exists
	native, err := collect(ctx, need, func(ctx context.Context, off, limit int) ([]store.AuditRecord, error) {
		q := sr.Query
		q.Offset, q.Limit = off, limit
		return s.cfg.AuditEvents.SearchAudit(ctx, q)
	})
	if err != nil {
		return nil, nil, false, err
	}
	filed, err := collect(ctx, min(need, filedN), func(ctx context.Context, off, limit int) ([]store.FiledAuditEvent, error) {
		q := sr.Filed
		q.Offset, q.Limit = off, limit
		return s.cfg.AuditImport.SearchFiledAuditEvents(ctx, q)
	})
	if err != nil {
		return nil, nil, false, err
	}
	merged := make([]auditHit, 0, len(native)+len(filed))
	for i := range native {
		merged = append(merged, auditHit{at: native[i].At, id: native[i].EventID, native: &native[i]})
	}
	for i := range filed {
		merged = append(merged, auditHit{at: filed[i].Recorded, id: filed[i].ID, filed: &filed[i]})
	}
	merged = mergeHits(merged[:len(native)], merged[len(native):], sr.Query.Oldest)
	if offset >= len(merged) {
		return total, nil, false, nil
	}
	merged = merged[offset:]
	if more = len(merged) > ps.Count; more {
		merged = merged[:ps.Count]
	}
	return total, merged, more, nil
}

// collect reads up to n rows from the start of a search, in pages of
// at most store.MaxSearchPage, stopping early when the search runs out.
func collect[R any](ctx context.Context, n int, search func(ctx context.Context, offset, limit int) ([]R, error)) ([]R, error) {
	var out []R
	for len(out) < n {
		limit := min(n-len(out), store.MaxSearchPage)
		rows, err := search(ctx, len(out), limit)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		if len(rows) < limit {
			break
		}
	}
	return out, nil
}

// mergeHits merges two lists, each in search order, into one: newest
// first by time and then id descending, or with oldest the reverse. Ties
// of time and id keep a's first.
func mergeHits(a, b []auditHit, oldest bool) []auditHit {
	before := func(x, y auditHit) bool { // x comes before y
		c := cmp.Or(x.at.Compare(y.at), strings.Compare(x.id, y.id))
		if oldest {
			return c < 0
		}
		return c > 0
	}
	out := make([]auditHit, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if before(b[0], a[0]) {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// hitBody is the AuditEvent of a hit, and its id.
func (s *Server) hitBody(h auditHit) (string, []byte, error) {
	if h.native != nil {
		return s.auditEvent(*h.native)
	}
	body, err := s.openFiled(*h.filed)
	return h.filed.ID, body, err
}

// Filed AuditEvents' search values. A filed AuditEvent is matched by its
// own codings, references and identifiers as FHIR token and reference
// search reads them (system|code, code, |code, system|), where
// carebridge's own are matched through their actions; parseAuditEventSearch
// builds both queries from the same parameters.

// filedNothing is the token value no filed AuditEvent has, for a
// parameter value that can match none of them.
var filedNothing = store.TokenValue{System: noMatch, Code: noMatch}

// tokenValue reads a FHIR token value: system|code, |code (no system),
// system| (any code) or code (any system).
func tokenValue(v string) store.TokenValue {
	system, code, hasSystem := strings.Cut(v, "|")
	switch {
	case !hasSystem:
		return store.TokenValue{Code: v, AnySystem: true}
	case code == "":
		return store.TokenValue{System: system, AnyCode: true}
	}
	return store.TokenValue{System: system, Code: code}
}

// filedFilter is the token filter of one parameter value on filed
// AuditEvents: any of its comma-separated parts, each read by value.
func filedFilter(param, v string, value func(string) store.TokenValue) store.TokenFilter {
	parts, _ := splitOr(v) // the native parse has checked v
	f := store.TokenFilter{Param: param}
	for _, p := range parts {
		f.Any = append(f.Any, value(p))
	}
	return f
}

// filedReference reads a reference value as the filed tokens hold it
// (type as system, id as code): Type/id, an absolute URL to this server,
// or a bare id of any type (of typ, when given).
func filedReference(base, typ string) func(string) store.TokenValue {
	return func(p string) store.TokenValue {
		p = strings.TrimPrefix(p, strings.TrimRight(base, "/")+"/")
		t, id, hasType := strings.Cut(p, "/")
		switch {
		case !hasType && typ != "":
			return store.TokenValue{System: typ, Code: p}
		case !hasType:
			return store.TokenValue{Code: p, AnySystem: true}
		case !resourceType(t) || !validID(id) || typ != "" && t != typ:
			return filedNothing
		}
		return store.TokenValue{System: t, Code: id}
	}
}

// filedOutcome reads an outcome value; the R5 code system names the
// same codes.
func filedOutcome(p string) store.TokenValue {
	v := tokenValue(p)
	if v.System == systemAuditOutcomeR5 {
		v.System = systemAuditOutcome
	}
	return v
}
