package access

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/carebridge/carebridge/secure"
)

const (
	testIssuer   = "https://bridge.example/"
	testTokenURL = "https://bridge.example/auth/token"
	testFHIR     = "https://bridge.example/fhir"
)

// fakeRegistry is an in-memory Registry.
type fakeRegistry struct {
	mu      sync.Mutex
	clients map[string]Client
	spent   map[string]bool
	lookups int
}

func (r *fakeRegistry) Client(_ context.Context, id string) (Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	c, ok := r.clients[id]
	if !ok {
		return Client{}, ErrUnknownClient
	}
	return c, nil
}

func (r *fakeRegistry) SpendAssertion(_ context.Context, clientID, jti string, _ time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := clientID + " " + jti
	if r.spent[k] {
		return false, nil
	}
	r.spent[k] = true
	return true, nil
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

type fixture struct {
	svc   *Service
	reg   *fakeRegistry
	clock *clock
	ec    *ecdsa.PrivateKey
	rsa   *rsa.PrivateKey
}

func publicJWK(t *testing.T, key crypto.Signer, kid string) jose.JSONWebKey {
	t.Helper()
	return jose.JSONWebKey{Key: key.Public(), KeyID: kid, Use: "sig"}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ring, err := secure.LoadOrCreateKeyRing(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{publicJWK(t, ec, "ec1"), publicJWK(t, rk, "rsa1")}}
	reg := &fakeRegistry{spent: map[string]bool{}, clients: map[string]Client{
		"ehr": {ID: "ehr", Keys: StaticKeys(set), Scopes: scopes(t, "system/Communication.rs system/AuditEvent.rs")},
	}}
	c := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	svc, err := NewService(reg, ring, Config{Issuer: testIssuer, TokenURL: testTokenURL, Audience: testFHIR, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, reg: reg, clock: c, ec: ec, rsa: rk}
}

// assertion signs claims as a client would; edit changes them first.
func (f *fixture) assertion(t *testing.T, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, edit func(*jwt.Claims)) string {
	t.Helper()
	jti := make([]byte, 8)
	rand.Read(jti)
	now := f.clock.Now()
	c := jwt.Claims{Issuer: "ehr", Subject: "ehr", Audience: jwt.Audience{testTokenURL},
		Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: hex.EncodeToString(jti)}
	if edit != nil {
		edit(&c)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func form(assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {assertionType}, "client_assertion": {assertion}}
}

func TestExchangeIssuesTokensThatVerify(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		alg  jose.SignatureAlgorithm
		key  crypto.Signer
		kid  string
	}{{"ES384", jose.ES384, f.ec, "ec1"}, {"RS384", jose.RS384, f.rsa, "rsa1"}, {"no kid", jose.ES384, f.ec, ""}} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := f.svc.Exchange(ctx, form(f.assertion(t, tc.alg, tc.key, tc.kid, nil), "system/Communication.cruds system/Patient.rs openid"))
			if err != nil {
				t.Fatal(err)
			}
			if tok.Scope != "system/Communication.rs" || tok.ExpiresIn != 300 || tok.ClientID != "ehr" {
				t.Fatalf("token %+v: want scope narrowed to system/Communication.rs, 300 s", tok)
			}
			p, err := f.svc.Verify(ctx, tok.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != KindClient || p.ID != "ehr" || !p.Scopes.Allows("system", "Communication", Read|Search) || p.Scopes.Allows("system", "Communication", Create) {
				t.Fatalf("principal %+v", p)
			}
		})
	}
}

func TestExchangeRefuses(t *testing.T) {
	f := newFixture(t)
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	none := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		exp := f.clock.Now().Add(time.Minute).Unix()
		c := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"ehr","sub":"ehr","aud":"` + testTokenURL + `","jti":"n1","exp":` + strconv.FormatInt(exp, 10) + `}`))
		return h + "." + c + "."
	}
	tests := []struct {
		name string
		form func() url.Values
		code string
	}{
		{"wrong grant", func() url.Values {
			v := form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Communication.rs")
			v.Set("grant_type", "password")
			return v
		}, "unsupported_grant_type"},
		{"no assertion type", func() url.Values {
			v := form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Communication.rs")
			v.Del("client_assertion_type")
			return v
		}, "invalid_request"},
		{"no scope", func() url.Values { return form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "openid") }, "invalid_scope"},
		{"unregistered scope", func() url.Values { return form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Patient.rs") }, "invalid_scope"},
		{"alg none", func() url.Values { return form(none(), "system/Communication.rs") }, "invalid_client"},
		{"ES256", func() url.Values {
			return form(f.assertion(t, jose.ES256, p256, "ec1", nil), "system/Communication.rs")
		}, "invalid_client"},
		{"signed by another key", func() url.Values {
			return form(f.assertion(t, jose.ES384, other, "ec1", nil), "system/Communication.rs")
		}, "invalid_client"},
		{"signed by another key, no kid", func() url.Values { return form(f.assertion(t, jose.ES384, other, "", nil), "system/Communication.rs") }, "invalid_client"},
		{"unknown client", func() url.Values {
			return form(f.assertion(t, jose.ES384, f.ec, "ec1", func(c *jwt.Claims) { c.Issuer, c.Subject = "nobody", "nobody" }), "system/Communication.rs")
		}, "invalid_client"},
		{"sub is not iss", func() url.Values {
			return form(f.assertion(t, jose.ES384, f.ec, "ec1", func(c *jwt.Claims) { c.Subject = "someone" }), "system/Communication.rs")
		}, "invalid_client"},
		{"wrong audience", func() url.Values {
			return form(f.assertion(t, jose.ES384, f.ec, "ec1", func(c *jwt.Claims) { c.Audience = jwt.Audience{"https://elsewhere/token"} }), "system/Communication.rs")
		}, "invalid_client"},
		{"expired", func() url.Values {
			return form(f.assertion(t, jose.ES384, f.ec, "ec1", func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(f.clock.Now().Add(-time.Minute)) }), "system/Communication.rs")
		}, "invalid_client"},
		{"lives too long", func() url.Values {
			return form(f.assertion(t, jose.ES384, f.ec, "ec1", func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(f.clock.Now().Add(time.Hour)) }), "system/Communication.rs")
		}, "invalid_client"},
		{"no jti", func() url.Values {
			return form(f.assertion(t, jose.ES384, f.ec, "ec1", func(c *jwt.Claims) { c.ID = "" }), "system/Communication.rs")
		}, "invalid_client"},
		{"client_id differs", func() url.Values {
			v := form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Communication.rs")
			v.Set("client_id", "other")
			return v
		}, "invalid_client"},
		{"garbage", func() url.Values { return form("not.a.jwt", "system/Communication.rs") }, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.Exchange(context.Background(), tt.form())
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
		})
	}
}

func TestReplayedAssertionIsRefused(t *testing.T) {
	f := newFixture(t)
	a := f.assertion(t, jose.ES384, f.ec, "ec1", nil)
	if _, err := f.svc.Exchange(context.Background(), form(a, "system/Communication.rs")); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Exchange(context.Background(), form(a, "system/Communication.rs"))
	var e *Error
	if !errors.As(err, &e) || e.Code != "invalid_client" || !strings.Contains(e.Description, "jti") {
		t.Fatalf("replay: %v", err)
	}
}

func TestDisabledClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.svc.Exchange(ctx, form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Communication.rs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Verify(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	f.reg.mu.Lock()
	c := f.reg.clients["ehr"]
	c.Disabled = true
	f.reg.clients["ehr"] = c
	f.reg.mu.Unlock()
	if _, err := f.svc.Exchange(ctx, form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Communication.rs")); err == nil {
		t.Fatal("a disabled client got a token")
	}
	f.clock.Add(disabledCheckPeriod)
	if _, err := f.svc.Verify(ctx, tok.AccessToken); !errors.Is(err, ErrToken) {
		t.Fatalf("a disabled client's token still verifies %v after: %v", disabledCheckPeriod, err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.svc.Exchange(ctx, form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Communication.rs"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok.AccessToken, ".")
	elsewhere := newFixture(t) // another key ring
	foreign, err := elsewhere.svc.Exchange(ctx, form(elsewhere.assertion(t, jose.ES384, elsewhere.ec, "ec1", nil), "system/Communication.rs"))
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	widened := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claims), "Communication.rs", "*.cruds", 1)))
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
	tests := map[string]string{
		"empty":              "",
		"garbage":            "abc",
		"tampered claims":    parts[0] + "." + widened + "." + parts[2],
		"alg none":           noneHeader + "." + parts[1] + ".",
		"another key ring":   foreign.AccessToken,
		"signature stripped": parts[0] + "." + parts[1] + ".",
	}
	for name, raw := range tests {
		if _, err := f.svc.Verify(ctx, raw); !errors.Is(err, ErrToken) {
			t.Errorf("%s: %v, want ErrToken", name, err)
		}
	}
	f.clock.Add(5*time.Minute + time.Second)
	if _, err := f.svc.Verify(ctx, tok.AccessToken); !errors.Is(err, ErrToken) {
		t.Errorf("expired: %v, want ErrToken", err)
	}
}

func TestBearer(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "abc": "", "": ""} {
		if got := Bearer(in); got != want {
			t.Errorf("Bearer(%q) = %q, want %q", in, got, want)
		}
	}
}

// A token verified once is remembered, but its expiry still holds.
func TestVerifiedTokenStillExpires(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.svc.Exchange(ctx, form(f.assertion(t, jose.ES384, f.ec, "ec1", nil), "system/Communication.rs"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := f.svc.Verify(ctx, tok.AccessToken); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Add(5 * time.Minute)
	if _, err := f.svc.Verify(ctx, tok.AccessToken); !errors.Is(err, ErrToken) {
		t.Fatalf("a remembered token verified after it expired: %v", err)
	}
	if _, err := f.svc.Verify(ctx, tok.AccessToken+"x"); !errors.Is(err, ErrToken) {
		t.Fatalf("a token one byte off verified: %v", err)
	}
}
