package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

var (
	oneTimePasswordRE = regexp.MustCompile(`(?m)^one-time password: (\S+)$`)
	totpURIRE         = regexp.MustCompile(`(?m)^TOTP \(for the authenticator app\): (otpauth://\S+)$`)
)

// TestUsersSignIn: "users add" prints a one-time password and the TOTP
// secret; the user signs in over HTTP with them (choosing a new
// password), reads with the session token; "users disable" ends the
// session and refuses the next login.
func TestUsersSignIn(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "physician"}, "--username is required"},
		{[]string{"--username", "ann.lee", "--role", "surgeon"}, "not one of physician"},
		{[]string{"--username", "ann lee", "--role", "nurse"}, "a username has"},
	} {
		_, stderr, err := runCLI(t, "", append([]string{"users", "add", "--data-dir", data}, tc.args...)...)
		if !errors.Is(err, errUsage) || !strings.Contains(stderr, tc.want) {
			t.Errorf("users add %v: %v %s; want a usage error saying %q", tc.args, err, stderr, tc.want)
		}
	}
	out, stderr, err := runCLI(t, "", "users", "add", "--data-dir", data, "--username", "ann.lee", "--role", "physician")
	if err != nil {
		t.Fatalf("users add: %v %s", err, stderr)
	}
	pw, uri := oneTimePasswordRE.FindStringSubmatch(out), totpURIRE.FindStringSubmatch(out)
	if pw == nil || uri == nil || len(pw[1]) < 16 {
		t.Fatalf("users add printed no one-time password or TOTP URI:\n%s", out)
	}
	key, err := otp.NewKeyFromURL(uri[1])
	if err != nil || !strings.HasPrefix(uri[1], "otpauth://totp/carebridge:ann.lee?") || key.Issuer() != "carebridge" || key.Secret() == "" {
		t.Fatalf("TOTP URI %q: %v", uri[1], err)
	}
	if _, stderr, err := runCLI(t, "", "users", "add", "--data-dir", data, "--username", "Ann.Lee", "--role", "nurse"); !errors.Is(err, errUsage) || !strings.Contains(stderr, "exists") {
		t.Fatalf("adding ann.lee twice: %v %s", err, stderr)
	}
	if out, _, err := runCLI(t, "", "users", "list", "--data-dir", data); err != nil || !strings.Contains(out, "ann.lee ") ||
		!strings.Contains(out, ": physician; active, one-time password not yet replaced") || strings.Contains(out, pw[1]) {
		t.Fatalf("users list: %v\n%s", err, out)
	}

	_, httpAddr, _ := inProcessServer(t, data)
	login := func(password string, extra ...string) (int, map[string]any) {
		t.Helper()
		code, err := totp.GenerateCode(key.Secret(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"username": {"ann.lee"}, "password": {password}, "totp": {code}}
		for i := 0; i+1 < len(extra); i += 2 {
			form.Set(extra[i], extra[i+1])
		}
		resp, err := http.Post("http://"+httpAddr+"/auth/login", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	get := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/fhir/Communication", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	const newPassword = "ann's own long password"
	status, body := login(pw[1], "new_password", newPassword)
	if status != http.StatusOK || body["role"] != "physician" || body["expires_in"] != float64(900) {
		t.Fatalf("first login: %d %v", status, body)
	}
	token := body["session_token"].(string)
	if got := get(token); got != http.StatusOK {
		t.Fatalf("search with the session token: %d", got)
	}

	out, _, err = runCLI(t, "", "users", "disable", "--data-dir", data, "--username", "ann.lee")
	if err != nil || !strings.Contains(out, "user ann.lee disabled") {
		t.Fatalf("users disable: %v %s", err, out)
	}
	if got := get(token); got != http.StatusUnauthorized {
		t.Fatalf("the session of a disabled user: %d, want 401", got)
	}
	if status, body := login(newPassword); status != http.StatusUnauthorized || body["error"] != "login_failed" {
		t.Fatalf("login of a disabled user: %d %v, want 401 login_failed", status, body)
	}
	if out, _, err := runCLI(t, "", "users", "list", "--data-dir", data); err != nil || !strings.Contains(out, ": physician; disabled;") {
		t.Fatalf("users list after disable: %v\n%s", err, out)
	}

	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"enable"}, "user ann.lee enabled"},
		{[]string{"unlock"}, "user ann.lee unlocked"},
		{[]string{"reset-mfa"}, "TOTP (for the authenticator app): otpauth://totp/carebridge:ann.lee?"},
	} {
		out, stderr, err := runCLI(t, "", append(append([]string{"users"}, step.args...), "--data-dir", data, "--username", "ann.lee")...)
		if err != nil || !strings.Contains(out, step.want) {
			t.Fatalf("users %v: %v %s %s; want %q", step.args, err, out, stderr, step.want)
		}
	}
	if _, stderr, err := runCLI(t, "", "users", "disable", "--data-dir", data, "--username", "nobody"); !errors.Is(err, errUsage) || !strings.Contains(stderr, "no user") {
		t.Fatalf("disabling nobody: %v %s", err, stderr)
	}
}

// TestUsersRecipients: "users add --recipient" links a user to the
// references that stand for them as recipients, "users list" shows them,
// and "users set-recipients" replaces them; a reference of another type
// is a usage error.
func TestUsersRecipients(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "--username", "bad.md", "--role", "physician", "--recipient", "Patient/p1"}, "Practitioner/<id>"},
		{[]string{"set-recipients", "--recipient", "CareTeam/icu"}, "--username is required"},
	} {
		_, stderr, err := runCLI(t, "", append(append([]string{"users"}, tc.args...), "--data-dir", data)...)
		if !errors.Is(err, errUsage) || !strings.Contains(stderr, tc.want) {
			t.Errorf("users %v: %v %s; want a usage error saying %q", tc.args, err, stderr, tc.want)
		}
	}
	if _, stderr, err := runCLI(t, "", "users", "add", "--data-dir", data, "--username", "ann.lee", "--role", "physician",
		"--recipient", "Practitioner/ann", "--recipient", "CareTeam/icu"); err != nil {
		t.Fatalf("users add --recipient: %v %s", err, stderr)
	}
	if out, _, err := runCLI(t, "", "users", "list", "--data-dir", data); err != nil ||
		!strings.Contains(out, "; recipients Practitioner/ann CareTeam/icu\n") || strings.Contains(out, "bad.md") {
		t.Fatalf("users list: %v\n%s", err, out)
	}
	if _, stderr, err := runCLI(t, "", "users", "set-recipients", "--data-dir", data, "--username", "nobody", "--recipient", "CareTeam/icu"); !errors.Is(err, errUsage) || !strings.Contains(stderr, "no user") {
		t.Errorf("users set-recipients of nobody: %v %s", err, stderr)
	}
	out, stderr, err := runCLI(t, "", "users", "set-recipients", "--data-dir", data, "--username", "ann.lee", "--recipient", "CareTeam/ward-3")
	if err != nil || !strings.Contains(out, "user ann.lee: recipients CareTeam/ward-3") {
		t.Fatalf("users set-recipients: %v %s %s", err, out, stderr)
	}
	if out, _, err := runCLI(t, "", "users", "list", "--data-dir", data); err != nil || !strings.Contains(out, "; recipients CareTeam/ward-3\n") {
		t.Fatalf("users list after set-recipients: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, "", "users", "set-recipients", "--data-dir", data, "--username", "ann.lee"); err != nil || !strings.Contains(out, "no recipients") {
		t.Fatalf("users set-recipients without any: %v %s", err, out)
	}
	if out, _, err := runCLI(t, "", "users", "list", "--data-dir", data); err != nil || strings.Contains(out, "recipients") {
		t.Fatalf("users list after clearing: %v\n%s", err, out)
	}
}
