package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store/sqlite"
)

// filingEnv is a server that files AuditEvents, whose own trail is the
// test trail (nine records, one minute apart from trailAt): ae speaks
// AuditEvent search, e create and tokens.
type filingEnv struct {
	e  *env
	ae *auditEnv
}

func newFilingEnv(t testing.TB) *filingEnv {
	t.Helper()
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.EnsureSigningKey(trailAt); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db"), Topics: []string{topicCreated, topicAudit}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log, err := audit.NewLog(st, kr, audit.LogConfig{Chain: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range trail {
		r.At = trailAt.Add(time.Duration(i) * time.Minute)
		if err := log.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{audit: &auditLog{}, events: &events{}, v: v}
	e.srv, e.key = startAPI(t, kr, "system/AuditEvent.crs system/Communication.rs", api.Config{Store: st, Keys: kr, Audit: e.audit,
		AuditEvents: st, AuditImport: st, Source: audit.Source{Site: "Good Health"}, Sealer: kr, Validator: v, Events: e.events})
	e.base = e.srv.URL + "/fhir"
	return &filingEnv{e: e, ae: &auditEnv{srv: e.srv, base: e.base, st: st, audit: e.audit, key: e.key, v: v, src: audit.Source{Site: "Good Health"}}}
}

// file POSTs an AuditEvent and returns its new id, failing unless it is
// filed as version 1.
func (fe *filingEnv) file(t testing.TB, tok string, body []byte) (string, []byte) {
	t.Helper()
	status, h, b := fe.e.send(t, http.MethodPost, tok, "/fhir/AuditEvent", fhirJSON, body)
	if status != http.StatusCreated || h.Get("ETag") != `W/"1"` {
		t.Fatalf("POST AuditEvent: %d %v %s", status, h, b)
	}
	head := headOf(t, b)
	if head.ID == "" || head.Meta.VersionID != "1" || head.Meta.LastUpdated == "" {
		t.Fatalf("POST AuditEvent answered %s", b)
	}
	if loc := h.Get("Location"); loc != fe.e.base+"/AuditEvent/"+head.ID+"/_history/1" {
		t.Fatalf("Location %q, want …/AuditEvent/%s/_history/1", loc, head.ID)
	}
	return head.ID, b
}

type resourceHead struct {
	ResourceType, ID string
	Meta             struct{ VersionID, LastUpdated string }
}

func headOf(t testing.TB, b []byte) resourceHead {
	t.Helper()
	var h resourceHead
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return h
}

// sameApartFromMetaAndID compares two resources as JSON, meta and id
// left out.
func sameApartFromMetaAndID(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y map[string]any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	for _, k := range []string{"meta", "id"} {
		delete(x, k)
		delete(y, k)
	}
	return reflect.DeepEqual(x, y)
}

// TestOfficialAuditEventExamples: the spec's AuditEvent examples are
// filed under new ids, read back unchanged apart from meta and id, found
// by each field they have a search parameter for, and not found by the
// same search for another value.
func TestOfficialAuditEventExamples(t *testing.T) {
	fe := newFilingEnv(t)
	tok := fe.e.token(t, "system/AuditEvent.crs")
	files, _ := filepath.Glob(filepath.Join(corpusDir(t), "AuditEvent-example*.json"))
	if len(files) != 9 {
		t.Fatalf("%d AuditEvent examples, want 9", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var ex map[string]any
			if err := json.Unmarshal(body, &ex); err != nil {
				t.Fatal(err)
			}
			id, created := fe.file(t, tok, body)
			if id == ex["id"] {
				t.Errorf("filed under the id it was sent with, %s", id)
			}
			if !sameApartFromMetaAndID(t, created, body) {
				t.Errorf("create answered\n%s\nwant\n%s", created, body)
			}
			status, h, b := fe.e.get(t, tok, "/fhir/AuditEvent/"+id)
			if status != http.StatusOK || h.Get("ETag") != `W/"1"` || !sameApartFromMetaAndID(t, b, body) {
				t.Fatalf("read back: %d %v\n%s\nwant\n%s", status, h, b, body)
			}
			if headOf(t, b).ID != id {
				t.Errorf("read back with id %s, want %s", headOf(t, b).ID, id)
			}
			if err := fe.e.v.Validate(b); err != nil {
				t.Fatalf("read back is not valid R4: %v", err)
			}
			finds, misses := auditSearchesFor(t, ex)
			for _, q := range finds {
				if got := ids(fe.ae.search(t, tok, q), "match"); !slices.Contains(got, id) {
					t.Errorf("%s does not find AuditEvent/%s (matches: %v)", q, id, got)
				}
			}
			for _, q := range misses {
				if got := ids(fe.ae.search(t, tok, q), "match"); slices.Contains(got, id) {
					t.Errorf("%s finds AuditEvent/%s", q, id)
				}
			}
		})
	}
}

// auditSearchesFor are the searches that must find an AuditEvent, one
// per searchable value it has, and for each, one with another value that
// must not.
func auditSearchesFor(t *testing.T, ex map[string]any) (finds, misses []string) {
	q := func(param, value string) string { return param + "=" + url.QueryEscape(value) }
	both := func(param, value, other string) {
		finds, misses = append(finds, q(param, value)), append(misses, q(param, other))
	}
	token := func(c map[string]any) string {
		system, _ := c["system"].(string)
		code, _ := c["code"].(string)
		return system + "|" + code
	}
	// the literal reference of who or what, as Type/id, or "".
	ref := func(v map[string]any) string {
		r, _ := v["reference"].(string)
		if strings.HasPrefix(r, "#") || r == "" {
			return ""
		}
		r, _, _ = strings.Cut(r, "/_history/")
		return r
	}
	identifier := func(v map[string]any) string {
		id, _ := v["identifier"].(map[string]any)
		value, _ := id["value"].(string)
		if value == "" {
			return ""
		}
		system, _ := id["system"].(string)
		return system + "|" + value
	}
	recorded, err := time.Parse(time.RFC3339, ex["recorded"].(string))
	if err != nil {
		t.Fatalf("recorded: %v", err)
	}
	both("date", ex["recorded"].(string), recorded.Add(time.Second).Format(time.RFC3339))
	finds = append(finds, q("date", "ge"+recorded.Add(-time.Hour).UTC().Format(time.RFC3339)))
	misses = append(misses, q("date", "lt"+recorded.UTC().Format(time.RFC3339)))
	if typ, ok := ex["type"].(map[string]any); ok {
		both("type", token(typ), typ["system"].(string)+"|not-"+typ["code"].(string))
		both("type", typ["code"].(string), "not-"+typ["code"].(string))
	}
	for _, s := range asList(ex["subtype"]) {
		c := s.(map[string]any)
		both("subtype", token(c), "urn:synthetic|"+c["code"].(string))
		if c["system"] != nil {
			both("subtype", c["system"].(string)+"|", "urn:synthetic|")
		}
	}
	if a, ok := ex["action"].(string); ok {
		other := map[string]string{"C": "R", "R": "U", "U": "D", "D": "E", "E": "C"}[a]
		both("action", a, other)
		both("action", "http://hl7.org/fhir/audit-event-action|"+a, "http://hl7.org/fhir/audit-event-action|"+other)
	}
	if o, ok := ex["outcome"].(string); ok {
		other := map[string]string{"0": "4", "4": "8", "8": "12", "12": "0"}[o]
		both("outcome", o, other)
	}
	for _, a := range asList(ex["agent"]) {
		who, _ := a.(map[string]any)["who"].(map[string]any)
		if r := ref(who); r != "" {
			both("agent", r, r+"-other")
		}
		if id := identifier(who); id != "" {
			both("agent:identifier", id, id+"-other")
		}
	}
	for _, e := range asList(ex["entity"]) {
		what, _ := e.(map[string]any)["what"].(map[string]any)
		if r := ref(what); r != "" {
			both("entity", r, r+"-other")
			if strings.HasPrefix(r, "Patient/") {
				both("patient", r, r+"-other")
			}
		}
		if id := identifier(what); id != "" {
			both("entity:identifier", id, id+"-other")
		}
	}
	return finds, misses
}

// TestFiledAuditEventsSearchWithTheTrail: filed AuditEvents are found
// with carebridge's own, merged newest first (or oldest first) by
// recorded across pages, counted together, by _id of either, and each
// kind by its own values only.
func TestFiledAuditEventsSearchWithTheTrail(t *testing.T) {
	fe := newFilingEnv(t)
	tok := fe.e.token(t, "system/AuditEvent.crs")
	filed := map[string]string{} // id → name
	// Recorded between the trail's records 2 and 3, 5 and 6, and after 9.
	for _, f := range []struct {
		name string
		at   time.Time
	}{{"f-a", trailAt.Add(90 * time.Second)}, {"f-b", trailAt.Add(270 * time.Second)}, {"f-c", trailAt.Add(time.Hour)}} {
		body := fmt.Sprintf(`{"resourceType":"AuditEvent","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110110"},
			"action":"R","recorded":%q,"outcome":"0",
			"agent":[{"who":{"identifier":{"system":"urn:synthetic:ehr-user","value":"u-%s"}},"requestor":true}],
			"source":{"observer":{"display":"Synthetic EHR"}},
			"entity":[{"what":{"reference":"Patient/p1"}}]}`, f.at.Format(time.RFC3339Nano), f.name)
		id, _ := fe.file(t, tok, []byte(body))
		filed[id] = f.name
	}
	name := func(id string) string {
		if n, ok := filed[id]; ok {
			return n
		}
		for i := range trail {
			if eventID(i+1) == id {
				return fmt.Sprint(i + 1)
			}
		}
		t.Fatalf("AuditEvent %s is neither filed nor of the trail", id)
		return ""
	}
	names := func(bu bundle) string {
		var out []string
		for _, id := range ids(bu, "match") {
			out = append(out, name(id))
		}
		return strings.Join(out, ",")
	}
	// The filing is audited in carebridge's own chain, with the
	// Patient, in the write's transaction.
	fe.e.events.mu.Lock()
	audited := slices.Clone(fe.e.events.audited)
	fe.e.events.mu.Unlock()
	if len(audited) != 3 {
		t.Fatalf("%d audit entries published with the filings, want 3", len(audited))
	}
	for _, en := range audited {
		if en.Action != "rest.create" || en.Patient != "Patient/p1" || len(en.Entities) != 1 || filed[strings.TrimPrefix(en.Entities[0], "AuditEvent/")] == "" ||
			en.Actor.ID != "ehr" || en.Outcome != audit.OutcomeSuccess {
			t.Errorf("the filing's audit entry: %+v", en)
		}
	}

	for _, tc := range []struct {
		query, want string
		total       int
	}{
		{"", "f-c,9,8,7,6,f-b,5,4,3,f-a,2,1", 12},
		{"_sort=date", "1,2,f-a,3,4,5,f-b,6,7,8,9,f-c", 12},
		{"_sort=date&_count=4&_offset=2", "f-a,3,4,5", 12},
		{"_count=3&_offset=4", "6,f-b,5", 12},
		{"_count=5&_offset=10", "2,1", 12},
		{"_offset=20", "", 12},
		{"patient=Patient/p1", "f-c,f-b,5,4,3,f-a,1", 7},
		{"entity=Patient/p1&_sort=date", "1,f-a,3,4,5,f-b,f-c", 7},
		{"action=R", "f-c,9,f-b,5,4,f-a", 6},
		{"type=110110", "f-c,f-b,f-a", 3},
		{"type=110110,110114", "f-c,8,7,f-b,f-a", 5},
		{"outcome=0&date=lt2026-11-03T14:33:00Z", "3,f-a,1", 3},
		{"date=ge2026-11-03T14:31:30Z&date=le2026-11-03T14:34:00Z", "5,4,3,f-a", 4},
		{"agent:identifier=urn:synthetic:ehr-user|u-f-b", "f-b", 1},
		{"agent:identifier=u-f-a", "f-a", 1},
		{"agent:identifier=|u-f-a", "", 0},
		{"subtype=read", "9,5", 2},
		{"agent=Device/carebridge&_count=2", "9,8", 9},
	} {
		t.Run(tc.query, func(t *testing.T) {
			bu := fe.ae.search(t, tok, tc.query)
			total := -1
			if bu.Total != nil {
				total = *bu.Total
			}
			if got := names(bu); got != tc.want || total != tc.total {
				t.Errorf("AuditEvent?%s = %s (total %d), want %s (total %d)", tc.query, got, total, tc.want, tc.total)
			}
		})
	}
	if got := names(fe.ae.search(t, tok, "_id="+idOf(filed, "f-a")+","+eventID(3))); got != "3,f-a" {
		t.Errorf("_id of a filed and a native AuditEvent = %s, want 3,f-a", got)
	}
	bu := fe.ae.search(t, tok, "_summary=count&patient=Patient/p1")
	if bu.Total == nil || *bu.Total != 7 || len(bu.Entry) != 0 {
		t.Errorf("_summary=count: total %v, %d entries; want 7, none", bu.Total, len(bu.Entry))
	}
	bu = fe.ae.search(t, tok, "_total=none&_count=2")
	if bu.Total != nil || names(bu) != "f-c,9" {
		t.Errorf("_total=none: total %v, %s; want none, f-c,9", bu.Total, names(bu))
	}
	// The search is audited naming what it returned, filed ones too.
	if last := fe.e.audit.last(); last.Action != "rest.search-type" || !slices.Equal(last.Entities, []string{"AuditEvent/" + idOf(filed, "f-c"), "AuditEvent/" + eventID(9)}) {
		t.Errorf("the search's audit entry: %+v", last)
	}
	// Without AuditEvent.s, no search: filed ones no more than the trail.
	if status, _, _ := fe.e.get(t, fe.e.token(t, "system/AuditEvent.c"), "/fhir/AuditEvent?type=110110"); status != http.StatusForbidden {
		t.Errorf("search with system/AuditEvent.c only: %d, want 403", status)
	}
}

func idOf(filed map[string]string, name string) string {
	for id, n := range filed {
		if n == name {
			return id
		}
	}
	return ""
}

// TestAuditEventCreateRefusals: AuditEvents are append only, create
// needs system/AuditEvent.c, and a body that is not a valid AuditEvent is
// refused naming what is wrong.
func TestAuditEventCreateRefusals(t *testing.T) {
	fe := newFilingEnv(t)
	tok := fe.e.token(t, "system/AuditEvent.crs")
	valid := []byte(`{"resourceType":"AuditEvent","id":"sent-id","meta":{"versionId":"7","tag":[{"system":"urn:synthetic","code":"t"}]},
		"type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110110"},"recorded":"2026-11-03T14:30:00.5+01:00",
		"agent":[{"who":{"reference":"Practitioner/a"},"requestor":true}],"source":{"observer":{"display":"x"}}}`)
	id, b := fe.file(t, tok, valid)
	if id == "sent-id" || !strings.Contains(string(b), `"tag":[{"system":"urn:synthetic","code":"t"}]`) {
		t.Errorf("filed as %s, meta kept as %s", id, b)
	}
	for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
		for _, path := range []string{"/fhir/AuditEvent/" + id, "/fhir/AuditEvent/" + eventID(1), "/fhir/AuditEvent"} {
			before := len(fe.e.audit.all())
			status, h, b := fe.e.send(t, m, tok, path, fhirJSON, valid)
			o := readOutcome(t, b)
			if status != http.StatusMethodNotAllowed || h.Get("Allow") == "" || !strings.Contains(o.Issue[0].Details.Text, "append-only") {
				t.Errorf("%s %s: %d %v %s", m, path, status, h.Get("Allow"), b)
			}
			es := fe.e.audit.all()
			if len(es) != before+1 || es[len(es)-1].Outcome != audit.OutcomeMinor || es[len(es)-1].Actor.ID != "ehr" {
				t.Errorf("%s %s is not audited as a refusal: %+v", m, path, es[before:])
			}
		}
	}
	status, _, b := fe.e.get(t, tok, "/fhir/AuditEvent/"+id)
	if status != http.StatusOK || !sameApartFromMetaAndID(t, b, valid) {
		t.Errorf("after the refusals: %d %s", status, b)
	}

	for _, tc := range []struct {
		name   string
		token  string
		body   string
		header []string
		status int
		expr   string
	}{
		{"without AuditEvent.c", fe.e.token(t, "system/AuditEvent.rs"), string(valid), nil, http.StatusForbidden, ""},
		{"If-None-Exist", tok, string(valid), []string{"If-None-Exist", "type=110110"}, http.StatusBadRequest, "If-None-Exist"},
		{"another resource", tok, `{"resourceType":"Communication","status":"completed"}`, nil, http.StatusBadRequest, "resourceType"},
		{"not JSON", tok, `{"resourceType":`, nil, http.StatusBadRequest, ""},
		{"no recorded", tok, `{"resourceType":"AuditEvent","type":{"code":"x"},"agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`, nil,
			http.StatusUnprocessableEntity, "AuditEvent"},
		{"an unknown element", tok, strings.Replace(string(valid), `"recorded"`, `"recordedAt":"x","recorded"`, 1), nil, http.StatusUnprocessableEntity, "AuditEvent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, b := fe.e.send(t, http.MethodPost, tc.token, "/fhir/AuditEvent", fhirJSON, []byte(tc.body), tc.header...)
			o := readOutcome(t, b)
			if status != tc.status {
				t.Fatalf("%d, want %d: %s", status, tc.status, b)
			}
			named := false
			for _, is := range o.Issue {
				named = named || slices.ContainsFunc(is.Expression, func(e string) bool { return strings.HasPrefix(e, tc.expr) })
			}
			if tc.expr != "" && !named {
				t.Errorf("no issue names %s: %s", tc.expr, b)
			}
		})
	}
	if status, _, _ := fe.e.send(t, http.MethodPost, tok, "/fhir/AuditEvent", "text/plain", valid); status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d, want 415", status)
	}

	status, h, b := fe.e.send(t, http.MethodPost, tok, "/fhir/AuditEvent", fhirJSON, valid, "Prefer", "return=minimal")
	if status != http.StatusCreated || len(b) != 0 || !strings.Contains(h.Get("Location"), "/AuditEvent/") {
		t.Errorf("return=minimal: %d %v %q", status, h, b)
	}
	status, _, b = fe.e.send(t, http.MethodPost, tok, "/fhir/AuditEvent", fhirJSON, valid, "Prefer", "return=OperationOutcome")
	if o := readOutcome(t, b); status != http.StatusCreated || o.Issue[0].Severity != "information" {
		t.Errorf("return=OperationOutcome: %d %s", status, b)
	}
	status, _, b = fe.e.get(t, tok, "/fhir/metadata")
	if status != http.StatusOK || !strings.Contains(string(b), `{"code":"create","documentation":"append only`) {
		t.Errorf("the CapabilityStatement does not list AuditEvent create: %d", status)
	}
}

func FuzzAuditEventBody(f *testing.F) {
	f.Add([]byte(`{"resourceType":"AuditEvent","type":{"code":"x"},"recorded":"2026-11-03T14:30:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`))
	f.Add([]byte(`{"resourceType":"AuditEvent","id":"x","meta":{"versionId":"9"},"type":{"code":"x"},"recorded":"2026-11-03T14:30:00Z",` +
		`"agent":[{"who":{"reference":"Patient/a/_history/2"},"requestor":true}],"source":{"observer":{"display":"x"}},"entity":[{"what":{"reference":"Patient/p"}}]}`))
	f.Add([]byte(`{"resourceType":"AuditEvent","recorded":"2026"}`))
	f.Add([]byte(`[[[[{}]]]]`))
	f.Add([]byte(`{"resourceType":"AuditEvent","meta":[]}`))
	fe := newFilingEnv(f)
	tok := fe.e.token(f, "system/AuditEvent.crs")
	f.Fuzz(func(t *testing.T, body []byte) {
		status, _, b := fe.e.send(t, http.MethodPost, tok, "/fhir/AuditEvent", fhirJSON, body)
		if status >= 500 {
			t.Fatalf("%d for %q: %s", status, body, b)
		}
		if status == http.StatusCreated {
			if err := fe.e.v.Validate(b); err != nil {
				t.Fatalf("filed an AuditEvent that is not valid R4: %s", b)
			}
			status, _, got := fe.e.get(t, tok, "/fhir/AuditEvent/"+headOf(t, b).ID)
			if status != http.StatusOK || string(got) != string(b) {
				t.Fatalf("read back: %d %s, want %s", status, got, b)
			}
		}
	})
}

// all is every entry audited so far.
func (a *auditLog) all() []audit.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.entries)
}
