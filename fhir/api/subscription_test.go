package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// hookRules is a stand-in for the pipeline's rules (bridge's, wired in
// cmd/carebridge): Communication criteria, https or loopback http
// endpoints, "Name: value" header lines.
type hookRules struct{}

func (hookRules) CheckCriteria(c string) error {
	if c != "Communication" && !strings.HasPrefix(c, "Communication?") {
		return errors.New("only Communication can be subscribed to")
	}
	return nil
}

func (hookRules) CheckEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && u.Hostname() == "127.0.0.1") {
		return errors.New("the endpoint must use https (http is for loopback only)")
	}
	return nil
}

func (hookRules) CheckHeader(line string) error {
	if name, value, ok := strings.Cut(line, ":"); !ok || strings.TrimSpace(name) == "" || strings.TrimSpace(value) == "" {
		return errors.New("want Name: value")
	}
	return nil
}

// subEnv is an API serving Subscription over a SQLite store.
type subEnv struct {
	*env
	st *sqlite.Store
	kr *secure.KeyRing
}

func newSubEnv(t testing.TB) *subEnv {
	t.Helper()
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db"), Topics: []string{topicCreated, topicAudit}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{audit: &auditLog{}, comms: map[string][]byte{}, events: &events{}}
	if e.v, err = fhir.NewValidator(); err != nil {
		t.Fatal(err)
	}
	e.srv, e.key = startAPI(t, kr, "system/Subscription.crds system/Communication.rs", api.Config{Store: st, Keys: kr, Audit: e.audit,
		Validator: e.v, Sealer: kr, Subscriptions: st, SubscriptionRules: hookRules{}, Events: e.events})
	e.base = e.srv.URL + "/fhir"
	return &subEnv{env: e, st: st, kr: kr}
}

const hookBody = `{"resourceType":"Subscription","status":"requested","reason":"urgent results to the EHR",
	"criteria":"Communication?priority=urgent,stat",
	"channel":{"type":"rest-hook","endpoint":"https://ehr.example/hook","payload":"application/fhir+json",
		"header":["Authorization: Bearer hook-secret-0123456789"]}}`

// subscriptionJSON is what the cases read of a Subscription.
type subscriptionJSON struct {
	ResourceType, ID, Status, Reason, Criteria, Error string
	Channel                                           struct {
		Type, Endpoint, Payload string
		Header                  []string
	}
}

func (e *subEnv) create(t *testing.T, tok, body string) (string, subscriptionJSON) {
	t.Helper()
	status, h, b := e.send(t, http.MethodPost, tok, "/fhir/Subscription", fhirJSON, []byte(body))
	if status != http.StatusCreated {
		t.Fatalf("POST Subscription: %d %s", status, b)
	}
	if err := e.v.Validate(b); err != nil {
		t.Fatalf("the created Subscription is not valid R4: %v\n%s", err, b)
	}
	var got subscriptionJSON
	json.Unmarshal(b, &got)
	if h.Get("Location") != e.base+"/Subscription/"+got.ID || got.ID == "" {
		t.Fatalf("Location %q for id %q", h.Get("Location"), got.ID)
	}
	return got.ID, got
}

// TestSubscriptionCreateReadSearchDelete: a requested subscription is
// stored active under an id the server gives, its header sealed and never
// shown; it is read and found as stored, its state follows its notices,
// and once deleted it and its notices are gone. Each step is audited.
func TestSubscriptionCreateReadSearchDelete(t *testing.T) {
	e := newSubEnv(t)
	ctx := context.Background()
	tok := e.token(t, "system/Subscription.crds")
	id, created := e.create(t, tok, hookBody)
	want := subscriptionJSON{ResourceType: "Subscription", ID: id, Status: "active", Reason: "urgent results to the EHR",
		Criteria: "Communication?priority=urgent,stat"}
	want.Channel.Type, want.Channel.Endpoint, want.Channel.Payload = "rest-hook", "https://ehr.example/hook", "application/fhir+json"
	if !reflect.DeepEqual(created, want) {
		t.Fatalf("created %+v\nwant    %+v", created, want)
	}
	// Writes are audited in their own transaction, through the events.
	if a := e.events.lastAudited(); a.Action != "rest.create" || !reflect.DeepEqual(a.Entities, []string{"Subscription/" + id}) || a.Patient != "" {
		t.Errorf("create audited as %+v", a)
	}

	stored, err := e.st.GetSubscription(ctx, id)
	if err != nil || !stored.Active || stored.Endpoint != "https://ehr.example/hook" {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	if strings.Contains(string(stored.Header), "hook-secret") {
		t.Fatal("the header is stored in the clear")
	}
	plain, err := e.kr.Open(stored.Header, []byte("Subscription/"+id))
	if err != nil || string(plain) != "Authorization: Bearer hook-secret-0123456789\n" {
		t.Fatalf("the sealed header opens to %q, %v", plain, err)
	}

	status, _, b := e.get(t, tok, "/fhir/Subscription/"+id)
	var read subscriptionJSON
	json.Unmarshal(b, &read)
	if status != http.StatusOK || !reflect.DeepEqual(read, want) || strings.Contains(string(b), "hook-secret") || e.v.Validate(b) != nil {
		t.Fatalf("read: %d %s", status, b)
	}
	if a := e.audit.last(); a.Action != "rest.read" || a.Entities[0] != "Subscription/"+id {
		t.Errorf("read audited as %+v", a)
	}

	other, _ := e.create(t, tok, strings.Replace(hookBody, "https://ehr.example/hook", "https://other.example/hook", 1))
	for _, tc := range []struct {
		query string
		want  []string
		total int
	}{
		{"", sorted(id, other), 2},
		{"status=active", sorted(id, other), 2},
		{"status=off,error", nil, 0},
		{"url=https://ehr.example/hook", []string{id}, 1},
		{"url=https://nowhere.example/hook", nil, 0},
		{"_count=1", sorted(id, other)[:1], 2},
		{"_count=0", nil, 2},
	} {
		bu := e.searchSubs(t, tok, tc.query)
		if got := ids(bu, "match"); !slices.Equal(got, tc.want) || bu.Total == nil || *bu.Total != tc.total {
			t.Errorf("search %q: %v total %v, want %v total %d", tc.query, got, bu.Total, tc.want, tc.total)
		}
	}
	bu := e.searchSubs(t, tok, "_count=1")
	next := ""
	for _, l := range bu.Link {
		if l.Relation == "next" {
			next = l.URL
		}
	}
	if next == "" {
		t.Fatal("a first page of one has no next link")
	}
	status, _, b = e.get(t, tok, strings.TrimPrefix(next, e.srv.URL))
	var page2 bundle
	json.Unmarshal(b, &page2)
	if status != http.StatusOK || !slices.Equal(ids(page2, "match"), sorted(id, other)[1:]) {
		t.Errorf("the next page: %d %s", status, b)
	}
	if a := e.audit.last(); a.Action != "rest.search-type" {
		t.Errorf("search audited as %+v", a)
	}

	// Two notices: the first sent, the second (the newest) given up.
	if err := e.st.QueueNotices(ctx, "c1", []string{id}, sentAt); err != nil {
		t.Fatal(err)
	}
	if err := e.st.QueueNotices(ctx, "c2", []string{id}, sentAt.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ns, _ := e.st.SubscriptionNotices(ctx, id, "", 10)
	for _, n := range ns {
		n.Attempts, n.NextAt = 1, time.Time{}
		n.State = map[string]string{"c1": store.NoticeSent, "c2": store.NoticeDead}[n.CommunicationID]
		if n.State == store.NoticeDead {
			n.LastError = "the endpoint answered HTTP 503"
		}
		if err := e.st.UpdateNotice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	status, _, b = e.get(t, tok, "/fhir/Subscription/"+id)
	json.Unmarshal(b, &read)
	if status != http.StatusOK || read.Status != "error" || read.Error != "the endpoint answered HTTP 503" {
		t.Errorf("read with its newest notice dead: %d %s", status, b)
	}
	if bu := e.searchSubs(t, tok, "status=error"); !slices.Equal(ids(bu, "match"), []string{id}) {
		t.Errorf("status=error finds %v", ids(bu, "match"))
	}
	status, _, b = e.get(t, tok, "/fhir/Subscription/"+id+"/$status")
	if status != http.StatusOK || e.v.Validate(b) != nil {
		t.Fatalf("$status: %d %s", status, b)
	}
	wantParams := map[string]string{"subscription": "Subscription/" + id, "status": "error", "type": "query-status",
		"events-since-subscription-start": "2", "notices-pending": "0", "notices-sent": "1", "notices-dead": "1",
		"error": "the endpoint answered HTTP 503"}
	if got := statusParams(t, b); !reflect.DeepEqual(got, wantParams) {
		t.Errorf("$status = %v\nwant      %v", got, wantParams)
	}
	if a := e.audit.last(); a.Action != "rest.operation" || a.Entities[0] != "Subscription/"+id {
		t.Errorf("$status audited as %+v", a)
	}

	// An operator turns it off.
	stored.Active = false
	if err := e.st.PutSubscription(ctx, stored); err != nil {
		t.Fatal(err)
	}
	if _, _, b = e.get(t, tok, "/fhir/Subscription/"+id); !strings.Contains(string(b), `"status":"off"`) {
		t.Errorf("read when off: %s", b)
	}

	if status, _, b = e.send(t, http.MethodDelete, tok, "/fhir/Subscription/"+id, "", nil); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", status, b)
	}
	if a := e.events.lastAudited(); a.Action != "rest.delete" || a.Entities[0] != "Subscription/"+id {
		t.Errorf("delete audited as %+v", a)
	}
	if ns, _ := e.st.SubscriptionNotices(ctx, id, "", 10); len(ns) != 0 {
		t.Errorf("its notices outlived it: %+v", ns)
	}
	for _, path := range []string{"/fhir/Subscription/" + id, "/fhir/Subscription/" + id + "/$status"} {
		if status, _, b := e.get(t, tok, path); status != http.StatusNotFound || !strings.Contains(string(b), "OperationOutcome") {
			t.Errorf("GET %s after DELETE: %d %s", path, status, b)
		}
	}
	if status, _, _ := e.send(t, http.MethodDelete, tok, "/fhir/Subscription/"+id, "", nil); status != http.StatusNotFound {
		t.Errorf("DELETE again: %d, want 404", status)
	}
}

func sorted(ids ...string) []string { slices.Sort(ids); return ids }

func (e *subEnv) searchSubs(t *testing.T, tok, query string) bundle {
	t.Helper()
	status, _, b := e.get(t, tok, "/fhir/Subscription?"+query)
	if status != http.StatusOK {
		t.Fatalf("search %q: %d %s", query, status, b)
	}
	if err := e.v.Validate(b); err != nil {
		t.Fatalf("search %q: not valid R4: %v\n%s", query, err, b)
	}
	var bu bundle
	json.Unmarshal(b, &bu)
	return bu
}

// statusParams reads a $status Parameters into name → value.
func statusParams(t *testing.T, b []byte) map[string]string {
	t.Helper()
	var p struct {
		ResourceType string
		Parameter    []struct {
			Name                 string
			ValueReference       struct{ Reference string }
			ValueCode            string
			ValueString          string
			ValueInteger         *int
			ValueCodeableConcept struct{ Text string }
		}
	}
	if err := json.Unmarshal(b, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("not Parameters: %s", b)
	}
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

// TestSubscriptionBodiesRefused: what carebridge cannot honour is a 422
// (400 for what is no Subscription at all) naming the element, every
// problem at once, and nothing is stored.
func TestSubscriptionBodiesRefused(t *testing.T) {
	e := newSubEnv(t)
	tok := e.token(t, "system/Subscription.crds")
	with := func(old, new string) string { return strings.Replace(hookBody, old, new, 1) }
	for _, tc := range []struct {
		name, body string
		header     []string
		status     int
		want       []string // expressions
	}{
		{"status off", with(`"requested"`, `"off"`), nil, 422, []string{"Subscription.status"}},
		{"status error", with(`"requested"`, `"error"`), nil, 422, []string{"Subscription.status"}},
		{"websocket", with(`"rest-hook"`, `"websocket"`), nil, 422, []string{"Subscription.channel.type"}},
		{"criteria", with(`Communication?priority=urgent,stat`, `Patient`), nil, 422, []string{"Subscription.criteria"}},
		{"plain http", with(`https://ehr.example/hook`, `http://ehr.example/hook`), nil, 422, []string{"Subscription.channel.endpoint"}},
		{"no endpoint", with(`"endpoint":"https://ehr.example/hook",`, ``), nil, 422, []string{"Subscription.channel.endpoint"}},
		{"payload", with(`"application/fhir+json"`, `"application/fhir+xml"`), nil, 422, []string{"Subscription.channel.payload"}},
		{"header", with(`"Authorization: Bearer hook-secret-0123456789"`, `"Authorization: Bearer x","no colon here"`), nil, 422, []string{"Subscription.channel.header[1]"}},
		{"end", with(`"reason"`, `"end":"2030-01-01T00:00:00Z","reason"`), nil, 422, []string{"Subscription.end"}},
		{"conditional", hookBody, []string{"If-None-Exist", "url=https://ehr.example/hook"}, 400, []string{"If-None-Exist"}},
		{"not a Subscription", `{"resourceType":"Patient"}`, nil, 400, []string{"resourceType"}},
		{"not an object", `[1]`, nil, 400, nil},
		{"no reason", with(`"reason":"urgent results to the EHR",`, ``), nil, 422, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, b := e.send(t, http.MethodPost, tok, "/fhir/Subscription", fhirJSON, []byte(tc.body), tc.header...)
			if status != tc.status {
				t.Fatalf("%d, want %d: %s", status, tc.status, b)
			}
			var oo outcome
			json.Unmarshal(b, &oo)
			if oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
				t.Fatalf("not an OperationOutcome: %s", b)
			}
			for _, expr := range tc.want {
				if !strings.Contains(string(b), `"expression":["`+expr+`"]`) {
					t.Errorf("no issue names %s: %s", expr, b)
				}
			}
			if strings.Contains(string(b), "hook-secret") {
				t.Errorf("the answer echoes the header: %s", b)
			}
		})
	}
	// Every problem at once.
	status, _, b := e.send(t, http.MethodPost, tok, "/fhir/Subscription", fhirJSON,
		[]byte(strings.NewReplacer(`"requested"`, `"off"`, `"rest-hook"`, `"email"`, `https://ehr`, `http://ehr`).Replace(hookBody)))
	for _, expr := range []string{"Subscription.status", "Subscription.channel.type", "Subscription.channel.endpoint"} {
		if status != 422 || !strings.Contains(string(b), `"`+expr+`"`) {
			t.Errorf("several problems: %d, %s not named: %s", status, expr, b)
		}
	}
	if subs, _ := e.st.ListSubscriptions(context.Background()); len(subs) != 0 {
		t.Fatalf("refused bodies were stored: %+v", subs)
	}
	// Loopback http is fine, and so is a Subscription without payload or
	// headers, status active.
	_, got := e.create(t, tok, `{"resourceType":"Subscription","status":"active","reason":"r","criteria":"Communication",
		"channel":{"type":"rest-hook","endpoint":"http://127.0.0.1:9/hook"}}`)
	if got.Status != "active" || got.Channel.Payload != "application/fhir+json" {
		t.Errorf("created %+v", got)
	}
}

// TestSubscriptionScopes: each interaction needs its own Subscription
// scope; a refusal is a 403 naming the scope, and audited.
func TestSubscriptionScopes(t *testing.T) {
	e := newSubEnv(t)
	full := e.token(t, "system/Subscription.crds")
	id, _ := e.create(t, full, hookBody)
	readOnly := e.token(t, "system/Subscription.r")
	comm := e.token(t, "system/Communication.rs")
	for _, tc := range []struct {
		method, path, tok string
		status            int
	}{
		{http.MethodPost, "/fhir/Subscription", readOnly, 403},
		{http.MethodDelete, "/fhir/Subscription/" + id, readOnly, 403},
		{http.MethodGet, "/fhir/Subscription", readOnly, 403},
		{http.MethodGet, "/fhir/Subscription/" + id, comm, 403},
		{http.MethodGet, "/fhir/Subscription/" + id + "/$status", comm, 403},
		{http.MethodGet, "/fhir/Subscription/" + id, "", 401},
		{http.MethodGet, "/fhir/Subscription/" + id, readOnly, 200},
		{http.MethodGet, "/fhir/Subscription/" + id + "/$status", readOnly, 200},
	} {
		status, h, b := e.send(t, tc.method, tc.tok, tc.path, fhirJSON, []byte(hookBody))
		if status != tc.status {
			t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.path, status, tc.status, b)
			continue
		}
		if status == 403 {
			if !strings.Contains(h.Get("WWW-Authenticate"), "system/Subscription.") {
				t.Errorf("%s %s: challenge %q", tc.method, tc.path, h.Get("WWW-Authenticate"))
			}
			if a := e.audit.last(); a.Outcome == 0 || !strings.HasPrefix(a.Entities[0], "Subscription") {
				t.Errorf("%s %s: the refusal audited as %+v", tc.method, tc.path, a)
			}
		}
	}
}

// TestNoRoleManagesSubscriptions: Subscription is for system clients; no
// signed-in person's role permits any interaction on it.
func TestNoRoleManagesSubscriptions(t *testing.T) {
	for _, r := range access.Roles() {
		for _, p := range []access.Perm{access.Create, access.Read, access.Delete, access.Search} {
			if r.Scopes().Allows("user", "Subscription", p) {
				t.Errorf("role %s may %s Subscription", r, p)
			}
		}
	}
}

// TestSubscriptionInStatement: the statement lists Subscription with its
// interactions, search parameters and $status, and SMART discovery its
// scope; without the store for it, neither the routes nor the entry.
func TestSubscriptionInStatement(t *testing.T) {
	e := newSubEnv(t)
	_, _, b := e.get(t, "", "/fhir/metadata")
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name string }
				Operation   []struct{ Name, Definition string }
			}
		}
	}
	json.Unmarshal(b, &cs)
	found := false
	for _, r := range cs.Rest[0].Resource {
		if r.Type != "Subscription" {
			continue
		}
		found = true
		var codes, params []string
		for _, i := range r.Interaction {
			codes = append(codes, i.Code)
		}
		for _, p := range r.SearchParam {
			params = append(params, p.Name)
		}
		if !slices.Equal(codes, []string{"create", "read", "delete", "search-type"}) || !slices.Equal(params, []string{"status", "url"}) ||
			len(r.Operation) != 1 || r.Operation[0].Name != "$status" || !strings.HasPrefix(r.Operation[0].Definition, "http://hl7.org/fhir/uv/subscriptions-backport/") {
			t.Errorf("the Subscription entry: %+v", r)
		}
	}
	if !found {
		t.Fatalf("no Subscription in the statement: %s", b)
	}
	_, _, b = e.get(t, "", "/.well-known/smart-configuration")
	if !strings.Contains(string(b), `"system/Subscription.crds"`) {
		t.Errorf("scopes_supported lacks system/Subscription.crds: %s", b)
	}

	plain := newEnv(t) // no Subscriptions in its Config
	tok := plain.token(t, "system/Communication.rs")
	if status, _, _ := plain.get(t, tok, "/fhir/Subscription"); status != http.StatusNotFound {
		t.Errorf("Subscription served without a store: %d", status)
	}
	if _, _, b := plain.get(t, "", "/fhir/metadata"); strings.Contains(string(b), `"Subscription"`) {
		t.Error("the statement lists Subscription without a store for it")
	}
}

// TestSubscriptionSearchParameters: bad parameters are 400s naming them,
// unless the client asks for lenient handling.
func TestSubscriptionSearchParameters(t *testing.T) {
	e := newSubEnv(t)
	tok := e.token(t, "system/Subscription.crds")
	for _, q := range []string{"status=paused", "bogus=1", "_count=-1", "url:contains=x", "status:not=off"} {
		status, _, b := e.get(t, tok, "/fhir/Subscription?"+q)
		name, _, _ := strings.Cut(q, "=")
		if status != http.StatusBadRequest || !strings.Contains(string(b), `"expression":["`+name+`"]`) {
			t.Errorf("%s: %d %s", q, status, b)
		}
	}
	status, _, b := e.get(t, tok, "/fhir/Subscription?bogus=1", "Prefer", "handling=lenient")
	if status != http.StatusOK || !strings.Contains(string(b), `"mode":"outcome"`) {
		t.Errorf("lenient: %d %s", status, b)
	}
}

// FuzzSubscriptionBody: whatever is POSTed as a Subscription, the answer
// is never a 5xx (a panic is one), and what is created is valid R4 with
// no header line in it.
func FuzzSubscriptionBody(f *testing.F) {
	f.Add([]byte(hookBody))
	f.Add([]byte(`{"resourceType":"Subscription","status":"active","reason":"r","criteria":"Communication","channel":{"type":"rest-hook","endpoint":"http://127.0.0.1/h"}}`))
	f.Add([]byte(`{"resourceType":"Subscription","status":"off","criteria":"Patient","channel":{"type":"email","header":["a","b: c\n"]}}`))
	f.Add([]byte(`{"resourceType":"Subscription","end":null,"channel":{"payload":";;"}}`))
	f.Add([]byte(`[[[[{}]]]]`))
	e := newSubEnv(f)
	tok := e.token(f, "system/Subscription.crds")
	f.Fuzz(func(t *testing.T, body []byte) {
		status, _, b := e.send(t, http.MethodPost, tok, "/fhir/Subscription", fhirJSON, body)
		if status >= 500 {
			t.Fatalf("%d for %q: %s", status, body, b)
		}
		if status == http.StatusCreated {
			if err := e.v.Validate(b); err != nil {
				t.Fatalf("created a Subscription that is not valid R4: %v\n%s", err, b)
			}
			var got subscriptionJSON
			json.Unmarshal(b, &got)
			if len(got.Channel.Header) > 0 {
				t.Fatalf("the answer shows header lines: %s", b)
			}
		}
	})
}

// TestSubscriptionsAreTheirClients: a client sees, reads and deletes only
// the subscriptions it created; another client's and the operator's (the
// CLI's) are 404 to it and absent from its searches, and stay.
func TestSubscriptionsAreTheirClients(t *testing.T) {
	e := newSubEnv(t)
	tok := e.token(t, "system/Subscription.crds")
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	for _, sub := range []store.Subscription{
		{ID: "theirs", Criteria: "Communication", Endpoint: "https://other.example/hook", Active: true, Created: at, Owner: "other-ehr"},
		{ID: "operators", Criteria: "Communication", Endpoint: "https://ops.example/hook", Active: true, Created: at},
	} {
		if err := e.st.PutSubscription(context.Background(), sub); err != nil {
			t.Fatal(err)
		}
	}
	status, _, b := e.send(t, http.MethodPost, tok, "/fhir/Subscription", fhirJSON, []byte(hookBody))
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, b)
	}
	var mine struct{ ID string }
	json.Unmarshal(b, &mine)
	for _, id := range []string{"theirs", "operators"} {
		for _, path := range []string{"/fhir/Subscription/" + id, "/fhir/Subscription/" + id + "/$status"} {
			if status, _, b := e.get(t, tok, path); status != http.StatusNotFound {
				t.Errorf("GET %s: %d %s, want 404", path, status, b)
			}
		}
		if status, _, b := e.send(t, http.MethodDelete, tok, "/fhir/Subscription/"+id, "", nil); status != http.StatusNotFound {
			t.Errorf("DELETE %s: %d %s, want 404", id, status, b)
		}
		if _, err := e.st.GetSubscription(context.Background(), id); err != nil {
			t.Errorf("%s after the client's delete: %v", id, err)
		}
	}
	status, _, b = e.get(t, tok, "/fhir/Subscription")
	var bundle struct {
		Total int
		Entry []struct{ Resource struct{ ID string } }
	}
	json.Unmarshal(b, &bundle)
	if status != http.StatusOK || bundle.Total != 1 || len(bundle.Entry) != 1 || bundle.Entry[0].Resource.ID != mine.ID {
		t.Errorf("search: %d %s, want only %s", status, b, mine.ID)
	}
	if status, _, b := e.get(t, tok, "/fhir/Subscription/"+mine.ID); status != http.StatusOK {
		t.Errorf("GET its own: %d %s", status, b)
	}
}
