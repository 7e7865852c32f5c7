package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// trailAt is when the test audit trail starts.
var trailAt = time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)

// trail is the test audit trail, appended in this order to chain node-a
// (so record i+1 has sequence number i+1), one minute apart.
var trail = []audit.Record{
	{Action: "message.accepted", Actor: audit.Actor{Kind: audit.ActorPeer, ID: "ENGINE-A", Address: "10.0.0.7"},
		Entities: []string{"inbound/1"}, Patient: "Patient/p1", Correlation: "corr-1"},
	{Action: "message.rejected", Actor: audit.Actor{Kind: audit.ActorPeer, ID: "ENGINE-A", Address: "10.0.0.7"},
		Outcome: audit.OutcomeMinor, Entities: []string{"inbound/2"}},
	{Action: "message.mapped", Actor: audit.Actor{Kind: audit.ActorSystem, ID: "carebridge"},
		Entities: []string{"inbound/1", "Communication/c1"}, Patient: "Patient/p1", Correlation: "corr-1"},
	{Action: "communication.delivered", Actor: audit.Actor{Kind: audit.ActorUser, ID: "Practitioner/a"},
		Entities: []string{"Communication/c1"}, Patient: "Patient/p1"},
	{Action: "rest.read", Actor: audit.Actor{Kind: audit.ActorClient, ID: "ehr", Address: "192.0.2.1"},
		Entities: []string{"Communication/c1"}, Patient: "Patient/p1", Correlation: "req-1"},
	{Action: "rest.search-type", Actor: audit.Actor{Kind: audit.ActorClient, ID: "ehr", Address: "192.0.2.1"},
		Entities: []string{"Communication/c1", "Communication/c2"}, Patient: "Patient/p2"},
	{Action: "client.token", Actor: audit.Actor{Kind: audit.ActorClient, ID: "ehr"}, Outcome: audit.OutcomeMinor},
	{Action: "user.login", Actor: audit.Actor{Kind: audit.ActorUser, ID: "Practitioner/b"}, Outcome: audit.OutcomeSerious},
	{Action: "rest.read", Actor: audit.Actor{Kind: audit.ActorClient, ID: "other"}, Outcome: audit.OutcomeMajor,
		Entities: []string{"Communication/c2"}, Patient: "Patient/p2"},
}

// eventID is the AuditEvent id of record seq of the trail.
func eventID(seq int) string {
	return audit.AuditEventID(audit.Record{Chain: "node-a", Seq: uint64(seq)})
}

// auditEnv is a server whose store holds the trail.
type auditEnv struct {
	srv   *httptest.Server
	base  string
	st    *sqlite.Store
	audit *auditLog
	key   *ecdsa.PrivateKey
	v     *fhir.Validator
	src   audit.Source
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.EnsureSigningKey(trailAt); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db")})
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
	e := &auditEnv{st: st, audit: &auditLog{}, src: audit.Source{Site: "Good Health"}}
	if e.v, err = fhir.NewValidator(); err != nil {
		t.Fatal(err)
	}
	e.srv, e.key = startAPI(t, kr, "system/AuditEvent.rs system/Communication.rs", api.Config{Store: st, Keys: kr, Audit: e.audit,
		AuditEvents: st, Source: e.src})
	e.base = e.srv.URL + "/fhir"
	return e
}

func (e *auditEnv) token(t *testing.T, scope string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: e.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	jti := make([]byte, 8)
	rand.Read(jti)
	now := time.Now()
	assertion, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "ehr", Subject: "ehr", Audience: jwt.Audience{e.srv.URL + "/auth/token"},
		Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), ID: hex.EncodeToString(jti)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	resp, err := http.Post(e.srv.URL+"/auth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

func (e *auditEnv) do(t *testing.T, method, token, path, form string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, body)
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
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

// search runs an AuditEvent search and checks that the Bundle and every
// AuditEvent in it are valid R4.
func (e *auditEnv) search(t *testing.T, token, query string, header ...string) bundle {
	t.Helper()
	status, h, b := e.do(t, http.MethodGet, token, "/fhir/AuditEvent?"+query, "", header...)
	if status != http.StatusOK {
		t.Fatalf("search %s: %d %s", query, status, b)
	}
	return e.checkBundle(t, h, b)
}

func (e *auditEnv) checkBundle(t *testing.T, h http.Header, b []byte) bundle {
	t.Helper()
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
	for _, en := range bu.Entry {
		if err := e.v.Validate(en.Resource); err != nil {
			t.Fatalf("%s: not valid R4: %v\n%s", en.FullURL, err, en.Resource)
		}
		if en.Search.Mode != "match" {
			continue
		}
		var r struct{ ResourceType, ID string }
		json.Unmarshal(en.Resource, &r)
		if r.ResourceType != "AuditEvent" || en.FullURL != e.base+"/AuditEvent/"+r.ID {
			t.Fatalf("entry %s holds %s/%s", en.FullURL, r.ResourceType, r.ID)
		}
	}
	return bu
}

// seqs are the sequence numbers of the AuditEvents matched, in order.
func seqs(t *testing.T, bu bundle) string {
	t.Helper()
	bySeq := map[string]string{}
	for i := range trail {
		bySeq[eventID(i+1)] = strconv.Itoa(i + 1)
	}
	var out []string
	for _, id := range ids(bu, "match") {
		s, ok := bySeq[id]
		if !ok {
			t.Fatalf("AuditEvent %s is not of the trail", id)
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

func TestReadAuditEvent(t *testing.T) {
	e := newAuditEnv(t)
	tok := e.token(t, "system/AuditEvent.rs")
	status, h, b := e.do(t, http.MethodGet, tok, "/fhir/AuditEvent/"+eventID(5), "", "X-Request-Id", "req-77")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/fhir+json") {
		t.Fatalf("read: %d %s", status, b)
	}
	if err := e.v.Validate(b); err != nil {
		t.Fatalf("not valid R4: %v\n%s", err, b)
	}
	r := trail[4]
	r.Chain, r.Seq, r.At = "node-a", 5, trailAt.Add(4*time.Minute)
	want, err := audit.Event(r, e.src).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("read gave\n%s\nwant the AuditEvent of record 5\n%s", b, want)
	}
	got := e.audit.last()
	if got.Action != "rest.read" || got.Outcome != audit.OutcomeSuccess || got.Actor.ID != "ehr" || got.Correlation != "req-77" ||
		got.Patient != "Patient/p1" || len(got.Entities) != 1 || got.Entities[0] != "AuditEvent/"+eventID(5) {
		t.Fatalf("the read is audited as %+v", got)
	}

	for _, id := range []string{eventID(99), "nope", "not%20an%20id"} {
		status, _, b = e.do(t, http.MethodGet, tok, "/fhir/AuditEvent/"+id, "")
		if status != http.StatusNotFound || readOutcome(t, b).Issue[0].Code != "not-found" {
			t.Fatalf("unknown id %s: %d %s", id, status, b)
		}
	}
}

func TestSearchAuditEvents(t *testing.T) {
	e := newAuditEnv(t)
	tok := e.token(t, "system/AuditEvent.rs")
	tests := []struct {
		query string
		want  string
	}{
		{"", "9,8,7,6,5,4,3,2,1"},
		{"_sort=date", "1,2,3,4,5,6,7,8,9"},
		{"_sort=-date&_format=json", "9,8,7,6,5,4,3,2,1"},
		{"_id=" + eventID(3) + "," + eventID(5), "5,3"},
		{"_id=" + eventID(3) + "&_id=" + eventID(5), ""},
		{"date=ge2026-11-03T14:32:00Z&date=lt2026-11-03T14:35:00Z", "5,4,3"},
		{"date=2026-11-03T14:32Z", "3"},
		{"date=gt2026-11-03T14:37", "9"},
		{"date=2026-11-03T15:32:00%2B01:00", "3"},
		{"date=2026-11-04", ""},
		{"date=2026", "9,8,7,6,5,4,3,2,1"},
		{"patient=Patient/p1", "5,4,3,1"},
		{"patient=p2", "9,6"},
		{"patient:Patient=p2,p1&_sort=date", "1,3,4,5,6,9"},
		{"patient=Patient/p3", ""},
		{"agent=ehr", "7,6,5"},
		{"agent=Practitioner/a", "4"},
		{"agent=ehr,other", "9,7,6,5"},
		{"agent=Device/carebridge", "9,8,7,6,5,4,3,2,1"},
		{"agent:identifier=urn:carebridge:actor:client|ehr", "7,6,5"},
		{"agent:identifier=urn:carebridge:actor:peer|ENGINE-A", "2,1"},
		{"agent:identifier=ENGINE-A", "2,1"},
		{"agent:identifier=urn:carebridge:actor:system|carebridge", ""},
		{"agent:identifier=urn:other|ehr", ""},
		{"entity=Communication/c1", "6,5,4,3"},
		{"entity:Communication=c2", "9,6"},
		{"entity=Patient/p2", "9,6"},
		{"entity:identifier=urn:carebridge:entity|inbound/1", "3,1"},
		{"entity=Communication/c1,Communication/c2", "9,6,5,4,3"},
		{"type=110114", "8,7"},
		{"type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest", "9,6,5"},
		{"type=http://dicom.nema.org/resources/ontology/DCM|110107", "2,1"},
		{"type=http://dicom.nema.org/resources/ontology/DCM|rest", ""},
		{"type=110106,110100", "4,3"},
		{"subtype=read", "9,5"},
		{"subtype=http://hl7.org/fhir/restful-interaction|search-type", "6"},
		{"subtype=urn:carebridge:audit-action|message.mapped", "3"},
		{"subtype=urn:carebridge:audit-action|", "9,8,7,6,5,4,3,2,1"},
		{"action=R", "9,5,4"},
		{"action=http://hl7.org/fhir/audit-event-action|C", "3,2,1"},
		{"action=E&type=110114", "8,7"},
		{"action=C&type=110114", ""},
		{"outcome=0", "6,5,4,3,1"},
		{"outcome=4", "7,2"},
		{"outcome=8,12", "9,8"},
		{"outcome=http://hl7.org/fhir/audit-event-outcome|12", "9"},
		{"agent=ehr&type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&date=ge2026-11-03T14:35Z", "6"},
		{"patient=p1&entity:identifier=urn:carebridge:entity|inbound/1&outcome=0", "3,1"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			bu := e.search(t, tok, tt.query)
			if got := seqs(t, bu); got != tt.want || bu.Total == nil || *bu.Total != len(ids(bu, "match")) {
				t.Fatalf("got %s (total %v), want %s", got, bu.Total, tt.want)
			}
		})
	}
	got := e.audit.last()
	if got.Action != "rest.search-type" || got.Actor.ID != "ehr" || got.Outcome != audit.OutcomeSuccess ||
		len(got.Entities) != 2 || got.Entities[0] != "AuditEvent/"+eventID(3) {
		t.Fatalf("the search is audited as %+v", got)
	}
	e.search(t, tok, "patient=Patient/p2")
	if got := e.audit.last(); got.Patient != "Patient/p2" || len(got.Entities) != 2 {
		t.Fatalf("a search by patient is audited as %+v", got)
	}
}

func TestSearchAuditEventsPages(t *testing.T) {
	e := newAuditEnv(t)
	tok := e.token(t, "system/AuditEvent.rs")
	var all []string
	next := e.base + "/AuditEvent?outcome=0,4,8,12&_count=2"
	for pages := 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		u, _ := url.Parse(next)
		bu := e.search(t, tok, u.RawQuery)
		if *bu.Total != 9 || len(bu.Link) == 0 || bu.Link[0].Relation != "self" {
			t.Fatalf("total %d, links %+v", *bu.Total, bu.Link)
		}
		all = append(all, seqs(t, bu))
		next = ""
		for _, l := range bu.Link {
			if l.Relation == "next" {
				next = l.URL
				if !strings.HasPrefix(l.URL, e.base+"/AuditEvent?") || !strings.Contains(l.URL, "outcome=") {
					t.Fatalf("next link %s", l.URL)
				}
			}
		}
	}
	if got := strings.Join(all, "|"); got != "9,8|7,6|5,4|3,2|1" {
		t.Fatalf("pages gave %s", got)
	}
	// the links read as URLs, as a Communication search's do: & not \u0026
	if _, _, raw := e.do(t, http.MethodGet, tok, "/fhir/AuditEvent?outcome=0&_count=2", ""); !strings.Contains(string(raw), "&_offset=2") || strings.Contains(string(raw), `\u0026`) {
		t.Fatalf("links escaped: %s", raw)
	}
	bu := e.search(t, tok, "agent=ehr&_summary=count")
	if len(bu.Entry) != 0 || *bu.Total != 3 {
		t.Fatalf("_summary=count: %+v", bu)
	}
	bu = e.search(t, tok, "_total=none&_count=1")
	if bu.Total != nil || seqs(t, bu) != "9" {
		t.Fatalf("_total=none: %+v", bu)
	}
	status, h, b := e.do(t, http.MethodPost, tok, "/fhir/AuditEvent/_search", "agent=ehr&_sort=date")
	if status != http.StatusOK || seqs(t, e.checkBundle(t, h, b)) != "5,6,7" {
		t.Fatalf("POST _search: %d %s", status, b)
	}
}

func TestSearchAuditEventsErrors(t *testing.T) {
	e := newAuditEnv(t)
	tok := e.token(t, "system/AuditEvent.rs")
	for _, tc := range []struct {
		query string
		named []string
	}{
		{"colour=blue&date=yesterday", []string{"colour", "date"}},
		{"outcome=5", []string{"outcome"}},
		{"action=X", []string{"action"}},
		{"patient=Practitioner/a", []string{"patient"}},
		{"entity=c1", []string{"entity"}},
		{"entity=inbound/1", []string{"entity"}},
		{"entity=Communication/c1&entity:identifier=urn:carebridge:entity|inbound/1", []string{"entity:identifier"}},
		{"entity:identifier=inbound/1", []string{"entity:identifier"}},
		{"type:not=rest", []string{"type:not"}},
		{"agent:missing=true", []string{"agent:missing"}},
		{"_sort=action", []string{"_sort"}},
		{"_count=-1&_offset=x", []string{"_count", "_offset"}},
		{"date=ne2026", []string{"date"}},
	} {
		status, _, b := e.do(t, http.MethodGet, tok, "/fhir/AuditEvent?"+tc.query, "")
		if status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", tc.query, status, b)
			continue
		}
		o := readOutcome(t, b)
		var named []string
		for _, is := range o.Issue {
			named = append(named, strings.Join(is.Expression, ","))
		}
		if strings.Join(named, " ") != strings.Join(tc.named, " ") {
			t.Errorf("%s: issues name %v, want %v", tc.query, named, tc.named)
		}
	}
	bu := e.search(t, tok, "colour=blue&outcome=4", "Prefer", "handling=lenient")
	if seqs(t, bu) != "7,2" || bu.Entry[len(bu.Entry)-1].Search.Mode != "outcome" {
		t.Fatalf("lenient: %+v", bu)
	}
}

func TestAuditEventSecurity(t *testing.T) {
	e := newAuditEnv(t)
	tok := e.token(t, "system/Communication.rs")
	for _, path := range []string{"/fhir/AuditEvent?agent=ehr", "/fhir/AuditEvent/" + eventID(1)} {
		status, h, b := e.do(t, http.MethodGet, tok, path, "")
		if status != http.StatusForbidden || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") ||
			readOutcome(t, b).Issue[0].Code != "forbidden" {
			t.Fatalf("%s without AuditEvent scope: %d %v %s", path, status, h, b)
		}
		if got := e.audit.last(); got.Outcome != audit.OutcomeMinor || got.Actor.ID != "ehr" {
			t.Fatalf("the refusal is audited as %+v", got)
		}
		status, _, _ = e.do(t, http.MethodGet, "", path, "")
		if status != http.StatusUnauthorized {
			t.Fatalf("%s without a token: %d", path, status)
		}
	}
	// Read only: no search.
	read := e.token(t, "system/AuditEvent.r")
	if status, _, _ := e.do(t, http.MethodGet, read, "/fhir/AuditEvent", ""); status != http.StatusForbidden {
		t.Fatalf("search with AuditEvent.r: %d", status)
	}
	if status, _, _ := e.do(t, http.MethodGet, read, "/fhir/AuditEvent/"+eventID(1), ""); status != http.StatusOK {
		t.Fatalf("read with AuditEvent.r: %d", status)
	}
}

// TestAuditEventsStoredWithoutIDs: records stored before event ids were
// are searched like the others, and read by id once the backfill has run.
func TestAuditEventsStoredWithoutIDs(t *testing.T) {
	e := newAuditEnv(t)
	tok := e.token(t, "system/AuditEvent.rs")
	old := audit.Record{Chain: "old-node", At: trailAt.Add(-time.Hour), Action: "message.accepted",
		Actor: audit.Actor{Kind: audit.ActorPeer, ID: "ENGINE-OLD"}, Entities: []string{"inbound/0"}}
	old, err := audit.Link(nil, old)
	if err != nil {
		t.Fatal(err)
	}
	row := store.AuditRecord{Chain: old.Chain, Seq: old.Seq, At: old.At, ActorKind: string(old.Actor.Kind), ActorID: old.Actor.ID,
		Action: old.Action, Entities: old.Entities, Prev: old.Prev[:], Hash: old.Hash[:]}
	if err := e.st.AppendAudit(context.Background(), []store.AuditRecord{row}, nil); err != nil {
		t.Fatal(err)
	}
	id := audit.AuditEventID(old)
	bu := e.search(t, tok, "agent=ENGINE-OLD")
	if got := ids(bu, "match"); len(got) != 1 || got[0] != id {
		t.Fatalf("search found %v, want %s", got, id)
	}
	if status, _, _ := e.do(t, http.MethodGet, tok, "/fhir/AuditEvent/"+id, ""); status != http.StatusNotFound {
		t.Fatalf("read before the backfill: %d", status)
	}
	if n, err := audit.BackfillEventIDs(context.Background(), e.st); err != nil || n != 1 {
		t.Fatalf("BackfillEventIDs = %d, %v", n, err)
	}
	status, _, b := e.do(t, http.MethodGet, tok, "/fhir/AuditEvent/"+id, "")
	if status != http.StatusOK || e.v.Validate(b) != nil || !strings.Contains(string(b), `"ENGINE-OLD"`) {
		t.Fatalf("read after the backfill: %d %s", status, b)
	}
}
