package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func (e *env) send(t testing.TB, method, token, path, contentType string, body []byte, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

const fhirJSON = "application/fhir+json"

func corpusDir(t testing.TB) string {
	dir := filepath.Join("..", "..", "..", "shared", "corpus", "fhir-r4")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("the FHIR R4 examples are not at %s", dir)
	}
	return dir
}

// TestOfficialExamplesRoundTrip: the spec's Communication examples are
// stored under their ids, read back unchanged apart from meta, and found
// by each field they have a search parameter for.
func TestOfficialExamplesRoundTrip(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.cruds")
	files, _ := filepath.Glob(filepath.Join(corpusDir(t), "Communication-*.json"))
	if len(files) != 3 {
		t.Fatalf("%d Communication examples, want 3", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var ex map[string]any
			json.Unmarshal(body, &ex)
			id := ex["id"].(string)
			status, h, b := e.send(t, http.MethodPut, tok, "/fhir/Communication/"+id, fhirJSON, body)
			if status != http.StatusCreated || h.Get("ETag") != `W/"1"` || !strings.HasSuffix(h.Get("Location"), "/Communication/"+id+"/_history/1") {
				t.Fatalf("PUT as create: %d %v %s", status, h, b)
			}
			status, _, b = e.get(t, tok, "/fhir/Communication/"+id)
			if status != http.StatusOK || !sameApartFromMeta(t, b, body) {
				t.Fatalf("read back: %d\n%s\nwant\n%s", status, b, body)
			}
			if err := e.v.Validate(b); err != nil {
				t.Fatalf("read back is not valid R4: %v", err)
			}
			for _, q := range searchesFor(ex) {
				bu := e.search(t, tok, q)
				found := false
				for _, got := range ids(bu, "match") {
					found = found || got == id
				}
				if !found {
					t.Errorf("%s does not find Communication/%s (matches: %v)", q, id, ids(bu, "match"))
				}
			}
		})
	}
}

// searchesFor are the searches that must find a Communication: one per
// searchable field it has (references only when literal).
func searchesFor(ex map[string]any) []string {
	var qs []string
	add := func(param, value string) { qs = append(qs, param+"="+url.QueryEscape(value)) }
	ref := func(v any) string {
		m, _ := v.(map[string]any)
		r, _ := m["reference"].(string)
		if strings.HasPrefix(r, "#") {
			return ""
		}
		return r
	}
	add("_id", ex["id"].(string))
	add("status", ex["status"].(string))
	if r := ref(ex["subject"]); r != "" {
		add("subject", r)
		if strings.HasPrefix(r, "Patient/") {
			add("patient", r)
		}
	}
	if r := ref(ex["encounter"]); r != "" {
		add("encounter", r)
	}
	if r := ref(ex["sender"]); r != "" {
		add("sender", r)
	}
	for _, key := range []string{"recipient", "partOf", "basedOn"} {
		param := map[string]string{"recipient": "recipient", "partOf": "part-of", "basedOn": "based-on"}[key]
		list, _ := ex[key].([]any)
		for _, v := range list {
			if r := ref(v); r != "" {
				add(param, r)
			}
		}
	}
	for _, v := range asList(ex["identifier"]) {
		m := v.(map[string]any)
		add("identifier", m["system"].(string)+"|"+m["value"].(string))
		add("identifier", m["value"].(string))
	}
	for _, v := range asList(ex["category"]) {
		for _, cd := range asList(v.(map[string]any)["coding"]) {
			m := cd.(map[string]any)
			add("category", m["system"].(string)+"|"+m["code"].(string))
		}
	}
	for _, key := range []string{"sent", "received"} {
		if s, ok := ex[key].(string); ok {
			add(key, s)
			add(key, "ge"+s[:10])
		}
	}
	if p, ok := ex["priority"].(string); ok {
		add("priority", p)
	}
	return qs
}

func asList(v any) []any { l, _ := v.([]any); return l }

func TestUpdateVersionsAndHistory(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.cruds")
	status, h, b := e.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON,
		[]byte(`{"resourceType":"Communication","status":"in-progress","subject":{"reference":"Patient/p1"},"recipient":[{"reference":"Practitioner/a"}],"payload":[{"contentString":"synthetic: please call"}]}`))
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, b)
	}
	var created struct {
		ID   string
		Meta struct{ VersionID string }
	}
	json.Unmarshal(b, &created)
	if created.ID == "" || created.Meta.VersionID != "1" || !strings.Contains(h.Get("Location"), created.ID) {
		t.Fatalf("created %+v %v", created, h)
	}
	if len(e.events.created) != 1 || e.events.created[0].Recipients[0] != "Practitioner/a" {
		t.Fatalf("the create did not announce the Communication to its recipient: %+v", e.events.created)
	}
	path := "/fhir/Communication/" + created.ID
	update := []byte(`{"resourceType":"Communication","id":"` + created.ID + `","status":"completed","subject":{"reference":"Patient/p1"},"recipient":[{"reference":"Practitioner/a"},{"reference":"Practitioner/b"}],"payload":[{"contentString":"synthetic: please call"}]}`)
	if status, _, b := e.send(t, http.MethodPut, tok, path, fhirJSON, update, "If-Match", `W/"7"`); status != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %s", status, b)
	}
	status, h, b = e.send(t, http.MethodPut, tok, path, fhirJSON, update, "If-Match", `W/"1"`)
	if status != http.StatusOK || h.Get("ETag") != `W/"2"` {
		t.Fatalf("update: %d %v %s", status, h, b)
	}
	if n := len(e.events.created); n != 2 || len(e.events.created[1].Recipients) != 1 || e.events.created[1].Recipients[0] != "Practitioner/b" {
		t.Fatalf("the update announced %+v; want only the added recipient", e.events.created)
	}
	if status, _, b := e.get(t, tok, path+"/_history/1"); status != http.StatusOK || !strings.Contains(string(b), `"in-progress"`) {
		t.Fatalf("vread 1: %d %s", status, b)
	}
	status, _, b = e.get(t, tok, path+"/_history")
	if status != http.StatusOK || e.v.Validate(b) != nil {
		t.Fatalf("history: %d %v %s", status, e.v.Validate(b), b)
	}
	var hist struct {
		Type  string
		Total int
		Entry []struct {
			Resource struct{ Meta struct{ VersionID string } }
			Request  struct{ Method string }
		}
	}
	json.Unmarshal(b, &hist)
	if hist.Type != "history" || hist.Total != 2 || hist.Entry[0].Resource.Meta.VersionID != "2" || hist.Entry[1].Request.Method != "POST" {
		t.Fatalf("history %+v", hist)
	}
	if bu := e.search(t, tok, "recipient=Practitioner/b&status=completed&patient=p1"); len(ids(bu, "match")) != 1 {
		t.Fatalf("the update is not searchable: %v", ids(bu, "match"))
	}
	// PATCH moves it on again; changing the id is refused.
	status, h, b = e.send(t, http.MethodPatch, tok, path, "application/json-patch+json", []byte(`[{"op":"replace","path":"/status","value":"stopped"}]`))
	if status != http.StatusOK || h.Get("ETag") != `W/"3"` || !strings.Contains(string(b), `"stopped"`) {
		t.Fatalf("patch: %d %v %s", status, h, b)
	}
	if status, _, b := e.send(t, http.MethodPatch, tok, path, "application/json-patch+json", []byte(`[{"op":"replace","path":"/id","value":"other"}]`)); status != http.StatusUnprocessableEntity {
		t.Fatalf("patching the id: %d %s", status, b)
	}
	if status, _, b := e.send(t, http.MethodPatch, tok, path, "application/json-patch+json", []byte(`[{"op":"replace","path":"/status","value":"bogus"}]`)); status != http.StatusUnprocessableEntity || readOutcome(t, b).Issue[0].Expression[0] != "Communication.status" {
		t.Fatalf("patching to an invalid status: %d %s", status, b)
	}
}

func TestConditionalCreate(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.cruds")
	body := []byte(`{"resourceType":"Communication","identifier":[{"system":"urn:ehr:msg","value":"m-1"}],"status":"in-progress"}`)
	status, _, first := e.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON, body, "If-None-Exist", "identifier=urn:ehr:msg|m-1")
	if status != http.StatusCreated {
		t.Fatalf("first: %d %s", status, first)
	}
	status, _, again := e.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON, body, "If-None-Exist", "identifier=urn:ehr:msg|m-1")
	if status != http.StatusOK || string(again) != string(first) {
		t.Fatalf("again: %d %s\nwant the first %s", status, again, first)
	}
	if bu := e.search(t, tok, "identifier=urn:ehr:msg|m-1"); *bu.Total != 1 {
		t.Fatalf("%d stored, want 1", *bu.Total)
	}
}

func TestBadBodiesGet4xx(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.cruds")
	deep := strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200)
	big := append([]byte(`{"resourceType":"Communication","status":"completed","payload":[{"contentString":"`), bytes.Repeat([]byte("x"), 10<<20)...)
	big = append(big, []byte(`"}]}`)...)
	tests := []struct {
		name, contentType string
		body              []byte
		want              int
		expressions       []string
	}{
		{"malformed", fhirJSON, []byte(`{"resourceType":"Communication",`), http.StatusBadRequest, nil},
		{"deep", fhirJSON, []byte(deep), http.StatusBadRequest, nil},
		{"10 MB", fhirJSON, big, http.StatusRequestEntityTooLarge, nil},
		{"XML", "application/fhir+xml", []byte(`<Communication/>`), http.StatusUnsupportedMediaType, nil},
		{"not a Communication", fhirJSON, []byte(`{"resourceType":"Patient"}`), http.StatusBadRequest, []string{"resourceType"}},
		{"every problem named", fhirJSON, []byte(`{"resourceType":"Communication","status":"bogus","sent":"yesterday"}`), http.StatusUnprocessableEntity,
			[]string{"Communication.sent", "Communication.status"}},
		{"two payload kinds", fhirJSON, []byte(`{"resourceType":"Communication","status":"completed","payload":[{"contentString":"a","contentReference":{"reference":"Patient/1"}}]}`),
			http.StatusUnprocessableEntity, []string{"Communication.payload[0]"}},
		{"each unknown element by its path", fhirJSON, []byte(`{"resourceType":"Communication","status":"completed","colour":1,"subject":{"reference":"Patient/1","mood":2,"shade":3}}`),
			http.StatusUnprocessableEntity, []string{"Communication.colour", "Communication.subject.mood", "Communication.subject.shade"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, b := e.send(t, http.MethodPost, tok, "/fhir/Communication", tt.contentType, tt.body)
			if status != tt.want {
				t.Fatalf("%d %s, want %d", status, b[:min(len(b), 300)], tt.want)
			}
			o := readOutcome(t, b)
			var got []string
			for _, is := range o.Issue {
				got = append(got, is.Expression...)
			}
			if tt.expressions != nil && strings.Join(got, ",") != strings.Join(tt.expressions, ",") {
				t.Fatalf("expressions %v, want %v", got, tt.expressions)
			}
		})
	}
	readOnly := e.token(t, "system/Communication.rs")
	if status, _, _ := e.send(t, http.MethodPost, readOnly, "/fhir/Communication", fhirJSON, []byte(`{"resourceType":"Communication","status":"completed"}`)); status != http.StatusForbidden {
		t.Fatalf("create with a read-only token: %d", status)
	}
}

func FuzzCommunicationBodies(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Communication","status":"completed"}`))
	f.Add([]byte(`{"resourceType":"Communication","status":"completed","meta":{"versionId":"9","tag":[{"code":"x"}]},"sent":"2026"}`))
	f.Add([]byte(`{"resourceType":"Communication","id":"x","recipient":[{"reference":"Practitioner/a"}],"status":"in-progress"}`))
	f.Add([]byte(`[[[[{}]]]]`))
	e := newEnv(f)
	tok := e.token(f, "system/Communication.cruds")
	f.Fuzz(func(t *testing.T, body []byte) {
		status, _, b := e.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON, body)
		if status >= 500 {
			t.Fatalf("%d for %q: %s", status, body, b)
		}
		if status == http.StatusCreated && e.v.Validate(b) != nil {
			t.Fatalf("stored a resource that is not valid R4: %s", b)
		}
	})
}
