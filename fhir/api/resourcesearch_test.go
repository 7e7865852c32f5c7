package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/access/accesstest"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// mappedSeed is the chart the resource search tests find, as mapping
// would store it (every name and number invented):
//
//	Patient p1 (urn:oid:mrn|200345, urn:payer|A99001), p2 (urn:oid:mrn|100234)
//	Encounter e1  p1 in-progress  from 2026-11-03T09:00-05:00, ongoing   V6001
//	Encounter e2  p2 finished     2026-11-01T08:00Z – 2026-11-02T12:00Z   V5001
//	ServiceRequest s1 p1 active    authored 2026-11-03T10:15-05:00        ORD1
//	ServiceRequest s2 p2 completed (no authoredOn)
//	Observation o1 p1 final        2026-11-03T14:20:00-05:00
//	Observation o2 p2 preliminary  2026-11-02
//
// and Communication c1 about p1, to Practitioner/a.
var mappedSeed = []struct{ typ, id, body string }{
	{"Patient", "p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:mrn","value":"200345"},{"system":"urn:payer","value":"A99001"}],"name":[{"family":"Testpatient"}]}`},
	{"Patient", "p2", `{"resourceType":"Patient","id":"p2","identifier":[{"system":"urn:oid:mrn","value":"100234"}]}`},
	{"Encounter", "e1", `{"resourceType":"Encounter","id":"e1","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},` +
		`"identifier":[{"system":"urn:visit","value":"V6001"}],"subject":{"reference":"Patient/p1"},"period":{"start":"2026-11-03T09:00:00-05:00"}}`},
	{"Encounter", "e2", `{"resourceType":"Encounter","id":"e2","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},` +
		`"identifier":[{"system":"urn:visit","value":"V5001"}],"subject":{"reference":"Patient/p2"},"period":{"start":"2026-11-01T08:00:00Z","end":"2026-11-02T12:00:00Z"}}`},
	{"ServiceRequest", "s1", `{"resourceType":"ServiceRequest","id":"s1","status":"active","intent":"order","identifier":[{"system":"urn:placer","value":"ORD1"}],` +
		`"subject":{"reference":"Patient/p1"},"authoredOn":"2026-11-03T10:15:00-05:00"}`},
	{"ServiceRequest", "s2", `{"resourceType":"ServiceRequest","id":"s2","status":"completed","intent":"order","subject":{"reference":"Patient/p2"}}`},
	{"Observation", "o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},` +
		`"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-11-03T14:20:00-05:00","valueQuantity":{"value":6.9,"unit":"mmol/L"}}`},
	{"Observation", "o2", `{"resourceType":"Observation","id":"o2","status":"preliminary","code":{"coding":[{"system":"http://loinc.org","code":"2951-2"}]},` +
		`"subject":{"reference":"Patient/p2"},"effectiveDateTime":"2026-11-02"}`},
}

// newMappedEnv serves mappedSeed, to the client "ehr" with scopes and to
// users signing in.
func newMappedEnv(t testing.TB, scopes string) (*env, *loginEnv) {
	t.Helper()
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	m := store.Mapped{InboundID: "in-1", MappedAt: sentAt, Outcome: []byte("x")}
	for _, r := range mappedSeed {
		if err := v.Validate([]byte(r.body)); err != nil {
			t.Fatalf("seed %s/%s is not valid R4: %v", r.typ, r.id, err)
		}
		ix, err := index.Resource(r.typ, []byte(r.body))
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := kr.Seal([]byte(r.body), []byte(r.typ+"/"+r.id))
		if err != nil {
			t.Fatal(err)
		}
		m.Resources = append(m.Resources, store.SealedResource{Type: r.typ, ID: r.id, Sealed: sealed, Index: &ix})
	}
	c := &fhir.Communication{}
	c.Id = new("c1")
	c.Status = fhirmodel.EventStatusInProgress
	c.Subject = &fhirmodel.Reference{Reference: new("Patient/p1")}
	c.Sent = new(sentAt.Format(time.RFC3339))
	c.Recipient = []fhirmodel.Reference{{Reference: new("Practitioner/a")}}
	c.Payload = []fhir.CommunicationPayload{{ContentString: new("synthetic test message")}}
	row, err := index.Communication(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fhir.Resource{Type: "Communication", ID: "c1", Body: c}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	row.ID, row.Identifier = "c1", "FAC^c1^rule"
	if row.Sealed, err = kr.Seal(b, []byte("Communication/c1")); err != nil {
		t.Fatal(err)
	}
	m.Communications = []store.CommunicationRow{row}
	if ok, err := st.StoreMapped(context.Background(), m); err != nil || !ok {
		t.Fatalf("seeding: %v %v", ok, err)
	}
	le := &loginEnv{audit: &auditLog{}, clock: accesstest.NewClock(time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC))}
	if le.users, err = access.NewUsers(&accesstest.Users{}, kr, access.UsersConfig{Now: le.clock.Now}); err != nil {
		t.Fatal(err)
	}
	le.srv, le.key = startAPI(t, kr, scopes, api.Config{Store: st, Keys: kr, Audit: le.audit, Users: le.users, Now: le.clock.Now})
	return &env{srv: le.srv, base: le.srv.URL + "/fhir", audit: le.audit, key: le.key, v: v}, le
}

const allMappedScopes = "system/Patient.rs system/Encounter.rs system/ServiceRequest.rs system/Observation.rs"

// find searches path ("Type?query") and checks the searchset: valid R4,
// each entry's fullUrl, and total against the matches.
func (e *env) find(t *testing.T, token, path string) bundle {
	t.Helper()
	status, h, b := e.get(t, token, "/fhir/"+path)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, b)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := e.v.Validate(b); err != nil {
		t.Fatalf("the searchset Bundle is not valid R4: %v\n%s", err, b)
	}
	var bu bundle
	if err := json.Unmarshal(b, &bu); err != nil || bu.Type != "searchset" {
		t.Fatalf("not a searchset: %s", b)
	}
	typ, _, _ := strings.Cut(path, "?")
	for _, en := range bu.Entry {
		if en.Search.Mode != "match" {
			continue
		}
		var r struct{ ResourceType, ID string }
		json.Unmarshal(en.Resource, &r)
		if r.ResourceType != typ || en.FullURL != e.base+"/"+typ+"/"+r.ID {
			t.Fatalf("GET %s: entry %s/%s fullUrl %q", path, r.ResourceType, r.ID, en.FullURL)
		}
	}
	return bu
}

func TestSearchMappedResources(t *testing.T) {
	e, _ := newMappedEnv(t, allMappedScopes)
	tok := e.token(t, allMappedScopes)
	tests := []struct {
		path string
		want []string
	}{
		{"Patient", []string{"p1", "p2"}},
		{"Patient?_id=p2", []string{"p2"}},
		{"Patient?_id=p1,nobody", []string{"p1"}},
		{"Patient?identifier=urn:oid:mrn|200345", []string{"p1"}},
		{"Patient?identifier=100234", []string{"p2"}},
		{"Patient?identifier=urn:payer|", []string{"p1"}},
		{"Patient?identifier=urn:other|200345", nil},
		{"Patient?identifier:not=urn:oid:mrn|200345", []string{"p2"}},
		{"Patient?identifier=200345,100234&_sort=_id", []string{"p1", "p2"}},
		{"Encounter?patient=p1", []string{"e1"}},
		{"Encounter?patient=Patient/p2", []string{"e2"}},
		{"Encounter?subject=Patient/p1", []string{"e1"}},
		{"Encounter?subject:Patient=p2", []string{"e2"}},
		{"Encounter?subject=Group/g1", nil},
		{"Encounter?identifier=urn:visit|V6001", []string{"e1"}},
		{"Encounter?status=finished", []string{"e2"}},
		{"Encounter?status=http://hl7.org/fhir/encounter-status|in-progress", []string{"e1"}},
		{"Encounter?status=urn:other|in-progress", nil},
		{"Encounter?status:not=finished", []string{"e1"}},
		{"Encounter?date=ge2026-11-03", []string{"e1"}},                   // ongoing: reaches every day after its start
		{"Encounter?date=ge2030-01-01", []string{"e1"}},                   // still ongoing
		{"Encounter?date=2026-11", []string{"e2"}},                        // eq: the period lies within November
		{"Encounter?date=2026-11-01", nil},                                // e2 runs into the 2nd
		{"Encounter?date=ge2026-11-02&date=le2026-11-02", []string{"e2"}}, // overlapping the 2nd
		{"Encounter?date=le2026-11-03", []string{"e1", "e2"}},
		{"Encounter?date=lt2026-11-03", []string{"e2"}},
		{"Encounter?date=gt2026-11-02", []string{"e1"}},
		{"Encounter?date=sa2026-11-02", []string{"e1"}},
		{"Encounter?date=eb2026-11-03", []string{"e2"}},
		{"Encounter?date=ne2026-11", []string{"e1"}},
		{"Encounter?date=ge2026-11-03T13:59:59Z&date=lt2026-11-03T14:00:00Z", nil},
		{"Encounter?date=ge2026-11-03T14:00:00Z&date=le2026-11-03T14:00:00Z", []string{"e1"}},
		{"Encounter?_sort=date", []string{"e2", "e1"}},
		{"Encounter?_sort=-date", []string{"e1", "e2"}},
		{"ServiceRequest?authored=2026-11-03", []string{"s1"}},
		{"ServiceRequest?authored=lt2026-11-03T15:15:00Z", nil},
		{"ServiceRequest?authored=le2026-11-03T15:15:00Z", []string{"s1"}},
		{"ServiceRequest?status=active", []string{"s1"}},
		{"ServiceRequest?patient=p2", []string{"s2"}},
		{"ServiceRequest?identifier=urn:placer|ORD1&patient=p1", []string{"s1"}},
		{"ServiceRequest?_sort=-authored", []string{"s1", "s2"}}, // without a date last
		{"Observation?date=2026-11-03", []string{"o1"}},
		{"Observation?date=2026-11-02", []string{"o2"}},
		{"Observation?patient=p1&status=final", []string{"o1"}},
		{"Observation?status=preliminary", []string{"o2"}},
		{"Observation?_sort=-date", []string{"o1", "o2"}},
		{"Observation?_sort=date&_count=1", []string{"o2"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			bu := e.find(t, tok, tt.path)
			got := ids(bu, "match")
			wantTotal := len(tt.want)
			if strings.Contains(tt.path, "_count=1") {
				wantTotal = 2
			}
			if !slices.Equal(got, tt.want) || bu.Total == nil || *bu.Total != wantTotal {
				t.Fatalf("got %v (total %v), want %v (total %d)", got, bu.Total, tt.want, wantTotal)
			}
		})
	}
}

func TestSearchMappedResourcesPagesAndForms(t *testing.T) {
	e, _ := newMappedEnv(t, allMappedScopes)
	tok := e.token(t, allMappedScopes)
	var all []string
	next := e.base + "/Encounter?_sort=-date&_count=1"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		u, _ := url.Parse(next)
		bu := e.find(t, tok, "Encounter?"+u.RawQuery)
		if *bu.Total != 2 || bu.Link[0].Relation != "self" {
			t.Fatalf("page %d: total %d, links %+v", pages, *bu.Total, bu.Link)
		}
		all = append(all, ids(bu, "match")...)
		next = ""
		for _, l := range bu.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	if !slices.Equal(all, []string{"e1", "e2"}) {
		t.Fatalf("pages gave %v", all)
	}
	if bu := e.find(t, tok, "Observation?_summary=count"); len(bu.Entry) != 0 || *bu.Total != 2 {
		t.Fatalf("_summary=count: %+v", bu)
	}
	if bu := e.find(t, tok, "Observation?_total=none"); bu.Total != nil || len(ids(bu, "match")) != 2 {
		t.Fatalf("_total=none: %+v", bu)
	}
	if bu := e.find(t, tok, "Patient?_offset=1"); !slices.Equal(ids(bu, "match"), []string{"p2"}) || *bu.Total != 2 {
		t.Fatalf("_offset=1: %+v", bu)
	}

	req, _ := http.NewRequest(http.MethodPost, e.base+"/ServiceRequest/_search?status=active", strings.NewReader("patient=p1"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var bu bundle
	json.NewDecoder(resp.Body).Decode(&bu)
	if resp.StatusCode != http.StatusOK || !slices.Equal(ids(bu, "match"), []string{"s1"}) {
		t.Fatalf("POST _search: %d %+v", resp.StatusCode, bu)
	}
}

func TestSearchMappedResourcesErrorsNameTheParameter(t *testing.T) {
	e, _ := newMappedEnv(t, allMappedScopes)
	tok := e.token(t, allMappedScopes)
	for _, tc := range []struct {
		path string
		want []string // the expressions, in order
	}{
		{"Patient?colour=blue&identifier=", []string{"colour", "identifier"}},
		{"Patient?date=2026", []string{"date"}}, // Patient has no date parameter
		{"Encounter?date=yesterday", []string{"date"}},
		{"Encounter?date=ap2026-11-03", []string{"date"}},
		{"Encounter?date:missing=true", []string{"date:missing"}},
		{"Encounter?status=done", []string{"status"}},
		{"Encounter?authored=2026", []string{"authored"}}, // ServiceRequest's
		{"Encounter?patient=Group/g1", []string{"patient"}},
		{"Encounter?_sort=authored", []string{"_sort"}},
		{"ServiceRequest?date=2026", []string{"date"}}, // authored, in R4
		{"Observation?_count=x&_offset=-1", []string{"_count", "_offset"}},
		{"Observation?_summary=true", []string{"_summary"}},
	} {
		status, _, b := e.get(t, tok, "/fhir/"+tc.path)
		if status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.path, status, b)
			continue
		}
		o := readOutcome(t, b)
		var got []string
		for _, is := range o.Issue {
			got = append(got, strings.Join(is.Expression, ","))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: issues name %v, want %v: %s", tc.path, got, tc.want, b)
		}
	}
	// the value is named whole: "yesterday", not a prefix "ye" and "sterday"
	if _, _, b := e.get(t, tok, "/fhir/Encounter?date=yesterday"); !strings.Contains(string(b), `\"yesterday\" is not a date`) {
		t.Errorf("date=yesterday: %s", b)
	}
	status, _, b := e.get(t, tok, "/fhir/Patient?colour=blue&identifier=100234", "Prefer", "handling=lenient")
	if status != http.StatusOK || !strings.Contains(string(b), `"mode":"outcome"`) || !strings.Contains(string(b), `"p2"`) || strings.Contains(string(b), `"p1"`) {
		t.Fatalf("lenient: %d %s", status, b)
	}
}

func TestSearchMappedResourcesNeedsSearchScope(t *testing.T) {
	e, _ := newMappedEnv(t, "system/Patient.r system/Encounter.rs")
	tok := e.token(t, "system/Patient.r system/Encounter.rs")
	status, h, b := e.get(t, tok, "/fhir/Patient?identifier=200345")
	if status != http.StatusForbidden || !strings.Contains(h.Get("WWW-Authenticate"), "system/Patient.s") || readOutcome(t, b).Issue[0].Code != "forbidden" {
		t.Fatalf("Patient search with Patient.r: %d %v %s", status, h, b)
	}
	if got := e.audit.last(); got.Action != "rest.search-type" || got.Outcome != audit.OutcomeMinor || !slices.Equal(got.Entities, []string{"Patient"}) {
		t.Fatalf("refusal audit entry %+v", got)
	}
	if status, _, _ := e.get(t, tok, "/fhir/Patient/p1"); status != http.StatusOK {
		t.Fatalf("Patient read with Patient.r: %d", status)
	}
	if bu := e.find(t, tok, "Encounter?patient=p1"); !slices.Equal(ids(bu, "match"), []string{"e1"}) {
		t.Fatalf("Encounter search: %v", ids(bu, "match"))
	}
}

// TestSearchMappedResourcesAudited: each search is audited with what it
// returned and the patient it was for, and no content.
func TestSearchMappedResourcesAudited(t *testing.T) {
	e, _ := newMappedEnv(t, allMappedScopes)
	tok := e.token(t, allMappedScopes)
	for _, tc := range []struct {
		path, patient string
		entities      []string
	}{
		{"Encounter?patient=p1", "Patient/p1", []string{"Encounter/e1"}},
		{"Patient?_id=p2", "Patient/p2", []string{"Patient/p2"}},
		{"Observation?_sort=date", "", []string{"Observation/o2", "Observation/o1"}},
		{"ServiceRequest?status=revoked", "", []string{"ServiceRequest"}},
	} {
		e.find(t, tok, tc.path)
		got := e.audit.last()
		if got.Action != "rest.search-type" || got.Outcome != audit.OutcomeSuccess || got.Actor.ID != "ehr" || got.Patient != tc.patient || !slices.Equal(got.Entities, tc.entities) {
			t.Errorf("%s: audit entry %+v; want patient %q, entities %v", tc.path, got, tc.patient, tc.entities)
		}
		b, _ := json.Marshal(got)
		for _, phi := range []string{"200345", "Testpatient", "6.9"} {
			if strings.Contains(string(b), phi) {
				t.Errorf("%s: the audit entry holds %q", tc.path, phi)
			}
		}
	}
}

// TestSearchMappedResourcesMinimumNecessary: a physician finds the chart
// of the patients their Communications are about, counted and paged as
// such; one of another unit finds nothing until they break the glass,
// and then everything, flagged in the audit trail.
func TestSearchMappedResourcesMinimumNecessary(t *testing.T) {
	_, le := newMappedEnv(t, allMappedScopes)
	ann := le.add(t, "ann.md", access.RolePhysician, "Practitioner/a")
	annTok := le.login(t, ann)
	zed := le.add(t, "zed.md", access.RoleNurse, "Practitioner/z", "CareTeam/ward-3")
	zedTok := le.login(t, zed)
	total := func(body string) int {
		var bu bundle
		if err := json.Unmarshal([]byte(body), &bu); err != nil || bu.Total == nil {
			t.Fatalf("not a searchset with a total: %s", body)
		}
		return *bu.Total
	}
	for _, tc := range []struct {
		path string
		ann  []string
	}{
		{"Patient", []string{"p1"}},
		{"Patient?_id=p2", nil},
		{"Encounter", []string{"e1"}},
		{"ServiceRequest?_sort=-authored", []string{"s1"}},
		{"Observation?patient=p2", nil},
		{"Observation?_count=1", []string{"o1"}},
	} {
		body := le.get(t, annTok, "/fhir/"+tc.path)
		var bu bundle
		json.Unmarshal([]byte(body), &bu)
		if got := ids(bu, "match"); !slices.Equal(got, tc.ann) || total(body) != len(tc.ann) {
			t.Errorf("ann's %s: %v (total %d), want %v", tc.path, got, total(body), tc.ann)
		}
		for _, l := range bu.Link {
			if l.Relation == "next" {
				t.Errorf("ann's %s has a next page: %s", tc.path, l.URL)
			}
		}
		le.wantEntry(t, "rest.search-type", audit.OutcomeSuccess, audit.ActorUser, ann.id)
		if slices.Contains(le.audit.last().Entities, "break-glass") {
			t.Errorf("ann's %s flagged as break-glass", tc.path)
		}
		if body := le.get(t, zedTok, "/fhir/"+tc.path); total(body) != 0 {
			t.Errorf("zed's %s finds something: %s", tc.path, body)
		}
	}
	if status, _ := le.breakGlass(t, zedTok, url.Values{"reason": {"covering ICU tonight, a deteriorating patient"}}); status != http.StatusOK {
		t.Fatalf("break-glass: %d", status)
	}
	body := le.get(t, zedTok, "/fhir/Patient")
	if total(body) != 2 {
		t.Fatalf("zed's Patient search under break-glass: %s", body)
	}
	if got := le.audit.last().Entities; !slices.Equal(got, []string{"Patient/p1", "Patient/p2", "break-glass"}) {
		t.Fatalf("entities of a search under break-glass = %q", got)
	}
	clerk := le.add(t, "clerk", access.RoleUnitClerk, "CareTeam/ward-3")
	if got := le.do(t, http.MethodGet, le.login(t, clerk), "/fhir/Patient"); got != http.StatusForbidden {
		t.Fatalf("a unit clerk's Patient search: %d, want 403", got)
	}
}

// FuzzResourceSearch: whatever the query, a search answers 200 or 400,
// never 5xx or a panic, and a 400 is an OperationOutcome.
func FuzzResourceSearch(f *testing.F) {
	e, _ := newMappedEnv(f, allMappedScopes)
	tok := e.token(f, allMappedScopes)
	for _, s := range []string{
		"Encounter?date=ge2026-11-03", "Encounter?date=2026-11-03T14:00:00.123%2B01:00", "Observation?date=ne2026&_sort=-date",
		"ServiceRequest?authored=eb2026-1", "Patient?identifier=a%5C,b|c,|d&_id:not=p1", "Encounter?patient:missing=true&status:missing=false",
		"Encounter?subject=https://x/fhir/Patient/p1&_count=1001&_offset=10001", "Observation?date=zz2026", "Patient?_total=accurate&_summary=false",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		typ, query, _ := strings.Cut(target, "?")
		if !slices.Contains([]string{"Patient", "Encounter", "ServiceRequest", "Observation"}, typ) {
			typ = "Encounter"
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		query = vals.Encode() // as a client sends it: a request line without spaces
		status, _, b := e.get(t, tok, "/fhir/"+typ+"?"+query)
		switch status {
		case http.StatusOK:
			if err := e.v.Validate(b); err != nil {
				t.Fatalf("%s?%s: the Bundle is not valid R4: %v", typ, query, err)
			}
		case http.StatusBadRequest:
			o := readOutcome(t, b)
			if len(o.Issue) == 0 {
				t.Fatalf("%s?%s: 400 without an issue", typ, query)
			}
		default:
			t.Fatalf("%s?%s: %d %s", typ, query, status, b)
		}
	})
}
