package api

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// Limits of a search request.
const (
	maxSearchParams = 64
	maxParamValue   = 1024
	maxOrValues     = 100
	defaultCount    = 20
	maxCount        = store.MaxSearchPage - 1 // the store returns one more, which tells whether a next page exists
	maxOffset       = 10000
)

// Code systems of Communication's token parameters.
const (
	systemEventStatus     = "http://hl7.org/fhir/event-status"
	systemRequestPriority = "http://hl7.org/fhir/request-priority"
)

// noMatch is a token value nothing stored can equal: what a search for a
// code of another system, or an empty intersection, turns into.
const noMatch = "<no match>"

// problem is one thing wrong with a request, at a parameter (or element).
type problem struct {
	Expression string
	Code       fhir.IssueCode
	Details    string
}

func (p problem) Error() string { return p.Expression + ": " + p.Details }

// communicationSearch is a parsed Communication search.
type communicationSearch struct {
	Query          store.CommunicationQuery
	Count          int  // page size
	CountOnly      bool // _summary=count or _count=0
	NoTotal        bool // _total=none
	IncludeSubject bool
	Patient        string // the patient searched for, "Patient/id", for the audit trail
	Canonical      url.Values
	Ignored        []problem // parameters left out under Prefer: handling=lenient
}

// tokenSpec says how a token parameter maps to a column.
type tokenSpec struct {
	system string // the code system its codes belong to; "" for none
	field  func(q *store.CommunicationQuery) *store.TokenMatch
	codes  []string // the codes it may take; nil for any
}

var communicationTokens = map[string]tokenSpec{
	"_id": {field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.ID }},
	"status": {system: systemEventStatus, field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.Status },
		codes: []string{"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}},
	"priority": {system: systemRequestPriority, field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.Priority },
		codes: []string{"routine", "urgent", "asap", "stat"}},
}

// indexedTokens are the token parameters kept in the index tokens, any
// number per Communication, each with its system.
var indexedTokens = map[string]string{"identifier": store.TokenIdentifier, "category": store.TokenCategory}

// referenceSpec says how a reference parameter maps to a column and which
// resource types it may point to.
type referenceSpec struct {
	types []string
	field func(q *store.CommunicationQuery) *store.TokenMatch
}

var anyType = []string{"*"}

var communicationReferences = map[string]referenceSpec{
	"subject":   {types: []string{"Patient", "Group"}, field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.Subject }},
	"patient":   {types: []string{"Patient"}, field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.Subject }},
	"encounter": {types: []string{"Encounter"}, field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.Encounter }},
	"recipient": {types: []string{"Practitioner", "PractitionerRole", "CareTeam", "Organization", "Patient", "RelatedPerson", "Group", "Device", "HealthcareService"},
		field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.Recipient }},
	"sender": {types: []string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "HealthcareService"},
		field: func(q *store.CommunicationQuery) *store.TokenMatch { return &q.Sender }},
}

// indexedReferences are the reference parameters kept in the index tokens.
var indexedReferences = map[string]string{"part-of": store.TokenPartOf, "based-on": store.TokenBasedOn}

// searchNames checks the limits every search shares (how many parameters,
// how long a value) and returns the names of the parameters to read, in
// order, with a problem for each the limits keep out: all of them when
// there are too many.
func searchNames(params url.Values) (names []string, probs []problem) {
	if len(params) > maxSearchParams {
		return nil, []problem{{Code: fhir.CodeValue, Details: fmt.Sprintf("more than %d search parameters", maxSearchParams)}}
	}
	for name, values := range params {
		if slices.ContainsFunc(values, func(v string) bool { return len(v) > maxParamValue }) {
			probs = append(probs, problem{Expression: name, Code: fhir.CodeValue, Details: fmt.Sprintf("a value is longer than %d characters", maxParamValue)})
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	slices.SortFunc(probs, func(a, b problem) int { return strings.Compare(a.Expression, b.Expression) })
	return names, probs
}

// The paging parameters every search takes, and what a bad value is told.
const (
	countProblem  = "_count must be a whole number from 0 to %d"
	offsetProblem = "_offset must be a whole number from 0 to %d"
)

// countParam reads _count: a whole number of 0 or more, cut to maxCount
// (0 asks for the count only); false when it is not one.
func countParam(values []string) (int, bool) {
	n, err := strconv.Atoi(last(values))
	return min(n, maxCount), err == nil && n >= 0
}

// offsetParam reads _offset: a whole number from 0 to maxOffset; false
// when it is not one.
func offsetParam(values []string) (int, bool) {
	n, err := strconv.Atoi(last(values))
	return n, err == nil && n >= 0 && n <= maxOffset
}

// summaryParam reads _summary: true for count, false for false (the
// default); ok false for anything else.
func summaryParam(values []string) (countOnly, ok bool) {
	switch last(values) {
	case "count":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// totalParam reads _total: true for none, false for estimate or accurate
// (every total is accurate); ok false for anything else.
func totalParam(values []string) (none, ok bool) {
	switch last(values) {
	case "none":
		return true, true
	case "accurate", "estimate":
		return false, true
	}
	return false, false
}

// parseCommunicationSearch reads the parameters of a Communication search.
// base is the FHIR base URL, so that absolute references to this server
// are understood. Every problem is returned, not only the first; with
// lenient, unknown parameters are set aside in Ignored instead.
func parseCommunicationSearch(params url.Values, lenient bool, base string) (communicationSearch, []problem) {
	s := communicationSearch{Count: defaultCount, Canonical: url.Values{}}
	s.Query.Sort = store.SortByID
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
		case communicationTokens[name].field != nil:
			spec := communicationTokens[name]
			m := spec.field(&s.Query)
			for _, v := range values {
				if err := applyToken(m, spec, modifier, v); err != nil {
					bad(full, fhir.CodeValue, "%s", err)
				}
			}
		case indexedTokens[name] != "":
			for _, v := range values {
				f, err := tokenFilter(indexedTokens[name], modifier, v)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				s.Query.Tokens = append(s.Query.Tokens, f)
			}
		case indexedReferences[name] != "":
			for _, v := range values {
				var m store.TokenMatch
				if _, err := applyReference(&m, referenceSpec{types: anyType}, name, modifier, v, base); err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				f := store.TokenFilter{Param: indexedReferences[name], Missing: m.Missing}
				for _, r := range m.Any {
					f.Any = append(f.Any, store.TokenValue{Code: r})
				}
				s.Query.Tokens = append(s.Query.Tokens, f)
			}
		case name == "patient" && modifier == "missing":
			for _, v := range values {
				var m store.TokenMatch
				if err := missing(&m, v); err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				s.Query.PatientMissing = m.Missing // a subject that is no Patient counts as missing
			}
		case communicationReferences[name].field != nil:
			spec := communicationReferences[name]
			m := spec.field(&s.Query)
			for _, v := range values {
				refs, err := applyReference(m, spec, name, modifier, v, base)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
				}
				if name == "patient" || name == "subject" {
					if len(refs) == 1 && strings.HasPrefix(refs[0], "Patient/") {
						s.Patient = refs[0]
					}
				}
			}
		case name == "sent" || name == "received":
			if modifier == "missing" {
				for _, v := range values {
					var m store.TokenMatch
					if err := missing(&m, v); err != nil {
						bad(full, fhir.CodeValue, "%s", err)
						continue
					}
					if name == "received" {
						s.Query.ReceivedMissing = m.Missing
					} else {
						s.Query.SentMissing = m.Missing
					}
				}
				break
			}
			if modifier != "" {
				bad(full, fhir.CodeNotSupported, "modifier :%s is not supported on a date parameter", modifier)
				break
			}
			for _, v := range values {
				bounds, err := parseDateSearch(v)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				if name == "sent" {
					s.Query.Sent = append(s.Query.Sent, bounds...)
				} else {
					s.Query.Received = append(s.Query.Received, bounds...)
				}
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
			switch last(values) {
			case "sent":
				s.Query.Sort = store.SortBySent
			case "-sent":
				s.Query.Sort = store.SortBySentDesc
			case "priority":
				s.Query.Sort = store.SortByPriority
			case "-priority":
				s.Query.Sort = store.SortByPriorityDesc
			case "_id":
				s.Query.Sort = store.SortByID
			default:
				bad(full, fhir.CodeNotSupported, "_sort takes one of sent, -sent, priority, -priority, _id")
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
		case name == "_include" && modifier == "":
			for _, v := range values {
				switch v {
				case "Communication:subject", "Communication:subject:Patient", "Communication:patient":
					s.IncludeSubject = true
				default:
					bad(full, fhir.CodeNotSupported, "_include takes Communication:subject (or Communication:patient)")
				}
			}
		default:
			if lenient {
				s.Ignored = append(s.Ignored, problem{Expression: full, Code: fhir.CodeNotSupported, Details: "unknown search parameter, ignored"})
				continue
			}
			bad(full, fhir.CodeNotSupported, "unknown search parameter for Communication (see /fhir/metadata)")
		}
		if len(probs) == before && !strings.HasPrefix(name, "_count") && name != "_offset" {
			s.Canonical[full] = values
		}
	}
	return s, probs
}

func last(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// splitOr splits a parameter value at unescaped commas (FHIR escapes a
// literal comma as \,).
func splitOr(v string) ([]string, error) {
	var out []string
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v) && (v[i+1] == ',' || v[i+1] == '\\' || v[i+1] == '|' || v[i+1] == '$'):
			b.WriteByte(v[i+1])
			i++
		case c == ',':
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	out = append(out, b.String())
	if len(out) > maxOrValues {
		return nil, fmt.Errorf("more than %d values", maxOrValues)
	}
	return out, nil
}

// and narrows m.Any to the values also in vs (repeated parameters are
// ANDed, comma-separated values ORed).
func and(m *store.TokenMatch, vs []string) {
	if len(m.Any) == 0 {
		m.Any = vs
		return
	}
	var both []string
	for _, v := range vs {
		if slices.Contains(m.Any, v) {
			both = append(both, v)
		}
	}
	if len(both) == 0 {
		both = []string{noMatch}
	}
	m.Any = both
}

func missing(m *store.TokenMatch, v string) error {
	switch v {
	case "true":
		m.Missing = new(true)
	case "false":
		m.Missing = new(false)
	default:
		return fmt.Errorf(":missing takes true or false")
	}
	return nil
}

func applyToken(m *store.TokenMatch, spec tokenSpec, modifier, v string) error {
	switch modifier {
	case "missing":
		return missing(m, v)
	case "", "not":
	default:
		return fmt.Errorf("modifier :%s is not supported on a token parameter (use :not or :missing)", modifier)
	}
	parts, err := splitOr(v)
	if err != nil {
		return err
	}
	codes := make([]string, 0, len(parts))
	for _, p := range parts {
		system, code, hasSystem := strings.Cut(p, "|")
		if !hasSystem {
			code, system = system, ""
		}
		if code == "" {
			if hasSystem && system != "" && modifier == "" && len(parts) == 1 {
				if system == spec.system {
					m.Missing = new(false) // any code of the system
				} else {
					and(m, []string{noMatch})
				}
				return nil
			}
			return fmt.Errorf("%q has no code", p)
		}
		if hasSystem && system != "" && system != spec.system {
			codes = append(codes, noMatch) // a code of another system matches nothing
			continue
		}
		if spec.codes != nil && !slices.Contains(spec.codes, code) {
			return fmt.Errorf("%q is not one of %s", code, strings.Join(spec.codes, ", "))
		}
		codes = append(codes, code)
	}
	if len(codes) == 0 {
		return nil
	}
	if modifier == "not" {
		m.Not = append(m.Not, codes...)
		return nil
	}
	and(m, codes)
	return nil
}

// tokenFilter reads an indexed token parameter's value: code (any
// system), |code (no system), system|code, or system| (any code); :not
// and :missing as for any token.
func tokenFilter(param, modifier, v string) (store.TokenFilter, error) {
	f := store.TokenFilter{Param: param}
	switch modifier {
	case "missing":
		var m store.TokenMatch
		err := missing(&m, v)
		f.Missing = m.Missing
		return f, err
	case "", "not":
	default:
		return f, fmt.Errorf("modifier :%s is not supported on a token parameter (use :not or :missing)", modifier)
	}
	parts, err := splitOr(v)
	if err != nil {
		return f, err
	}
	for _, p := range parts {
		system, code, hasSystem := strings.Cut(p, "|")
		tv := store.TokenValue{System: system, Code: code}
		if !hasSystem {
			tv = store.TokenValue{Code: system, AnySystem: true}
		}
		if tv.Code == "" {
			if !hasSystem || tv.System == "" {
				return f, fmt.Errorf("%q has no code", p)
			}
			tv.AnyCode = true
		}
		if modifier == "not" {
			f.Not = append(f.Not, tv)
		} else {
			f.Any = append(f.Any, tv)
		}
	}
	return f, nil
}

// applyReference reads a reference parameter: "Type/id", an absolute URL
// to this server, or a bare id when the parameter (or its :Type modifier)
// names the type. It returns the references searched for.
func applyReference(m *store.TokenMatch, spec referenceSpec, name, modifier, v, base string) ([]string, error) {
	if modifier == "missing" {
		return nil, missing(m, v)
	}
	typ := ""
	switch {
	case modifier == "":
		if len(spec.types) == 1 && spec.types[0] != "*" {
			typ = spec.types[0]
		}
	case slices.Contains(spec.types, modifier) || (spec.types[0] == "*" && resourceType(modifier)):
		typ = modifier
	default:
		return nil, fmt.Errorf("modifier :%s is not supported on %s (use :missing or a resource type: %s)", modifier, name, strings.Join(spec.types, ", "))
	}
	parts, err := splitOr(v)
	if err != nil {
		return nil, err
	}
	refs := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimPrefix(p, strings.TrimRight(base, "/")+"/")
		t, id, hasType := strings.Cut(p, "/")
		if !hasType {
			t, id = typ, p
			if t == "" {
				return nil, fmt.Errorf("%q needs its type (Type/id, or the :Type modifier)", p)
			}
		}
		if spec.types[0] == "*" {
			if !resourceType(t) {
				return nil, fmt.Errorf("%q is not a reference Type/id", p)
			}
		} else if !slices.Contains(spec.types, t) || (typ != "" && t != typ) {
			return nil, fmt.Errorf("%q is not a reference to %s", p, strings.Join(spec.types, " or "))
		}
		if !validID(id) {
			return nil, fmt.Errorf("%q does not end in a resource id", p)
		}
		refs = append(refs, t+"/"+id)
	}
	and(m, refs)
	return refs, nil
}

// resourceType reports whether s looks like a resource type name.
func resourceType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// validID reports whether s is a FHIR id: 1 to 64 of A-Z a-z 0-9 - .
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// parseDateSearch reads a date parameter value: an optional prefix (eq,
// gt, lt, ge, le, sa, eb) and a date, dateTime or instant, whose precision
// sets the range it stands for. A time without a zone is read as UTC.
func parseDateSearch(v string) ([]store.TimeBound, error) {
	prefix, v := splitDatePrefix(v, "eq")
	start, end, err := dateRange(v)
	if err != nil {
		return nil, err
	}
	switch prefix {
	case "eq":
		return []store.TimeBound{{Op: store.GE, At: start}, {Op: store.LT, At: end}}, nil
	case "ge":
		return []store.TimeBound{{Op: store.GE, At: start}}, nil
	case "gt", "sa":
		return []store.TimeBound{{Op: store.GE, At: end}}, nil
	case "le":
		return []store.TimeBound{{Op: store.LT, At: end}}, nil
	case "lt", "eb":
		return []store.TimeBound{{Op: store.LT, At: start}}, nil
	case "ne", "ap":
		return nil, fmt.Errorf("the prefix %s is not supported (use eq, gt, lt, ge, le, sa or eb)", prefix)
	}
	return nil, fmt.Errorf("%q is not a date prefix", prefix)
}

// splitDatePrefix splits a date parameter value into its prefix (def
// when it has none) and its date. Only two letters before a digit are a
// prefix, as every date begins with its year: a value such as "today" is
// then reported whole, as no date, not as the prefix "to" of "day".
func splitDatePrefix(v, def string) (prefix, date string) {
	if len(v) >= 3 && 'a' <= v[0] && v[0] <= 'z' && 'a' <= v[1] && v[1] <= 'z' && '0' <= v[2] && v[2] <= '9' {
		return v[:2], v[2:]
	}
	return def, v
}

// dateRange is the range [start, end) a FHIR date, dateTime or instant of
// some precision stands for.
func dateRange(v string) (start, end time.Time, err error) {
	layouts := []struct {
		layout string
		next   func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
	}
	for _, l := range layouts {
		if len(v) == len(l.layout) {
			t, err := time.Parse(l.layout, v)
			if err != nil {
				break
			}
			return t, l.next(t), nil
		}
	}
	if len(v) < 16 || v[10] != 'T' {
		return start, end, fmt.Errorf("%q is not a date (YYYY, YYYY-MM, YYYY-MM-DD) or a dateTime (YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm])", v)
	}
	body, zone := v, ""
	if i := strings.IndexAny(v[10:], "Z+-"); i >= 0 {
		body, zone = v[:10+i], v[10+i:]
	}
	loc := time.UTC
	if zone != "" && zone != "Z" {
		z, err := time.Parse("-07:00", zone)
		if err != nil {
			return start, end, fmt.Errorf("%q has a malformed time zone", v)
		}
		loc = z.Location()
	}
	unit := time.Minute
	layout := "2006-01-02T15:04"
	switch {
	case len(body) == 16:
	case len(body) == 19:
		layout, unit = "2006-01-02T15:04:05", time.Second
	case len(body) > 20 && len(body) <= 29 && body[19] == '.':
		digits := len(body) - 20
		layout = "2006-01-02T15:04:05." + strings.Repeat("0", digits)
		unit = time.Second
		for range digits {
			unit /= 10
		}
	default:
		return start, end, fmt.Errorf("%q is not a dateTime (YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm])", v)
	}
	t, err := time.ParseInLocation(layout, body, loc)
	if err != nil {
		return start, end, fmt.Errorf("%q is not a valid dateTime", v)
	}
	return t.UTC(), t.UTC().Add(unit), nil
}
