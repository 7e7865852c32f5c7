package fhirtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// smartServer is the EHR's SMART Backend Services authorisation server:
// one registered client, its JWKS, the tokens it gave out.
type smartServer struct {
	clientID string
	keys     jose.JSONWebKeySet
	life     time.Duration
	jtis     map[string]bool
	tokens   map[string]time.Time // token → expiry
	issued   int
	refused  int
}

// RequireSMART makes the server its own authorisation server for SMART
// Backend Services: /fhir/.well-known/smart-configuration names
// /auth/token, which takes a client_credentials grant with a client
// assertion from clientID signed (RS384 or ES384) by a key of jwks, and
// answers tokens that live for life. FHIR requests then need one of those
// tokens, unexpired. Replayed assertions (same jti) are refused.
func (e *EHR) RequireSMART(clientID string, jwks []byte, life time.Duration) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return fmt.Errorf("reading the client's JWKS: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.smart = &smartServer{clientID: clientID, keys: set, life: life, jtis: map[string]bool{}, tokens: map[string]time.Time{}}
	return nil
}

// TokenStats are the tokens given out and the token requests refused.
func (e *EHR) TokenStats() (issued, refused int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.smart.issued, e.smart.refused
}

// RevokeTokens forgets every token given out: requests need a new one.
func (e *EHR) RevokeTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.smart.tokens)
}

func (s *smartServer) configuration(w http.ResponseWriter, base string) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token_endpoint":                                   base + "/auth/token",
		"grant_types_supported":                            []string{"client_credentials"},
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"capabilities":                                     []string{"client-confidential-asymmetric"},
	})
}

func (s *smartServer) valid(tok string) bool {
	exp, ok := s.tokens[tok]
	return ok && time.Now().Before(exp)
}

func (s *smartServer) issue(w http.ResponseWriter, r *http.Request, base string) {
	refuse := func(status int, code, why string) {
		s.refused++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": why})
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		refuse(http.StatusBadRequest, "invalid_request", "want a form POST")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" ||
		r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		refuse(http.StatusBadRequest, "invalid_request", "want client_credentials with a jwt-bearer client assertion")
		return
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil || len(tok.Headers) != 1 {
		refuse(http.StatusUnauthorized, "invalid_client", "the assertion is not a JWT signed RS384 or ES384")
		return
	}
	keys := s.keys.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		refuse(http.StatusUnauthorized, "invalid_client", "no registered key has the assertion's kid")
		return
	}
	var c jwt.Claims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		refuse(http.StatusUnauthorized, "invalid_client", "the assertion's signature does not verify")
		return
	}
	now := time.Now()
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: s.clientID, Subject: s.clientID, AnyAudience: jwt.Audience{base + "/auth/token"}, Time: now}, 0); err != nil {
		refuse(http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	if c.Expiry == nil || c.Expiry.Time().After(now.Add(5*time.Minute+time.Second)) || c.ID == "" || s.jtis[c.ID] {
		refuse(http.StatusUnauthorized, "invalid_client", "the assertion lives over 5 minutes, has no jti, or was used before")
		return
	}
	s.jtis[c.ID] = true
	b := make([]byte, 16)
	rand.Read(b)
	access := hex.EncodeToString(b)
	s.tokens[access] = now.Add(s.life)
	s.issued++
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": access, "token_type": "bearer", "expires_in": int(s.life / time.Second), "scope": r.PostForm.Get("scope"),
	})
}
