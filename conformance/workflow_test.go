package conformance

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

// workflowCases exercise the clinician workflow on Communications of
// their own (ids conf-t…, identifiers urn:conformance:msg|96xx), after
// every other case: replies joining a thread, and a recall. They cover
// no statement key of their own: the rules are the Communication
// documentation's.
func workflowCases() []testCase {
	return []testCase{
		{name: "a reply joins its thread", write: true, run: threadCase},
		{name: "a system client recalls a Communication", write: true, run: recallCase},
	}
}

// refsOf are the references of a Communication's element name.
func refsOf(t *testing.T, body []byte, name string) []string {
	t.Helper()
	var m map[string]json.RawMessage
	decode(t, body, &m)
	var refs []struct {
		Reference string `json:"reference"`
	}
	if raw, ok := m[name]; ok {
		decode(t, raw, &refs)
	}
	out := []string{}
	for _, r := range refs {
		out = append(out, r.Reference)
	}
	return out
}

func threadCase(t *testing.T, w *world) {
	root := seedComm{id: "conf-t1", status: "in-progress", identifier: []string{sysMsg + "|9600"}, subject: "Patient/{pat}",
		sender: "Practitioner/conf-dr-a", recipient: []string{"Practitioner/conf-nurse-1"}, sent: "2025-11-01T10:00:00Z"}
	if r := w.do(t, req{method: http.MethodPut, target: "Communication/conf-t1", body: root.resource(w)}); r.status != http.StatusCreated {
		t.Fatalf("PUT the thread's root: %d %s", r.status, r.body)
	}
	// A reply by POST, naming neither partOf nor recipient.
	first := seedComm{status: "in-progress", identifier: []string{sysMsg + "|9601"}, subject: "Patient/{pat}", sender: "Practitioner/conf-nurse-1",
		inResponseTo: []string{"Communication/conf-t1"}, sent: "2025-11-01T10:05:00Z"}
	r := w.do(t, req{method: http.MethodPost, target: "Communication", body: first.resource(w)})
	if r.status != http.StatusCreated {
		t.Fatalf("POST a reply: %d %s", r.status, r.body)
	}
	firstID := headOf(r.body).ID
	if got := refsOf(t, r.body, "partOf"); !slices.Equal(got, []string{"Communication/conf-t1"}) {
		t.Errorf("the reply's partOf = %v, want [Communication/conf-t1]", got)
	}
	if got := refsOf(t, r.body, "recipient"); !slices.Equal(got, []string{"Practitioner/conf-dr-a"}) {
		t.Errorf("the reply's recipient = %v, want its root's sender [Practitioner/conf-dr-a]", got)
	}
	// A reply to the reply, by PUT, sent before it: the same thread.
	second := seedComm{id: "conf-t3", status: "in-progress", identifier: []string{sysMsg + "|9602"}, subject: "Patient/{pat}", sender: "Practitioner/conf-dr-a",
		inResponseTo: []string{"Communication/" + firstID}, sent: "2025-11-01T10:03:00Z"}
	r = w.do(t, req{method: http.MethodPut, target: "Communication/conf-t3", body: second.resource(w)})
	if r.status != http.StatusCreated {
		t.Fatalf("PUT a reply to the reply: %d %s", r.status, r.body)
	}
	if got := refsOf(t, r.body, "partOf"); !slices.Equal(got, []string{"Communication/conf-t1"}) {
		t.Errorf("the reply to the reply: partOf %v, want the root [Communication/conf-t1]", got)
	}
	if got := refsOf(t, r.body, "recipient"); !slices.Equal(got, []string{"Practitioner/conf-nurse-1"}) {
		t.Errorf("the reply to the reply: recipient %v, want [Practitioner/conf-nurse-1]", got)
	}
	if got := w.do(t, req{target: "Communication/" + firstID}); !slices.Equal(refsOf(t, got.body, "partOf"), []string{"Communication/conf-t1"}) {
		t.Errorf("the reply as read: %s", got.body)
	}

	w.runSearch(t, searchCase{query: "part-of=Communication/conf-t1&_sort=sent", want: []string{"t3", firstID}, ordered: true})
	w.runSearch(t, searchCase{query: "part-of=Communication/conf-t1&_sort=-sent", want: []string{firstID, "t3"}, ordered: true})

	for _, tc := range []struct {
		name string
		c    seedComm
		expr string
	}{
		{"an unknown Communication", seedComm{status: "in-progress", subject: "Patient/{pat}", recipient: []string{"Practitioner/conf-dr-a"},
			inResponseTo: []string{"Communication/conf-nope"}}, "Communication.inResponseTo[0]"},
		{"another thread as partOf", seedComm{status: "in-progress", subject: "Patient/{pat}", partOf: []string{"Communication/conf-01"},
			inResponseTo: []string{"Communication/conf-t1"}}, "Communication.partOf[0]"},
		{"another patient", seedComm{status: "in-progress", subject: "Patient/conf-pat-q", inResponseTo: []string{"Communication/conf-t3"}}, "Communication.subject"},
	} {
		r := w.do(t, req{method: http.MethodPost, target: "Communication", body: tc.c.resource(w)})
		if r.status != http.StatusUnprocessableEntity || !namesExpression(issuesOf(r.body), tc.expr) {
			t.Errorf("a reply to %s: %d %s; want 422 naming %s", tc.name, r.status, r.body, tc.expr)
		}
	}
	w.runSearch(t, searchCase{query: "part-of=Communication/conf-t1", want: []string{"t3", firstID}})
}

func recallCase(t *testing.T, w *world) {
	c := seedComm{id: "conf-t9", status: "in-progress", priority: "urgent", identifier: []string{sysMsg + "|9650"}, subject: "Patient/{pat}",
		sender: "Device/conf-monitor", recipient: []string{"Practitioner/conf-nurse-2"}, sent: "2025-11-02T08:00:00Z"}
	if r := w.do(t, req{method: http.MethodPut, target: "Communication/conf-t9", body: c.resource(w)}); r.status != http.StatusCreated {
		t.Fatalf("PUT as create: %d %s", r.status, r.body)
	}
	patch := func(ops string) reply {
		return w.do(t, req{method: http.MethodPatch, target: "Communication/conf-t9", body: []byte(ops), header: []string{"Content-Type", "application/json-patch+json"}})
	}
	r := patch(`[{"op":"replace","path":"/status","value":"entered-in-error"}]`)
	var got struct {
		head
		Status string `json:"status"`
	}
	decode(t, r.body, &got)
	if r.status != http.StatusOK || got.Status != "entered-in-error" || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("PATCH status entered-in-error: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	r = w.do(t, req{target: "Communication/conf-t9"})
	decode(t, r.body, &got)
	if r.status != http.StatusOK || got.Status != "entered-in-error" || got.Meta.VersionID != "2" {
		t.Errorf("GET the recalled Communication: %d %s", r.status, r.body)
	}
	w.runSearch(t, searchCase{query: "identifier=" + sysMsg + "|9650", want: []string{"t9"}})
	w.runSearch(t, searchCase{query: "identifier=" + sysMsg + "|9650&status:not=entered-in-error", want: nil})
	w.runSearch(t, searchCase{query: "identifier=" + sysMsg + "|9650&status=entered-in-error", want: []string{"t9"}})

	// Final: neither undone nor edited.
	for _, ops := range []string{`[{"op":"replace","path":"/status","value":"in-progress"}]`, `[{"op":"replace","path":"/priority","value":"stat"}]`} {
		if r := patch(ops); r.status != http.StatusConflict || !namesExpression(issuesOf(r.body), "Communication.status") {
			t.Errorf("PATCH %s of the recalled Communication: %d %s; want 409 naming Communication.status", ops, r.status, r.body)
		}
	}
	if r := w.do(t, req{method: http.MethodPut, target: "Communication/conf-t9", body: c.resource(w)}); r.status != http.StatusConflict {
		t.Errorf("PUT of the recalled Communication: %d %s; want 409", r.status, r.body)
	}

	// Its history: created by PUT, then recalled.
	r = w.do(t, req{target: "Communication/conf-t9/_history"})
	var h bundle
	decode(t, r.body, &h)
	var steps []string
	for _, e := range h.Entry {
		steps = append(steps, e.Request.Method+" "+e.Request.URL+" "+e.Response.Status)
	}
	if want := []string{"PUT Communication/conf-t9 200 OK", "PUT Communication/conf-t9 201 Created"}; r.status != http.StatusOK || !slices.Equal(steps, want) {
		t.Errorf("the history: %d %q, want %q", r.status, steps, want)
	}

	// The recall is audited as its own AuditEvent, found by subtype (the
	// audit stage records it shortly after the write).
	for _, q := range []string{
		"subtype=urn:carebridge:audit-action|communication.recalled&entity=Communication/conf-t9",
		"subtype=communication.recalled&entity=Communication/conf-t9&patient={pat}&type=http://dicom.nema.org/resources/ontology/DCM|110100&action=U",
	} {
		var evs []json.RawMessage
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			res := w.searchAt(t, req{target: "AuditEvent?" + w.query(q)}, "AuditEvent")
			evs = evs[:0]
			for _, e := range res.bundle.Entry {
				if e.Search.Mode == "match" {
					evs = append(evs, e.Resource)
				}
			}
			if len(evs) > 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(evs) != 1 {
			t.Fatalf("AuditEvent?%s: %d matches, want the one recall", q, len(evs))
		}
		var ev struct {
			Action  string `json:"action"`
			Outcome string `json:"outcome"`
			Subtype []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"subtype"`
		}
		decode(t, evs[0], &ev)
		if ev.Action != "U" || ev.Outcome != "0" || len(ev.Subtype) != 1 || ev.Subtype[0].System != systemAuditAction || ev.Subtype[0].Code != "communication.recalled" {
			t.Errorf("the recall's AuditEvent: %s", evs[0])
		}
	}
	if n := w.auditCount(t, "subtype=http://hl7.org/fhir/restful-interaction|patch&entity=Communication/conf-t9"); n != 1 {
		t.Errorf("the recall's rest.patch AuditEvents: %d, want 1 besides the recall's own", n)
	}
}

// auditCount is the total of an AuditEvent search.
func (w *world) auditCount(t *testing.T, q string) int {
	t.Helper()
	res := w.searchAt(t, req{target: "AuditEvent?" + w.query(q) + "&" + url.Values{"_summary": {"count"}}.Encode()}, "AuditEvent")
	if res.bundle.Total == nil {
		t.Fatalf("AuditEvent?%s: no total", q)
	}
	return *res.bundle.Total
}
