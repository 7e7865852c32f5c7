package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
)

// UserAuth signs clinicians and administrators in and verifies their
// session tokens (*access.Users).
type UserAuth interface {
	Login(ctx context.Context, c access.Credentials) (access.SessionToken, error)
	VerifySession(ctx context.Context, token string) (access.Principal, error)
	Logout(ctx context.Context, token string) (userID string, err error)
	BreakGlass(ctx context.Context, token, reason string, d time.Duration) (until time.Time, err error)
}

// verify checks a bearer token: a JWT (three parts, two dots) is an EHR
// system's access token; anything else is a person's session token, when
// the API signs people in.
func (s *Server) verify(ctx context.Context, raw string) (access.Principal, error) {
	if s.cfg.Users != nil && strings.Count(raw, ".") != 2 {
		return s.cfg.Users.VerifySession(ctx, raw)
	}
	return s.cfg.Tokens.Verify(ctx, raw)
}

// Answers to a refused login. Whether the username exists, which factor
// was wrong, and whether the account is locked or disabled are not said:
// the audit trail has them.
const (
	loginFailed         = "the username, password or code is not right, or the account cannot sign in now"
	loginChangePassword = "the password is a one-time password: send a new one as new_password, with a new code (this one is spent)"
)

// readForm reads an application/x-www-form-urlencoded body of up to
// maxFormBytes, answering 400 itself when it cannot.
func readForm(c *gin.Context) (url.Values, bool) {
	if c.ContentType() != "application/x-www-form-urlencoded" {
		oauthError(c, http.StatusBadRequest, "invalid_request", "the request must be application/x-www-form-urlencoded")
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxFormBytes+1))
	if err != nil || len(body) > maxFormBytes {
		oauthError(c, http.StatusBadRequest, "invalid_request", "the form is too large or cannot be read")
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		oauthError(c, http.StatusBadRequest, "invalid_request", "the form is not URL-encoded")
		return nil, false
	}
	return form, true
}

// login is POST /auth/login: a form with username, password, totp and
// (to replace the password) new_password in; a session token out, or 401
// saying only that it failed. Every attempt is audited as user.login,
// refusals as failures; the audit entry names the user when the username
// named one, else the peer's address. Nothing of the form is logged.
func (s *Server) login(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	form, ok := readForm(c)
	if !ok {
		s.auditLogin(c, "user.login", "", false)
		return
	}
	tok, err := s.cfg.Users.Login(c.Request.Context(), access.Credentials{Username: form.Get("username"),
		Password: form.Get("password"), TOTP: form.Get("totp"), NewPassword: form.Get("new_password")})
	var refused *access.LoginError
	if err != nil && !errors.As(err, &refused) {
		s.cfg.Log.Error("FHIR API: signing a user in", "request_id", c.GetString(keyRequestID), "error", err)
		oauthError(c, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	userID := tok.UserID
	if refused != nil {
		userID = refused.UserID
	}
	if !s.auditLogin(c, "user.login", userID, refused == nil) {
		return
	}
	if refused != nil {
		if refused.Locked {
			s.cfg.Log.Warn("user locked after repeated failed logins", "user_id", refused.UserID, "request_id", c.GetString(keyRequestID))
		}
		switch refused.Reason {
		case access.RefusedPasswordChange:
			oauthError(c, http.StatusForbidden, string(refused.Reason), loginChangePassword)
		case access.RefusedNewPassword:
			oauthError(c, http.StatusBadRequest, string(refused.Reason), access.NewPasswordRule)
		default:
			oauthError(c, http.StatusUnauthorized, "login_failed", loginFailed)
		}
		return
	}
	b, _ := json.Marshal(map[string]any{"session_token": tok.Token, "token_type": "bearer",
		"expires_in": int(tok.IdleTimeout.Seconds()), "role": tok.Role})
	c.Data(http.StatusOK, "application/json", b)
}

// logout is POST /auth/logout with the session token as bearer token: it
// ends the session (204), or answers 401 for a token that names none.
// Audited as user.logout.
func (s *Server) logout(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	userID, err := s.cfg.Users.Logout(c.Request.Context(), access.Bearer(c.GetHeader("Authorization")))
	if err != nil && !errors.Is(err, access.ErrToken) {
		s.cfg.Log.Error("FHIR API: ending a session", "request_id", c.GetString(keyRequestID), "error", err)
		oauthError(c, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	if !s.auditLogin(c, "user.logout", userID, err == nil) {
		return
	}
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="carebridge", error="invalid_token"`)
		oauthError(c, http.StatusUnauthorized, "invalid_token", "the session token names no session, or one that has ended")
		return
	}
	c.Status(http.StatusNoContent)
}

// auditLogin records a login or logout before the answer leaves; on
// failure to record it answers 500 itself and returns false.
func (s *Server) auditLogin(c *gin.Context, action, userID string, ok bool) bool {
	entry := audit.Entry{At: s.cfg.Now().UTC(), Action: action, Correlation: c.GetString(keyRequestID),
		Actor: audit.Actor{Kind: audit.ActorUser, ID: userID, Address: c.Request.RemoteAddr}}
	if userID == "" {
		entry.Actor.Kind = audit.ActorPeer
	}
	if !ok {
		entry.Outcome = audit.OutcomeMinor
	}
	if err := s.cfg.Audit.Record(c.Request.Context(), entry); err != nil {
		s.cfg.Log.Error("FHIR API: auditing a sign-in", "request_id", c.GetString(keyRequestID), "error", err)
		if !c.Writer.Written() {
			oauthError(c, http.StatusInternalServerError, "server_error", "internal error")
		}
		return false
	}
	return true
}

// breakGlass is POST /auth/break-glass with the session token as bearer
// token and a form: reason (10 to 500 characters; required) and minutes
// (1 to 240; 30 when left out). A physician, nurse or unit clerk then sees
// every Communication, not only their own recipients', until the time it
// answers ({"until": …}); what they see outside their own is flagged in
// the audit trail. Audited as user.break-glass; the reason, which may
// name a patient, is kept sealed with the session and is never audited or
// logged.
func (s *Server) breakGlass(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	tok := access.Bearer(c.GetHeader("Authorization"))
	p, err := s.cfg.Users.VerifySession(c.Request.Context(), tok)
	if err != nil && !errors.Is(err, access.ErrToken) {
		s.cfg.Log.Error("FHIR API: verifying a session", "request_id", c.GetString(keyRequestID), "error", err)
		oauthError(c, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	if err != nil {
		if s.auditLogin(c, "user.break-glass", "", false) {
			c.Header("WWW-Authenticate", `Bearer realm="carebridge", error="invalid_token"`)
			oauthError(c, http.StatusUnauthorized, "invalid_token", "a session token is required (POST /auth/login)")
		}
		return
	}
	form, ok := readForm(c)
	if !ok {
		s.auditLogin(c, "user.break-glass", p.ID, false)
		return
	}
	var d time.Duration
	if m := form.Get("minutes"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > int(access.MaxBreakGlass/time.Minute) {
			if s.auditLogin(c, "user.break-glass", p.ID, false) {
				oauthError(c, http.StatusBadRequest, "invalid_request", "minutes must be 1 to 240")
			}
			return
		}
		d = time.Duration(n) * time.Minute
	}
	until, err := s.cfg.Users.BreakGlass(c.Request.Context(), tok, form.Get("reason"), d)
	status, code, desc := http.StatusOK, "", ""
	switch {
	case err == nil:
	case errors.Is(err, access.ErrBreakGlassReason), errors.Is(err, access.ErrBreakGlassLength):
		status, code, desc = http.StatusBadRequest, "invalid_request", err.Error()
	case errors.Is(err, access.ErrBreakGlassRole):
		status, code, desc = http.StatusForbidden, "access_denied", "this role has no limited access to widen"
	case errors.Is(err, access.ErrToken):
		status, code, desc = http.StatusUnauthorized, "invalid_token", "the session has ended"
	default:
		s.cfg.Log.Error("FHIR API: breaking the glass", "request_id", c.GetString(keyRequestID), "user_id", p.ID, "error", err)
		oauthError(c, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	if !s.auditLogin(c, "user.break-glass", p.ID, err == nil) {
		return
	}
	if err != nil {
		oauthError(c, status, code, desc)
		return
	}
	s.cfg.Log.Warn("break-glass: a user widened their access", "user_id", p.ID, "until", until, "request_id", c.GetString(keyRequestID))
	b, _ := json.Marshal(map[string]string{"until": until.UTC().Format(time.RFC3339)})
	c.Data(http.StatusOK, "application/json", b)
}
