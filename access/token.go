package access

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Client is a registered EHR system as the token service sees it.
type Client struct {
	ID       string
	Keys     KeySource
	Scopes   Scopes // what it may be granted
	Disabled bool
}

// ErrUnknownClient is what a Registry returns for an id it does not hold.
var ErrUnknownClient = errors.New("unknown client")

// Registry is where the token service finds clients and remembers spent
// assertions.
type Registry interface {
	// Client returns a registered client, or an error wrapping
	// ErrUnknownClient.
	Client(ctx context.Context, id string) (Client, error)
	// SpendAssertion records the assertion jti of a client until expires;
	// fresh is false when it was spent before.
	SpendAssertion(ctx context.Context, clientID, jti string, expires time.Time) (fresh bool, err error)
}

// KeySource gives a client's public keys.
type KeySource interface {
	// KeySet returns the key set; refresh asks for a fresh copy where the
	// keys are fetched (an assertion names a key not seen yet).
	KeySet(ctx context.Context, refresh bool) (jose.JSONWebKeySet, error)
}

// StaticKeys is a key set registered from a file.
type StaticKeys jose.JSONWebKeySet

// KeySet returns the set.
func (k StaticKeys) KeySet(context.Context, bool) (jose.JSONWebKeySet, error) {
	return jose.JSONWebKeySet(k), nil
}

// SigningKeys are the keys access tokens are signed with: Ed25519 keys
// derived for a purpose, by id (*secure.KeyRing has them).
type SigningKeys interface {
	DerivedSigningKey(purpose string) (id string, key ed25519.PrivateKey, ok bool)
	DerivedSigningPublicKey(id, purpose string) (ed25519.PublicKey, bool)
}

const (
	tokenPurpose        = "access-token"
	assertionType       = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	maxAssertionLife    = 5 * time.Minute
	maxAssertionBytes   = 16 << 10
	clockSkew           = 30 * time.Second
	defaultTokenLife    = 5 * time.Minute
	disabledCheckPeriod = 10 * time.Second
)

// Config configures a Service.
type Config struct {
	// Issuer is carebridge's base URL: the iss of its tokens.
	Issuer string
	// TokenURL is the token endpoint: the aud client assertions must name.
	TokenURL string
	// Audience is the FHIR base URL: the aud of its tokens.
	Audience string
	// Lifetime of an access token; 5 minutes when zero, at most an hour.
	Lifetime time.Duration
	Now      func() time.Time
}

// Service issues access tokens to registered clients and verifies them.
// It is safe for concurrent use.
type Service struct {
	cfg  Config
	reg  Registry
	keys SigningKeys

	mu       sync.Mutex
	disabled map[string]disabledState
	verified map[string]verifiedToken // tokens whose signature and claims held, by the token itself
}

// verifiedToken is a token that verified: its principal and when it
// began to be valid. A client reuses one token for minutes, so its
// signature (an Ed25519 verification, the most of a read's cost) is
// checked once; its expiry and its client's state every time.
type verifiedToken struct {
	p    Principal
	from time.Time
}

type disabledState struct {
	disabled bool
	at       time.Time
}

// NewService returns a token service over a client registry.
func NewService(reg Registry, keys SigningKeys, cfg Config) (*Service, error) {
	if reg == nil || keys == nil {
		return nil, errors.New("access: a token service needs a client registry and signing keys")
	}
	for _, u := range []string{cfg.Issuer, cfg.TokenURL, cfg.Audience} {
		if p, err := url.Parse(u); err != nil || p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
			return nil, fmt.Errorf("access: %q is not an http(s) URL", u)
		}
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = defaultTokenLife
	}
	if cfg.Lifetime < 0 || cfg.Lifetime > time.Hour {
		return nil, fmt.Errorf("access: a token lifetime of %v (want up to an hour)", cfg.Lifetime)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if _, _, ok := keys.DerivedSigningKey(tokenPurpose); !ok {
		return nil, errors.New("access: the key ring has no signing key (rotate it to add one)")
	}
	return &Service{cfg: cfg, reg: reg, keys: keys, disabled: map[string]disabledState{}, verified: map[string]verifiedToken{}}, nil
}

// Error is a refused token request, as RFC 6749 section 5.2 words it:
// Code is error (invalid_request, invalid_client, invalid_grant,
// unsupported_grant_type, invalid_scope), Description says why without
// echoing secrets. ClientID names the client when it is known.
type Error struct {
	Code        string
	Description string
	ClientID    string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func refuse(code, clientID, format string, args ...any) *Error {
	return &Error{Code: code, ClientID: clientID, Description: fmt.Sprintf(format, args...)}
}

// Token is an issued access token.
type Token struct {
	AccessToken string
	ExpiresIn   int // seconds
	Scope       string
	ClientID    string
}

// Exchange answers a client_credentials token request (the form of POST
// /auth/token) that authenticates with a private_key_jwt assertion. A
// refusal is an *Error; any other error is the service's own failure.
func (s *Service) Exchange(ctx context.Context, form url.Values) (Token, error) {
	if g := form.Get("grant_type"); g != "client_credentials" {
		if g == "" {
			return Token{}, refuse("invalid_request", "", "grant_type is missing")
		}
		return Token{}, refuse("unsupported_grant_type", "", "grant_type must be client_credentials")
	}
	if form.Get("client_assertion_type") != assertionType {
		return Token{}, refuse("invalid_request", "", "client_assertion_type must be %s", assertionType)
	}
	raw := form.Get("client_assertion")
	if raw == "" || len(raw) > maxAssertionBytes {
		return Token{}, refuse("invalid_request", "", "client_assertion is missing or longer than %d bytes", maxAssertionBytes)
	}
	requested, _, err := ParseScopes(form.Get("scope"))
	if err != nil {
		return Token{}, refuse("invalid_scope", "", "%v", err)
	}
	if len(requested) == 0 {
		return Token{}, refuse("invalid_scope", "", "scope names no resource scope, such as system/Communication.rs")
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		return Token{}, refuse("invalid_client", "", "the client assertion is not a JWT signed with RS384 or ES384")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return Token{}, refuse("invalid_client", "", "the client assertion has no iss")
	}
	id := unverified.Issuer
	if cid := form.Get("client_id"); cid != "" && cid != id {
		return Token{}, refuse("invalid_client", "", "client_id does not match the assertion's iss")
	}
	c, err := s.reg.Client(ctx, id)
	if errors.Is(err, ErrUnknownClient) {
		return Token{}, refuse("invalid_client", "", "the client is not registered")
	}
	if err != nil {
		return Token{}, fmt.Errorf("looking up client %s: %w", id, err)
	}
	if c.Disabled {
		return Token{}, refuse("invalid_client", id, "the client is disabled")
	}
	claims, err := s.verifyAssertion(ctx, tok, c)
	if err != nil {
		return Token{}, err
	}
	now := s.cfg.Now()
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: id, Subject: id, AnyAudience: jwt.Audience{s.cfg.TokenURL}, Time: now}, clockSkew); err != nil {
		return Token{}, refuse("invalid_client", id, "the client assertion's claims do not hold: %v", err)
	}
	if claims.Expiry == nil || claims.Expiry.Time().After(now.Add(maxAssertionLife+clockSkew)) {
		return Token{}, refuse("invalid_client", id, "the client assertion must expire within 5 minutes")
	}
	if claims.ID == "" || len(claims.ID) > 256 {
		return Token{}, refuse("invalid_client", id, "the client assertion has no jti")
	}
	fresh, err := s.reg.SpendAssertion(ctx, id, claims.ID, claims.Expiry.Time())
	if err != nil {
		return Token{}, fmt.Errorf("recording the assertion of client %s: %w", id, err)
	}
	if !fresh {
		return Token{}, refuse("invalid_client", id, "the client assertion was used before (same jti)")
	}
	granted := c.Scopes.Grant(requested)
	if len(granted) == 0 {
		return Token{}, refuse("invalid_scope", id, "none of the requested scopes is registered for the client")
	}
	return s.issue(id, granted, now)
}

// verifyAssertion checks the assertion's signature against the client's
// keys: the one its kid names (fetching the keys again if it is unknown),
// or any key that fits when it names none.
func (s *Service) verifyAssertion(ctx context.Context, tok *jwt.JSONWebToken, c Client) (jwt.Claims, error) {
	kid := tok.Headers[0].KeyID
	var claims jwt.Claims
	for _, refresh := range []bool{false, true} {
		set, err := c.Keys.KeySet(ctx, refresh)
		if err != nil {
			return claims, refuse("invalid_client", c.ID, "the client's keys cannot be read: %v", err)
		}
		keys := set.Keys
		if kid != "" {
			keys = set.Key(kid)
		}
		for _, k := range keys {
			if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
				continue
			}
			if err := tok.Claims(k.Key, &claims); err == nil {
				return claims, nil
			}
		}
		if kid == "" || len(keys) > 0 {
			break
		}
	}
	return claims, refuse("invalid_client", c.ID, "the client assertion's signature does not verify with the client's registered keys")
}

func (s *Service) issue(clientID string, granted Scopes, now time.Time) (Token, error) {
	kid, key, ok := s.keys.DerivedSigningKey(tokenPurpose)
	if !ok {
		return Token{}, errors.New("signing an access token: the key ring has no signing key")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		return Token{}, fmt.Errorf("signing an access token: %w", err)
	}
	jti := make([]byte, 16)
	rand.Read(jti)
	scope := granted.String()
	exp := now.Add(s.cfg.Lifetime)
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: s.cfg.Issuer, Subject: clientID, Audience: jwt.Audience{s.cfg.Audience},
		Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), ID: hex.EncodeToString(jti),
	}).Claims(tokenClaims{Scope: scope, ClientID: clientID, Kind: string(KindClient)}).Serialize()
	if err != nil {
		return Token{}, fmt.Errorf("signing an access token: %w", err)
	}
	return Token{AccessToken: raw, ExpiresIn: int(s.cfg.Lifetime / time.Second), Scope: scope, ClientID: clientID}, nil
}

type tokenClaims struct {
	Scope    string `json:"scope"`
	ClientID string `json:"client_id"`
	Kind     string `json:"cb_kind"`
}

// Kind says who a principal is.
type Kind string

// Kinds of principal.
const (
	KindClient Kind = "client" // an EHR system
	KindUser   Kind = "user"   // a person signed in
)

// Principal is who a verified access token speaks for.
type Principal struct {
	Kind     Kind
	ID       string // the client id (or user id)
	Scopes   Scopes
	TokenID  string
	Expires  time.Time
	Contexts string // the scope context its scopes use: "system" for clients
	Role     Role   // a user's role; "" for a client
	// Recipients are the FHIR references that stand for a user as a
	// Communication's recipient (their Practitioner, their care teams);
	// nil for a client.
	Recipients []string
	// BreakGlassUntil ends the wider access a user asked for, with a
	// reason, at POST /auth/break-glass; zero when they did not.
	BreakGlassUntil time.Time
}

// ErrToken is wrapped by every error Verify returns for a token that
// must be refused (answer 401).
var ErrToken = errors.New("invalid access token")

// Verify checks a bearer token: carebridge's signature (EdDSA only, so
// alg none and forged algorithms are refused), issuer, audience and
// expiry; and that its client has not been disabled since (checked at
// most every 10 seconds per client).
func (s *Service) Verify(ctx context.Context, raw string) (Principal, error) {
	if raw == "" || len(raw) > 8192 {
		return Principal{}, fmt.Errorf("%w: missing or too long", ErrToken)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	v, ok := s.verified[raw]
	s.mu.Unlock()
	if ok {
		if !now.Before(v.p.Expires) || now.Before(v.from) {
			return Principal{}, fmt.Errorf("%w: expired or not valid yet", ErrToken)
		}
		return s.admit(ctx, v.p, now)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return Principal{}, fmt.Errorf("%w: not a JWT signed by carebridge", ErrToken)
	}
	pub, ok := s.keys.DerivedSigningPublicKey(tok.Headers[0].KeyID, tokenPurpose)
	if !ok {
		return Principal{}, fmt.Errorf("%w: signed by an unknown key", ErrToken)
	}
	var std jwt.Claims
	var own tokenClaims
	if err := tok.Claims(pub, &std, &own); err != nil {
		return Principal{}, fmt.Errorf("%w: the signature does not verify", ErrToken)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: s.cfg.Issuer, AnyAudience: jwt.Audience{s.cfg.Audience}, Time: now}, 0); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrToken, err)
	}
	if std.Expiry == nil || std.Subject == "" || own.Kind != string(KindClient) {
		return Principal{}, fmt.Errorf("%w: it lacks an expiry, subject or kind", ErrToken)
	}
	scopes, _, err := ParseScopes(own.Scope)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: its scope is malformed", ErrToken)
	}
	p := Principal{Kind: KindClient, ID: std.Subject, Scopes: scopes, TokenID: std.ID, Expires: std.Expiry.Time(), Contexts: "system"}
	v = verifiedToken{p: p}
	for _, t := range []*jwt.NumericDate{std.NotBefore, std.IssuedAt} {
		if t != nil && t.Time().After(v.from) {
			v.from = t.Time()
		}
	}
	s.mu.Lock()
	if len(s.verified) >= maxVerifiedTokens {
		for k, old := range s.verified { // forget the expired, or else any one
			if !now.Before(old.p.Expires) || len(s.verified) >= maxVerifiedTokens {
				delete(s.verified, k)
			}
			if len(s.verified) < maxVerifiedTokens/2 {
				break
			}
		}
	}
	s.verified[raw] = v
	s.mu.Unlock()
	return s.admit(ctx, p, now)
}

// maxVerifiedTokens bounds the tokens Verify remembers.
const maxVerifiedTokens = 4096

// admit refuses the token of a client disabled since it was issued.
func (s *Service) admit(ctx context.Context, p Principal, now time.Time) (Principal, error) {
	if disabled, err := s.clientDisabled(ctx, p.ID, now); err != nil {
		return Principal{}, err
	} else if disabled {
		return Principal{}, fmt.Errorf("%w: the client is disabled", ErrToken)
	}
	return p, nil
}

func (s *Service) clientDisabled(ctx context.Context, id string, now time.Time) (bool, error) {
	s.mu.Lock()
	st, ok := s.disabled[id]
	s.mu.Unlock()
	if ok && now.Sub(st.at) < disabledCheckPeriod && !now.Before(st.at) {
		return st.disabled, nil
	}
	c, err := s.reg.Client(ctx, id)
	switch {
	case errors.Is(err, ErrUnknownClient):
		c.Disabled = true
	case err != nil:
		return false, fmt.Errorf("looking up client %s: %w", id, err)
	}
	s.mu.Lock()
	s.disabled[id] = disabledState{disabled: c.Disabled, at: now}
	s.mu.Unlock()
	return c.Disabled, nil
}

// Bearer returns the token of an Authorization header value
// ("Bearer abc"), or "".
func Bearer(header string) string {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}
