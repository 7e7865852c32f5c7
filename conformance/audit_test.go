package conformance

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The audit trail the probe client leaves while seeding, oldest first
// (seed_test.go), by the names the cases give its AuditEvents:
//
//	token    client.token, outcome 0: its access token
//	read     rest.read of Communication/conf-01, outcome 0, patient {pat}
//	search   rest.search-type, _id=conf-03, outcome 0, entity Communication/conf-03
//	refused  rest.read of Patient/{pat}, outcome 4 (403: its scopes do not permit it)
//
// Every other record is made by other clients or by carebridge itself, so
// each search names the probe as agent.
const (
	systemAuditAction = "urn:carebridge:audit-action" // audit.SystemAction
	probeAgent        = "agent=" + clientProbe
)

var probeTrail = []string{"token", "read", "search", "refused"}

// auditName is how the cases name an AuditEvent of the probe's trail.
func auditName(body []byte) string {
	var ev struct {
		ID      string `json:"id"`
		Outcome string `json:"outcome"`
		Subtype []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"subtype"`
	}
	json.Unmarshal(body, &ev)
	action := ""
	for _, s := range ev.Subtype {
		if s.System == systemAuditAction {
			action = s.Code
		}
	}
	switch {
	case action == "client.token":
		return "token"
	case action == "rest.read" && ev.Outcome == "0":
		return "read"
	case action == "rest.read":
		return "refused"
	case action == "rest.search-type":
		return "search"
	}
	return action + " " + ev.ID
}

func auditCases() []testCase {
	a := func(names ...string) []string {
		out := make([]string, len(names))
		for i, name := range names {
			out[i] = "AuditEvent searchParam " + name
		}
		return append(out, "AuditEvent interaction search-type")
	}
	cases := []searchCase{
		{covers: a("agent"), query: probeAgent + "&_sort=-date", want: []string{"refused", "search", "read", "token"}, ordered: true},
		{covers: a("agent"), query: "agent:identifier=urn:carebridge:actor:client|" + clientProbe, want: probeTrail},
		{covers: a("_id"), query: "_id={audit-read}", want: []string{"read"}},
		{covers: a("_id"), query: "_id={audit-read},{audit-token}&" + probeAgent, want: []string{"read", "token"}},
		{covers: a("date"), query: "date=ge{audit-read-at}&" + probeAgent, want: []string{"read", "search", "refused"}},
		{covers: a("date"), query: "date=lt{audit-read-at}&" + probeAgent, want: []string{"token"}},
		{covers: a("date"), query: "date=gt2020-01-01&" + probeAgent, want: probeTrail},
		{covers: a("date"), query: "date=lt2020&" + probeAgent, want: nil},
		// patient is agent.who or entity.what that is a Patient: the
		// refused read was of the Patient.
		{covers: a("patient"), query: "patient=Patient/{pat}&" + probeAgent, want: []string{"read", "refused"}},
		{covers: a("patient"), query: "patient={pat}&" + probeAgent, want: []string{"read", "refused"}},
		{covers: a("entity"), query: "entity=Communication/conf-01&" + probeAgent, want: []string{"read"}},
		{covers: a("entity"), query: "entity:Communication=conf-03&" + probeAgent, want: []string{"search"}},
		{covers: a("entity"), query: "entity=Patient/{pat}&" + probeAgent, want: []string{"read", "refused"}},
		{covers: a("type"), query: "type=110114&" + probeAgent, want: []string{"token"}},
		{covers: a("type"), query: "type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&" + probeAgent, want: []string{"read", "search", "refused"}},
		{covers: a("subtype"), query: "subtype=read&" + probeAgent, want: []string{"read", "refused"}},
		{covers: a("subtype"), query: "subtype=http://hl7.org/fhir/restful-interaction|search-type&" + probeAgent, want: []string{"search"}},
		{covers: a("subtype"), query: "subtype=" + systemAuditAction + "|client.token&" + probeAgent, want: []string{"token"}},
		{covers: a("action"), query: "action=R&" + probeAgent, want: []string{"read", "refused"}},
		{covers: a("action"), query: "action=E&" + probeAgent, want: []string{"token", "search"}},
		{covers: a("outcome"), query: "outcome=4&" + probeAgent, want: []string{"refused"}},
		{covers: a("outcome"), query: "outcome=0,8&" + probeAgent, want: []string{"token", "read", "search"}},
		{covers: a("agent"), query: probeAgent + "&_summary=count", want: nil, total: n(4)},
		{covers: a("agent"), query: probeAgent + "&_sort=date&_count=2&_offset=2", want: []string{"search", "refused"}, ordered: true, total: n(4)},
		{covers: a("agent"), name: "AuditEvent Prefer handling=lenient", query: probeAgent + "&foo=bar&outcome=4", header: []string{"Prefer", "handling=lenient"},
			want: []string{"refused"}, warn: "foo"},
	}
	out := []testCase{{name: "AuditEvent the probe's trail", covers: a("agent"), run: probeTrailCase}}
	for _, sc := range cases {
		sc.resource = "AuditEvent"
		if sc.name == "" {
			sc.name = "AuditEvent?" + sc.query
		}
		tc := sc.testCase()
		run := tc.run
		tc.run = func(t *testing.T, w *world) {
			if w.refs["audit-read"] == "" {
				t.Fatal("the probe's trail was not found")
			}
			run(t, w)
		}
		out = append(out, tc)
	}
	return append(out,
		testCase{name: "AuditEvent read", covers: []string{"AuditEvent interaction read"}, run: auditReadCase},
		errorCase{name: "AuditEvent an unknown parameter is 400 naming it", covers: []string{"AuditEvent interaction search-type"},
			req: req{target: "AuditEvent?foo=bar"}, status: 400, expr: []string{"foo"}}.testCase(),
		errorCase{name: "AuditEvent search without AuditEvent scope is 403", covers: []string{"AuditEvent interaction search-type"},
			req: req{token: tokenCommRead, target: "AuditEvent?" + probeAgent}, status: 403}.testCase(),
		errorCase{name: "AuditEvent read of an unknown id is 404", covers: []string{"AuditEvent interaction read"},
			req: req{target: "AuditEvent/conf-nope"}, status: 404}.testCase(),
	)
}

// probeTrailCase waits for the probe's four records to reach the trail
// (the audit stage appends them in the background), then learns their
// ids and times, oldest first.
func probeTrailCase(t *testing.T, w *world) {
	var res searchResult
	eventually(t, 20*time.Second, "the probe's audit trail", func() (bool, string) {
		res = w.search(t, searchCase{resource: "AuditEvent", query: probeAgent + "&_sort=date"})
		return len(res.matches) >= len(probeTrail), strings.Join(res.matches, " ")
	})
	if !slices.Equal(res.matches, probeTrail) || res.bundle.Total == nil || *res.bundle.Total != 4 {
		t.Fatalf("the probe's trail, oldest first: %v (total %v), want %v", res.matches, res.bundle.Total, probeTrail)
	}
	for i, e := range res.bundle.Entry {
		var ev struct {
			ID       string `json:"id"`
			Recorded string `json:"recorded"`
		}
		json.Unmarshal(e.Resource, &ev)
		w.refs["audit-"+probeTrail[i]] = ev.ID
		w.refs["audit-"+probeTrail[i]+"-at"] = ev.Recorded
	}
	w.auditRead = res.bundle.Entry[1].Resource
}

// auditReadCase reads the probe's read by id: the same AuditEvent the
// search gave, naming the client, the Communication and its Patient.
func auditReadCase(t *testing.T, w *world) {
	id := w.refs["audit-read"]
	if id == "" {
		t.Fatal("the probe's trail was not found")
	}
	r := w.do(t, req{target: "AuditEvent/" + id})
	if r.status != http.StatusOK || headOf(r.body).ID != id {
		t.Fatalf("GET AuditEvent/%s: %d %s", id, r.status, r.body)
	}
	var got, want any
	json.Unmarshal(r.body, &got)
	json.Unmarshal(w.auditRead, &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GET AuditEvent/%s\n%s\nis not the AuditEvent the search gave\n%s", id, r.body, w.auditRead)
	}
	for _, s := range []string{`"reference":"Communication/conf-01"`, `"reference":"Patient/` + w.refs["pat"] + `"`, `"value":"` + clientProbe + `"`} {
		if !strings.Contains(string(r.body), s) {
			t.Errorf("GET AuditEvent/%s lacks %s: %s", id, s, r.body)
		}
	}
}
