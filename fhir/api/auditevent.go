package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// AuditEvent read and search (https://hl7.org/fhir/R4/auditevent.html):
// the audit trail as the AuditEvents carebridge exports to the EHR
// (audit.Event), found by id or by the R4 search parameters below.
// Reading the trail is audited like any other read.

// Code systems of AuditEvent's token parameters.
const (
	systemAuditAction     = "http://hl7.org/fhir/audit-event-action"
	systemAuditOutcome    = "http://hl7.org/fhir/audit-event-outcome"
	systemAuditOutcomeR5  = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
	defaultAuditSourceDev = "carebridge" // audit.Event's source Device when Source.Device is empty
)

// auditEventParams are the AuditEvent search parameters served.
var auditEventParams = []searchParam{
	{"_id", r4Params + "Resource-id", "token", "the logical id"},
	{"date", r4Params + "AuditEvent-date", "date", "when it was recorded; prefixes eq, gt, lt, ge, le, sa, eb"},
	{"patient", r4Params + "AuditEvent-patient", "reference", "the Patient the recorded action concerned"},
	{"agent", r4Params + "AuditEvent-agent", "reference", "who acted: their id (agent=ehr), or agent:identifier=" +
		audit.SystemActor + "<user|client|peer>|<id>; Device/carebridge is an agent of every event"},
	{"entity", r4Params + "AuditEvent-entity", "reference", "what was acted on (Type/id, the patient included), or entity:identifier=" +
		audit.SystemEntity + "|<id> for what is not a FHIR resource"},
	{"type", r4Params + "AuditEvent-type", "token", "DICOM 110100, 110106, 110107, 110114, or audit-event-type rest"},
	{"subtype", r4Params + "AuditEvent-subtype", "token", "a RESTful interaction (read, search-type …) or carebridge's action (" +
		audit.SystemAction + "|message.mapped)"},
	{"action", r4Params + "AuditEvent-action", "token", "C, R, U, D or E"},
	{"outcome", r4Params + "AuditEvent-outcome", "token", "0, 4, 8 or 12"},
}

// auditEventCapability is the CapabilityStatement.rest.resource entry of
// AuditEvent.
func (s *Server) auditEventCapability() map[string]any {
	params := make([]map[string]any, 0, len(auditEventParams))
	for _, p := range auditEventParams {
		params = append(params, map[string]any{"name": p.Name, "definition": p.Definition, "type": p.Type, "documentation": p.Doc})
	}
	doc := "carebridge's tamper-evident audit trail (IHE BALP), as exported to the EHR; " +
		"search needs system/AuditEvent.s, read system/AuditEvent.r, and both are audited"
	interactions := []map[string]any{{"code": "read"}, {"code": "vread", "documentation": "an AuditEvent never changes: its one version is 1"}, {"code": "search-type"}}
	if s.files() {
		doc += ". An Audit Record Repository (IHE ATNA) too: other systems file their AuditEvents with create " +
			"(system/AuditEvent.c), append only: no update, patch or delete, ever; each gets a new id, the filing is audited, " +
			"and read and search serve the filed ones with carebridge's own, by the same parameters (newest first by recorded)"
		interactions = append(interactions, map[string]any{"code": "create", "documentation": "append only: the AuditEvent is filed under a new id " +
			"(an id sent is ignored), version 1; no conditional create (If-None-Exist is refused)"})
	}
	return map[string]any{
		"type":          "AuditEvent",
		"documentation": doc,
		"interaction":   interactions,
		"searchParam":   params,
	}
}

// auditEventRoutes serves AuditEvent read and search, when the server
// has the audit trail (Config.AuditEvents), and create when it files
// other systems' AuditEvents too (Config.AuditImport); update, patch and
// delete are refused, append only.
func (s *Server) auditEventRoutes(g *gin.RouterGroup) {
	if s.cfg.AuditEvents == nil {
		return
	}
	g.GET("/AuditEvent", s.authorize("AuditEvent", access.Search, "search-type"), s.searchAuditEvents)
	g.POST("/AuditEvent/_search", s.authorize("AuditEvent", access.Search, "search-type"), s.searchAuditEvents)
	g.GET("/AuditEvent/:id", s.authorize("AuditEvent", access.Read, "read"), s.readAuditEvent)
	g.GET("/AuditEvent/:id/_history/:vid", s.authorize("AuditEvent", access.Read, "vread"), s.vreadAuditEvent)
	allowType := "GET"
	if s.files() {
		g.POST("/AuditEvent", s.authorize("AuditEvent", access.Create, "create"), s.createAuditEvent)
		allowType = "GET, POST"
	}
	g.PUT("/AuditEvent", s.appendOnly("update", allowType))
	g.PATCH("/AuditEvent", s.appendOnly("patch", allowType))
	g.DELETE("/AuditEvent", s.appendOnly("delete", allowType))
	g.PUT("/AuditEvent/:id", s.appendOnly("update", "GET"))
	g.PATCH("/AuditEvent/:id", s.appendOnly("patch", "GET"))
	g.DELETE("/AuditEvent/:id", s.appendOnly("delete", "GET"))
}

func (s *Server) readAuditEvent(c *gin.Context) { s.readAuditEventAs(c, "read") }

// vreadAuditEvent is GET /AuditEvent/{id}/_history/{vid}: an AuditEvent
// never changes, so its one version is 1 (the Location a create answers).
func (s *Server) vreadAuditEvent(c *gin.Context) {
	if c.Param("vid") != "1" {
		s.fail(c, http.StatusNotFound, problem{Expression: "vid", Code: "not-found", Details: "an AuditEvent has one version, 1: it is never changed"})
		return
	}
	s.readAuditEventAs(c, "vread")
}

// readAuditEventAs reads an AuditEvent, carebridge's own or one filed
// with it, audited as interaction.
func (s *Server) readAuditEventAs(c *gin.Context, interaction string) {
	id := c.Param("id")
	if !validID(id) {
		s.notFound(c, "AuditEvent", id)
		return
	}
	rows, err := s.cfg.AuditEvents.SearchAudit(c.Request.Context(), store.AuditQuery{EventIDs: []string{id}, Limit: 1})
	if err != nil {
		s.internal(c, "reading an AuditEvent", err)
		return
	}
	if len(rows) == 0 {
		if s.cfg.AuditImport == nil || !s.readFiled(c, id, interaction) {
			s.notFound(c, "AuditEvent", id)
		}
		return
	}
	_, body, err := s.auditEvent(rows[0])
	if err != nil {
		s.internal(c, "writing an AuditEvent", err)
		return
	}
	if err := s.record(c, interaction, rows[0].Patient, []string{"AuditEvent/" + id}); err != nil {
		s.internal(c, "auditing a read", err)
		return
	}
	answer(c, http.StatusOK, body)
}

// auditEvent is the AuditEvent of a stored record: its id and its JSON.
func (s *Server) auditEvent(row store.AuditRecord) (id string, body []byte, err error) {
	ev := audit.Event(audit.RecordFromRow(row), s.cfg.Source)
	body, err = ev.MarshalJSON()
	return ev.ID, body, err
}

func (s *Server) searchAuditEvents(c *gin.Context) {
	params, ok := s.searchParams(c)
	if !ok {
		return
	}
	sr, probs := parseAuditEventSearch(params, lenient(c.Request), s.base, s.cfg.Source.Device)
	if len(probs) > 0 {
		s.fail(c, http.StatusBadRequest, probs...)
		return
	}
	out := searchBundle{ResourceType: "Bundle", Type: "searchset"}
	total, hits, more, err := s.searchAuditHits(c.Request.Context(), sr)
	if err != nil {
		s.internal(c, "searching AuditEvents", err)
		return
	}
	out.Total = total
	entities := make([]string, 0, len(hits))
	for _, h := range hits {
		id, body, err := s.hitBody(h)
		if err != nil {
			s.internal(c, "writing an AuditEvent", err)
			return
		}
		ref := "AuditEvent/" + id
		out.Entry = append(out.Entry, bundleEntry{FullURL: s.base + "/" + ref, Resource: body, Search: bundleSearch{Mode: "match"}})
		entities = append(entities, ref)
	}
	if len(sr.Ignored) > 0 {
		b, _ := json.Marshal(outcome("warning", sr.Ignored...))
		out.Entry = append(out.Entry, bundleEntry{Resource: b, Search: bundleSearch{Mode: "outcome"}})
	}
	out.Link = s.pageLinks("AuditEvent", sr.Canonical, pageSpec{Count: sr.Count, CountOnly: sr.CountOnly}, sr.Query.Offset, more)
	if err := s.record(c, "search-type", sr.Patient, entities); err != nil {
		s.internal(c, "auditing a search", err)
		return
	}
	answer(c, http.StatusOK, out.encode())
}

// auditEventSearch is a parsed AuditEvent search.
type auditEventSearch struct {
	Query     store.AuditQuery
	Filed     store.FiledAuditQuery // the same search over filed AuditEvents (Offset and Limit unused)
	Count     int                   // page size
	CountOnly bool                  // _summary=count or _count=0
	NoTotal   bool                  // _total=none
	Patient   string
	Canonical url.Values
	Ignored   []problem // parameters left out under Prefer: handling=lenient
}

// parseAuditEventSearch reads the parameters of an AuditEvent search.
// base is the FHIR base URL, so that absolute references to this server
// are understood; device is the Device every AuditEvent names as an agent
// ("" for audit.Event's default). Every problem is returned, not only the
// first; with lenient, unknown parameters are set aside in Ignored.
//
// Repeated parameters are ANDed and comma-separated values ORed; type,
// subtype and action all narrow the actions searched for, and a search
// that nothing can match is one for an AuditEvent id nothing has.
func parseAuditEventSearch(params url.Values, lenient bool, base, device string) (auditEventSearch, []problem) {
	s := auditEventSearch{Count: defaultCount, Canonical: url.Values{}}
	if device == "" {
		device = defaultAuditSourceDev
	}
	var probs []problem
	bad := func(param string, code fhir.IssueCode, format string, args ...any) {
		probs = append(probs, problem{Expression: param, Code: code, Details: fmt.Sprintf(format, args...)})
	}
	if len(params) > maxSearchParams {
		bad("", fhir.CodeValue, "more than %d search parameters", maxSearchParams)
		return s, probs
	}
	q := &s.Query
	var ids, actions, patients, actors, entities, outcomes allowed
	entityValues := 0 // values of entity parameters so far
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, full := range names {
		values := params[full]
		name, modifier, _ := strings.Cut(full, ":")
		if slices.ContainsFunc(values, func(v string) bool { return len(v) > maxParamValue }) {
			bad(full, fhir.CodeValue, "a value is longer than %d characters", maxParamValue)
			continue
		}
		before := len(probs)
		noModifier := func() bool {
			if modifier != "" {
				bad(full, fhir.CodeNotSupported, "modifier :%s is not supported on %s", modifier, name)
				return false
			}
			return true
		}
		// each calls fn with the comma-separated values of every value
		// of the parameter; fn returns what they match, or an error.
		each := func(fn func(parts []string) ([]string, bool, error), set *allowed) {
			for _, v := range values {
				parts, err := splitOr(v)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				got, all, err := fn(parts)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				if !all {
					set.and(got)
				}
			}
		}
		switch name {
		case "_format":
			continue // content negotiation, not search
		case "_id":
			if noModifier() {
				each(nonEmpty, &ids)
			}
		case "date":
			if !noModifier() {
				break
			}
			for _, v := range values {
				bounds, err := parseDateSearch(v)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				q.At = append(q.At, bounds...)
			}
		case "patient":
			if modifier != "" && modifier != "Patient" {
				bad(full, fhir.CodeNotSupported, "modifier :%s is not supported on patient (only :Patient)", modifier)
				break
			}
			each(func(parts []string) ([]string, bool, error) {
				refs, err := references(parts, base, "Patient", []string{"Patient"})
				if len(refs) == 1 {
					s.Patient = refs[0]
				}
				return refs, false, err
			}, &patients)
		case "agent":
			switch modifier {
			case "":
				each(func(parts []string) ([]string, bool, error) { return agents(parts, base, device) }, &actors)
			case "identifier":
				each(agentIdentifiers, &actors)
			default:
				bad(full, fhir.CodeNotSupported, "modifier :%s is not supported on agent (only :identifier)", modifier)
			}
		case "entity":
			// A record has many entities, but AuditQuery.Entities is one
			// OR list: two entity constraints cannot be ANDed.
			if entityValues += len(values); entityValues > 1 {
				bad(full, fhir.CodeNotSupported, "entity may be given once (OR its values with commas)")
				break
			}
			switch {
			case modifier == "identifier":
				each(entityIdentifiers, &entities)
			case modifier == "" || resourceType(modifier):
				each(func(parts []string) ([]string, bool, error) {
					refs, err := references(parts, base, modifier, nil)
					if len(refs) == 1 && strings.HasPrefix(refs[0], "Patient/") && s.Patient == "" {
						s.Patient = refs[0] // the patient's record is an entity too
					}
					return refs, false, err
				}, &entities)
			default:
				bad(full, fhir.CodeNotSupported, "modifier :%s is not supported on entity (use :identifier or a resource type)", modifier)
			}
		case "type", "subtype", "action":
			if noModifier() {
				each(func(parts []string) ([]string, bool, error) { return actionsOf(name, parts) }, &actions)
			}
		case "outcome":
			if noModifier() {
				each(outcomeCodes, &outcomes)
			}
		case "_count":
			n, ok := countParam(values)
			if modifier != "" || !ok {
				bad(full, fhir.CodeValue, countProblem, maxCount)
				break
			}
			s.Count, s.CountOnly = n, s.CountOnly || n == 0
		case "_offset":
			n, ok := offsetParam(values)
			if modifier != "" || !ok {
				bad(full, fhir.CodeValue, offsetProblem, maxOffset)
				break
			}
			q.Offset = n
		case "_sort":
			switch v := last(values); {
			case modifier == "" && v == "date":
				q.Oldest = true
			case modifier == "" && v == "-date":
				q.Oldest = false
			default:
				bad(full, fhir.CodeNotSupported, "_sort takes date or -date (the default)")
			}
		case "_summary":
			var ok bool
			if s.CountOnly, ok = summaryParam(values); !ok || modifier != "" {
				bad(full, fhir.CodeNotSupported, "_summary takes count or false")
			}
		case "_total":
			var ok bool
			if s.NoTotal, ok = totalParam(values); !ok || modifier != "" {
				bad(full, fhir.CodeValue, "_total takes none, estimate or accurate")
			}
		default:
			if lenient {
				s.Ignored = append(s.Ignored, problem{Expression: full, Code: fhir.CodeNotSupported, Details: "unknown search parameter, ignored"})
				continue
			}
			bad(full, fhir.CodeNotSupported, "unknown search parameter for AuditEvent (see /fhir/metadata)")
		}
		if len(probs) == before && name != "_count" && name != "_offset" {
			s.Canonical[full] = values
		}
		if len(probs) == before {
			s.Filed.Tokens = append(s.Filed.Tokens, filedFilters(name, modifier, values, base)...)
		}
	}
	none := false // some constraint matches nothing
	for _, c := range []struct {
		set allowed
		dst *[]string
	}{{ids, &q.EventIDs}, {actions, &q.Actions}, {patients, &q.Patients}, {actors, &q.Actors}, {entities, &q.Entities}} {
		if c.set.given {
			*c.dst = c.set.values
			none = none || len(c.set.values) == 0
		}
	}
	if outcomes.given {
		for _, o := range outcomes.values {
			n, _ := strconv.Atoi(o)
			for v := n; v <= 255 && (v < n+4 || n == int(audit.OutcomeMajor)); v++ {
				q.Outcomes = append(q.Outcomes, uint8(v)) // the outcomes audit.Event shows as code n
			}
		}
		none = none || len(outcomes.values) == 0
	}
	if none {
		q.EventIDs = []string{noMatch}
	}
	s.Filed.At, s.Filed.Oldest = q.At, q.Oldest
	if ids.given {
		s.Filed.IDs = ids.values
		if len(ids.values) == 0 {
			s.Filed.IDs = []string{noMatch}
		}
	}
	return s, probs
}

// filedFilters are the constraints one parameter (name:modifier, once
// parsed without problems) puts on filed AuditEvents' tokens: one filter
// per value, each ORing its comma-separated parts. _id and date are
// taken from the native parse.
func filedFilters(name, modifier string, values []string, base string) []store.TokenFilter {
	var param string
	var value func(string) store.TokenValue
	switch {
	case name == "patient":
		param, value = store.FiledPatient, filedReference(base, "Patient")
	case name == "agent" && modifier == "identifier":
		param, value = store.FiledAgentIdentifier, tokenValue
	case name == "agent":
		param, value = store.FiledAgent, filedReference(base, "")
	case name == "entity" && modifier == "identifier":
		param, value = store.FiledEntityIdentifier, tokenValue
	case name == "entity":
		param, value = store.FiledEntity, filedReference(base, modifier)
	case name == "type":
		param, value = store.FiledType, tokenValue
	case name == "subtype":
		param, value = store.FiledSubtype, tokenValue
	case name == "action":
		param, value = store.FiledAction, tokenValue
	case name == "outcome":
		param, value = store.FiledOutcome, filedOutcome
	default:
		return nil
	}
	out := make([]store.TokenFilter, 0, len(values))
	for _, v := range values {
		out = append(out, filedFilter(param, v, value))
	}
	return out
}

// allowed is what one field of a record may be, once a parameter has
// constrained it.
type allowed struct {
	given  bool
	values []string
}

// and narrows a to the values also in vs: repeated parameters are ANDed,
// the comma-separated values of one ORed.
func (a *allowed) and(vs []string) {
	var keep []string
	for _, v := range vs {
		if (!a.given || slices.Contains(a.values, v)) && !slices.Contains(keep, v) {
			keep = append(keep, v)
		}
	}
	a.given, a.values = true, keep
}

func nonEmpty(parts []string) ([]string, bool, error) {
	for _, p := range parts {
		if p == "" {
			return nil, false, fmt.Errorf("an empty value")
		}
	}
	return parts, false, nil
}

// references reads reference values: "Type/id", an absolute URL to this
// server, or a bare id when typ names the type. types, when not nil, are
// the types they may point to.
func references(parts []string, base, typ string, types []string) ([]string, error) {
	refs := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimPrefix(p, strings.TrimRight(base, "/")+"/")
		t, id, hasType := strings.Cut(p, "/")
		if !hasType {
			if t, id = typ, p; t == "" {
				return nil, fmt.Errorf("%q needs its type (Type/id, or the :Type modifier)", p)
			}
		}
		switch {
		case !resourceType(t) || !validID(id):
			return nil, fmt.Errorf("%q is not a reference Type/id", p)
		case typ != "" && t != typ:
			return nil, fmt.Errorf("%q is not a reference to %s", p, typ)
		case types != nil && !slices.Contains(types, t):
			return nil, fmt.Errorf("%q is not a reference to %s", p, strings.Join(types, " or "))
		}
		refs = append(refs, t+"/"+id)
	}
	return refs, nil
}

// agents reads agent values: the id of who acted, as its AuditEvent
// identifies them; the Device that records is an agent of every event, so
// naming it matches all.
func agents(parts []string, base, device string) ([]string, bool, error) {
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimPrefix(p, strings.TrimRight(base, "/")+"/")
		switch p {
		case "":
			return nil, false, fmt.Errorf("an empty agent")
		case "Device/" + device:
			return nil, true, nil
		}
		out = append(out, p)
	}
	return out, false, nil
}

// agentIdentifiers reads agent:identifier values, system|id where the
// system is audit.SystemActor and the actor's kind; a bare id is any kind.
// carebridge itself acting (kind system) shows as the Device agent, not
// by identifier.
func agentIdentifiers(parts []string) ([]string, bool, error) {
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		system, id, hasSystem := strings.Cut(p, "|")
		if !hasSystem {
			system, id = "", system
		}
		if id == "" {
			return nil, false, fmt.Errorf("%q has no identifier value", p)
		}
		switch kind, ok := strings.CutPrefix(system, audit.SystemActor); {
		case !hasSystem:
		case ok && (kind == string(audit.ActorUser) || kind == string(audit.ActorClient) || kind == string(audit.ActorPeer)):
		default:
			continue // no agent has an identifier of this system
		}
		out = append(out, id)
	}
	return out, false, nil
}

// entityIdentifiers reads entity:identifier values: audit.SystemEntity|id,
// how an AuditEvent names what is not a FHIR resource.
func entityIdentifiers(parts []string) ([]string, bool, error) {
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		system, id, hasSystem := strings.Cut(p, "|")
		switch {
		case !hasSystem || id == "":
			return nil, false, fmt.Errorf("%q is not %s|<id>", p, audit.SystemEntity)
		case system == audit.SystemEntity:
			out = append(out, id)
		}
	}
	return out, false, nil
}

// actionsOf reads type, subtype or action values into the actions whose
// AuditEvents carry them.
func actionsOf(param string, parts []string) ([]string, bool, error) {
	var out []string
	for _, p := range parts {
		system, code, hasSystem := strings.Cut(p, "|")
		if !hasSystem {
			system, code = "", system
		}
		switch {
		case code == "" && (!hasSystem || system == ""):
			return nil, false, fmt.Errorf("%q has no code", p)
		case hasSystem && system == "":
			continue // every coding of an AuditEvent has a system
		}
		var got []string
		switch param {
		case "type":
			got = audit.ActionsOfType(system, code)
		case "subtype":
			if system == audit.SystemAction && code == "" {
				return nil, true, nil // every AuditEvent has its action as subtype
			}
			got = audit.ActionsOfSubtype(system, code)
		case "action":
			if system != "" && system != systemAuditAction {
				continue
			}
			if code == "" {
				return nil, true, nil
			}
			if !slices.Contains([]string{"C", "R", "U", "D", "E"}, code) {
				return nil, false, fmt.Errorf("%q is not one of C, R, U, D, E", code)
			}
			got = audit.ActionsOfAction(code)
		}
		for _, a := range got {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out, false, nil
}

// outcomeCodes reads outcome values: 0, 4, 8 or 12.
func outcomeCodes(parts []string) ([]string, bool, error) {
	var out []string
	for _, p := range parts {
		system, code, hasSystem := strings.Cut(p, "|")
		if !hasSystem {
			system, code = "", system
		}
		switch {
		case code == "" && hasSystem && (system == systemAuditOutcome || system == systemAuditOutcomeR5):
			return nil, true, nil
		case !slices.Contains([]string{"0", "4", "8", "12"}, code):
			return nil, false, fmt.Errorf("%q is not one of 0, 4, 8, 12", code)
		case hasSystem && system != systemAuditOutcome && system != systemAuditOutcomeR5:
			continue
		}
		if !slices.Contains(out, code) {
			out = append(out, code)
		}
	}
	return out, false, nil
}
