package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// TestFHIRAPIServesRegisteredClients: an EHR system registered with
// "clients add" gets a token through SMART Backend Services (carebridge's
// own client, discovering the token endpoint), searches and reads the
// Communications the pipeline made, and every read is in the audit trail;
// disabled, it gets no more tokens.
func TestFHIRAPIServesRegisteredClients(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	keyFile := filepath.Join(dir, "ehr-client.pem")
	jwks, _, err := runCLI(t, "", "keys", "--ehr-key", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "ehr.jwks.json")
	if err := os.WriteFile(jwksFile, []byte(jwks), 0o644); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "private.jwks.json")
	os.WriteFile(private, []byte(`{"keys":[{"kty":"EC","crv":"P-384","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","d":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--jwks", jwksFile, "--scope", "system/Communication.rs"}, "--client-id is required"},
		{[]string{"--client-id", "ehr", "--scope", "system/Communication.rs"}, "--jwks is required"},
		{[]string{"--client-id", "ehr", "--jwks", jwksFile, "--scope", "system/Communication.sr"}, "cruds"},
		{[]string{"--client-id", "ehr", "--jwks", jwksFile, "--scope", "user/Communication.rs"}, "not a system/ scope"},
		{[]string{"--client-id", "ehr", "--jwks", "http://ehr.example.org/jwks", "--scope", "system/Communication.rs"}, "loopback only"},
		{[]string{"--client-id", "ehr", "--jwks", private, "--scope", "system/Communication.rs"}, "private key"},
	} {
		_, stderr, err := runCLI(t, "", append([]string{"clients", "add", "--data-dir", data}, tc.args...)...)
		if !errors.Is(err, errUsage) || !strings.Contains(stderr, tc.want) {
			t.Errorf("clients add %v: %v %s; want a usage error saying %q", tc.args, err, stderr, tc.want)
		}
	}
	out, stderr, err := runCLI(t, "", "clients", "add", "--data-dir", data, "--client-id", "ehr", "--jwks", jwksFile,
		"--scope", "system/Communication.read system/Patient.r system/MessageHeader.c")
	if err != nil || !strings.Contains(out, "client ehr registered") {
		t.Fatalf("clients add: %v %s %s", err, out, stderr)
	}
	if _, stderr, err := runCLI(t, "", "clients", "add", "--data-dir", data, "--client-id", "ehr", "--jwks", jwksFile, "--scope", "system/Communication.rs"); err == nil || !strings.Contains(stderr, "exists") {
		t.Fatalf("adding ehr twice: %v %s", err, stderr)
	}
	if out, _, err := runCLI(t, "", "clients", "list", "--data-dir", data); err != nil || !strings.Contains(out, "ehr active: system/Communication.rs system/Patient.r system/MessageHeader.c") {
		t.Fatalf("clients list: %v\n%s", err, out)
	}

	_, httpAddr, stop := inProcessServer(t, data, "--rules", filepath.Join(mapTestdata, "rules.yaml"))
	key, err := fhir.ParsePrivateKey(mustRead(t, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpAddr + "/fhir"
	tokens, err := fhir.NewBackendServices(fhir.BackendServicesConfig{ClientID: "ehr", Key: key, FHIRBase: base, Scope: "system/Communication.rs system/Patient.r system/MessageHeader.c"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The interface engine POSTs the result over HTTP: the ACK comes back
	// in the body once it is stored; a broken message gets AR, kept.
	post := func(token string, msg []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/hl7/v2", bytes.NewReader(msg))
		req.Header.Set("Content-Type", "x-application/hl7-v2+er7")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	oru := mustRead(t, filepath.Join(mapTestdata, "hl7", "oru-r01-critical-k-v251.hl7"))
	if status, _ := post("", oru); status != http.StatusUnauthorized {
		t.Fatalf("POST /hl7/v2 without a token: %d", status)
	}
	if status, ack := post(mustToken(t, tokens), oru); status != http.StatusOK || !strings.Contains(ack, "MSA|AA|") && !strings.Contains(ack, "MSA|CA|") {
		t.Fatalf("POST /hl7/v2: %d %q", status, ack)
	}
	if status, ack := post(mustToken(t, tokens), []byte("MSH|^~\\&|X\r")); status != http.StatusOK || !strings.Contains(ack, "MSA|AR|") && !strings.Contains(ack, "MSA|AE|") {
		t.Fatalf("POST /hl7/v2 of a broken message: %d %q", status, ack)
	}
	get := func(path string) (int, []byte) {
		tok, err := tokens.Token(ctx)
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var bundle struct {
		Total int
		Entry []struct {
			Resource struct {
				ResourceType, ID, Priority string
				Subject                    struct{ Reference string }
			}
			Search struct{ Mode string }
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for bundle.Total == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no Communication found in 20 s")
		}
		time.Sleep(100 * time.Millisecond)
		status, b := get("/Communication?priority=stat,urgent,asap&_include=Communication:subject&_sort=-sent")
		if status != http.StatusOK {
			t.Fatalf("search: %d %s", status, b)
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatal(err)
		}
	}
	first := bundle.Entry[0].Resource
	if first.ResourceType != "Communication" || first.Priority == "routine" || !strings.HasPrefix(first.Subject.Reference, "Patient/") {
		t.Fatalf("first match %+v", first)
	}
	if last := bundle.Entry[len(bundle.Entry)-1]; last.Search.Mode != "include" || "Patient/"+last.Resource.ID != first.Subject.Reference {
		t.Fatalf("the subject is not included: %+v", last)
	}
	if status, b := get("/Communication/" + first.ID); status != http.StatusOK || !strings.Contains(string(b), first.ID) {
		t.Fatalf("read: %d %s", status, b)
	}
	// "carebridge token" gets one for curl.
	out, stderr, err = runCLI(t, "", "token", "--client-id", "ehr", "--key", keyFile, "--fhir-url", base, "--scope", "system/Communication.rs")
	if err != nil || strings.Count(strings.TrimSpace(out), ".") != 2 {
		t.Fatalf("carebridge token: %v %q %s", err, out, stderr)
	}
	if out, _, err := runCLI(t, "", "clients", "disable", "--data-dir", data, "--client-id", "ehr"); err != nil || !strings.Contains(out, "disabled") {
		t.Fatalf("disable: %v %s", err, out)
	}
	tokens.Invalidate(mustToken(t, tokens))
	if _, err := tokens.Token(ctx); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("a disabled client got a token: %v", err)
	}
	stop()

	// The reads are in the trail, by the client, with the patient.
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(data, "carebridge.db"), Topics: queueTopics, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seen := map[string]bool{}
	st.WalkAudit(ctx, func(r store.AuditRecord) error {
		if r.ActorKind == "client" && r.ActorID == "ehr" {
			seen[r.Action+" "+r.Patient] = true
		}
		return nil
	})
	for _, want := range []string{"client.token ", "rest.search-type ", "rest.read " + first.Subject.Reference} {
		if !seen[want] {
			t.Errorf("no audit record %q among %v", want, seen)
		}
	}
	if out, _, err := runCLI(t, "", "audit", "verify", "--data-dir", data); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustToken(t *testing.T, ts *fhir.BackendServices) string {
	t.Helper()
	tok, err := ts.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
