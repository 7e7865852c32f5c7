package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TestServeInboxSignedIn: a physician added with the orderer as their
// recipient signs in (password and TOTP) and the session token opens
// their inbox stream, which streams the critical result the moment it is
// stored; a clerk's session has no inbox (403), and no token is 401.
func TestServeInboxSignedIn(t *testing.T) {
	dir := t.TempDir()
	msg := filepath.Join(mapTestdata, "hl7", "oru-r01-critical-k-v251.hl7")
	summary, _, err := runCLI(t, "", "map", "--summary", "--rules", filepath.Join(mapTestdata, "rules.yaml"), msg)
	if err != nil {
		t.Fatal(err)
	}
	orderer := regexp.MustCompile(`ordering [^<]*<(Practitioner/[^>]+)>`).FindStringSubmatch(summary)
	if orderer == nil {
		t.Fatalf("no orderer in %s", summary)
	}
	add := func(username, role string, extra ...string) (password string, key *otp.Key) {
		t.Helper()
		out, stderr, err := runCLI(t, "", append([]string{"users", "add", "--data-dir", dir, "--username", username, "--role", role}, extra...)...)
		if err != nil {
			t.Fatalf("users add %s: %v %s", username, err, stderr)
		}
		pw, uri := oneTimePasswordRE.FindStringSubmatch(out), totpURIRE.FindStringSubmatch(out)
		if pw == nil || uri == nil {
			t.Fatalf("users add printed no credentials:\n%s", out)
		}
		key, err = otp.NewKeyFromURL(uri[1])
		if err != nil {
			t.Fatal(err)
		}
		return pw[1], key
	}
	drPW, drKey := add("dr.orderer", "physician", "--recipient", orderer[1])
	clerkPW, clerkKey := add("unit.clerk", "unit-clerk", "--recipient", orderer[1])
	mllpAddr, httpAddr, _ := inProcessServer(t, dir, "--rules", filepath.Join(mapTestdata, "rules.yaml"))

	login := func(username, password string, key *otp.Key) string {
		t.Helper()
		code, err := totp.GenerateCode(key.Secret(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"username": {username}, "password": {password}, "totp": {code}, "new_password": {username + " has a long password"}}
		resp, err := http.Post("http://"+httpAddr+"/auth/login", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			SessionToken string `json:"session_token"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusOK || body.SessionToken == "" {
			t.Fatalf("login of %s: %s", username, resp.Status)
		}
		return body.SessionToken
	}
	dr, clerk := login("dr.orderer", drPW, drKey), login("unit.clerk", clerkPW, clerkKey)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func(token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/inbox/stream", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for token, want := range map[string]int{"": http.StatusUnauthorized, clerk: http.StatusForbidden, "not-a-session": http.StatusUnauthorized} {
		resp := open(token)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("stream with token %.8q…: %s, want %d", token, resp.Status, want)
		}
	}
	resp := open(dr)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the physician's stream: %s", resp.Status)
	}
	if out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, msg); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if !strings.Contains(data, "CRITICAL result for SAMPLE, JORDAN") || !strings.Contains(data, `"priority":"urgent"`) {
				t.Errorf("event = %s", data)
			}
			return
		}
	}
	t.Fatalf("the stream ended without the message: %v", sc.Err())
}
