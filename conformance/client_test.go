package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir"
)

// Clients the suite registers, and the tokens it asks for.
const (
	clientEHR   = "conformance-ehr"
	clientProbe = "conformance-probe" // makes a fixed set of audit records

	scopeEHR = "system/Communication.cruds system/Patient.rs system/Encounter.rs system/ServiceRequest.rs " +
		"system/Observation.rs system/MessageHeader.c system/AuditEvent.rs system/AuditEvent.c system/Subscription.crds"
	scopeProbe = "system/Communication.rs"
)

// Tokens a case can speak with.
const (
	tokenFull        = "full"         // every scope of the EHR client
	tokenCommRead    = "comm-read"    // the EHR client asking only for system/Communication.rs
	tokenPatientRead = "patient-read" // the EHR client asking only for system/Patient.r
	tokenProbe       = "probe"        // the probe client
	tokenNone        = "none"         // no Authorization header
	tokenBogus       = "bogus"        // a bearer token carebridge never issued
)

// world is one running server with the seeded data set: what the cases
// need to speak to it and to name what they expect.
type world struct {
	root string // http://127.0.0.1:PORT
	base string // root + "/fhir"
	hc   *http.Client
	v    *fhir.Validator

	tokens map[string]*fhir.BackendServices

	// refs are the ids the suite learns while seeding, by name: pat, enc,
	// sr, obs and obs2 (the two results), hl7 (the Communication the
	// pipeline made), and the probe's audit trail (audit_test.go). Cases
	// write them as placeholders: {pat}.
	refs map[string]string
	// auditRead is the probe's read as the AuditEvent search gave it.
	auditRead []byte
	// capability is the CapabilityStatement's resources by type.
	capability map[string]capResource
}

// registerClients registers the suite's clients in st (before the server
// starts, as an operator would) and returns the PEM key that signs for
// them, made by "carebridge keys --ehr-key".
func registerClients(t *testing.T, st storage) []byte {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ehr.pem")
	jwks := runCLI(t, "keys", "--ehr-key", keyFile)
	jwksFile := filepath.Join(dir, "ehr.jwks.json")
	if err := os.WriteFile(jwksFile, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, scope string }{{clientEHR, scopeEHR}, {clientProbe, scopeProbe}} {
		out := runCLI(t, append(append([]string{"clients", "add"}, st.flags()...), "--client-id", c.id, "--jwks", jwksFile, "--scope", c.scope)...)
		if !strings.Contains(out, "client "+c.id+" registered") {
			t.Fatalf("clients add %s: %s", c.id, out)
		}
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// newWorld is the client side of a server at httpAddr: a token source
// per kind of token, all signed with pemKey.
func newWorld(t *testing.T, httpAddr string, pemKey []byte) *world {
	t.Helper()
	key, err := fhir.ParsePrivateKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		root: "http://" + httpAddr, base: "http://" + httpAddr + "/fhir",
		hc: &http.Client{Timeout: 20 * time.Second}, v: v,
		tokens: map[string]*fhir.BackendServices{}, refs: map[string]string{},
	}
	for name, c := range map[string]struct{ client, scope string }{
		tokenFull:        {clientEHR, scopeEHR},
		tokenCommRead:    {clientEHR, "system/Communication.rs"},
		tokenPatientRead: {clientEHR, "system/Patient.r"},
		tokenProbe:       {clientProbe, scopeProbe},
	} {
		bs, err := fhir.NewBackendServices(fhir.BackendServicesConfig{ClientID: c.client, Key: key, FHIRBase: w.base, Scope: c.scope, HTTP: w.hc})
		if err != nil {
			t.Fatal(err)
		}
		w.tokens[name] = bs
	}
	return w
}

// reply is an HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// req is one request a case makes.
type req struct {
	token  string // tokenFull when empty
	method string // GET when empty
	target string // "Communication?…" under the FHIR base, "/path" under the root, or a URL
	header []string
	body   []byte
}

// do sends r and checks what every answer must be: any FHIR JSON it
// carries is valid R4, and every error is an OperationOutcome.
func (w *world) do(t *testing.T, r req) reply {
	t.Helper()
	target := w.resolve(r.target)
	switch {
	case strings.HasPrefix(target, "http://"), strings.HasPrefix(target, "https://"):
	case strings.HasPrefix(target, "/"):
		target = w.root + target
	default:
		target = w.base + "/" + target
	}
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var send io.Reader
	if r.body != nil {
		send = bytes.NewReader(r.body)
	}
	hr, err := http.NewRequest(method, target, send)
	if err != nil {
		t.Fatal(err)
	}
	switch r.token {
	case tokenNone:
	case tokenBogus:
		hr.Header.Set("Authorization", "Bearer not-a-carebridge-token")
	default:
		name := r.token
		if name == "" {
			name = tokenFull
		}
		tok, err := w.tokens[name].Token(context.Background())
		if err != nil {
			t.Fatalf("token %s: %v", name, err)
		}
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	if r.body != nil {
		hr.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(r.header); i += 2 {
		hr.Header.Set(r.header[i], r.header[i+1])
	}
	resp, err := w.hc.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, r.target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, r.target, err)
	}
	out := reply{status: resp.StatusCode, header: resp.Header, body: body}
	w.check(t, method+" "+r.target, hr.URL.Path, out)
	return out
}

// check validates a FHIR answer as R4 (every resource, every Bundle with
// all it holds), and wants an OperationOutcome for every error.
func (w *world) check(t *testing.T, what, path string, r reply) {
	t.Helper()
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	isFHIR := mt == "application/fhir+json"
	if isFHIR && len(r.body) > 0 {
		if err := w.v.Validate(r.body); err != nil {
			var ve *fhir.ValidationError
			if errors.As(err, &ve) {
				err = fmt.Errorf("%w: %s", err, ve.Diagnostics)
			}
			t.Errorf("%s: the answer (%d) is not valid FHIR R4: %v\n%s", what, r.status, err, r.body)
		}
	}
	if r.status >= 400 && path != "/auth/token" {
		if !isFHIR || resourceTypeOf(r.body) != "OperationOutcome" {
			t.Errorf("%s: error %d is not an OperationOutcome (Content-Type %q): %s", what, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
}

func resourceTypeOf(b []byte) string {
	var h struct {
		ResourceType string `json:"resourceType"`
	}
	json.Unmarshal(b, &h)
	return h.ResourceType
}

// resolve replaces the names in s ({pat}, {enc}, {base} …) by what the
// suite learned.
func (w *world) resolve(s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	pairs := []string{"{base}", w.base}
	for k, v := range w.refs {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// query turns a readable query (a=b&c=d, values as they are meant,
// with placeholders) into an encoded one.
func (w *world) query(q string) string {
	if q == "" {
		return ""
	}
	var parts []string
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		parts = append(parts, url.QueryEscape(w.resolve(k))+"="+url.QueryEscape(w.resolve(v)))
	}
	return strings.Join(parts, "&")
}

// bundle is the part of a Bundle the cases read.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
		Request struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
		Response struct {
			Status string `json:"status"`
			Etag   string `json:"etag"`
		} `json:"response"`
	} `json:"entry"`
}

func (b bundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

// head is what identifies a resource.
type head struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID string `json:"versionId"`
	} `json:"meta"`
}

func headOf(b []byte) head {
	var h head
	json.Unmarshal(b, &h)
	return h
}

// outcomeIssue is an issue of an OperationOutcome.
type outcomeIssue struct {
	Severity   string   `json:"severity"`
	Code       string   `json:"code"`
	Expression []string `json:"expression"`
	Details    struct {
		Text string `json:"text"`
	} `json:"details"`
}

func issuesOf(b []byte) []outcomeIssue {
	var oo struct {
		Issue []outcomeIssue `json:"issue"`
	}
	json.Unmarshal(b, &oo)
	return oo.Issue
}

// namesExpression reports whether some issue names expr.
func namesExpression(issues []outcomeIssue, expr string) bool {
	for _, is := range issues {
		if slices.Contains(is.Expression, expr) {
			return true
		}
	}
	return false
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
