package conformance

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// auditLocationRE is the Location of a filed AuditEvent.
var auditLocationRE = regexp.MustCompile(`/AuditEvent/([A-Za-z0-9.-]{1,64})/_history/1$`)

// auditImportCases file one of the spec's AuditEvent examples (a user's
// login, agent identified as 95 without a system) as another system
// would, and find it among carebridge's own: AuditEvent create, append
// only.
func auditImportCases() []testCase {
	return []testCase{{name: "AuditEvent create files an official example", covers: []string{"AuditEvent interaction create", "AuditEvent interaction vread"},
		write: true, run: auditImportCase}}
}

func auditImportCase(t *testing.T, w *world) {
	dir := filepath.Join("..", "..", "shared", "corpus", "fhir-r4")
	example, err := os.ReadFile(filepath.Join(dir, "AuditEvent-example-login.json"))
	if err != nil {
		t.Skipf("the FHIR R4 examples are not at %s: %v", dir, err)
	}
	r := w.do(t, req{method: http.MethodPost, target: "AuditEvent", body: example})
	m := auditLocationRE.FindStringSubmatch(r.header.Get("Location"))
	if r.status != http.StatusCreated || m == nil || r.header.Get("ETag") != `W/"1"` || !strings.HasPrefix(r.header.Get("Location"), w.base+"/") {
		t.Fatalf("POST AuditEvent: %d Location %q ETag %q: %s", r.status, r.header.Get("Location"), r.header.Get("ETag"), r.body)
	}
	id := m[1]
	if h := headOf(r.body); h.ID != id || id == "example-login" || h.Meta.VersionID != "1" {
		t.Errorf("the filed AuditEvent: id %q version %q, want %s (new) 1", h.ID, h.Meta.VersionID, id)
	}
	got := w.do(t, req{target: "AuditEvent/" + id})
	if got.status != http.StatusOK || !sameApartFromMetaAndID(t, got.body, example) {
		t.Fatalf("GET AuditEvent/%s: %d\n%s\nwant\n%s", id, got.status, got.body, example)
	}
	// The Location of the create names version 1, which reads the same.
	if v := w.do(t, req{target: strings.TrimPrefix(r.header.Get("Location"), w.base+"/")}); v.status != http.StatusOK || !bytes.Equal(v.body, got.body) {
		t.Errorf("GET %s: %d %s, want the AuditEvent as read", r.header.Get("Location"), v.status, v.body)
	}
	if v := w.do(t, req{target: "AuditEvent/" + id + "/_history/2"}); v.status != http.StatusNotFound {
		t.Errorf("GET AuditEvent/%s/_history/2: %d, want 404 (an AuditEvent has one version)", id, v.status)
	}
	// Found by its own values, with carebridge's own trail searched too:
	// no AuditEvent of carebridge's has an agent identified without a
	// system.
	for _, q := range []string{
		"agent:identifier=|95",
		"agent:identifier=|95&type=http://dicom.nema.org/resources/ontology/DCM|110114&subtype=110122&action=E&outcome=0&date=2013-06-20T23:41:23Z",
		"agent:identifier=urn:oid:2.16.840.1.113883.4.2|2.16.840.1.113883.4.2&date=lt2014",
		"_id=" + id,
	} {
		res := w.search(t, searchCase{resource: "AuditEvent", query: q})
		if ids := entryIDs(res.bundle); !slices.Equal(ids, []string{id}) || res.bundle.Total == nil || *res.bundle.Total != 1 {
			t.Errorf("AuditEvent?%s = %v (total %v), want [%s] (total 1)", q, ids, res.bundle.Total, id)
		}
	}
	for _, q := range []string{"agent:identifier=|95&subtype=110123", "agent:identifier=|95&date=lt2013", "agent:identifier=|96"} {
		if res := w.search(t, searchCase{resource: "AuditEvent", query: q}); len(entryIDs(res.bundle)) != 0 {
			t.Errorf("AuditEvent?%s = %v, want none", q, entryIDs(res.bundle))
		}
	}
	// Append only, conditional create not supported, and create needs
	// AuditEvent.c.
	for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
		r := w.do(t, req{method: method, target: "AuditEvent/" + id, body: got.body})
		if r.status != http.StatusMethodNotAllowed || !strings.Contains(string(r.body), "append-only") {
			t.Errorf("%s AuditEvent/%s: %d %s", method, id, r.status, r.body)
		}
	}
	if r := w.do(t, req{method: http.MethodPost, target: "AuditEvent", body: example, header: []string{"If-None-Exist", "_id=" + id}}); r.status != http.StatusBadRequest ||
		!namesExpression(issuesOf(r.body), "If-None-Exist") {
		t.Errorf("POST AuditEvent with If-None-Exist: %d %s", r.status, r.body)
	}
	if r := w.do(t, req{token: tokenCommRead, method: http.MethodPost, target: "AuditEvent", body: example}); r.status != http.StatusForbidden {
		t.Errorf("POST AuditEvent without AuditEvent.c: %d %s", r.status, r.body)
	}
	if again := w.do(t, req{target: "AuditEvent/" + id}); again.status != http.StatusOK || !reflect.DeepEqual(jsonOf(t, again.body), jsonOf(t, got.body)) {
		t.Errorf("AuditEvent/%s changed: %s", id, again.body)
	}
}

// entryIDs are the ids of a search Bundle's matches.
func entryIDs(b bundle) []string {
	var out []string
	for _, e := range b.Entry {
		if e.Search.Mode == "match" {
			out = append(out, headOf(e.Resource).ID)
		}
	}
	return out
}

// sameApartFromMetaAndID compares two resources as JSON, meta and id
// left out.
func sameApartFromMetaAndID(t *testing.T, a, b []byte) bool {
	x, y := jsonOf(t, a), jsonOf(t, b)
	for _, k := range []string{"meta", "id"} {
		delete(x, k)
		delete(y, k)
	}
	return reflect.DeepEqual(x, y)
}

func jsonOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return m
}
