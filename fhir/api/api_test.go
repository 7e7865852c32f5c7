package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/gin-gonic/gin"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// registry is an in-memory client registry.
type registry struct {
	mu      sync.Mutex
	clients map[string]access.Client
	spent   map[string]bool
}

func (r *registry) Client(_ context.Context, id string) (access.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.clients[id]
	if !ok {
		return c, access.ErrUnknownClient
	}
	return c, nil
}

func (r *registry) SpendAssertion(_ context.Context, clientID, jti string, _ time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spent[clientID+jti] {
		return false, nil
	}
	r.spent[clientID+jti] = true
	return true, nil
}

// auditLog keeps what the API audits.
type auditLog struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (a *auditLog) Record(_ context.Context, es ...audit.Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, es...)
	return nil
}

func (a *auditLog) last() audit.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.entries[len(a.entries)-1]
}

const (
	topicCreated = "test.created"
	topicAudit   = "test.audit"
)

// events makes the pipeline events a write publishes, and counts them.
type events struct {
	mu      sync.Mutex
	created []store.CommunicationRow
	audited []audit.Entry
}

func (ev *events) Created(row store.CommunicationRow, corr string) (store.Event, error) {
	ev.mu.Lock()
	ev.created = append(ev.created, row)
	ev.mu.Unlock()
	return store.Event{Topic: topicCreated, Message: message.NewMessage(watermill.NewUUID(), []byte(row.ID))}, nil
}

// lastAudited is the last entry a write published.
func (ev *events) lastAudited() audit.Entry {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.audited) == 0 {
		return audit.Entry{}
	}
	return ev.audited[len(ev.audited)-1]
}

func (ev *events) Audited(corr string, entries ...audit.Entry) (store.Event, error) {
	ev.mu.Lock()
	ev.audited = append(ev.audited, entries...)
	ev.mu.Unlock()
	return store.Event{Topic: topicAudit, Message: message.NewMessage(watermill.NewUUID(), []byte("audit"))}, nil
}

type env struct {
	events *events
	srv    *httptest.Server
	base   string
	audit  *auditLog
	key    *ecdsa.PrivateKey
	comms  map[string][]byte // id → the JSON stored
	v      *fhir.Validator
}

var sentAt = time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)

// seed is one stored Communication.
type seed struct {
	id, status, priority, subject string
	recipients                    []string
	sent                          time.Duration // after sentAt
}

var seeds = []seed{
	{"c1", "in-progress", "routine", "Patient/p1", []string{"Practitioner/a", "CareTeam/icu"}, 0},
	{"c2", "in-progress", "stat", "Patient/p1", []string{"Practitioner/a"}, time.Minute},
	{"c3", "completed", "urgent", "Patient/p2", []string{"Practitioner/a", "Practitioner/b"}, 2 * time.Minute},
	{"c4", "in-progress", "urgent", "Patient/p2", []string{"Practitioner/b"}, 3 * time.Minute},
}

func newEnv(t testing.TB) *env {
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
	e := &env{audit: &auditLog{}, comms: map[string][]byte{}}
	if e.v, err = fhir.NewValidator(); err != nil {
		t.Fatal(err)
	}
	seal := func(typ, id string, body any) []byte {
		b, err := fhir.Resource{Type: typ, ID: id, Body: body}.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.v.Validate(b); err != nil {
			t.Fatalf("seed %s/%s is not valid R4: %v", typ, id, err)
		}
		if typ == "Communication" {
			e.comms[id] = b
		}
		s, err := kr.Seal(b, []byte(typ+"/"+id))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for i, sd := range seeds {
		sent := sentAt.Add(sd.sent)
		c := &fhir.Communication{}
		c.Id = new(sd.id)
		c.Status = fhirmodel.EventStatusInProgress
		if sd.status == "completed" {
			c.Status = fhirmodel.EventStatusCompleted
		}
		c.Subject = &fhirmodel.Reference{Reference: new(sd.subject)}
		c.Sent = new(sent.Format(time.RFC3339))
		for _, r := range sd.recipients {
			c.Recipient = append(c.Recipient, fhirmodel.Reference{Reference: new(r)})
		}
		c.Payload = []fhir.CommunicationPayload{{ContentString: new("synthetic test message " + sd.id)}}
		c.Identifier = []fhirmodel.Identifier{{System: new(fhir.CommunicationSourceSystem), Value: new("FAC^" + sd.id + "^rule")}}
		c.Category = []fhirmodel.CodeableConcept{{Coding: []fhirmodel.Coding{{System: new(fhir.CommunicationCategorySystem), Code: new("alert")}}}}
		c.Priority = new(fhirmodel.RequestPriorityRoutine)
		switch sd.priority {
		case "urgent":
			c.Priority = new(fhirmodel.RequestPriorityUrgent)
		case "stat":
			c.Priority = new(fhirmodel.RequestPriorityStat)
		}
		_, pid, _ := strings.Cut(sd.subject, "/")
		patient := &fhirmodel.Patient{Id: new(pid), Name: []fhirmodel.HumanName{{Family: new("Testpatient")}}}
		row, err := index.Communication(c)
		if err != nil {
			t.Fatal(err)
		}
		row.ID, row.Identifier, row.Sealed = sd.id, "FAC^"+sd.id+"^rule", seal("Communication", sd.id, c)
		m := store.Mapped{InboundID: "in-" + sd.id, MappedAt: sent, Outcome: []byte("x"),
			Resources:      []store.SealedResource{{Type: "Patient", ID: pid, Sealed: seal("Patient", pid, patient)}},
			Communications: []store.CommunicationRow{row}}
		if ok, err := st.StoreMapped(context.Background(), m); err != nil || !ok {
			t.Fatalf("seeding %d: %v %v", i, ok, err)
		}
	}
	e.events = &events{}
	e.srv, e.key = startAPI(t, kr, "system/Communication.cruds system/Patient.r", api.Config{Store: st, Keys: kr, Audit: e.audit,
		Writes: st, Sealer: kr, Validator: e.v, Events: e.events})
	e.base = e.srv.URL + "/fhir"
	return e
}

// startAPI serves the API on loopback with cfg, its token service over
// one client "ehr" registered with scopes and a fresh P-384 key (returned,
// with kid k1).
func startAPI(t testing.TB, kr *secure.KeyRing, scopes string, cfg api.Config) (*httptest.Server, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	reg := &registry{spent: map[string]bool{}, clients: map[string]access.Client{
		"ehr": {ID: "ehr", Keys: access.StaticKeys{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Use: "sig"}}},
			Scopes: mustScopes(t, scopes)},
	}}
	gin.SetMode(gin.TestMode)
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	var err error
	if cfg.Tokens, err = access.NewService(reg, kr, access.Config{Issuer: srv.URL, TokenURL: srv.URL + "/auth/token", Audience: srv.URL + "/fhir"}); err != nil {
		t.Fatal(err)
	}
	cfg.BaseURL = srv.URL
	s, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	handler = s.Handler()
	return srv, key
}

func mustScopes(t testing.TB, s string) access.Scopes {
	ss, _, err := access.ParseScopes(s)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func (e *env) assertion(t testing.TB, jti string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: e.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "ehr", Subject: "ehr", Audience: jwt.Audience{e.srv.URL + "/auth/token"},
		Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), ID: jti}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (e *env) tokenRequest(t testing.TB, jti, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {e.assertion(t, jti)}}
	resp, err := http.Post(e.srv.URL+"/auth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func (e *env) token(t testing.TB, scope string) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	status, body := e.tokenRequest(t, hex.EncodeToString(b), scope)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

func (e *env) get(t testing.TB, token, path string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
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

type outcome struct {
	ResourceType string
	Issue        []struct {
		Severity, Code string
		Expression     []string
		Details        struct{ Text string }
	}
}

func readOutcome(t testing.TB, b []byte) outcome {
	t.Helper()
	var o outcome
	if err := json.Unmarshal(b, &o); err != nil || o.ResourceType != "OperationOutcome" || len(o.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", b)
	}
	return o
}

type bundle struct {
	ResourceType, Type string
	Total              *int
	Link               []struct{ Relation, URL string }
	Entry              []struct {
		FullURL  string
		Resource json.RawMessage
		Search   struct{ Mode string }
	}
}

func (e *env) search(t testing.TB, token, query string) bundle {
	t.Helper()
	status, h, b := e.get(t, token, "/fhir/Communication?"+query)
	if status != http.StatusOK {
		t.Fatalf("search %s: %d %s", query, status, b)
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
	return bu
}

func ids(bu bundle, mode string) []string {
	var out []string
	for _, e := range bu.Entry {
		if e.Search.Mode == mode {
			var r struct{ ID string }
			json.Unmarshal(e.Resource, &r)
			out = append(out, r.ID)
		}
	}
	return out
}

func TestMetadataIsValidR4AndNeedsNoToken(t *testing.T) {
	e := newEnv(t)
	status, _, b := e.get(t, "", "/fhir/metadata")
	if status != http.StatusOK {
		t.Fatalf("metadata: %d %s", status, b)
	}
	if err := e.v.Validate(b); err != nil {
		t.Fatalf("the CapabilityStatement is not valid R4: %v", err)
	}
	for _, want := range []string{`"name":"recipient"`, `"name":"priority"`, `"SMART-on-FHIR"`, e.srv.URL + "/auth/token", `"search-type"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the CapabilityStatement lacks %s", want)
		}
	}
	status, _, b = e.get(t, "", "/fhir/SearchParameter/communication-priority")
	if status != http.StatusOK || e.v.Validate(b) != nil {
		t.Fatalf("the priority SearchParameter: %d %v", status, e.v.Validate(b))
	}
	status, _, b = e.get(t, "", "/.well-known/smart-configuration")
	if status != http.StatusOK || !strings.Contains(string(b), `"private_key_jwt"`) {
		t.Fatalf("smart-configuration: %d %s", status, b)
	}
}

func TestReadCommunication(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.rs")
	status, h, b := e.get(t, tok, "/fhir/Communication/c2", "X-Request-Id", "req-42")
	if status != http.StatusOK || !sameApartFromMeta(t, b, e.comms["c2"]) || h.Get("ETag") != `W/"1"` {
		t.Fatalf("read: %d %v %s\nwant the stored resource %s", status, h, b, e.comms["c2"])
	}
	got := e.audit.last()
	if got.Action != "rest.read" || got.Outcome != audit.OutcomeSuccess || got.Actor.ID != "ehr" || got.Actor.Kind != audit.ActorClient ||
		got.Patient != "Patient/p1" || got.Correlation != "req-42" || len(got.Entities) != 1 || got.Entities[0] != "Communication/c2" {
		t.Fatalf("audit entry %+v", got)
	}
	if strings.Contains(got.Action+strings.Join(got.Entities, ""), "synthetic") {
		t.Fatal("content in the audit trail")
	}
	status, _, b = e.get(t, tok, "/fhir/Communication/nope")
	if status != http.StatusNotFound || readOutcome(t, b).Issue[0].Code != "not-found" {
		t.Fatalf("unknown id: %d %s", status, b)
	}
}

func TestSearchCommunications(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.rs system/Patient.r")
	tests := []struct {
		query string
		want  []string
	}{
		{"recipient=Practitioner/a&status=in-progress&_sort=-sent", []string{"c2", "c1"}},
		{"recipient=Practitioner/b&_sort=sent", []string{"c3", "c4"}},
		{"patient=p2&_sort=-sent", []string{"c4", "c3"}},
		{"subject=Patient/p1&priority=stat", []string{"c2"}},
		{"priority:not=routine&_sort=-priority", []string{"c2", "c4", "c3"}},
		{"status:not=in-progress", []string{"c3"}},
		{"sent=ge2026-11-03T14:31:00Z&sent=lt2026-11-03T14:33:00Z&_sort=sent", []string{"c2", "c3"}},
		{"sent=2026-11-03T14:32Z", []string{"c3"}},
		{"encounter:missing=true&_sort=_id", []string{"c1", "c2", "c3", "c4"}},
		{"identifier=urn:carebridge:communication-source|FAC%5Ec4%5Erule", []string{"c4"}},
		{"_id=c1,c3", []string{"c1", "c3"}},
		{"category=alert&status=entered-in-error", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			bu := e.search(t, tok, tt.query)
			got := ids(bu, "match")
			if strings.Join(got, ",") != strings.Join(tt.want, ",") || bu.Total == nil || *bu.Total != len(tt.want) {
				t.Fatalf("got %v (total %v), want %v", got, bu.Total, tt.want)
			}
		})
	}
	got := e.audit.last()
	if got.Action != "rest.search-type" || got.Actor.ID != "ehr" {
		t.Fatalf("search audit entry %+v", got)
	}
}

func TestSearchPagesFollowLinks(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.rs")
	var all []string
	next := e.base + "/Communication?recipient=Practitioner/a,Practitioner/b&_sort=-sent&_count=1"
	for pages := 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		u, _ := url.Parse(next)
		bu := e.search(t, tok, u.RawQuery)
		if *bu.Total != 4 {
			t.Fatalf("total %d, want 4", *bu.Total)
		}
		all = append(all, ids(bu, "match")...)
		next = ""
		for _, l := range bu.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	if strings.Join(all, ",") != "c4,c3,c2,c1" {
		t.Fatalf("pages gave %v", all)
	}
	bu := e.search(t, tok, "recipient=Practitioner/a&_summary=count")
	if len(bu.Entry) != 0 || *bu.Total != 3 {
		t.Fatalf("_summary=count: %+v", bu)
	}
}

func TestSearchIncludesSubjects(t *testing.T) {
	e := newEnv(t)
	bu := e.search(t, e.token(t, "system/Communication.rs system/Patient.r"), "_include=Communication:subject&_sort=_id")
	if got := ids(bu, "include"); strings.Join(got, ",") != "p1,p2" {
		t.Fatalf("included %v, want p1,p2", got)
	}
	bu = e.search(t, e.token(t, "system/Communication.rs"), "_include=Communication:subject")
	if len(ids(bu, "include")) != 0 {
		t.Fatalf("included Patients without Patient.r")
	}
	if bu.Entry[len(bu.Entry)-1].Search.Mode != "outcome" {
		t.Fatal("no outcome says why the subjects were left out")
	}
}

func TestSearchErrorsNameTheParameter(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.rs")
	status, _, b := e.get(t, tok, "/fhir/Communication?colour=blue&sent=yesterday")
	if status != http.StatusBadRequest {
		t.Fatalf("unknown parameter: %d %s", status, b)
	}
	o := readOutcome(t, b)
	if len(o.Issue) != 2 || o.Issue[0].Expression[0] != "colour" || o.Issue[1].Expression[0] != "sent" {
		t.Fatalf("issues %+v: want colour and sent named", o.Issue)
	}
	status, _, b = e.get(t, tok, "/fhir/Communication?colour=blue&status=completed", "Prefer", "handling=lenient")
	if status != http.StatusOK || !strings.Contains(string(b), `"mode":"outcome"`) || !strings.Contains(string(b), `"c3"`) {
		t.Fatalf("lenient: %d %s", status, b)
	}
}

func TestContentNegotiation(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "system/Communication.rs")
	for _, tc := range []struct {
		path, accept string
		want         int
	}{
		{"/fhir/Communication/c1?_format=xml", "", http.StatusNotAcceptable},
		{"/fhir/Communication/c1", "application/fhir+xml", http.StatusNotAcceptable},
		{"/fhir/Communication/c1?_format=json", "", http.StatusOK},
		{"/fhir/Communication/c1", "application/fhir+json", http.StatusOK},
		{"/fhir/Communication/c1", "text/html, */*;q=0.8", http.StatusOK},
		{"/fhir/metadata?_format=application/fhir%2Bjson", "", http.StatusOK},
	} {
		status, _, b := e.get(t, tok, tc.path, "Accept", tc.accept)
		if status != tc.want {
			t.Errorf("%s Accept %q: %d %s, want %d", tc.path, tc.accept, status, b, tc.want)
		}
		if status == http.StatusNotAcceptable {
			readOutcome(t, b)
		}
	}
	status, _, b := e.get(t, tok, "/fhir/Basic/1")
	if status != http.StatusNotFound {
		t.Fatalf("unknown type: %d", status)
	}
	readOutcome(t, b)

	// The base URL itself: answered in FHIR where it is asked, not
	// redirected (a client that does not follow redirects got gin's HTML).
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/fhir", http.StatusNotFound},
		{http.MethodGet, "/fhir/", http.StatusNotFound},
		{http.MethodPost, "/fhir", http.StatusMethodNotAllowed}, // a batch or transaction
		{http.MethodPost, "/fhir/", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, e.srv.URL+tc.path, strings.NewReader(`{"resourceType":"Bundle","type":"transaction"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/fhir+json") {
			t.Errorf("%s %s: %d %s %s, want %d and an OperationOutcome", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.want)
			continue
		}
		if o := readOutcome(t, b); !strings.Contains(o.Issue[0].Details.Text, "/fhir/metadata") {
			t.Errorf("%s %s: %s, want it to point at the CapabilityStatement", tc.method, tc.path, b)
		}
	}
}

func TestPostSearch(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodPost, e.base+"/Communication/_search", strings.NewReader("recipient=Practitioner/b&_sort=sent"))
	req.Header.Set("Authorization", "Bearer "+e.token(t, "system/Communication.rs"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var bu bundle
	json.NewDecoder(resp.Body).Decode(&bu)
	if resp.StatusCode != http.StatusOK || strings.Join(ids(bu, "match"), ",") != "c3,c4" {
		t.Fatalf("POST _search: %d %+v", resp.StatusCode, bu)
	}
}

func TestSecurityRefusals(t *testing.T) {
	e := newEnv(t)
	// No token: 401 with a challenge, audited as a failure.
	status, h, b := e.get(t, "", "/fhir/Communication/c1")
	if status != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || readOutcome(t, b).Issue[0].Code != "security" {
		t.Fatalf("no token: %d %v %s", status, h, b)
	}
	if got := e.audit.last(); got.Outcome != audit.OutcomeMinor || got.Action != "rest.read" || got.Actor.Kind != audit.ActorPeer || got.Entities[0] != "Communication/c1" {
		t.Fatalf("no-token audit entry %+v", got)
	}
	// A token that does not verify.
	status, h, _ = e.get(t, "not-a-token", "/fhir/Communication?status=completed")
	if status != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("bad token: %d %v", status, h)
	}
	// Wrong scope: Patient only.
	tok := e.token(t, "system/Patient.r")
	status, h, b = e.get(t, tok, "/fhir/Communication?status=completed")
	if status != http.StatusForbidden || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") || readOutcome(t, b).Issue[0].Code != "forbidden" {
		t.Fatalf("wrong scope: %d %v %s", status, h, b)
	}
	if got := e.audit.last(); got.Outcome != audit.OutcomeMinor || got.Actor.ID != "ehr" || got.Action != "rest.search-type" {
		t.Fatalf("wrong-scope audit entry %+v", got)
	}
	// The Patient it may read.
	if status, _, b := e.get(t, tok, "/fhir/Patient/p1"); status != http.StatusOK || !strings.Contains(string(b), `"Patient"`) {
		t.Fatalf("Patient read: %d %s", status, b)
	}
	if got := e.audit.last(); got.Patient != "Patient/p1" || got.Outcome != audit.OutcomeSuccess {
		t.Fatalf("Patient read audit entry %+v", got)
	}
	// A replayed assertion at the token endpoint.
	if status, _ := e.tokenRequest(t, "same-jti", "system/Communication.rs"); status != http.StatusOK {
		t.Fatalf("first use of an assertion: %d", status)
	}
	status, body := e.tokenRequest(t, "same-jti", "system/Communication.rs")
	if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Fatalf("replayed assertion: %d %v", status, body)
	}
	if got := e.audit.last(); got.Action != "client.token" || got.Outcome != audit.OutcomeMinor || got.Actor.ID != "ehr" {
		t.Fatalf("replay audit entry %+v", got)
	}
	// A scope it was never given.
	status, body = e.tokenRequest(t, "other-jti", "system/AuditEvent.rs")
	if status != http.StatusBadRequest || body["error"] != "invalid_scope" {
		t.Fatalf("unregistered scope: %d %v", status, body)
	}
}

// sameApartFromMeta compares two resources as JSON, meta left out.
func sameApartFromMeta(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y map[string]any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	delete(x, "meta")
	delete(y, "meta")
	return reflect.DeepEqual(x, y)
}
