package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// resourceRoutes serves the resources mapping stored for Communications
// to point at: read, and search over their index.
func (s *Server) resourceRoutes(f *gin.RouterGroup) {
	for _, typ := range mappedTypes {
		f.GET("/"+typ, s.authorize(typ, access.Search, "search-type"), s.searchResources(typ))
		f.POST("/"+typ+"/_search", s.authorize(typ, access.Search, "search-type"), s.searchResources(typ))
		f.GET("/"+typ+"/:id", s.authorize(typ, access.Read, "read"), s.readResource(typ))
	}
}

// resourceCapabilities are the CapabilityStatement entries of the mapped
// resources.
func (s *Server) resourceCapabilities() []map[string]any {
	var out []map[string]any
	for _, typ := range mappedTypes {
		spec := resourceSpecs[typ]
		params := make([]map[string]any, 0, len(spec.params))
		for _, p := range spec.params {
			params = append(params, map[string]any{"name": p.Name, "definition": p.Definition, "type": p.Type, "documentation": p.Doc})
		}
		out = append(out, map[string]any{"type": typ,
			"documentation": "stored by mapping for Communications to refer to; read needs system/" + typ + ".r, search system/" + typ + ".s; " +
				"a user limited to their recipients finds only the " + typ + " resources of the patients their Communications are about",
			"interaction": []map[string]any{{"code": "read"}, {"code": "search-type"}},
			"searchParam": params})
	}
	return out
}

// resourceSpec is how one mapped type is searched.
type resourceSpec struct {
	params  []searchParam // as the CapabilityStatement lists them
	status  tokenSpec     // the system and codes of status; no codes: no status
	subject []string      // the types subject may point to; nil: no subject or patient
	date    string        // the name of its date parameter, "" for none
}

// Code systems of the mapped resources' status.
const (
	systemEncounterStatus   = "http://hl7.org/fhir/encounter-status"
	systemRequestStatus     = "http://hl7.org/fhir/request-status"
	systemObservationStatus = "http://hl7.org/fhir/observation-status"
)

const (
	docID         = "the logical id"
	docIdentifier = "any identifier (system|value, value, system|); :not and :missing accepted"
	docPatient    = "the Patient it is about (Patient/id or id)"
	docDate       = "prefixes eq (within the value), ne, gt, lt, ge, le (overlapping or beyond it), sa, eb; " +
		"a value stands for the range its precision gives"
)

var resourceSpecs = map[string]resourceSpec{
	"Patient": {params: []searchParam{
		{"_id", r4Params + "Resource-id", "token", docID},
		{"identifier", r4Params + "Patient-identifier", "token", docIdentifier + ", such as the MRN"},
	}},
	"Encounter": {subject: []string{"Patient", "Group"}, date: "date",
		status: tokenSpec{system: systemEncounterStatus, codes: []string{"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}},
		params: []searchParam{
			{"_id", r4Params + "Resource-id", "token", docID},
			{"identifier", r4Params + "clinical-identifier", "token", docIdentifier + ", such as the visit number"},
			{"patient", r4Params + "clinical-patient", "reference", docPatient},
			{"subject", r4Params + "Encounter-subject", "reference", "the Patient (or Group) it is about"},
			{"status", r4Params + "Encounter-status", "token", "planned, in-progress, finished …; :not and :missing accepted"},
			{"date", r4Params + "clinical-date", "date", "its period, an open end ongoing; " + docDate},
		}},
	"ServiceRequest": {subject: []string{"Patient", "Group", "Location", "Device"}, date: "authored",
		status: tokenSpec{system: systemRequestStatus, codes: []string{"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}},
		params: []searchParam{
			{"_id", r4Params + "Resource-id", "token", docID},
			{"identifier", r4Params + "clinical-identifier", "token", docIdentifier + ", such as the placer or filler order number"},
			{"patient", r4Params + "clinical-patient", "reference", docPatient},
			{"subject", r4Params + "ServiceRequest-subject", "reference", "the Patient (or Group, Location, Device) it is for"},
			{"status", r4Params + "ServiceRequest-status", "token", "active, completed, revoked …; :not and :missing accepted"},
			{"authored", r4Params + "ServiceRequest-authored", "date", "when it was ordered (authoredOn); " + docDate},
		}},
	"Observation": {subject: []string{"Patient", "Group", "Device", "Location"}, date: "date",
		status: tokenSpec{system: systemObservationStatus, codes: []string{"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}},
		params: []searchParam{
			{"_id", r4Params + "Resource-id", "token", docID},
			{"identifier", r4Params + "clinical-identifier", "token", docIdentifier},
			{"patient", r4Params + "clinical-patient", "reference", docPatient},
			{"subject", r4Params + "Observation-subject", "reference", "the Patient (or Group, Device, Location) it is about"},
			{"status", r4Params + "Observation-status", "token", "final, preliminary, amended …; :not and :missing accepted"},
			{"date", r4Params + "clinical-date", "date", "when it was made (effective[x]: dateTime, Period or instant); " + docDate},
		}},
}

// resourceSearch is a parsed search of a mapped type.
type resourceSearch struct {
	Query     store.ResourceQuery
	Count     int  // page size
	CountOnly bool // _summary=count or _count=0
	NoTotal   bool // _total=none
	Patient   string
	Canonical url.Values
	Ignored   []problem
}

// parseResourceSearch reads the parameters of a search of typ (one of
// mappedTypes): every problem, not only the first; with lenient, unknown
// parameters are set aside in Ignored.
func parseResourceSearch(typ string, params url.Values, lenient bool, base string) (resourceSearch, []problem) {
	spec := resourceSpecs[typ]
	s := resourceSearch{Count: defaultCount, Canonical: url.Values{}}
	s.Query.Type = typ
	names, probs := searchNames(params)
	bad := func(param string, code fhir.IssueCode, format string, args ...any) {
		probs = append(probs, problem{Expression: param, Code: code, Details: fmt.Sprintf(format, args...)})
	}
	for _, full := range names {
		values := params[full]
		name, modifier, _ := strings.Cut(full, ":")
		before := len(probs)
		switch {
		case name == "_format":
			continue // content negotiation, not search
		case name == "_id":
			for _, v := range values {
				if err := applyToken(&s.Query.ID, tokenSpec{}, modifier, v); err != nil {
					bad(full, fhir.CodeValue, "%s", err)
				}
			}
			if typ == "Patient" && len(s.Query.ID.Any) == 1 && s.Query.ID.Any[0] != noMatch {
				s.Patient = "Patient/" + s.Query.ID.Any[0]
			}
		case name == "identifier":
			for _, v := range values {
				f, err := tokenFilter(store.TokenIdentifier, modifier, v)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				s.Query.Tokens = append(s.Query.Tokens, f)
			}
		case name == "status" && spec.status.codes != nil:
			for _, v := range values {
				if err := applyToken(&s.Query.Status, spec.status, modifier, v); err != nil {
					bad(full, fhir.CodeValue, "%s", err)
				}
			}
		case (name == "patient" || name == "subject") && spec.subject != nil:
			ref := referenceSpec{types: spec.subject}
			if name == "patient" {
				ref.types = []string{"Patient"}
			}
			for _, v := range values {
				refs, err := applyReference(&s.Query.Subject, ref, name, modifier, v, base)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
				}
				if len(refs) == 1 && strings.HasPrefix(refs[0], "Patient/") {
					s.Patient = refs[0]
				}
			}
		case name == spec.date && spec.date != "":
			if modifier != "" {
				bad(full, fhir.CodeNotSupported, "modifier :%s is not supported on a date parameter", modifier)
				break
			}
			for _, v := range values {
				m, err := parseDateMatch(v)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				s.Query.Dates = append(s.Query.Dates, m)
			}
		case name == "_count" && modifier == "":
			n, ok := countParam(values)
			if !ok {
				bad(full, fhir.CodeValue, countProblem, maxCount)
				break
			}
			s.Count, s.CountOnly = n, s.CountOnly || n == 0
		case name == "_offset" && modifier == "":
			n, ok := offsetParam(values)
			if !ok {
				bad(full, fhir.CodeValue, offsetProblem, maxOffset)
				break
			}
			s.Query.Offset = n
		case name == "_sort" && modifier == "":
			switch v := last(values); {
			case v == "_id":
				s.Query.Sort = store.ResourceSortByID
			case spec.date != "" && v == spec.date:
				s.Query.Sort = store.ResourceSortByDate
			case spec.date != "" && v == "-"+spec.date:
				s.Query.Sort = store.ResourceSortByDateDesc
			case spec.date != "":
				bad(full, fhir.CodeNotSupported, "_sort takes _id, %s or -%s", spec.date, spec.date)
			default:
				bad(full, fhir.CodeNotSupported, "_sort takes _id")
			}
		case name == "_summary" && modifier == "":
			var ok bool
			if s.CountOnly, ok = summaryParam(values); !ok {
				bad(full, fhir.CodeNotSupported, "_summary takes count or false")
			}
		case name == "_total" && modifier == "":
			var ok bool
			if s.NoTotal, ok = totalParam(values); !ok {
				bad(full, fhir.CodeValue, "_total takes none, estimate or accurate")
			}
		default:
			if lenient {
				s.Ignored = append(s.Ignored, problem{Expression: full, Code: fhir.CodeNotSupported, Details: "unknown search parameter, ignored"})
				continue
			}
			bad(full, fhir.CodeNotSupported, "unknown search parameter for %s (see /fhir/metadata)", typ)
		}
		if len(probs) == before && name != "_count" && name != "_offset" {
			s.Canonical[full] = values
		}
	}
	return s, probs
}

// parseDateMatch reads a date parameter of a mapped resource: an optional
// prefix (eq, ne, gt, lt, ge, le, sa, eb) and a date, dateTime or
// instant, whose precision sets the range it stands for (dateRange).
func parseDateMatch(v string) (store.DateMatch, error) {
	p, v := splitDatePrefix(v, string(store.DateEq))
	prefix := store.DatePrefix(p)
	switch prefix {
	case store.DateEq, store.DateNe, store.DateGt, store.DateLt, store.DateGe, store.DateLe, store.DateSa, store.DateEb:
	case "ap":
		return store.DateMatch{}, fmt.Errorf("the prefix ap is not supported (use eq, ne, gt, lt, ge, le, sa or eb)")
	default:
		return store.DateMatch{}, fmt.Errorf("%q is not a date prefix", prefix)
	}
	start, end, err := dateRange(v)
	if err != nil {
		return store.DateMatch{}, err
	}
	return store.DateMatch{Prefix: prefix, Start: start, End: end}, nil
}

// searchResources answers a search of typ over the index of what mapping
// stored. A user limited to their recipients finds only the resources of
// the patients their Communications are about (in the query, so that the
// pages and the total agree); under break-glass all, flagged in the audit
// trail.
func (s *Server) searchResources(typ string) gin.HandlerFunc {
	return func(c *gin.Context) {
		params, ok := s.searchParams(c)
		if !ok {
			return
		}
		sr, probs := parseResourceSearch(typ, params, lenient(c.Request), s.base)
		if len(probs) > 0 {
			s.fail(c, http.StatusBadRequest, probs...)
			return
		}
		ctx := c.Request.Context()
		scope := s.communicationScope(c)
		if !scope.All {
			sr.Query.Limited, sr.Query.SeenBy = true, scope.Recipients
		}
		sized := func(n int) store.ResourceQuery { q := sr.Query; q.Limit = n; return q }
		ps := pageSpec{Count: sr.Count, CountOnly: sr.CountOnly, NoTotal: sr.NoTotal}
		total, rows, more, err := searchPage(ctx, ps, sr.Query.Offset, sized, s.cfg.Store.CountResources, s.cfg.Store.SearchResources)
		if err != nil {
			s.internal(c, "searching "+typ, err)
			return
		}
		out := searchBundle{ResourceType: "Bundle", Type: "searchset", Total: total}
		entities := make([]string, 0, len(rows))
		for _, r := range rows {
			ref := r.Type + "/" + r.ID
			body, err := s.cfg.Keys.Open(r.Sealed, []byte(ref))
			if err != nil {
				s.internal(c, "opening a resource", fmt.Errorf("%s: %w", ref, err))
				return
			}
			out.Entry = append(out.Entry, bundleEntry{FullURL: s.base + "/" + ref, Resource: body, Search: bundleSearch{Mode: "match"}})
			entities = append(entities, ref)
		}
		if len(sr.Ignored) > 0 {
			b, _ := json.Marshal(outcome("warning", sr.Ignored...))
			out.Entry = append(out.Entry, bundleEntry{Resource: b, Search: bundleSearch{Mode: "outcome"}})
		}
		out.Link = s.pageLinks(typ, sr.Canonical, pageSpec{Count: sr.Count, CountOnly: sr.CountOnly}, sr.Query.Offset, more)
		if len(entities) == 0 {
			entities = []string{typ} // what was searched, when nothing was found
		}
		if err := s.recordAs(c, "search-type", sr.Patient, entities, scope.BreakGlass); err != nil {
			s.internal(c, "auditing a search", err)
			return
		}
		answer(c, http.StatusOK, out.encode())
	}
}
