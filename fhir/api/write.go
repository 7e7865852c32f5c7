package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/store"
)

// Writes is what create, update, patch and history need of the store.
type Writes interface {
	CreateCommunication(ctx context.Context, row store.CommunicationRow, events ...store.Event) error
	PutCommunication(ctx context.Context, row store.CommunicationRow, events ...store.Event) error
	UpdateCommunication(ctx context.Context, row store.CommunicationRow, ifVersion int, events ...store.Event) (int, error)
	CommunicationVersion(ctx context.Context, id string, version int) (store.CommunicationRow, error)
	CommunicationVersions(ctx context.Context, id string) ([]store.Version, error)
}

// Sealer seals records (*secure.KeyRing).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
}

// EventMaker makes the pipeline's events that a write publishes in its own
// transaction: the announcement of a Communication to its recipients'
// delivery, and audit entries.
type EventMaker interface {
	Created(row store.CommunicationRow, correlation string) (store.Event, error)
	Audited(correlation string, entries ...audit.Entry) (store.Event, error)
}

// RecallEvents is what an EventMaker may also make: the event, published
// with a recall, that tells the recipients' open inbox sessions their
// message was withdrawn (bridge.RecalledEvent). An EventMaker without it
// publishes only the recall's audit entries.
type RecallEvents interface {
	Recalled(row store.CommunicationRow, correlation string) (store.Event, error)
}

// maxWriteRetries bounds how often an update without If-Match retries
// when another write moved the version meanwhile.
const maxWriteRetries = 3

// readBody reads a resource body: FHIR JSON, within the validator's size,
// not nested too deep.
func (s *Server) readBody(c *gin.Context, types ...string) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || !slices.Contains(types, mt) {
		s.fail(c, http.StatusUnsupportedMediaType, problem{Code: "not-supported", Details: "the body must be " + strings.Join(types, " or ")})
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, fhir.MaxResourceBytes+1))
	if err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: "the body could not be read"})
		return nil, false
	}
	if len(body) > fhir.MaxResourceBytes {
		s.fail(c, http.StatusRequestEntityTooLarge, problem{Code: "too-costly", Details: fmt.Sprintf("the body is larger than %d bytes", fhir.MaxResourceBytes)})
		return nil, false
	}
	if err := checkDepth(body); err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: err.Error()})
		return nil, false
	}
	return body, true
}

var resourceTypes = []string{"application/fhir+json", "application/json"}

// validationProblems turns the validator's findings ("error at "path":
// what" lines) into problems naming each element.
func validationProblems(err error) []problem {
	var ve *fhir.ValidationError
	if !errors.As(err, &ve) {
		return []problem{{Code: fhir.CodeInvalid, Details: err.Error()}}
	}
	var out []problem
	for _, line := range strings.Split(ve.Diagnostics, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		p := problem{Code: fhir.CodeInvalid, Details: line}
		if rest, ok := strings.CutPrefix(line, "error at \""); ok {
			if path, what, ok := strings.Cut(rest, "\": "); ok {
				p.Expression, p.Details = path, what
			}
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		out = append(out, problem{Code: fhir.CodeInvalid, Details: "not valid FHIR R4 JSON"})
	}
	// The validator reports in no fixed order: the same body gets the
	// same answer.
	slices.SortStableFunc(out, func(a, b problem) int { return strings.Compare(a.Expression, b.Expression) })
	return out
}

// communicationFrom checks a Communication a client sent and makes its
// stored row: valid R4 (every problem named), of the right type, indexed
// within limits, sealed. id is the id it is stored under.
func (s *Server) communicationFrom(c *gin.Context, body []byte, id string, version int, now time.Time) (store.CommunicationRow, []byte, bool) {
	stored, ok := s.validBody(c, body, "Communication", id, version, now)
	if !ok {
		return store.CommunicationRow{}, nil, false
	}
	var comm fhir.Communication
	if err := json.Unmarshal(stored, &comm); err != nil {
		s.fail(c, http.StatusUnprocessableEntity, problem{Code: fhir.CodeInvalid, Details: "the Communication cannot be read"})
		return store.CommunicationRow{}, nil, false
	}
	row, err := index.Communication(&comm)
	if err != nil {
		s.fail(c, http.StatusUnprocessableEntity, problem{Code: "too-costly", Details: err.Error()})
		return store.CommunicationRow{}, nil, false
	}
	row.ID, row.Identifier, row.Version, row.Updated = id, "api^"+id, version, now
	if row.Sealed, err = s.cfg.Sealer.Seal(stored, []byte("Communication/"+id)); err != nil {
		s.internal(c, "sealing a Communication", err)
		return store.CommunicationRow{}, nil, false
	}
	return row, stored, true
}

// validBody checks a resource a client sent as typ and makes the form it
// is stored in: of that type, with the id and version meta the server
// gives it, valid R4 (every problem named). When not ok, the request has
// been answered.
func (s *Server) validBody(c *gin.Context, body []byte, typ, id string, version int, now time.Time) ([]byte, bool) {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: "the body is not a JSON object"})
		return nil, false
	}
	if head.ResourceType != typ {
		article := "a "
		if strings.ContainsRune("AEIOU", rune(typ[0])) {
			article = "an "
		}
		s.fail(c, http.StatusBadRequest, problem{Expression: "resourceType", Code: fhir.CodeInvalid, Details: "the body must be " + article + typ})
		return nil, false
	}
	body, err := withoutVersionMeta(body)
	if err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: err.Error()})
		return nil, false
	}
	stored, err := withMeta(body, id, version, now)
	if err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: err.Error()})
		return nil, false
	}
	if err := s.cfg.Validator.Validate(stored); err != nil {
		if errors.Is(err, fhir.ErrTooLarge) {
			s.fail(c, http.StatusRequestEntityTooLarge, problem{Code: "too-costly", Details: err.Error()})
		} else {
			s.fail(c, http.StatusUnprocessableEntity, validationProblems(err)...)
		}
		return nil, false
	}
	return stored, true
}

// writeFlags say what else a write's audit entries must tell.
type writeFlags struct {
	// breakGlass: a user could make the write only by breaking the glass
	// (the Communication, or the one it answers, is addressed to none of
	// their recipients); its entries carry breakGlassEntity.
	breakGlass bool
	// recalled: the write recalls the Communication (status
	// entered-in-error); an entry of its own, actionRecalled, says so,
	// and recallTo (its recipients before and after) are told when the
	// EventMaker makes RecallEvents.
	recalled bool
	recallTo []string
}

// writeEvents are what a write publishes with itself: its audit entries
// and, for new recipients, the announcement that delivers it to them
// (none for a Communication entered in error: it is not delivered).
func (s *Server) writeEvents(c *gin.Context, interaction string, row store.CommunicationRow, newRecipients []string, flags writeFlags) ([]store.Event, error) {
	corr := c.GetString(keyRequestID)
	p := c.MustGet(keyPrincipal)
	entities := []string{"Communication/" + row.ID}
	if flags.breakGlass {
		entities = append(entities, breakGlassEntity)
	}
	entry := audit.Entry{At: s.cfg.Now().UTC(), Actor: actorOf(c, p.(access.Principal)), Action: "rest." + interaction,
		Outcome: audit.OutcomeSuccess, Correlation: corr, Entities: entities, Patient: patientOf(row.Subject)}
	entries := []audit.Entry{entry}
	if flags.recalled {
		recall := entry
		recall.Action, recall.Entities = actionRecalled, slices.Clone(entities)
		entries = append(entries, recall)
	}
	ev, err := s.cfg.Events.Audited(corr, entries...)
	if err != nil {
		return nil, err
	}
	events := []store.Event{ev}
	if r, ok := s.cfg.Events.(RecallEvents); ok && flags.recalled {
		told := row
		told.Recipients = flags.recallTo
		ev, err := r.Recalled(told, corr)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	if len(newRecipients) > 0 && row.Status != store.StatusEnteredInError {
		announce := row
		announce.Recipients = newRecipients
		created, err := s.cfg.Events.Created(announce, corr)
		if err != nil {
			return nil, err
		}
		events = append(events, created)
	}
	return events, nil
}

func patientOf(ref string) string {
	if strings.HasPrefix(ref, "Patient/") {
		return ref
	}
	return ""
}

// answerWrite answers a create or update: the resource (or less, as
// Prefer: return= asks), its ETag, Last-Modified and Location.
func (s *Server) answerWrite(c *gin.Context, status int, id string, version int, updated time.Time, body []byte) {
	c.Header("ETag", etag(version))
	c.Header("Last-Modified", updated.UTC().Format(http.TimeFormat))
	c.Header("Location", s.base+"/Communication/"+id+"/_history/"+strconv.Itoa(version))
	switch prefer(c.Request, "return") {
	case "minimal":
		c.Status(status)
	case "OperationOutcome":
		b, _ := json.Marshal(outcome("information", problem{Code: "informational", Details: "Communication/" + id + " version " + strconv.Itoa(version) + " stored"}))
		answer(c, status, b)
	default:
		answer(c, status, body)
	}
}

// prefer is the value of a Prefer header's name=value preference.
func prefer(r *http.Request, name string) string {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ";") {
			if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), name) {
				return strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	return ""
}

// createCommunication is POST /Communication: a new id, version 1; with
// If-None-Exist, nothing new when a Communication matches that search.
func (s *Server) createCommunication(c *gin.Context) {
	body, ok := s.readBody(c, resourceTypes...)
	if !ok {
		return
	}
	if cond := c.GetHeader("If-None-Exist"); cond != "" {
		params, err := url.ParseQuery(strings.TrimPrefix(cond, "Communication?"))
		if err != nil {
			s.fail(c, http.StatusBadRequest, problem{Expression: "If-None-Exist", Code: "structure", Details: "not a search query"})
			return
		}
		sr, probs := parseCommunicationSearch(params, false, s.base)
		if len(probs) > 0 {
			for i := range probs {
				probs[i].Expression = "If-None-Exist " + probs[i].Expression
			}
			s.fail(c, http.StatusBadRequest, probs...)
			return
		}
		q := sr.Query
		q.Limit, q.Offset = 2, 0
		found, err := s.cfg.Store.SearchCommunications(c.Request.Context(), q)
		if err != nil {
			s.internal(c, "searching for If-None-Exist", err)
			return
		}
		switch len(found) {
		case 0:
		case 1:
			s.answerExisting(c, found[0])
			return
		default:
			s.fail(c, http.StatusPreconditionFailed, problem{Expression: "If-None-Exist", Code: "duplicate", Details: "more than one Communication matches"})
			return
		}
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	s.create(c, body, uuid.NewString(), now, store.MethodPost)
}

// answerExisting answers a conditional create that found its match: 200
// with the stored resource, nothing written.
func (s *Server) answerExisting(c *gin.Context, row store.CommunicationRow) {
	breakGlass, ok := s.mayRead(c, "read", row)
	if !ok {
		return
	}
	body, err := s.view(c, row)
	if err != nil {
		s.internal(c, "opening a Communication", err)
		return
	}
	if err := s.recordAs(c, "read", row.Subject, []string{"Communication/" + row.ID}, breakGlass); err != nil {
		s.internal(c, "auditing a read", err)
		return
	}
	s.answerWrite(c, http.StatusOK, row.ID, max(row.Version, 1), row.Updated, body)
}

// create stores a new Communication as version 1 of id, written by
// method: POST, or PUT (update as create).
func (s *Server) create(c *gin.Context, body []byte, id string, now time.Time, method store.Method) {
	row, stored, ok := s.communicationFrom(c, body, id, 1, now)
	if !ok {
		return
	}
	if row, stored, ok = s.sentByUser(c, row, stored, id, now); !ok {
		return
	}
	row, stored, breakGlass, ok := s.threaded(c, "create", row, stored, id, 1, now)
	if !ok {
		return
	}
	aboutBreakGlass, ok := s.mayWriteAbout(c, "create", row.Subject, "")
	if !ok {
		return
	}
	breakGlass = breakGlass || aboutBreakGlass
	events, err := s.writeEvents(c, "create", row, row.Recipients, writeFlags{breakGlass: breakGlass})
	if err != nil {
		s.internal(c, "making a create's events", err)
		return
	}
	write := s.cfg.Writes.CreateCommunication
	if method == store.MethodPut {
		write = s.cfg.Writes.PutCommunication
	}
	err = write(c.Request.Context(), row, events...)
	if errors.Is(err, store.ErrConflict) {
		s.fail(c, http.StatusConflict, problem{Code: "conflict", Details: "Communication/" + id + " exists"})
		return
	}
	if err != nil {
		s.internal(c, "creating a Communication", err)
		return
	}
	s.answerWrite(c, http.StatusCreated, id, 1, now, stored)
}

// updateCommunication is PUT /Communication/{id}: the next version, once
// If-Match (when given) names the current one; an id not known yet is
// created with it.
func (s *Server) updateCommunication(c *gin.Context) {
	id := c.Param("id")
	if !validID(id) {
		s.fail(c, http.StatusBadRequest, problem{Expression: "id", Code: fhir.CodeValue, Details: "not a FHIR id"})
		return
	}
	body, ok := s.readBody(c, resourceTypes...)
	if !ok {
		return
	}
	var head struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &head) != nil || head.ID != id {
		s.fail(c, http.StatusBadRequest, problem{Expression: "Communication.id", Code: fhir.CodeValue, Details: "the body's id must be the id in the URL"})
		return
	}
	s.update(c, id, func(context.Context, store.CommunicationRow, []byte) ([]byte, bool) { return body, true })
}

// update writes the next version of id, made by next from the current
// one, following If-Match or retrying when another write got there first.
func (s *Server) update(c *gin.Context, id string, next func(ctx context.Context, cur store.CommunicationRow, body []byte) ([]byte, bool)) {
	ctx := c.Request.Context()
	ifMatch := 0
	if h := c.GetHeader("If-Match"); h != "" {
		v, ok := parseETag(h)
		if !ok {
			s.fail(c, http.StatusBadRequest, problem{Expression: "If-Match", Code: fhir.CodeValue, Details: `If-Match must be a version ETag such as W/"3"`})
			return
		}
		ifMatch = v
	}
	interaction := "update"
	if c.Request.Method == http.MethodPatch {
		interaction = "patch"
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.cfg.Store.GetCommunication(ctx, id)
		if isNotFound(err) {
			if ifMatch > 0 || c.Request.Method == http.MethodPatch {
				s.notFound(c, "Communication", id)
				return
			}
			body, ok := next(ctx, store.CommunicationRow{}, nil)
			if ok {
				s.create(c, body, id, s.cfg.Now().UTC().Truncate(time.Microsecond), store.MethodPut)
			}
			return
		}
		if err != nil {
			s.internal(c, "reading a Communication", err)
			return
		}
		breakGlass, ok := s.mayRead(c, interaction, cur)
		if !ok {
			return
		}
		if cur.Status == store.StatusEnteredInError {
			s.refuseRecalled(c, id)
			return
		}
		version := max(cur.Version, 1)
		if ifMatch > 0 && ifMatch != version {
			s.fail(c, http.StatusPreconditionFailed, problem{Expression: "If-Match", Code: "conflict", Details: fmt.Sprintf("version %d is not the current one (%d)", ifMatch, version)})
			return
		}
		curBody, err := s.open(cur)
		if err != nil {
			s.internal(c, "opening a Communication", err)
			return
		}
		body, ok := next(ctx, cur, curBody)
		if !ok {
			return
		}
		now := s.cfg.Now().UTC().Truncate(time.Microsecond)
		row, stored, ok := s.communicationFrom(c, body, id, version+1, now)
		if !ok {
			return
		}
		row.Identifier = cur.Identifier
		flags := writeFlags{breakGlass: breakGlass, recalled: row.Status == store.StatusEnteredInError}
		if flags.recalled && !s.mayRecall(c, interaction, cur) {
			return
		}
		row, stored, replyBreakGlass, ok := s.threaded(c, interaction, row, stored, id, version+1, now)
		if !ok {
			return
		}
		aboutBreakGlass, ok := s.mayWriteAbout(c, interaction, row.Subject, cur.Subject)
		if !ok {
			return
		}
		flags.breakGlass = flags.breakGlass || replyBreakGlass || aboutBreakGlass
		var added []string
		for _, r := range row.Recipients {
			if !slices.Contains(cur.Recipients, r) {
				added = append(added, r)
			}
		}
		if flags.recalled {
			flags.recallTo = append(slices.Clone(cur.Recipients), added...)
		}
		events, err := s.writeEvents(c, interaction, row, added, flags)
		if err != nil {
			s.internal(c, "making an update's events", err)
			return
		}
		_, err = s.cfg.Writes.UpdateCommunication(ctx, row, version, events...)
		if errors.Is(err, store.ErrVersionConflict) {
			if ifMatch == 0 && attempt < maxWriteRetries {
				continue
			}
			s.fail(c, http.StatusPreconditionFailed, problem{Expression: "If-Match", Code: "conflict", Details: "another write changed the Communication meanwhile"})
			return
		}
		if err != nil {
			s.internal(c, "updating a Communication", err)
			return
		}
		s.answerWrite(c, http.StatusOK, id, version+1, now, stored)
		return
	}
}

// patchCommunication is PATCH /Communication/{id} with a JSON Patch
// (RFC 6902); the result must be a valid Communication with the same id.
func (s *Server) patchCommunication(c *gin.Context) {
	id := c.Param("id")
	if !validID(id) {
		s.notFound(c, "Communication", id)
		return
	}
	raw, ok := s.readBody(c, "application/json-patch+json")
	if !ok {
		return
	}
	patch, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: "the body is not a JSON Patch document"})
		return
	}
	s.update(c, id, func(_ context.Context, _ store.CommunicationRow, cur []byte) ([]byte, bool) {
		out, err := patch.ApplyWithOptions(cur, &jsonpatch.ApplyOptions{SupportNegativeIndices: false, AccumulatedCopySizeLimit: fhir.MaxResourceBytes, EnsurePathExistsOnAdd: false})
		if err != nil {
			s.fail(c, http.StatusUnprocessableEntity, problem{Code: "processing", Details: "the patch does not apply: " + sanitizePatchError(err)})
			return nil, false
		}
		var head struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(out, &head) != nil || head.ID != id {
			s.fail(c, http.StatusUnprocessableEntity, problem{Expression: "Communication.id", Code: fhir.CodeValue, Details: "a patch may not change the id"})
			return nil, false
		}
		return out, true
	})
}

// sanitizePatchError keeps the patch library's reason but not the values
// it may quote.
func sanitizePatchError(err error) string {
	msg := err.Error()
	if i := strings.IndexAny(msg, ":"); i > 0 {
		msg = msg[:i]
	}
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

// view opens a stored Communication for its reader: with its id and
// version meta, cut to the minimum necessary for the reader's role.
func (s *Server) view(c *gin.Context, row store.CommunicationRow) ([]byte, error) {
	body, err := s.open(row)
	if err != nil {
		return nil, err
	}
	p, _ := c.Get(keyPrincipal)
	pr, _ := p.(access.Principal)
	keep := pr.CommunicationFields()
	if keep == nil {
		return body, nil
	}
	if body, err = redact(body, keep); err != nil || row.Encounter == "" {
		return body, err
	}
	where, err := s.locationOf(c, row.Encounter)
	if err != nil || where == nil {
		return body, err
	}
	return withMembers(body, []member{{"about", where}})
}

// open opens a stored Communication and sets its id and version meta.
func (s *Server) open(row store.CommunicationRow) ([]byte, error) {
	body, err := s.cfg.Keys.Open(row.Sealed, []byte("Communication/"+row.ID))
	if err != nil {
		return nil, fmt.Errorf("opening Communication/%s: %w", row.ID, err)
	}
	updated := row.Updated
	if updated.IsZero() {
		updated = row.Sent
	}
	return withMeta(body, row.ID, max(row.Version, 1), updated)
}

// vreadCommunication is GET /Communication/{id}/_history/{vid}.
func (s *Server) vreadCommunication(c *gin.Context) {
	id, vid := c.Param("id"), c.Param("vid")
	v, err := strconv.Atoi(vid)
	if !validID(id) || err != nil || v < 1 {
		s.notFound(c, "Communication", id+"/_history/"+vid)
		return
	}
	row, err := s.cfg.Writes.CommunicationVersion(c.Request.Context(), id, v)
	if isNotFound(err) {
		s.notFound(c, "Communication", id+"/_history/"+vid)
		return
	}
	if err != nil {
		s.internal(c, "reading a Communication version", err)
		return
	}
	s.answerRow(c, "vread", row)
}

// answerRow answers one Communication with its ETag, audited.
// A user sees only what mayRead lets them.
func (s *Server) answerRow(c *gin.Context, interaction string, row store.CommunicationRow) {
	breakGlass, ok := s.mayRead(c, interaction, row)
	if !ok {
		return
	}
	body, err := s.view(c, row)
	if err != nil {
		s.internal(c, "opening a Communication", err)
		return
	}
	if err := s.recordAs(c, interaction, row.Subject, []string{"Communication/" + row.ID}, breakGlass); err != nil {
		s.internal(c, "auditing a read", err)
		return
	}
	c.Header("ETag", etag(max(row.Version, 1)))
	answer(c, http.StatusOK, body)
}

type historyEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
	Response struct {
		Status       string `json:"status"`
		Etag         string `json:"etag"`
		LastModified string `json:"lastModified"`
	} `json:"response"`
}

// historyCommunication is GET /Communication/{id}/_history: every version,
// newest first, as a history Bundle.
func (s *Server) historyCommunication(c *gin.Context) {
	id := c.Param("id")
	if !validID(id) {
		s.notFound(c, "Communication", id)
		return
	}
	rows, err := s.cfg.Writes.CommunicationVersions(c.Request.Context(), id)
	if isNotFound(err) || (err == nil && len(rows) == 0) {
		s.notFound(c, "Communication", id)
		return
	}
	if err != nil {
		s.internal(c, "reading a Communication's history", err)
		return
	}
	// Whether a user may see the history is the current version's
	// recipients' call.
	breakGlass, ok := s.mayRead(c, "history-instance", rows[0].CommunicationRow)
	if !ok {
		return
	}
	out := struct {
		ResourceType string         `json:"resourceType"`
		Type         string         `json:"type"`
		Total        int            `json:"total"`
		Link         []bundleLink   `json:"link"`
		Entry        []historyEntry `json:"entry"`
	}{ResourceType: "Bundle", Type: "history", Total: len(rows), Link: []bundleLink{{Relation: "self", URL: s.base + "/Communication/" + id + "/_history"}}}
	for _, row := range rows {
		body, err := s.view(c, row.CommunicationRow)
		if err != nil {
			s.internal(c, "opening a Communication version", err)
			return
		}
		v := max(row.Version, 1)
		e := historyEntry{FullURL: s.base + "/Communication/" + id, Resource: body}
		// A version 1 is a create: by POST to the type, or by PUT (update
		// as create) to the id, as the store remembers.
		e.Request.Method, e.Request.URL = http.MethodPut, "Communication/"+id
		e.Response.Status = "200 OK"
		if v == 1 {
			e.Response.Status = "201 Created"
			if row.Method != store.MethodPut {
				e.Request.Method, e.Request.URL = http.MethodPost, "Communication"
			}
		}
		updated := row.Updated
		if updated.IsZero() {
			updated = row.Sent
		}
		e.Response.Etag, e.Response.LastModified = etag(v), updated.UTC().Format(time.RFC3339Nano)
		out.Entry = append(out.Entry, e)
	}
	if err := s.recordAs(c, "history-instance", rows[0].Subject, []string{"Communication/" + id}, breakGlass); err != nil {
		s.internal(c, "auditing a history read", err)
		return
	}
	b, err := marshalJSON(out)
	if err != nil {
		s.internal(c, "writing a history Bundle", err)
		return
	}
	answer(c, http.StatusOK, b)
}
