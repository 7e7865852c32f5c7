package api_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/access/accesstest"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// loginEnv is the API with people signing in: one stored Communication
// (c1), users in memory, and a clock the tests move.
type loginEnv struct {
	srv   *httptest.Server
	users *access.Users
	clock *accesstest.Clock
	audit *auditLog
	key   *ecdsa.PrivateKey
}

func newLoginEnv(t *testing.T) *loginEnv {
	t.Helper()
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	c := &fhir.Communication{}
	c.Id = new("c1")
	c.Status = fhirmodel.EventStatusInProgress
	c.Subject = &fhirmodel.Reference{Reference: new("Patient/p1")}
	c.Encounter = &fhirmodel.Reference{Reference: new("Encounter/e1")}
	c.Sent = new(sentAt.Format(time.RFC3339))
	c.Recipient = []fhirmodel.Reference{{Reference: new("Practitioner/a")}, {Reference: new("CareTeam/icu")}}
	c.Payload = []fhir.CommunicationPayload{{ContentString: new("synthetic test message")}}
	row, err := index.Communication(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fhir.Resource{Type: "Communication", ID: "c1", Body: c}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	row.ID, row.Identifier = "c1", "FAC^c1^rule"
	if row.Sealed, err = kr.Seal(b, []byte("Communication/c1")); err != nil {
		t.Fatal(err)
	}
	pb, err := fhir.Resource{Type: "Patient", ID: "p1", Body: &fhirmodel.Patient{Id: new("p1")}}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	patient := store.SealedResource{Type: "Patient", ID: "p1"}
	if patient.Sealed, err = kr.Seal(pb, []byte("Patient/p1")); err != nil {
		t.Fatal(err)
	}
	// The encounter moved from the ED to an ICU bed: the clerk's view
	// shows the bed.
	resources := []store.SealedResource{patient}
	for ref, body := range map[string]string{
		"Encounter/e1": `{"resourceType":"Encounter","id":"e1","status":"in-progress","class":{"code":"IMP"},"subject":{"reference":"Patient/p1"},` +
			`"location":[{"location":{"reference":"Location/ed-2"},"status":"completed"},{"location":{"reference":"Location/bed-7"},"status":"active"}]}`,
		"Location/ed-2":  `{"resourceType":"Location","id":"ed-2","name":"SYNTH ED 2"}`,
		"Location/bed-7": `{"resourceType":"Location","id":"bed-7","name":"SYNTH ICU 7 B"}`,
	} {
		typ, id, _ := strings.Cut(ref, "/")
		r := store.SealedResource{Type: typ, ID: id}
		if r.Sealed, err = kr.Seal([]byte(body), []byte(ref)); err != nil {
			t.Fatal(err)
		}
		resources = append(resources, r)
	}
	if ok, err := st.StoreMapped(context.Background(), store.Mapped{InboundID: "in-c1", MappedAt: sentAt, Outcome: []byte("x"),
		Resources: resources, Communications: []store.CommunicationRow{row}}); err != nil || !ok {
		t.Fatalf("seeding: %v %v", ok, err)
	}

	e := &loginEnv{audit: &auditLog{}, clock: accesstest.NewClock(time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC))}
	if e.users, err = access.NewUsers(&accesstest.Users{}, kr, access.UsersConfig{Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	e.srv, e.key = startAPI(t, kr, "system/Communication.rs", api.Config{Store: st, Keys: kr, Audit: e.audit, AuditEvents: st,
		Users: e.users, Now: e.clock.Now})
	return e
}

// loginPerson is a user as a test knows them.
type loginPerson struct {
	id, username, password, secret string
}

const newPassword = "a new password of the test user"

// add adds a user, linked to recipients, through the service and signs
// them in once over HTTP to replace the one-time password; the clock then
// moves past that code.
func (e *loginEnv) add(t *testing.T, username string, role access.Role, recipients ...string) loginPerson {
	t.Helper()
	en, err := e.users.Add(context.Background(), username, role, recipients...)
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(en.TOTPURI)
	if err != nil {
		t.Fatal(err)
	}
	p := loginPerson{id: en.UserID, username: username, password: en.OneTimePassword, secret: key.Secret()}
	status, body := e.postLogin(t, url.Values{"username": {username}, "password": {p.password}, "totp": {e.code(t, p)}, "new_password": {newPassword}})
	if status != http.StatusOK {
		t.Fatalf("first login of %s: %d %v", username, status, body)
	}
	p.password = newPassword
	e.clock.Add(30 * time.Second)
	return p
}

func (e *loginEnv) code(t *testing.T, p loginPerson) string {
	t.Helper()
	c, err := totp.GenerateCode(p.secret, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *loginEnv) postLogin(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(e.srv.URL+"/auth/login", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("login answer Cache-Control %q, want no-store", cc)
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// login signs p in with a fresh code and returns the session token.
func (e *loginEnv) login(t *testing.T, p loginPerson) string {
	t.Helper()
	status, body := e.postLogin(t, url.Values{"username": {p.username}, "password": {p.password}, "totp": {e.code(t, p)}})
	if status != http.StatusOK {
		t.Fatalf("login of %s: %d %v", p.username, status, body)
	}
	return body["session_token"].(string)
}

func (e *loginEnv) do(t *testing.T, method, token, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// get is the body of a GET that must answer 200.
func (e *loginEnv) get(t *testing.T, token, path string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// wantEntry checks the last audit entry.
func (e *loginEnv) wantEntry(t *testing.T, action string, outcome audit.Outcome, kind audit.ActorKind, id string) {
	t.Helper()
	got := e.audit.last()
	if got.Action != action || got.Outcome != outcome || got.Actor.Kind != kind || got.Actor.ID != id || got.Actor.Address == "" {
		t.Fatalf("audit entry %+v; want %s, outcome %d, by %s %q with an address", got, action, outcome, kind, id)
	}
}

// noSecretsAudited checks that no password or code reached the trail.
func (e *loginEnv) noSecretsAudited(t *testing.T, secrets ...string) {
	t.Helper()
	e.audit.mu.Lock()
	b, _ := json.Marshal(e.audit.entries)
	e.audit.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Fatalf("the audit trail holds a secret (%d characters)", len(s))
		}
	}
}

// TestLoginSessionReadsCommunications: a physician signs in, reads and
// searches with the session token, and logs out; each step is audited
// under their user id.
func TestLoginSessionReadsCommunications(t *testing.T) {
	e := newLoginEnv(t)
	en, err := e.users.Add(context.Background(), "ann.md", access.RolePhysician, "Practitioner/a")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := otp.NewKeyFromURL(en.TOTPURI)
	p := loginPerson{id: en.UserID, username: "ann.md", password: en.OneTimePassword, secret: key.Secret()}
	code := e.code(t, p)

	status, body := e.postLogin(t, url.Values{"username": {"ann.md"}, "password": {p.password}, "totp": {code}})
	if status != http.StatusForbidden || body["error"] != "password_change_required" {
		t.Fatalf("login with the one-time password: %d %v; want 403 password_change_required", status, body)
	}
	e.wantEntry(t, "user.login", audit.OutcomeMinor, audit.ActorUser, p.id)
	e.clock.Add(30 * time.Second)
	status, body = e.postLogin(t, url.Values{"username": {"ann.md"}, "password": {p.password}, "totp": {e.code(t, p)}, "new_password": {newPassword}})
	if status != http.StatusOK || body["role"] != "physician" || body["expires_in"] != float64(900) || body["token_type"] != "bearer" {
		t.Fatalf("login with a new password: %d %v", status, body)
	}
	e.wantEntry(t, "user.login", audit.OutcomeSuccess, audit.ActorUser, p.id)
	tok := body["session_token"].(string)

	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication?recipient=Practitioner/a"); got != http.StatusOK {
		t.Fatalf("search with a physician's session: %d", got)
	}
	e.wantEntry(t, "rest.search-type", audit.OutcomeSuccess, audit.ActorUser, p.id)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication/c1"); got != http.StatusOK {
		t.Fatalf("read with a physician's session: %d", got)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeSuccess, audit.ActorUser, p.id)
	if got := e.do(t, http.MethodGet, tok, "/fhir/AuditEvent"); got != http.StatusForbidden {
		t.Fatalf("AuditEvent search with a physician's session: %d, want 403", got)
	}

	if got := e.do(t, http.MethodPost, tok, "/auth/logout"); got != http.StatusNoContent {
		t.Fatalf("logout: %d, want 204", got)
	}
	e.wantEntry(t, "user.logout", audit.OutcomeSuccess, audit.ActorUser, p.id)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication"); got != http.StatusUnauthorized {
		t.Fatalf("search after logout: %d, want 401", got)
	}
	if got := e.do(t, http.MethodPost, tok, "/auth/logout"); got != http.StatusUnauthorized {
		t.Fatalf("logout again: %d, want 401", got)
	}
	e.wantEntry(t, "user.logout", audit.OutcomeMinor, audit.ActorUser, p.id)
	if got := e.do(t, http.MethodPost, "", "/auth/logout"); got != http.StatusUnauthorized {
		t.Fatalf("logout without a token: %d, want 401", got)
	}
	e.wantEntry(t, "user.logout", audit.OutcomeMinor, audit.ActorPeer, "")
	e.noSecretsAudited(t, en.OneTimePassword, newPassword, code, tok, key.Secret())
}

// TestRoleScopesOverHTTP: a unit clerk's session searches their unit's
// Communications but cannot read (403, audited), and finds none of
// another unit's; a security officer's reads the audit trail but no
// Communication; an EHR's client token still works beside sessions.
func TestRoleScopesOverHTTP(t *testing.T) {
	e := newLoginEnv(t)
	other := e.login(t, e.add(t, "ward3.clerk", access.RoleUnitClerk, "CareTeam/ward-3"))
	if body := e.get(t, other, "/fhir/Communication?_id=c1"); !strings.Contains(body, `"total":0`) || strings.Contains(body, `"c1"`) {
		t.Errorf("another unit's clerk finds c1: %s", body)
	}
	clerk := e.add(t, "clerk", access.RoleUnitClerk, "CareTeam/icu")
	tok := e.login(t, clerk)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication"); got != http.StatusOK {
		t.Fatalf("a clerk's search: %d, want 200", got)
	}
	// The minimum necessary: the clerk sees that it exists, its status,
	// recipients and where the patient is, not the payload or the patient.
	body := e.get(t, tok, "/fhir/Communication?_id=c1")
	for _, want := range []string{`"id":"c1"`, `"status":"in-progress"`, `"Practitioner/a"`, `"REDACTED"`,
		`"about":[{"display":"SYNTH ICU 7 B","reference":"Location/bed-7"}]`} {
		if !strings.Contains(body, want) {
			t.Errorf("a clerk's search lacks %s: %s", want, body)
		}
	}
	if got := e.audit.last().Entities; !slices.Contains(got, "Communication/c1") || !slices.Contains(got, "Location/bed-7") {
		t.Errorf("the clerk's search is audited with %v, want Communication/c1 and the Location it showed", got)
	}
	for _, never := range []string{"synthetic test message", "payload", "Patient/p1", "ed-2"} {
		if strings.Contains(body, never) {
			t.Errorf("a clerk's search shows %q: %s", never, body)
		}
	}
	v, _ := fhir.NewValidator()
	if err := v.Validate([]byte(body)); err != nil {
		t.Errorf("a clerk's searchset is not valid R4: %v", err)
	}
	if body := e.get(t, e.clientToken(t), "/fhir/Communication?_id=c1"); !strings.Contains(body, "synthetic test message") || strings.Contains(body, "bed-7") {
		t.Errorf("an EHR's search lost the payload, or gained the clerk's location: %s", body)
	}
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication/c1"); got != http.StatusForbidden {
		t.Fatalf("a clerk's read: %d, want 403", got)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeMinor, audit.ActorUser, clerk.id)

	officer := e.add(t, "sec.officer", access.RoleSecurityOfficer)
	tok = e.login(t, officer)
	if got := e.do(t, http.MethodGet, tok, "/fhir/AuditEvent"); got != http.StatusOK {
		t.Fatalf("a security officer's AuditEvent search: %d, want 200", got)
	}
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication"); got != http.StatusForbidden {
		t.Fatalf("a security officer's Communication search: %d, want 403", got)
	}

	admin := e.add(t, "admin", access.RoleAdministrator)
	tok = e.login(t, admin)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication"); got != http.StatusForbidden {
		t.Fatalf("an administrator's Communication search: %d, want 403", got)
	}

	if got := e.do(t, http.MethodGet, e.clientToken(t), "/fhir/Communication/c1"); got != http.StatusOK {
		t.Fatalf("an EHR's read with a client token: %d, want 200", got)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeSuccess, audit.ActorClient, "ehr")
}

func (e *loginEnv) clientToken(t *testing.T) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: e.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: "ehr", Subject: "ehr", Audience: jwt.Audience{e.srv.URL + "/auth/token"},
		Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), ID: "jti-" + now.Format(time.RFC3339Nano)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Communication.rs"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	resp, err := http.Post(e.srv.URL+"/auth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("client token: %d %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

// TestIdleSessionExpires: a session unused for the idle timeout is
// refused (401, audited); one used in time lasts.
func TestIdleSessionExpires(t *testing.T) {
	e := newLoginEnv(t)
	p := e.add(t, "nia.rn", access.RoleNurse)
	tok := e.login(t, p)
	e.clock.Add(14 * time.Minute)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication"); got != http.StatusOK {
		t.Fatalf("after 14 idle minutes: %d, want 200", got)
	}
	e.clock.Add(14 * time.Minute)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication"); got != http.StatusOK {
		t.Fatalf("14 minutes after the last use: %d, want 200", got)
	}
	e.clock.Add(15 * time.Minute)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication"); got != http.StatusUnauthorized {
		t.Fatalf("after 15 idle minutes: %d, want 401", got)
	}
	e.wantEntry(t, "rest.search-type", audit.OutcomeMinor, audit.ActorPeer, "")
}

// TestTenWrongPasswordsLock: ten wrong passwords lock the account, so the
// eleventh attempt, right, is refused as they were; each is audited under
// the user, while an unknown username is audited as the peer.
func TestTenWrongPasswordsLock(t *testing.T) {
	e := newLoginEnv(t)
	p := e.add(t, "target", access.RoleNurse)
	for i := range 10 {
		status, body := e.postLogin(t, url.Values{"username": {p.username}, "password": {"wrong password " + string(rune('a'+i))}, "totp": {e.code(t, p)}})
		if status != http.StatusUnauthorized || body["error"] != "login_failed" {
			t.Fatalf("wrong password %d: %d %v", i+1, status, body)
		}
		e.wantEntry(t, "user.login", audit.OutcomeMinor, audit.ActorUser, p.id)
	}
	right := url.Values{"username": {p.username}, "password": {p.password}, "totp": {e.code(t, p)}}
	status, locked := e.postLogin(t, right)
	if status != http.StatusUnauthorized {
		t.Fatalf("the right password after 10 wrong ones: %d %v, want 401", status, locked)
	}
	e.wantEntry(t, "user.login", audit.OutcomeMinor, audit.ActorUser, p.id)

	status, unknown := e.postLogin(t, url.Values{"username": {"nobody"}, "password": {p.password}, "totp": {e.code(t, p)}})
	if status != http.StatusUnauthorized || unknown["error_description"] != locked["error_description"] {
		t.Fatalf("an unknown user: %d %v; want the same answer as the locked one, %v", status, unknown, locked)
	}
	e.wantEntry(t, "user.login", audit.OutcomeMinor, audit.ActorPeer, "")

	e.clock.Add(15 * time.Minute)
	e.login(t, p)
	e.wantEntry(t, "user.login", audit.OutcomeSuccess, audit.ActorUser, p.id)
	e.noSecretsAudited(t, p.password, right.Get("totp"))

	// A form that cannot be read is refused and audited too.
	resp, err := http.Post(e.srv.URL+"/auth/login", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a JSON login: %d, want 400", resp.StatusCode)
	}
	e.wantEntry(t, "user.login", audit.OutcomeMinor, audit.ActorPeer, "")
}

// breakGlass posts form to /auth/break-glass with token.
func (e *loginEnv) breakGlass(t *testing.T, token string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/auth/break-glass", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("break-glass answer: %d, %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

// read is the status and body of GET path with token.
func (e *loginEnv) read(t *testing.T, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBreakGlassOverHTTP: a physician reads the Communications addressed
// to them; one of another unit cannot read or find c1 (refused, audited)
// until they break the glass with a reason, and then only until it ends;
// what they see meanwhile is flagged in the audit trail, and the reason
// never reaches it.
func TestBreakGlassOverHTTP(t *testing.T) {
	e := newLoginEnv(t)
	ann := e.add(t, "ann.md", access.RolePhysician, "Practitioner/a")
	annTok := e.login(t, ann)
	if got := e.do(t, http.MethodGet, annTok, "/fhir/Communication/c1"); got != http.StatusOK {
		t.Fatalf("c1 read by its recipient: %d, want 200", got)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeSuccess, audit.ActorUser, ann.id)
	if got := e.audit.last().Entities; !reflect.DeepEqual(got, []string{"Communication/c1"}) {
		t.Fatalf("entities of a recipient's read = %q, want only Communication/c1", got)
	}

	if got := e.do(t, http.MethodGet, annTok, "/fhir/Patient/p1"); got != http.StatusOK {
		t.Fatalf("the patient of a message to ann, read by ann: %d, want 200", got)
	}

	zed := e.add(t, "zed.md", access.RolePhysician, "Practitioner/z", "CareTeam/ward-3")
	tok := e.login(t, zed)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Patient/p1"); got != http.StatusForbidden {
		t.Fatalf("the patient of another unit's message, read by zed: %d, want 403", got)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeMinor, audit.ActorUser, zed.id)
	status, body := e.read(t, tok, "/fhir/Communication/c1")
	if status != http.StatusForbidden || !strings.Contains(body, "/auth/break-glass") || !strings.Contains(body, `"OperationOutcome"`) {
		t.Fatalf("another unit's physician reads c1: %d %s; want 403 naming break-glass", status, body)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeMinor, audit.ActorUser, zed.id)
	if got := e.audit.last().Entities; !reflect.DeepEqual(got, []string{"Communication/c1"}) {
		t.Fatalf("entities of the refusal = %q, want Communication/c1", got)
	}
	for _, q := range []string{"", "?_id=c1", "?recipient=Practitioner/a", "?recipient=Practitioner/a,Practitioner/z", "?_summary=count"} {
		if body := e.get(t, tok, "/fhir/Communication"+q); !strings.Contains(body, `"total":0`) {
			t.Errorf("another unit's search %q finds something: %s", q, body)
		}
	}

	const reason = "covering ward ICU tonight: patient Jane Roe deteriorating"
	for _, bad := range []url.Values{{}, {"reason": {"too short"}}, {"reason": {reason}, "minutes": {"241"}}, {"reason": {reason}, "minutes": {"x"}}} {
		if status, body := e.breakGlass(t, tok, bad); status != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Fatalf("break-glass with %v: %d %v; want 400", bad, status, body)
		}
		e.wantEntry(t, "user.break-glass", audit.OutcomeMinor, audit.ActorUser, zed.id)
	}
	if status, _ := e.breakGlass(t, "", url.Values{"reason": {reason}}); status != http.StatusUnauthorized {
		t.Fatalf("break-glass without a session: %d, want 401", status)
	}
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication/c1"); got != http.StatusForbidden {
		t.Fatalf("c1 after refused break-glass requests: %d, want 403", got)
	}

	status, body2 := e.breakGlass(t, tok, url.Values{"reason": {reason}, "minutes": {"20"}})
	wantUntil := e.clock.Now().Add(20 * time.Minute).UTC().Format(time.RFC3339)
	if status != http.StatusOK || body2["until"] != wantUntil {
		t.Fatalf("break-glass: %d %v; want 200 until %s", status, body2, wantUntil)
	}
	e.wantEntry(t, "user.break-glass", audit.OutcomeSuccess, audit.ActorUser, zed.id)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Patient/p1"); got != http.StatusOK {
		t.Fatalf("Patient/p1 under break-glass: %d, want 200", got)
	}
	if got := e.audit.last().Entities; !reflect.DeepEqual(got, []string{"Patient/p1", "break-glass"}) {
		t.Fatalf("entities of a Patient read under break-glass = %q", got)
	}
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication/c1"); got != http.StatusOK {
		t.Fatalf("c1 under break-glass: %d, want 200", got)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeSuccess, audit.ActorUser, zed.id)
	flagged := e.audit.last()
	if !reflect.DeepEqual(flagged.Entities, []string{"Communication/c1", "break-glass"}) {
		t.Fatalf("entities of a read under break-glass = %q, want Communication/c1 and break-glass", flagged.Entities)
	}
	// In its AuditEvent, the flag is an entity identified as
	// urn:carebridge:entity|break-glass, and the event is valid R4.
	r := flagged.Record()
	r.Chain = "test"
	linked, err := audit.Link(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := audit.Event(linked, audit.Source{Site: "test"}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ev), `"system":"urn:carebridge:entity","value":"break-glass"`) {
		t.Errorf("the AuditEvent lacks the break-glass entity: %s", ev)
	}
	v, _ := fhir.NewValidator()
	if err := v.Validate(ev); err != nil {
		t.Errorf("the flagged AuditEvent is not valid R4: %v", err)
	}
	if body := e.get(t, tok, "/fhir/Communication?_id=c1"); !strings.Contains(body, `"total":1`) {
		t.Fatalf("a search under break-glass: %s, want c1", body)
	}
	if got := e.audit.last().Entities; !reflect.DeepEqual(got, []string{"Communication/c1", "break-glass"}) {
		t.Fatalf("entities of a search under break-glass = %q", got)
	}

	// The break-glass ends after its 20 minutes (the session, used every
	// 10, lasts).
	e.clock.Add(10 * time.Minute)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication/c1"); got != http.StatusOK {
		t.Fatalf("c1 10 minutes into the break-glass: %d, want 200", got)
	}
	e.clock.Add(10 * time.Minute)
	if got := e.do(t, http.MethodGet, tok, "/fhir/Communication/c1"); got != http.StatusForbidden {
		t.Fatalf("c1 after the break-glass: %d, want 403", got)
	}
	e.wantEntry(t, "rest.read", audit.OutcomeMinor, audit.ActorUser, zed.id)
	if body := e.get(t, tok, "/fhir/Communication?_id=c1"); !strings.Contains(body, `"total":0`) {
		t.Errorf("a search after the break-glass finds c1: %s", body)
	}
	e.noSecretsAudited(t, reason, "Jane Roe")

	officer := e.login(t, e.add(t, "sec", access.RoleSecurityOfficer))
	if status, _ := e.breakGlass(t, officer, url.Values{"reason": {reason}}); status != http.StatusForbidden {
		t.Fatalf("a security officer's break-glass: %d, want 403", status)
	}
}
