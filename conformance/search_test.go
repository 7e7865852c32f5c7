package conformance

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
)

// searchCase is one search with the exact result the data set gives.
type searchCase struct {
	name     string
	covers   []string
	resource string // Communication when empty
	query    string // readable: a=b&c=d with placeholders, encoded when sent
	token    string
	header   []string
	post     bool     // POST [type]/_search with the query as a form
	want     []string // the matches' names; in this order when ordered
	ordered  bool
	total    *int     // the Bundle's total; default len(want)
	noTotal  bool     // no total expected
	include  []string // references of the included resources
	warn     string   // an outcome entry must name this expression
}

func n(i int) *int { return &i }

// p is the capability key of a Communication search parameter.
func p(names ...string) []string {
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = "Communication searchParam " + name
	}
	return out
}

var allComms = []string{"01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "H"}

// but is allComms without some.
func but(without ...string) []string {
	var out []string
	for _, c := range allComms {
		if !slices.Contains(without, c) {
			out = append(out, c)
		}
	}
	return out
}

func (sc searchCase) testCase() testCase {
	name := sc.name
	if name == "" {
		name = sc.query
	}
	return testCase{name: name, covers: sc.covers, run: func(t *testing.T, w *world) { w.runSearch(t, sc) }}
}

// searchResult is what a search Bundle holds, by name.
type searchResult struct {
	bundle   bundle
	matches  []string
	includes []string
	outcomes [][]outcomeIssue
}

// search sends one search and reads its Bundle.
func (w *world) search(t *testing.T, sc searchCase) searchResult {
	t.Helper()
	typ := sc.resource
	if typ == "" {
		typ = "Communication"
	}
	r := req{token: sc.token, target: typ + "?" + w.query(sc.query), header: sc.header}
	if sc.post {
		r = req{token: sc.token, method: http.MethodPost, target: typ + "/_search", body: []byte(w.query(sc.query)),
			header: append([]string{"Content-Type", "application/x-www-form-urlencoded"}, sc.header...)}
	}
	return w.searchAt(t, r, typ)
}

func (w *world) searchAt(t *testing.T, r req, typ string) searchResult {
	t.Helper()
	got := w.do(t, r)
	if got.status != http.StatusOK {
		t.Fatalf("%s %s: %d %s", r.method, r.target, got.status, got.body)
	}
	var res searchResult
	decode(t, got.body, &res.bundle)
	if res.bundle.ResourceType != "Bundle" || res.bundle.Type != "searchset" {
		t.Fatalf("%s: not a searchset Bundle: %s", r.target, got.body)
	}
	if res.bundle.link("self") == "" {
		t.Errorf("%s: the Bundle has no self link", r.target)
	}
	for _, e := range res.bundle.Entry {
		h := headOf(e.Resource)
		switch e.Search.Mode {
		case "match":
			if h.ResourceType != typ {
				t.Errorf("%s: a match is a %s", r.target, h.ResourceType)
			}
			if want := w.base + "/" + typ + "/" + h.ID; e.FullURL != want {
				t.Errorf("%s: fullUrl %q, want %q", r.target, e.FullURL, want)
			}
			res.matches = append(res.matches, w.nameOf(typ, e.Resource))
		case "include":
			if want := w.base + "/" + h.ResourceType + "/" + h.ID; e.FullURL != want {
				t.Errorf("%s: fullUrl %q, want %q", r.target, e.FullURL, want)
			}
			res.includes = append(res.includes, h.ResourceType+"/"+h.ID)
		case "outcome":
			if h.ResourceType != "OperationOutcome" {
				t.Errorf("%s: an outcome entry is a %s", r.target, h.ResourceType)
			}
			res.outcomes = append(res.outcomes, issuesOf(e.Resource))
		default:
			t.Errorf("%s: an entry of search mode %q", r.target, e.Search.Mode)
		}
	}
	return res
}

// nameOf is how the cases name a match.
func (w *world) nameOf(typ string, body []byte) string {
	if typ == "AuditEvent" {
		return auditName(body)
	}
	return w.commName(headOf(body).ID)
}

func (w *world) runSearch(t *testing.T, sc searchCase) {
	res := w.search(t, sc)
	got, want := res.matches, slices.Clone(sc.want)
	if !sc.ordered {
		got = slices.Clone(got)
		sort.Strings(got)
		sort.Strings(want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("matches %v, want %v", res.matches, sc.want)
	}
	switch total := res.bundle.Total; {
	case sc.noTotal && total != nil:
		t.Errorf("total %d, want none (_total=none)", *total)
	case sc.noTotal:
	case total == nil:
		t.Errorf("no total")
	default:
		wantTotal := len(sc.want)
		if sc.total != nil {
			wantTotal = *sc.total
		}
		if *total != wantTotal {
			t.Errorf("total %d, want %d", *total, wantTotal)
		}
	}
	var wantInc []string
	for _, ref := range sc.include {
		wantInc = append(wantInc, w.resolve(ref))
	}
	sort.Strings(wantInc)
	gotInc := slices.Clone(res.includes)
	sort.Strings(gotInc)
	if !slices.Equal(gotInc, wantInc) {
		t.Errorf("included %v, want %v", res.includes, wantInc)
	}
	switch {
	case sc.warn == "" && len(res.outcomes) > 0:
		t.Errorf("an outcome entry %+v, want none", res.outcomes)
	case sc.warn != "" && (len(res.outcomes) != 1 || !namesExpression(res.outcomes[0], sc.warn)):
		t.Errorf("outcome entries %+v, want one naming %q", res.outcomes, sc.warn)
	}
}

// communicationSearchCases are the searches over the data set (see
// seed_test.go): every parameter the statement lists, with its
// modifiers, prefixes and the result parameters.
func communicationSearchCases() []testCase {
	const (
		cat   = sysCategory
		local = sysLocalCat
		msg   = sysMsg
		tkt   = sysTicket
	)
	cases := []searchCase{
		{covers: p("_id"), query: "_id=conf-01,conf-03", want: []string{"01", "03"}},
		{covers: p("_id"), query: "_id={hl7}", want: []string{"H"}},
		{covers: p("_id"), query: "_id=conf-01&_id=conf-02", want: nil},

		{covers: p("identifier"), query: "identifier=" + msg + "|1002", want: []string{"02"}},
		{covers: p("identifier"), query: "identifier=1003", want: []string{"03"}},
		{covers: p("identifier"), query: "identifier=|loose-4", want: []string{"04"}},
		{covers: p("identifier"), query: "identifier=" + tkt + "|", want: []string{"03", "09"}},
		{covers: p("identifier"), query: "identifier=" + msg + "|1001," + tkt + "|T-9", want: []string{"01", "09"}},
		{covers: p("identifier"), query: "identifier=" + tkt + "|1003", want: nil},
		{covers: p("identifier"), query: "identifier=" + sysSource + "|", want: []string{"H"}},
		{covers: p("identifier"), query: "identifier:not=" + msg + "|1001", want: but("01")},
		{covers: p("identifier"), query: "identifier:missing=true", want: []string{"05", "12"}},

		{covers: p("subject"), query: "subject=Patient/{pat}", want: []string{"01", "02", "06", "07", "09", "10", "11", "H"}},
		{covers: p("subject"), query: "subject={base}/Patient/conf-pat-q", want: []string{"03", "04", "08"}},
		{covers: p("subject"), query: "subject:Group=conf-ward", want: []string{"05"}},
		{covers: p("subject"), query: "subject:missing=true", want: []string{"12"}},

		{covers: p("patient"), query: "patient={pat}", want: []string{"01", "02", "06", "07", "09", "10", "11", "H"}},
		{covers: p("patient"), query: "patient=Patient/conf-pat-q,Patient/conf-nobody", want: []string{"03", "04", "08"}},
		// patient is Communication.subject.where(resolve() is Patient):
		// 05, about a Group, has none.
		{covers: p("patient"), query: "patient:missing=true", want: []string{"05", "12"}},
		{covers: p("patient"), query: "patient:missing=false", want: but("05", "12")},

		{covers: p("encounter"), query: "encounter={enc}", want: []string{"01", "06", "09", "H"}},
		{covers: p("encounter"), query: "encounter=Encounter/conf-enc-2", want: []string{"02", "08"}},
		{covers: p("encounter"), query: "encounter:missing=true", want: []string{"03", "04", "05", "07", "10", "11", "12"}},

		{covers: p("recipient"), query: "recipient=Practitioner/conf-nurse-1", want: []string{"01", "02", "09", "10"}},
		{covers: p("recipient"), query: "recipient:CareTeam=conf-icu", want: []string{"02", "06", "11"}},
		{covers: p("recipient"), query: "recipient=Patient/conf-pat-q", want: []string{"08"}},
		{covers: p("recipient"), query: "recipient=Practitioner/conf-oncall", want: []string{"H"}},
		{covers: p("recipient"), query: "recipient:missing=true", want: []string{"07", "12"}},

		{covers: p("status"), query: "status=completed", want: []string{"01", "03", "05", "10"}},
		{covers: p("status"), query: "status=completed,stopped", want: []string{"01", "03", "04", "05", "10"}},
		{covers: p("status"), query: "status=completed&status=stopped", want: nil},
		{covers: p("status"), query: "status:not=completed", want: but("01", "03", "05", "10")},
		{covers: p("status"), query: "status=http://hl7.org/fhir/event-status|on-hold", want: []string{"08"}},
		{covers: p("status"), query: "status=http://example.org/other|completed", want: nil},
		{covers: p("status"), query: "status:missing=false", want: allComms},

		{covers: p("category"), query: "category=alert", want: []string{"02", "03", "06", "10", "H"}},
		{covers: p("category"), query: "category=" + cat + "|alert", want: []string{"02", "03", "10", "H"}},
		{covers: p("category"), query: "category=" + local + "|alert", want: []string{"03", "06"}},
		{covers: p("category"), query: "category=|callback", want: []string{"12"}},
		{covers: p("category"), query: "category=" + cat + "|", want: but("05", "06", "12")},
		{covers: p("category"), query: "category=reminder,instruction", want: []string{"04", "07", "11"}},
		{covers: p("category"), query: "category=notification&category=reminder", want: []string{"11"}},
		{covers: p("category"), query: "category:not=alert", want: []string{"01", "04", "05", "07", "08", "09", "11", "12"}},
		{covers: p("category"), query: "category:missing=true", want: []string{"05"}},

		{covers: p("sent"), query: "sent=2025-01-10", want: []string{"01", "02"}},
		{covers: p("sent"), query: "sent=eq2025", want: but("H")},
		{covers: p("sent"), query: "sent=gt2025-08-01", want: []string{"12", "H"}},
		{covers: p("sent"), query: "sent=ge2025-08-01", want: []string{"11", "12", "H"}},
		{covers: p("sent"), query: "sent=lt2025-02-01", want: []string{"01", "02"}},
		{covers: p("sent"), query: "sent=le2025-02-01", want: []string{"01", "02", "03"}},
		{covers: p("sent"), query: "sent=sa2025-06", want: []string{"11", "12", "H"}},
		{covers: p("sent"), query: "sent=eb2025-02", want: []string{"01", "02"}},
		{covers: p("sent"), query: "sent=ge2025-02&sent=lt2025-03", want: []string{"03", "04", "05"}},
		{covers: p("sent"), name: "sent=2025-02-28 (05 was sent at midnight +01:00)", query: "sent=2025-02-28", want: []string{"05"}},
		{covers: p("sent"), query: "sent=2025-03-01T00:00+01:00", want: []string{"05"}},
		{covers: p("sent"), query: "sent=2025-04-01T06:00", want: []string{"07", "08"}},
		{covers: p("sent"), query: "sent=2025-04-01T06:00:00.5Z", want: []string{"08"}},
		{covers: p("sent"), query: "sent=2025-05-20T15:45-04:00", want: []string{"09"}},
		{covers: p("sent"), query: "sent:missing=false", want: allComms},

		{covers: p("received"), query: "received=2025-02-16", want: []string{"04"}},
		{covers: p("received"), query: "received=2025-03-15T10:00:00Z", want: []string{"06"}},
		{covers: p("received"), query: "received=ge2025-03", want: []string{"06", "08", "10"}},
		{covers: p("received"), query: "received=lt2025-02", want: []string{"01"}},
		{covers: p("received"), query: "received:missing=true", want: []string{"02", "05", "07", "09", "11", "12", "H"}},
		{covers: p("received"), query: "received:missing=false", want: []string{"01", "03", "04", "06", "08", "10"}},

		{covers: p("sender"), query: "sender=Device/conf-monitor", want: []string{"02", "09", "12"}},
		{covers: p("sender"), query: "sender:Practitioner=conf-dr-a", want: []string{"01", "04", "10"}},
		{covers: p("sender"), query: "sender=Practitioner/conf-dr-a,Practitioner/conf-dr-b", want: []string{"01", "03", "04", "06", "10", "11"}},
		{covers: p("sender"), query: "sender=Device/carebridge", want: []string{"H"}},
		{covers: p("sender"), query: "sender:missing=true", want: []string{"07"}},

		{covers: p("part-of"), query: "part-of=Communication/conf-01", want: []string{"03"}},
		{covers: p("part-of"), query: "part-of=Communication/conf-03,Communication/conf-01", want: []string{"03", "09"}},
		{covers: p("part-of"), query: "part-of:Procedure=conf-proc-5", want: []string{"05"}},
		{covers: p("part-of"), query: "part-of:missing=false", want: []string{"03", "05", "09"}},

		{covers: p("based-on"), query: "based-on=ServiceRequest/{sr}", want: []string{"02", "09"}},
		{covers: p("based-on"), query: "based-on=CarePlan/conf-plan-6", want: []string{"06"}},
		{covers: p("based-on"), query: "based-on:missing=true", want: but("02", "06", "09")},

		{covers: p("priority"), query: "priority=stat", want: []string{"03", "08", "H"}},
		{covers: p("priority"), query: "priority=urgent,asap", want: []string{"02", "04", "07", "10", "12"}},
		{covers: p("priority"), query: "priority=http://hl7.org/fhir/request-priority|asap", want: []string{"04", "10"}},
		{covers: p("priority"), query: "priority:not=routine", want: but("01", "06", "09", "11")},
		{covers: p("priority"), query: "priority:missing=true", want: []string{"05"}},

		// Together, and sorted.
		{covers: p("subject", "status", "category"), query: "subject=Patient/{pat}&status:not=completed&category=alert&_sort=-sent",
			want: []string{"H", "06", "02"}, ordered: true},
		{query: "_sort=sent", want: allComms, ordered: true},
		{query: "_sort=-sent", want: []string{"H", "12", "11", "10", "09", "08", "07", "06", "05", "04", "03", "02", "01"}, ordered: true},
		{query: "priority:missing=false&_sort=priority", covers: p("priority"),
			want: []string{"11", "09", "06", "01", "12", "07", "02", "10", "04", "H", "08", "03"}, ordered: true},
		{query: "priority:missing=false&_sort=-priority", covers: p("priority"),
			want: []string{"H", "08", "03", "10", "04", "12", "07", "02", "11", "09", "06", "01"}, ordered: true},
		{query: "status=completed&_sort=_id", covers: p("status"), want: []string{"01", "03", "05", "10"}, ordered: true},

		// Result parameters.
		{query: "_sort=sent&_count=5&_offset=10", want: []string{"11", "12", "H"}, ordered: true, total: n(13)},
		{query: "_sort=sent&_offset=20", want: nil, total: n(13)},
		{query: "status=completed&_summary=count", covers: p("status"), want: nil, total: n(4)},
		{query: "_count=0", want: nil, total: n(13)},
		{query: "status=completed&_total=none", covers: p("status"), want: []string{"01", "03", "05", "10"}, noTotal: true},
		{query: "_format=json&_id=conf-01", covers: p("_id"), want: []string{"01"}},
		{name: "POST _search", covers: []string{"Communication interaction search-type"}, post: true,
			query: "status=completed&_sort=sent", want: []string{"01", "03", "05", "10"}, ordered: true},
		{name: "Prefer handling=lenient ignores an unknown parameter, and says so", covers: p("status"),
			query: "foo=bar&status=stopped", header: []string{"Prefer", "handling=lenient"}, want: []string{"04"}, warn: "foo"},

		// Includes: the subject that exists is included once; total counts
		// the matches only.
		{covers: []string{"Communication searchInclude Communication:subject", "Communication searchParam _id"},
			query: "_id=conf-01,conf-03,conf-06&_include=Communication:subject", want: []string{"01", "03", "06"}, include: []string{"Patient/{pat}"}},
		{covers: []string{"Communication searchInclude Communication:patient"},
			query: "status=in-progress&_include=Communication:patient", want: []string{"02", "12", "H"}, include: []string{"Patient/{pat}"}},
		{name: "_include without Patient read scope leaves the subject out, and says so",
			covers: []string{"Communication searchInclude Communication:subject"}, token: tokenCommRead,
			query: "_id=conf-01&_include=Communication:subject", want: []string{"01"}, warn: "_include"},
	}
	out := make([]testCase, 0, len(cases)+1)
	for _, sc := range cases {
		sc.covers = append(sc.covers, "Communication interaction search-type")
		out = append(out, sc.testCase())
	}
	out = append(out, testCase{name: "paging follows the next links", covers: []string{"Communication interaction search-type"}, run: pagingCase})
	return out
}

// pagingCase walks _sort=sent&_count=5 by its next links: 5, 5 and 3,
// the total 13 on every page, a previous link after the first.
func pagingCase(t *testing.T, w *world) {
	r := req{target: "Communication?_sort=sent&_count=5"}
	var pages [][]string
	for i := 0; r.target != ""; i++ {
		if i > 5 {
			t.Fatal("more than 5 pages")
		}
		res := w.searchAt(t, r, "Communication")
		pages = append(pages, res.matches)
		if res.bundle.Total == nil || *res.bundle.Total != 13 {
			t.Errorf("page %d: total %v, want 13", i+1, res.bundle.Total)
		}
		if prev := res.bundle.link("previous"); (prev != "") != (i > 0) {
			t.Errorf("page %d: previous link %q", i+1, prev)
		}
		next := res.bundle.link("next")
		if next != "" && !strings.HasPrefix(next, w.base+"/Communication?") {
			t.Fatalf("next link %q is not a search of this server", next)
		}
		r = req{target: next}
	}
	want := [][]string{{"01", "02", "03", "04", "05"}, {"06", "07", "08", "09", "10"}, {"11", "12", "H"}}
	if !slices.EqualFunc(pages, want, slices.Equal[[]string]) {
		t.Errorf("pages %v, want %v", pages, want)
	}
}
