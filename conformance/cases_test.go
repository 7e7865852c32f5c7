package conformance

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readCases read what the data set holds: every resource type's read,
// Communication's vread and history, and the custom SearchParameter.
func readCases() []testCase {
	return []testCase{
		{name: "read Communication", covers: []string{"Communication interaction read"}, run: func(t *testing.T, w *world) {
			r := w.do(t, req{target: "Communication/conf-01"})
			if r.status != http.StatusOK || r.header.Get("ETag") != `W/"1"` {
				t.Fatalf("GET Communication/conf-01: %d ETag %q: %s", r.status, r.header.Get("ETag"), r.body)
			}
			if h := headOf(r.body); h.ID != "conf-01" || h.Meta.VersionID != "1" {
				t.Errorf("id %q versionId %q, want conf-01 1", h.ID, h.Meta.VersionID)
			}
			if !sameApartFromMeta(t, r.body, seedComms[0].resource(w)) {
				t.Errorf("read back\n%s\nwant what was PUT\n%s", r.body, seedComms[0].resource(w))
			}
			r = w.do(t, req{target: "Communication/{hl7}"})
			var comm struct {
				Identifier []struct{ System, Value string }
				Status     string
				Priority   string
			}
			decode(t, r.body, &comm)
			if r.status != http.StatusOK || len(comm.Identifier) != 1 || comm.Identifier[0].System != sysSource || comm.Status != "in-progress" || comm.Priority != "stat" {
				t.Errorf("GET the pipeline's Communication: %d %s", r.status, r.body)
			}
		}},
		{name: "read Patient", covers: []string{"Patient interaction read"}, run: func(t *testing.T, w *world) {
			r := w.do(t, req{target: "Patient/{pat}"})
			var pat struct {
				head
				Identifier []struct{ Value string }
			}
			decode(t, r.body, &pat)
			if r.status != http.StatusOK || pat.ResourceType != "Patient" || pat.ID != w.refs["pat"] ||
				!slices.ContainsFunc(pat.Identifier, func(id struct{ Value string }) bool { return id.Value == "200345" }) {
				t.Errorf("GET Patient/%s: %d %s; want the Patient of MRN 200345", w.refs["pat"], r.status, r.body)
			}
		}},
		{name: "read Encounter", covers: []string{"Encounter interaction read"}, run: func(t *testing.T, w *world) {
			readMapped(t, w, "Encounter", "{enc}", `"subject":{"reference":"Patient/`+w.refs["pat"]+`"`)
		}},
		{name: "read ServiceRequest", covers: []string{"ServiceRequest interaction read"}, run: func(t *testing.T, w *world) {
			readMapped(t, w, "ServiceRequest", "{sr}", `"code":"24320-4"`)
		}},
		{name: "read Observation", covers: []string{"Observation interaction read"}, run: func(t *testing.T, w *world) {
			var codes []string
			for _, id := range []string{"{obs}", "{obs2}"} {
				body := readMapped(t, w, "Observation", id, `"subject":{"reference":"Patient/`+w.refs["pat"]+`"`)
				for _, c := range []string{"2823-3", "2951-2"} {
					if bytes.Contains(body, []byte(`"code":"`+c+`"`)) {
						codes = append(codes, c)
					}
				}
			}
			slices.Sort(codes)
			if !slices.Equal(codes, []string{"2823-3", "2951-2"}) {
				t.Errorf("the Observations are of %v, want potassium 2823-3 and sodium 2951-2", codes)
			}
		}},
		{name: "vread", covers: []string{"Communication interaction vread", "Communication readHistory"}, run: func(t *testing.T, w *world) {
			for v, status := range map[string]string{"1": "in-progress", "2": "completed"} {
				r := w.do(t, req{target: "Communication/conf-10/_history/" + v})
				var c struct {
					head
					Status string
				}
				decode(t, r.body, &c)
				if r.status != http.StatusOK || c.ID != "conf-10" || c.Meta.VersionID != v || c.Status != status || r.header.Get("ETag") != `W/"`+v+`"` {
					t.Errorf("GET Communication/conf-10/_history/%s: %d ETag %q %s; want version %s, %s", v, r.status, r.header.Get("ETag"), r.body, v, status)
				}
			}
			if r := w.do(t, req{target: "Communication/conf-10/_history/3"}); r.status != http.StatusNotFound {
				t.Errorf("GET a version that does not exist: %d, want 404", r.status)
			}
		}},
		{name: "history-instance", covers: []string{"Communication interaction history-instance"}, run: func(t *testing.T, w *world) {
			for id, want := range map[string][]string{"conf-10": {"2", "1"}, "conf-01": {"1"}} {
				r := w.do(t, req{target: "Communication/" + id + "/_history"})
				if r.status != http.StatusOK {
					t.Fatalf("GET Communication/%s/_history: %d %s", id, r.status, r.body)
				}
				var b bundle
				decode(t, r.body, &b)
				var versions []string
				for _, e := range b.Entry {
					h := headOf(e.Resource)
					versions = append(versions, h.Meta.VersionID)
					if h.ID != id || e.FullURL != w.base+"/Communication/"+id || e.Response.Etag != `W/"`+h.Meta.VersionID+`"` {
						t.Errorf("history entry %s fullUrl %q etag %q", h.ID, e.FullURL, e.Response.Etag)
					}
				}
				if b.Type != "history" || b.Total == nil || *b.Total != len(want) || !slices.Equal(versions, want) {
					t.Errorf("GET Communication/%s/_history: type %q total %v versions %v, want history of %v (newest first)", id, b.Type, b.Total, versions, want)
				}
			}
			if r := w.do(t, req{target: "Communication/conf-nope/_history"}); r.status != http.StatusNotFound {
				t.Errorf("the history of nothing: %d, want 404", r.status)
			}
		}},
		{name: "the priority SearchParameter", covers: []string{"Communication searchParam priority"}, run: func(t *testing.T, w *world) {
			def := ""
			for _, sp := range w.capability["Communication"].SearchParam {
				if sp.Name == "priority" {
					def = sp.Definition
				}
			}
			if !strings.HasPrefix(def, w.base+"/SearchParameter/") {
				t.Fatalf("the priority parameter's definition %q is not on this server", def)
			}
			r := w.do(t, req{token: tokenNone, target: def})
			var sp struct {
				ResourceType, URL, Code, Type, Expression string
				Base                                      []string
			}
			decode(t, r.body, &sp)
			if r.status != http.StatusOK || sp.ResourceType != "SearchParameter" || sp.URL != def || sp.Code != "priority" ||
				sp.Type != "token" || !slices.Equal(sp.Base, []string{"Communication"}) || sp.Expression != "Communication.priority" {
				t.Errorf("GET %s: %d %s", def, r.status, r.body)
			}
		}},
		{name: "every searchParam has its definition", run: func(t *testing.T, w *world) {
			for typ, res := range w.capability {
				for _, sp := range res.SearchParam {
					if !strings.HasPrefix(sp.Definition, "http://hl7.org/fhir/SearchParameter/") && !strings.HasPrefix(sp.Definition, w.base+"/SearchParameter/") {
						t.Errorf("%s searchParam %s: definition %q", typ, sp.Name, sp.Definition)
					}
				}
			}
		}},
		{name: "SMART configuration", run: func(t *testing.T, w *world) {
			for _, path := range []string{"/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"} {
				r := w.do(t, req{token: tokenNone, target: path})
				var c struct {
					TokenEndpoint string   `json:"token_endpoint"`
					Grants        []string `json:"grant_types_supported"`
				}
				decode(t, r.body, &c)
				if r.status != http.StatusOK || c.TokenEndpoint != w.root+"/auth/token" || !slices.Contains(c.Grants, "client_credentials") {
					t.Errorf("GET %s: %d %s", path, r.status, r.body)
				}
			}
		}},
	}
}

// readMapped reads typ/id (id may be a placeholder), wants it to hold
// want, and returns it.
func readMapped(t *testing.T, w *world, typ, id, want string) []byte {
	t.Helper()
	id = w.resolve(id)
	r := w.do(t, req{target: typ + "/" + id})
	if h := headOf(r.body); r.status != http.StatusOK || h.ResourceType != typ || h.ID != id || !bytes.Contains(r.body, []byte(want)) {
		t.Errorf("GET %s/%s: %d %s; want it to hold %s", typ, id, r.status, r.body, want)
	}
	return r.body
}

// sameApartFromMeta reports whether two resources are the same JSON once
// meta is set aside.
func sameApartFromMeta(t *testing.T, a, b []byte) bool {
	t.Helper()
	var ma, mb map[string]any
	decode(t, a, &ma)
	decode(t, b, &mb)
	delete(ma, "meta")
	delete(mb, "meta")
	return reflect.DeepEqual(ma, mb)
}

// errorCase is a request the server must refuse, with the status and
// the OperationOutcome that says why.
type errorCase struct {
	name   string
	covers []string
	req    req
	status int
	expr   []string // expressions the outcome's issues must name
	header [2]string
}

func (ec errorCase) testCase() testCase {
	name := ec.name
	if name == "" {
		name = ec.req.target
	}
	return testCase{name: name, covers: ec.covers, run: func(t *testing.T, w *world) {
		r := ec.req
		if strings.Contains(r.target, "?") {
			path, q, _ := strings.Cut(r.target, "?")
			r.target = path + "?" + w.query(q)
		} else {
			r.target = w.resolve(r.target)
		}
		if r.body != nil {
			r.body = []byte(w.resolve(string(r.body)))
		}
		got := w.do(t, r)
		if got.status != ec.status {
			t.Fatalf("%s %s: %d, want %d: %s", r.method, r.target, got.status, ec.status, got.body)
		}
		issues := issuesOf(got.body)
		for _, e := range ec.expr {
			if !namesExpression(issues, e) {
				t.Errorf("the OperationOutcome does not name %q: %s", e, got.body)
			}
		}
		if h := ec.header; h[0] != "" && !strings.Contains(got.header.Get(h[0]), h[1]) {
			t.Errorf("%s: %q, want it to hold %q", h[0], got.header.Get(h[0]), h[1])
		}
	}}
}

func errorCases() []testCase {
	search := []string{"Communication interaction search-type"}
	read := []string{"Communication interaction read"}
	cases := []errorCase{
		{name: "an unknown parameter is 400 naming it", covers: search, req: req{target: "Communication?foo=bar"}, status: 400, expr: []string{"foo"}},
		{name: "a chained parameter is unknown", covers: search, req: req{target: "Communication?subject.name=SAMPLE"}, status: 400, expr: []string{"subject.name"}},
		{name: "every problem is named, not only the first", covers: p("status"), req: req{target: "Communication?foo=1&status=bogus"}, status: 400, expr: []string{"foo", "status"}},
		{name: "a status that is no event-status code", covers: p("status"), req: req{target: "Communication?status=bogus"}, status: 400, expr: []string{"status"}},
		{name: "a malformed date", covers: p("sent"), req: req{target: "Communication?sent=2025-13-45"}, status: 400, expr: []string{"sent"}},
		{name: "the ne prefix is not supported", covers: p("sent"), req: req{target: "Communication?sent=ne2025-01-10"}, status: 400, expr: []string{"sent"}},
		{name: "an unsupported modifier", covers: p("priority"), req: req{target: "Communication?priority:exact=stat"}, status: 400, expr: []string{"priority:exact"}},
		{name: "a reference of the wrong type", covers: p("encounter"), req: req{target: "Communication?encounter=Patient/conf-pat-q"}, status: 400, expr: []string{"encounter"}},
		{name: "an unsupported _sort", covers: search, req: req{target: "Communication?_sort=status"}, status: 400, expr: []string{"_sort"}},
		{name: "a negative _count", covers: search, req: req{target: "Communication?_count=-1"}, status: 400, expr: []string{"_count"}},
		{name: "POST _search takes a form only", covers: search, req: req{method: http.MethodPost, target: "Communication/_search", body: []byte(`{}`), header: []string{"Content-Type", "application/json"}}, status: 415},

		{name: "metadata in XML is 406", req: req{token: tokenNone, target: "metadata?_format=xml"}, status: 406, expr: []string{"_format"}},
		{name: "a search in XML is 406", covers: search, req: req{target: "Communication?_format=application/fhir+xml&_id=conf-01"}, status: 406, expr: []string{"_format"}},
		{name: "Accept XML is 406", covers: read, req: req{target: "Communication/conf-01", header: []string{"Accept", "application/fhir+xml"}}, status: 406},

		{name: "no token is 401", covers: search, req: req{token: tokenNone, target: "Communication?_id=conf-01"}, status: 401, header: [2]string{"WWW-Authenticate", "Bearer"}},
		{name: "a token not issued here is 401", covers: read, req: req{token: tokenBogus, target: "Communication/conf-01"}, status: 401, header: [2]string{"WWW-Authenticate", "invalid_token"}},
		{name: "a search without Communication scope is 403", covers: search, req: req{token: tokenPatientRead, target: "Communication?_id=conf-01"}, status: 403, header: [2]string{"WWW-Authenticate", "insufficient_scope"}},
		{name: "a Patient read without Patient scope is 403", covers: []string{"Patient interaction read"}, req: req{token: tokenCommRead, target: "Patient/{pat}"}, status: 403, header: [2]string{"WWW-Authenticate", "insufficient_scope"}},
		{name: "an update without update scope is 403", covers: []string{"Communication interaction update"},
			req: req{token: tokenCommRead, method: http.MethodPut, target: "Communication/conf-01", body: []byte(`{"resourceType":"Communication","id":"conf-01","status":"completed"}`)}, status: 403},

		{name: "read of an unknown Communication is 404", covers: read, req: req{target: "Communication/conf-nope"}, status: 404},
		{name: "read of an unknown Patient is 404", covers: []string{"Patient interaction read"}, req: req{target: "Patient/conf-nope"}, status: 404},
		{name: "read of an unknown Encounter is 404", covers: []string{"Encounter interaction read"}, req: req{target: "Encounter/conf-nope"}, status: 404},
		{name: "read of an unknown ServiceRequest is 404", covers: []string{"ServiceRequest interaction read"}, req: req{target: "ServiceRequest/conf-nope"}, status: 404},
		{name: "read of an unknown Observation is 404", covers: []string{"Observation interaction read"}, req: req{target: "Observation/conf-nope"}, status: 404},
		{name: "an unknown endpoint is 404", req: req{target: "Nothing/conf-01"}, status: 404},
		{name: "delete, which the statement does not list, is 405", req: req{method: http.MethodDelete, target: "Communication/conf-01"}, status: 405},
	}
	out := make([]testCase, len(cases))
	for i, ec := range cases {
		out[i] = ec.testCase()
	}
	return out
}

// locationRE is the Location of a created or updated Communication.
var locationRE = regexp.MustCompile(`/Communication/([A-Za-z0-9.-]{1,64})/_history/([0-9]+)$`)

// writeCases create, update and patch Communications of their own
// (identifiers urn:conformance:msg|9xxx, ids conf-w…), after every other
// case has run on the data set.
func writeCases() []testCase {
	create := []string{"Communication interaction create"}
	return []testCase{
		{name: "create", covers: create, write: true, run: func(t *testing.T, w *world) {
			c := seedComm{status: "in-progress", priority: "urgent", identifier: []string{sysMsg + "|9100"}, subject: "Patient/{pat}",
				recipient: []string{"Practitioner/conf-nurse-1"}, sent: "2025-10-01T10:00:00Z"}
			r := w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w)})
			m := locationRE.FindStringSubmatch(r.header.Get("Location"))
			if r.status != http.StatusCreated || m == nil || m[2] != "1" || r.header.Get("ETag") != `W/"1"` || !strings.HasPrefix(r.header.Get("Location"), w.base+"/") {
				t.Fatalf("POST Communication: %d Location %q ETag %q: %s", r.status, r.header.Get("Location"), r.header.Get("ETag"), r.body)
			}
			id := m[1]
			if h := headOf(r.body); h.ID != id || h.Meta.VersionID != "1" {
				t.Errorf("the created resource: id %q version %q, want %s 1", h.ID, h.Meta.VersionID, id)
			}
			if got := w.do(t, req{target: r.header.Get("Location")}); got.status != http.StatusOK || headOf(got.body).ID != id {
				t.Errorf("GET the Location: %d %s", got.status, got.body)
			}
			w.runSearch(t, searchCase{query: "identifier=" + sysMsg + "|9100&recipient=Practitioner/conf-nurse-1", want: []string{id}})

			r = w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w), header: []string{"Prefer", "return=minimal"}})
			if r.status != http.StatusCreated || len(r.body) != 0 || locationRE.FindString(r.header.Get("Location")) == "" {
				t.Errorf("POST with Prefer: return=minimal: %d Location %q body %q", r.status, r.header.Get("Location"), r.body)
			}
			r = w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w), header: []string{"Prefer", "return=OperationOutcome"}})
			if r.status != http.StatusCreated || resourceTypeOf(r.body) != "OperationOutcome" {
				t.Errorf("POST with Prefer: return=OperationOutcome: %d %s", r.status, r.body)
			}
		}},
		{name: "create refuses what is not a valid Communication", covers: create, write: true, run: func(t *testing.T, w *world) {
			for _, tc := range []struct {
				body        string
				contentType string
				status      int
			}{
				{`{"resourceType":"Communication","payload":[{"contentString":"no status"}]}`, "application/fhir+json", http.StatusUnprocessableEntity},
				{`{"resourceType":"Communication","status":"sent"}`, "application/fhir+json", http.StatusUnprocessableEntity},
				{`{"resourceType":"Communication","status":"completed","bogus":1}`, "application/fhir+json", http.StatusUnprocessableEntity},
				{`{"resourceType":"Patient"}`, "application/fhir+json", http.StatusBadRequest},
				{`[1,2]`, "application/fhir+json", http.StatusBadRequest},
				{`{"resourceType":"Communication","status":"completed"}`, "text/plain", http.StatusUnsupportedMediaType},
			} {
				r := w.do(t, req{method: http.MethodPost, target: "Communication", body: []byte(tc.body), header: []string{"Content-Type", tc.contentType}})
				if r.status != tc.status {
					t.Errorf("POST %s as %s: %d, want %d: %s", tc.body, tc.contentType, r.status, tc.status, r.body)
				}
			}
		}},
		{name: "conditional create", covers: []string{"Communication conditionalCreate", "Communication interaction create"}, write: true, run: func(t *testing.T, w *world) {
			c := seedComm{status: "completed", identifier: []string{sysMsg + "|9200"}, subject: "Patient/conf-pat-q", sent: "2025-10-02T10:00:00Z"}
			cond := "identifier=" + sysMsg + "|9200"
			r := w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w), header: []string{"If-None-Exist", cond}})
			m := locationRE.FindStringSubmatch(r.header.Get("Location"))
			if r.status != http.StatusCreated || m == nil {
				t.Fatalf("the first conditional create: %d Location %q: %s", r.status, r.header.Get("Location"), r.body)
			}
			r = w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w), header: []string{"If-None-Exist", cond}})
			if r.status != http.StatusOK || headOf(r.body).ID != m[1] {
				t.Errorf("the second conditional create: %d %s; want 200 with Communication/%s", r.status, r.body, m[1])
			}
			w.runSearch(t, searchCase{query: cond, want: []string{m[1]}})
			r = w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w), header: []string{"If-None-Exist", "status=completed"}})
			if r.status != http.StatusPreconditionFailed {
				t.Errorf("a conditional create that matches several: %d, want 412: %s", r.status, r.body)
			}
			r = w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w), header: []string{"If-None-Exist", "foo=bar"}})
			if r.status != http.StatusBadRequest || !slices.ContainsFunc(issuesOf(r.body), func(is outcomeIssue) bool {
				return slices.ContainsFunc(is.Expression, func(e string) bool { return strings.Contains(e, "foo") })
			}) {
				t.Errorf("a conditional create on an unknown parameter: %d %s; want 400 naming foo", r.status, r.body)
			}
		}},
		{name: "update", covers: []string{"Communication interaction update", "Communication updateCreate", "Communication versioning versioned-update"}, write: true, run: updateCase},
		{name: "patch", covers: []string{"Communication interaction patch"}, write: true, run: patchCase},
		{name: "create without sent", covers: append(p("sent"), create...), write: true, run: func(t *testing.T, w *world) {
			c := seedComm{status: "preparation", identifier: []string{sysMsg + "|9400"}, subject: "Patient/conf-pat-q"}
			r := w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w)})
			if r.status != http.StatusCreated {
				t.Fatalf("POST without sent: %d %s", r.status, r.body)
			}
			id := headOf(r.body).ID
			var sent struct{ Sent *string }
			json.Unmarshal(r.body, &sent)
			if sent.Sent != nil {
				t.Errorf("the server added sent %q", *sent.Sent)
			}
			// Communication.sent is 0..1: a Communication without it has
			// no value for the parameter sent.
			w.runSearch(t, searchCase{query: "identifier=" + sysMsg + "|9400&sent:missing=true", want: []string{id}})
		}},
	}
}

func updateCase(t *testing.T, w *world) {
	v1 := seedComm{id: "conf-w1", status: "in-progress", priority: "routine", category: [][]string{{sysCategory + "|alert"}},
		identifier: []string{sysMsg + "|9300"}, subject: "Patient/{pat}", recipient: []string{"Practitioner/conf-w-old"}, sent: "2025-10-03T10:00:00Z"}
	v2 := v1
	v2.status, v2.category, v2.identifier, v2.recipient = "completed", [][]string{{sysCategory + "|reminder"}}, []string{sysMsg + "|9301"}, []string{"Practitioner/conf-w-new"}
	put := func(c seedComm, ifMatch string) reply {
		var h []string
		if ifMatch != "" {
			h = []string{"If-Match", ifMatch}
		}
		return w.do(t, req{method: http.MethodPut, target: "Communication/" + c.id, body: c.resource(w), header: h})
	}
	if r := put(v1, ""); r.status != http.StatusCreated || r.header.Get("ETag") != `W/"1"` || r.header.Get("Location") != w.base+"/Communication/conf-w1/_history/1" {
		t.Fatalf("PUT as create: %d ETag %q Location %q: %s", r.status, r.header.Get("ETag"), r.header.Get("Location"), r.body)
	}
	if r := put(v2, `W/"1"`); r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` || r.header.Get("Last-Modified") == "" || headOf(r.body).Meta.VersionID != "2" {
		t.Fatalf("PUT If-Match W/\"1\": %d ETag %q: %s", r.status, r.header.Get("ETag"), r.body)
	}
	if r := put(v2, `W/"1"`); r.status != http.StatusPreconditionFailed || !namesExpression(issuesOf(r.body), "If-Match") {
		t.Errorf("PUT with a stale If-Match: %d %s; want 412 naming If-Match", r.status, r.body)
	}
	if r := put(v2, `nonsense`); r.status != http.StatusBadRequest {
		t.Errorf("PUT with a malformed If-Match: %d %s; want 400", r.status, r.body)
	}
	if r := put(v2, ""); r.status != http.StatusOK || r.header.Get("ETag") != `W/"3"` {
		t.Errorf("PUT without If-Match: %d ETag %q; want 200 W/\"3\"", r.status, r.header.Get("ETag"))
	}
	other := v2
	other.id = "conf-other"
	if r := w.do(t, req{method: http.MethodPut, target: "Communication/conf-w1", body: other.resource(w)}); r.status != http.StatusBadRequest || !namesExpression(issuesOf(r.body), "Communication.id") {
		t.Errorf("PUT with another id in the body: %d %s; want 400 naming Communication.id", r.status, r.body)
	}
	if r := w.do(t, req{target: "Communication/conf-w1"}); r.status != http.StatusOK || r.header.Get("ETag") != `W/"3"` || !sameApartFromMeta(t, r.body, v2.resource(w)) {
		t.Errorf("GET after the updates: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	// The search index is the current version's.
	for q, want := range map[string][]string{
		"identifier=" + sysMsg + "|9300":                 nil,
		"identifier=" + sysMsg + "|9301":                 {"w1"},
		"_id=conf-w1&category=" + sysCategory + "|alert": nil,
		"_id=conf-w1&status=completed":                   {"w1"},
		"recipient=Practitioner/conf-w-new":              {"w1"},
		"recipient=Practitioner/conf-w-old":              nil,
	} {
		t.Run(q, func(t *testing.T) {
			w.runSearch(t, searchCase{query: q, want: want})
		})
	}
}

func patchCase(t *testing.T, w *world) {
	c := seedComm{id: "conf-w2", status: "in-progress", identifier: []string{sysMsg + "|9500"}, subject: "Patient/{pat}", sent: "2025-10-04T10:00:00Z"}
	if r := w.do(t, req{method: http.MethodPut, target: "Communication/conf-w2", body: c.resource(w)}); r.status != http.StatusCreated {
		t.Fatalf("PUT as create: %d %s", r.status, r.body)
	}
	patch := func(id, ops, ifMatch string, contentType ...string) reply {
		ct := "application/json-patch+json"
		if len(contentType) > 0 {
			ct = contentType[0]
		}
		h := []string{"Content-Type", ct}
		if ifMatch != "" {
			h = append(h, "If-Match", ifMatch)
		}
		return w.do(t, req{method: http.MethodPatch, target: "Communication/" + id, body: []byte(ops), header: h})
	}
	ops := `[{"op":"replace","path":"/status","value":"completed"},{"op":"add","path":"/priority","value":"stat"}]`
	r := patch("conf-w2", ops, `W/"1"`)
	var got struct {
		head
		Status, Priority string
	}
	decode(t, r.body, &got)
	if r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` || got.Status != "completed" || got.Priority != "stat" || got.Meta.VersionID != "2" {
		t.Fatalf("PATCH: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	w.runSearch(t, searchCase{query: "_id=conf-w2&status=completed&priority=stat", want: []string{"w2"}})
	for _, tc := range []struct {
		name, id, ops, ifMatch, contentType string
		status                              int
	}{
		{"a stale If-Match", "conf-w2", ops, `W/"1"`, "", http.StatusPreconditionFailed},
		{"a patch that changes the id", "conf-w2", `[{"op":"replace","path":"/id","value":"conf-w3"}]`, "", "", http.StatusUnprocessableEntity},
		{"a patch whose result is not valid", "conf-w2", `[{"op":"remove","path":"/status"}]`, "", "", http.StatusUnprocessableEntity},
		{"a patch that does not apply", "conf-w2", `[{"op":"remove","path":"/nothing/there"}]`, "", "", http.StatusUnprocessableEntity},
		{"not a JSON Patch", "conf-w2", `{"status":"completed"}`, "", "", http.StatusBadRequest},
		{"a FHIR resource instead of a patch", "conf-w2", `{"resourceType":"Communication"}`, "", "application/fhir+json", http.StatusUnsupportedMediaType},
		{"an unknown id", "conf-nope", ops, "", "", http.StatusNotFound},
	} {
		var ct []string
		if tc.contentType != "" {
			ct = []string{tc.contentType}
		}
		if r := patch(tc.id, tc.ops, tc.ifMatch, ct...); r.status != tc.status {
			t.Errorf("PATCH with %s: %d, want %d: %s", tc.name, r.status, tc.status, r.body)
		}
	}
	if r := w.do(t, req{target: "Communication/conf-w2"}); r.header.Get("ETag") != `W/"2"` {
		t.Errorf("the refused patches changed the version: ETag %q", r.header.Get("ETag"))
	}
}
