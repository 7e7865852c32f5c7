package fhir

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultBackendScope is what carebridge asks an EHR for: writing the
// audit trail (a PUT by id creates or updates an AuditEvent). SMART v2
// syntax; an EHR that speaks v1 wants "system/AuditEvent.write".
const DefaultBackendScope = "system/AuditEvent.cu"

// maxTokenAnswer bounds what is read of a token endpoint's or a
// discovery document's answer.
const maxTokenAnswer = 1 << 20

// BackendServicesConfig is carebridge's registration with an EHR's
// authorisation server, as SMART Backend Services has it: a client id and
// the private key whose public half the EHR holds (as a JWKS).
type BackendServicesConfig struct {
	ClientID string
	// Key signs the client assertions: an RSA key (RS384, at least 2048
	// bits) or an ECDSA P-384 key (ES384), the two algorithms every SMART
	// server supports.
	Key crypto.Signer
	// KeyID is the assertion's "kid"; default: the key's JWK thumbprint
	// (RFC 7638, SHA-256), which PublicJWKS puts in the key set too.
	KeyID string
	// TokenURL is the EHR's token endpoint; default: discovered from
	// FHIRBase + "/.well-known/smart-configuration" on first use.
	TokenURL string
	FHIRBase string
	Scope    string       // default DefaultBackendScope
	HTTP     *http.Client // default: a 30 s timeout
	Now      func() time.Time
}

// BackendServices is a TokenSource for SMART on FHIR Backend Services
// (https://hl7.org/fhir/smart-app-launch/backend-services.html): it signs
// a short-lived JWT client assertion with the client's key, trades it at
// the token endpoint (client_credentials grant, private_key_jwt) for an
// access token, and reuses that token until shortly before it expires.
// It is safe for concurrent use; one request for a token at a time.
type BackendServices struct {
	cfg    BackendServicesConfig
	alg    jose.SignatureAlgorithm
	signer jose.Signer

	mu       sync.Mutex
	tokenURL string
	token    string
	renewAt  time.Time
}

// NewBackendServices checks the registration and returns its TokenSource.
// Nothing is sent until the first Token.
func NewBackendServices(cfg BackendServicesConfig) (*BackendServices, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("SMART backend services: no client id")
	}
	alg, err := assertionAlgorithm(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("SMART backend services: %w", err)
	}
	if cfg.KeyID == "" {
		if cfg.KeyID, err = KeyThumbprint(cfg.Key); err != nil {
			return nil, fmt.Errorf("SMART backend services: %w", err)
		}
	}
	if cfg.TokenURL == "" && cfg.FHIRBase == "" {
		return nil, errors.New("SMART backend services: neither a token URL nor a FHIR base to discover it from")
	}
	if cfg.TokenURL != "" {
		if err := checkAuthURL(cfg.TokenURL); err != nil {
			return nil, fmt.Errorf("SMART backend services: token URL: %w", err)
		}
	}
	if cfg.Scope == "" {
		cfg.Scope = DefaultBackendScope
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: cfg.Key, KeyID: cfg.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("SMART backend services: preparing the signer: %w", err)
	}
	return &BackendServices{cfg: cfg, alg: alg, signer: signer, tokenURL: cfg.TokenURL}, nil
}

// Token returns a valid access token, asking the token endpoint for a new
// one when there is none or it is about to expire.
func (b *BackendServices) Token(ctx context.Context) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	if b.token != "" && now.Before(b.renewAt) {
		return b.token, nil
	}
	if b.tokenURL == "" {
		u, err := discoverTokenURL(ctx, b.cfg.HTTP, b.cfg.FHIRBase)
		if err != nil {
			return "", err
		}
		b.tokenURL = u
	}
	tok, life, err := b.request(ctx, now)
	if err != nil {
		return "", err
	}
	// Renew a minute early, or half way through a shorter life.
	early := min(time.Minute, life/2)
	b.token, b.renewAt = tok, now.Add(life-early)
	return tok, nil
}

// Invalidate forgets tok, so that the next Token asks for a new one: the
// FHIR server said 401 to it (revoked, or the clocks disagree).
func (b *BackendServices) Invalidate(tok string) {
	b.mu.Lock()
	if b.token == tok {
		b.token = ""
	}
	b.mu.Unlock()
}

// TokenError is a token endpoint's refusal: its HTTP status and OAuth
// error code (invalid_client, invalid_scope…); the server's description is
// kept too, bounded, as it names what to fix.
type TokenError struct {
	Status      int
	Code        string
	Description string
}

func (e *TokenError) Error() string {
	s := fmt.Sprintf("the EHR's token endpoint answered HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

func (b *BackendServices) request(ctx context.Context, now time.Time) (string, time.Duration, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", 0, fmt.Errorf("SMART backend services: %w", err)
	}
	assertion, err := jwt.Signed(b.signer).Claims(jwt.Claims{
		Issuer: b.cfg.ClientID, Subject: b.cfg.ClientID, Audience: jwt.Audience{b.tokenURL},
		Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: hex.EncodeToString(jti),
	}).Serialize()
	if err != nil {
		return "", 0, fmt.Errorf("SMART backend services: signing the client assertion: %w", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {b.cfg.Scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("SMART backend services: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := b.cfg.HTTP.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("asking the EHR's token endpoint for a token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenAnswer))
	if err != nil {
		return "", 0, fmt.Errorf("reading the EHR's token endpoint's answer: %w", err)
	}
	return tokenAnswer(resp.StatusCode, body)
}

// tokenAnswer reads a token endpoint's answer: the access token and how
// long it lives, or the refusal as a *TokenError.
func tokenAnswer(status int, body []byte) (string, time.Duration, error) {
	var a struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.Number     `json:"expires_in"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
		Scope       json.RawMessage `json:"scope"`
	}
	parsed := json.Unmarshal(body, &a) == nil
	if status < 200 || status > 299 {
		e := &TokenError{Status: status}
		if parsed {
			e.Code, e.Description = printable(a.Error, 64), printable(a.Description, 200)
		}
		return "", 0, e
	}
	if !parsed {
		return "", 0, errors.New("the EHR's token endpoint's answer is not a JSON token response")
	}
	if a.AccessToken == "" || len(a.AccessToken) > 8192 || strings.ContainsAny(a.AccessToken, " \t\r\n") {
		return "", 0, errors.New("the EHR's token endpoint's answer has no usable access_token")
	}
	if !strings.EqualFold(a.TokenType, "bearer") {
		return "", 0, fmt.Errorf("the EHR's token endpoint gave a token of type %q, want bearer", printable(a.TokenType, 32))
	}
	life := 5 * time.Minute // SMART asks for expires_in; assume its usual value when it is missing
	if a.ExpiresIn != "" {
		secs, err := a.ExpiresIn.Int64()
		if err != nil || secs <= 0 || secs > 86400 {
			return "", 0, errors.New("the EHR's token endpoint's expires_in is not a number of seconds up to a day")
		}
		life = time.Duration(secs) * time.Second
	}
	return a.AccessToken, life, nil
}

// discoverTokenURL reads token_endpoint from the FHIR server's SMART
// configuration.
func discoverTokenURL(ctx context.Context, hc *http.Client, base string) (string, error) {
	target := strings.TrimRight(base, "/") + "/.well-known/smart-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", fmt.Errorf("discovering the EHR's token endpoint: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovering the EHR's token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenAnswer))
	if err != nil {
		return "", fmt.Errorf("discovering the EHR's token endpoint: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovering the EHR's token endpoint: %s answered HTTP %d; give the token URL instead", target, resp.StatusCode)
	}
	return smartTokenEndpoint(body)
}

// smartTokenEndpoint reads token_endpoint from a smart-configuration
// document.
func smartTokenEndpoint(body []byte) (string, error) {
	var c struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return "", errors.New("discovering the EHR's token endpoint: .well-known/smart-configuration is not JSON")
	}
	if c.TokenEndpoint == "" {
		return "", errors.New("discovering the EHR's token endpoint: .well-known/smart-configuration has no token_endpoint")
	}
	if err := checkAuthURL(c.TokenEndpoint); err != nil {
		return "", fmt.Errorf("discovering the EHR's token endpoint: token_endpoint: %w", err)
	}
	return c.TokenEndpoint, nil
}

// checkAuthURL accepts https, and http only to a loopback address: a
// client assertion and the token it buys must not cross a network in
// clear.
func checkAuthURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not an https URL", printable(raw, 200))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q is not an https URL (http is accepted on loopback only)", printable(raw, 200))
}

func assertionAlgorithm(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("the RSA key has %d bits, want at least 2048", k.N.BitLen())
		}
		return jose.RS384, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P384() {
			return "", fmt.Errorf("the EC key is on %s, want P-384 (ES384)", k.Curve.Params().Name)
		}
		return jose.ES384, nil
	case nil:
		return "", errors.New("no private key")
	}
	return "", fmt.Errorf("a %T cannot sign SMART client assertions; want RSA (RS384) or EC P-384 (ES384)", key)
}

// ParsePrivateKey reads a PEM private key (PKCS #8, PKCS #1 or SEC 1) for
// SMART client assertions: RSA of at least 2048 bits, or EC P-384.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a PEM %q block is not a private key", printable(block.Type, 40))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T cannot sign", key)
	}
	if _, err := assertionAlgorithm(s); err != nil {
		return nil, err
	}
	return s, nil
}

// KeyThumbprint is the RFC 7638 SHA-256 thumbprint of key's public half,
// base64url: the key id carebridge gives its assertion key by default.
func KeyThumbprint(key crypto.Signer) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprinting the key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// PublicJWKS is the JSON Web Key Set to register with the EHR for key:
// its public half only, with its key id and algorithm.
func PublicJWKS(key crypto.Signer, keyID string) ([]byte, error) {
	alg, err := assertionAlgorithm(key)
	if err != nil {
		return nil, err
	}
	if keyID == "" {
		if keyID, err = KeyThumbprint(key); err != nil {
			return nil, err
		}
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: keyID, Algorithm: string(alg), Use: "sig"}}}
	return json.MarshalIndent(set, "", "  ")
}

// printable keeps the first n runes of s that are printable ASCII, for
// text from another server that goes into an error.
func printable(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			b.WriteString("…")
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return b.String()
}
