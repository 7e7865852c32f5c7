package conformance

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Subscription cases: each makes its own subscriptions and deletes them,
// so that the data set has none between cases.

// subscriptionJSON is a Subscription as the cases read it.
type subscriptionJSON struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Status       string `json:"status"`
	Reason       string `json:"reason"`
	Criteria     string `json:"criteria"`
	Error        string `json:"error"`
	Channel      struct {
		Type     string   `json:"type"`
		Endpoint string   `json:"endpoint"`
		Payload  string   `json:"payload"`
		Header   []string `json:"header"`
	} `json:"channel"`
}

// subscriptionBody is a Subscription to POST.
func subscriptionBody(status, criteria, endpoint string, header ...string) []byte {
	ch := map[string]any{"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
	if len(header) > 0 {
		ch["header"] = header
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Subscription", "status": status, "reason": "conformance: new messages to the EHR",
		"criteria": criteria, "channel": ch})
	return b
}

// createSubscription POSTs a Subscription that must be created and
// returns it as answered.
func (w *world) createSubscription(t *testing.T, body []byte) subscriptionJSON {
	t.Helper()
	r := w.do(t, req{method: http.MethodPost, target: "Subscription", body: body})
	var s subscriptionJSON
	decode(t, r.body, &s)
	if r.status != http.StatusCreated || s.ID == "" || r.header.Get("Location") != w.base+"/Subscription/"+s.ID {
		t.Fatalf("POST Subscription: %d Location %q: %s", r.status, r.header.Get("Location"), r.body)
	}
	return s
}

func (w *world) deleteSubscription(t *testing.T, id string) {
	t.Helper()
	if r := w.do(t, req{method: http.MethodDelete, target: "Subscription/" + id}); r.status != http.StatusNoContent {
		t.Fatalf("DELETE Subscription/%s: %d %s", id, r.status, r.body)
	}
}

// searchSubscriptions runs a Subscription search and returns the ids it
// matched and its total.
func (w *world) searchSubscriptions(t *testing.T, query string) ([]string, int, bundle) {
	t.Helper()
	r := w.do(t, req{target: "Subscription?" + w.query(query)})
	if r.status != http.StatusOK {
		t.Fatalf("GET Subscription?%s: %d %s", query, r.status, r.body)
	}
	var b bundle
	decode(t, r.body, &b)
	if b.Type != "searchset" || b.Total == nil {
		t.Fatalf("GET Subscription?%s: not a searchset with a total: %s", query, r.body)
	}
	var ids []string
	for _, e := range b.Entry {
		if e.Search.Mode == "match" {
			ids = append(ids, headOf(e.Resource).ID)
		}
	}
	return ids, *b.Total, b
}

// subscriptionStatus reads $status into name → value.
func (w *world) subscriptionStatus(t *testing.T, id string) map[string]string {
	t.Helper()
	r := w.do(t, req{target: "Subscription/" + id + "/$status"})
	if r.status != http.StatusOK || resourceTypeOf(r.body) != "Parameters" {
		t.Fatalf("GET Subscription/%s/$status: %d %s", id, r.status, r.body)
	}
	var p struct {
		Parameter []struct {
			Name           string `json:"name"`
			ValueReference struct {
				Reference string `json:"reference"`
			} `json:"valueReference"`
			ValueCode            string `json:"valueCode"`
			ValueString          string `json:"valueString"`
			ValueInteger         *int   `json:"valueInteger"`
			ValueCodeableConcept struct {
				Text string `json:"text"`
			} `json:"valueCodeableConcept"`
		} `json:"parameter"`
	}
	decode(t, r.body, &p)
	out := map[string]string{}
	for _, pp := range p.Parameter {
		v := pp.ValueReference.Reference + pp.ValueCode + pp.ValueString + pp.ValueCodeableConcept.Text
		if pp.ValueInteger != nil {
			v += strconv.Itoa(*pp.ValueInteger)
		}
		out[pp.Name] = v
	}
	return out
}

func subscriptionCases() []testCase {
	return []testCase{
		{name: "Subscription create and read", write: true,
			covers: []string{"Subscription interaction create", "Subscription interaction read", "Subscription interaction delete"},
			run: func(t *testing.T, w *world) {
				s := w.createSubscription(t, subscriptionBody("requested", "Communication?priority=urgent,stat",
					"https://ehr.conformance.example/hooks/carebridge", "Authorization: Bearer conf-hook-secret-0123456789"))
				if s.Status != "active" || s.Criteria != "Communication?priority=urgent,stat" || s.Channel.Type != "rest-hook" ||
					s.Channel.Endpoint != "https://ehr.conformance.example/hooks/carebridge" || s.Channel.Payload != "application/fhir+json" ||
					len(s.Channel.Header) != 0 || s.Reason != "conformance: new messages to the EHR" {
					t.Errorf("the created Subscription: %+v", s)
				}
				r := w.do(t, req{target: "Subscription/" + s.ID})
				var read subscriptionJSON
				decode(t, r.body, &read)
				if r.status != http.StatusOK || read.ID != s.ID || read.Status != "active" || strings.Contains(string(r.body), "conf-hook-secret") {
					t.Errorf("GET Subscription/%s: %d %s", s.ID, r.status, r.body)
				}
				w.deleteSubscription(t, s.ID)
				for _, target := range []string{"Subscription/" + s.ID, "Subscription/" + s.ID + "/$status"} {
					if r := w.do(t, req{target: target}); r.status != http.StatusNotFound {
						t.Errorf("GET %s after DELETE: %d, want 404: %s", target, r.status, r.body)
					}
				}
				if r := w.do(t, req{method: http.MethodDelete, target: "Subscription/" + s.ID}); r.status != http.StatusNotFound {
					t.Errorf("DELETE again: %d, want 404", r.status)
				}
				if r := w.do(t, req{target: "Subscription/no-such-subscription"}); r.status != http.StatusNotFound {
					t.Errorf("GET an unknown Subscription: %d, want 404", r.status)
				}
			}},
		{name: "Subscription create refuses what carebridge cannot honour", write: true, covers: []string{"Subscription interaction create"},
			run: func(t *testing.T, w *world) {
				for _, tc := range []struct {
					body   []byte
					header []string
					expr   string
					status int // 422 when 0
				}{
					{subscriptionBody("off", "Communication", "https://ehr.conformance.example/h"), nil, "Subscription.status", 0},
					{subscriptionBody("requested", "Patient", "https://ehr.conformance.example/h"), nil, "Subscription.criteria", 0},
					{subscriptionBody("requested", "Communication?subject=Patient/1", "https://ehr.conformance.example/h"), nil, "Subscription.criteria", 0},
					{subscriptionBody("requested", "Communication", "http://ehr.conformance.example/h"), nil, "Subscription.channel.endpoint", 0},
					{subscriptionBody("requested", "Communication", "https://ehr.conformance.example/h", "not a header"), nil, "Subscription.channel.header[0]", 0},
					{[]byte(strings.Replace(string(subscriptionBody("requested", "Communication", "https://ehr.conformance.example/h")),
						`"rest-hook"`, `"websocket"`, 1)), nil, "Subscription.channel.type", 0},
					{[]byte(strings.Replace(string(subscriptionBody("requested", "Communication", "https://ehr.conformance.example/h")),
						`"application/fhir+json"`, `"application/fhir+xml"`, 1)), nil, "Subscription.channel.payload", 0},
					{subscriptionBody("requested", "Communication", "https://ehr.conformance.example/h"), []string{"If-None-Exist", "url=x"}, "If-None-Exist", http.StatusBadRequest},
				} {
					r := w.do(t, req{method: http.MethodPost, target: "Subscription", body: tc.body, header: tc.header})
					want := cmp.Or(tc.status, http.StatusUnprocessableEntity)
					if r.status != want || !namesExpression(issuesOf(r.body), tc.expr) {
						t.Errorf("POST %s: %d %s; want %d naming %s", tc.body, r.status, r.body, want, tc.expr)
					}
				}
				if ids, total, _ := w.searchSubscriptions(t, ""); total != 0 {
					t.Errorf("refused Subscriptions were stored: %v", ids)
				}
			}},
		{name: "Subscription search", write: true,
			covers: []string{"Subscription interaction search-type", "Subscription searchParam status", "Subscription searchParam url"},
			run: func(t *testing.T, w *world) {
				a := w.createSubscription(t, subscriptionBody("requested", "Communication?priority=stat", "https://a.conformance.example/hook"))
				b := w.createSubscription(t, subscriptionBody("active", "Communication?category=alert", "https://b.conformance.example/hook"))
				defer w.deleteSubscription(t, b.ID)
				defer w.deleteSubscription(t, a.ID)
				both := []string{a.ID, b.ID}
				slices.Sort(both)
				for _, tc := range []struct {
					query string
					want  []string
					total int
				}{
					{"", both, 2},
					{"status=active", both, 2},
					{"status=requested,off", nil, 0},
					{"status=error", nil, 0},
					{"url=https://a.conformance.example/hook", []string{a.ID}, 1},
					{"url=https://a.conformance.example/hook&status=active", []string{a.ID}, 1},
					{"url=https://nowhere.conformance.example/hook", nil, 0},
					{"_count=1", both[:1], 2},
				} {
					got, total, _ := w.searchSubscriptions(t, tc.query)
					if !slices.Equal(got, tc.want) || total != tc.total {
						t.Errorf("GET Subscription?%s: %v (total %d), want %v (total %d)", tc.query, got, total, tc.want, tc.total)
					}
				}
				_, _, page := w.searchSubscriptions(t, "_count=1")
				r := w.do(t, req{target: page.link("next")})
				var next bundle
				decode(t, r.body, &next)
				if r.status != http.StatusOK || len(next.Entry) != 1 || headOf(next.Entry[0].Resource).ID != both[1] {
					t.Errorf("the next page %q: %d %s", page.link("next"), r.status, r.body)
				}
				if r := w.do(t, req{target: "Subscription?status=paused"}); r.status != http.StatusBadRequest || !namesExpression(issuesOf(r.body), "status") {
					t.Errorf("status=paused: %d %s; want 400 naming status", r.status, r.body)
				}
			}},
		{name: "Subscription notifies id-only, and $status counts it", write: true,
			covers: []string{"Subscription interaction create", "Subscription operation $status", "Subscription interaction delete"},
			run:    subscriptionNotifyCase},
	}
}

// subscriptionNotifyCase: a Subscription made through the API is notified,
// without a restart, of a Communication made through the API that meets
// its criteria: id-only, valid R4, with its header; $status then counts
// one sent; deleted, it is gone.
func subscriptionNotifyCase(t *testing.T, w *world) {
	type notice struct {
		auth string
		body []byte
	}
	got := make(chan notice, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		got <- notice{r.Header.Get("Authorization"), b}
	}))
	defer hook.Close()
	s := w.createSubscription(t, subscriptionBody("requested", "Communication?recipient=Practitioner/conf-hook-1", hook.URL+"/notify",
		"Authorization: Bearer conf-hook-secret-0123456789"))
	if st := w.subscriptionStatus(t, s.ID); st["events-since-subscription-start"] != "0" || st["notices-sent"] != "0" || st["status"] != "active" {
		t.Errorf("$status of a new Subscription: %v", st)
	}

	c := seedComm{status: "in-progress", priority: "routine", identifier: []string{sysMsg + "|9700"}, subject: "Patient/conf-pat-hook",
		recipient: []string{"Practitioner/conf-hook-1"}, sent: "2025-10-05T10:00:00Z"}
	r := w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w)})
	if r.status != http.StatusCreated {
		t.Fatalf("POST Communication: %d %s", r.status, r.body)
	}
	commID := headOf(r.body).ID
	var n notice
	select {
	case n = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10 s")
	}
	if n.auth != "Bearer conf-hook-secret-0123456789" {
		t.Errorf("the notification's Authorization: %q", n.auth)
	}
	if err := w.v.Validate(n.body); err != nil {
		t.Errorf("the notification is not valid R4: %v\n%s", err, n.body)
	}
	var nb bundle
	decode(t, n.body, &nb)
	body := string(n.body)
	if nb.Type != "history" || len(nb.Entry) != 2 || !strings.HasSuffix(nb.Entry[1].FullURL, commID) ||
		!strings.Contains(body, `"Subscription/`+s.ID+`"`) || !strings.Contains(body, `"event-number","valueString":"1"`) {
		t.Errorf("the notification is not the id-only history Bundle of event 1 of Communication/%s:\n%s", commID, body)
	}
	if len(nb.Entry[1].Resource) != 0 || strings.Contains(body, "Synthetic conformance message") || strings.Contains(body, "conf-pat-hook") {
		t.Errorf("the notification carries the Communication's content:\n%s", body)
	}

	eventually(t, 10*time.Second, "$status shows the notice sent", func() (bool, string) {
		st := w.subscriptionStatus(t, s.ID)
		want := map[string]string{"subscription": "Subscription/" + s.ID, "status": "active", "type": "query-status",
			"events-since-subscription-start": "1", "notices-pending": "0", "notices-sent": "1", "notices-dead": "0"}
		b, _ := json.Marshal(st)
		return len(st) == len(want) && func() bool {
			for k, v := range want {
				if st[k] != v {
					return false
				}
			}
			return true
		}(), string(b)
	})

	w.deleteSubscription(t, s.ID)
	for _, target := range []string{"Subscription/" + s.ID, "Subscription/" + s.ID + "/$status"} {
		if r := w.do(t, req{target: target}); r.status != http.StatusNotFound {
			t.Errorf("GET %s after DELETE: %d, want 404", target, r.status)
		}
	}
	// Deleted, it hears no more: a second matching Communication goes
	// unannounced.
	c.identifier = []string{sysMsg + "|9701"}
	if r := w.do(t, req{method: http.MethodPost, target: "Communication", body: c.resource(w)}); r.status != http.StatusCreated {
		t.Fatalf("POST the second Communication: %d %s", r.status, r.body)
	}
	select {
	case n := <-got:
		t.Errorf("a deleted Subscription was notified:\n%s", n.body)
	case <-time.After(3 * time.Second):
	}
}
