package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
)

// token is the SMART Backend Services token endpoint: a form with a
// client assertion in, a bearer token (or an RFC 6749 error) out. Every
// answer is audited, refusals as failures.
func (s *Server) token(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	if c.ContentType() != "application/x-www-form-urlencoded" {
		oauthError(c, http.StatusBadRequest, "invalid_request", "the request must be application/x-www-form-urlencoded")
		return
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxFormBytes+1))
	if err != nil || len(body) > maxFormBytes {
		oauthError(c, http.StatusBadRequest, "invalid_request", "the form is too large or cannot be read")
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		oauthError(c, http.StatusBadRequest, "invalid_request", "the form is not URL-encoded")
		return
	}
	tok, err := s.cfg.Tokens.Exchange(c.Request.Context(), form)
	var refused *access.Error
	if err != nil && !errors.As(err, &refused) {
		s.cfg.Log.Error("FHIR API: issuing a token", "request_id", c.GetString(keyRequestID), "error", err)
		oauthError(c, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	entry := audit.Entry{At: s.cfg.Now().UTC(), Action: "client.token", Correlation: c.GetString(keyRequestID),
		Actor: audit.Actor{Kind: audit.ActorClient, ID: tok.ClientID, Address: c.Request.RemoteAddr}}
	if refused != nil {
		entry.Outcome = audit.OutcomeMinor
		entry.Actor.ID = refused.ClientID
		if entry.Actor.ID == "" {
			entry.Actor.Kind = audit.ActorPeer
		}
	}
	if err := s.cfg.Audit.Record(c.Request.Context(), entry); err != nil {
		s.cfg.Log.Error("FHIR API: auditing a token request", "request_id", c.GetString(keyRequestID), "error", err)
		oauthError(c, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	if refused != nil {
		status := http.StatusBadRequest
		if refused.Code == "invalid_client" {
			status = http.StatusUnauthorized
		}
		oauthError(c, status, refused.Code, refused.Description)
		return
	}
	b, _ := json.Marshal(map[string]any{"access_token": tok.AccessToken, "token_type": "bearer", "expires_in": tok.ExpiresIn, "scope": tok.Scope})
	c.Data(http.StatusOK, "application/json", b)
}

func oauthError(c *gin.Context, status int, code, description string) {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	c.Data(status, "application/json", b)
}
