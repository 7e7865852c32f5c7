package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Credentials are what a person signs in with.
type Credentials struct {
	Username string
	Password string
	TOTP     string // the 6-digit code of their authenticator app
	// NewPassword, when set, replaces the password once the rest has
	// verified. It is required while the password is a one-time password
	// (User.MustChangePassword).
	NewPassword string
}

// LoginRefusal says why a login was refused. Only RefusedPasswordChange
// and RefusedNewPassword are for the person's eyes: the others must all
// look alike to them (a peer must not learn which usernames exist, or
// which factor was wrong), and are for the audit trail.
type LoginRefusal string

// Reasons to refuse a login.
const (
	RefusedCredentials LoginRefusal = "invalid_credentials" // unknown username or wrong password, alike
	RefusedMFA         LoginRefusal = "invalid_code"        // a wrong, malformed or used TOTP code
	RefusedLocked      LoginRefusal = "locked"              // locked after failed logins, for LockFor
	RefusedDisabled    LoginRefusal = "disabled"
	// RefusedPasswordChange: every factor verified, but the password is a
	// one-time password; log in again with NewPassword (and a new code:
	// this one is spent).
	RefusedPasswordChange LoginRefusal = "password_change_required"
	// RefusedNewPassword: NewPassword breaks NewPasswordRule.
	RefusedNewPassword LoginRefusal = "invalid_new_password"
)

// LoginError is a refused login.
type LoginError struct {
	Reason LoginRefusal
	UserID string // the user the username named, when it named one
	Locked bool   // this failure locked the account
}

func (e *LoginError) Error() string { return "login refused: " + string(e.Reason) }

// SessionToken is a new session: Token is the bearer token, shown to the
// person once and stored nowhere (the store keeps its SHA-256).
type SessionToken struct {
	Token       string
	UserID      string
	Role        Role
	IdleTimeout time.Duration
	ExpiresAt   time.Time // the absolute end
}

const sessionTokenBytes = 32

// newSessionToken returns an opaque token, 32 random bytes in unpadded
// base64url (43 characters, no dots: never mistaken for a JWT), and its
// hash.
func newSessionToken() (token string, hash []byte) {
	b := make([]byte, sessionTokenBytes)
	rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, h[:]
}

// sessionHash is the SHA-256 of a well-formed session token.
func sessionHash(token string) ([]byte, bool) {
	if len(token) != base64.RawURLEncoding.EncodedLen(sessionTokenBytes) {
		return nil, false
	}
	if _, err := base64.RawURLEncoding.DecodeString(token); err != nil {
		return nil, false
	}
	h := sha256.Sum256([]byte(token))
	return h[:], true
}

// Login signs a person in with their password and TOTP code, and starts a
// session. A refusal is a *LoginError; any other error is the service's
// own failure.
//
// Every attempt on an existing account that is not locked or disabled
// runs argon2id, as does one on a username nobody has, so that the time
// taken does not tell them apart. A wrong password or code counts towards
// the lock (LockAfter in a row); attempts while locked are refused without
// counting and without saying whether the password was right. A code is
// accepted once: its time step is spent even when the login is then
// refused for a password change.
func (u *Users) Login(ctx context.Context, c Credentials) (SessionToken, error) {
	name := normalizeUsername(c.Username)
	if c.NewPassword != "" && checkNewPassword(c.NewPassword, name) != nil {
		return SessionToken{}, &LoginError{Reason: RefusedNewPassword}
	}
	if name == "" || c.Password == "" || len(c.Password) > maxPasswordLen {
		return SessionToken{}, &LoginError{Reason: RefusedCredentials}
	}
	user, err := u.st.GetUserByUsername(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, ErrUnknownUser) {
		return SessionToken{}, fmt.Errorf("looking up a user: %w", err)
	}
	phc := u.dummy
	if known {
		phc = user.PasswordHash
	}
	ok, err := u.verify(ctx, c.Password, phc)
	if err != nil {
		return SessionToken{}, fmt.Errorf("checking the password of user %s: %w", user.ID, err)
	}
	if !known {
		return SessionToken{}, &LoginError{Reason: RefusedCredentials}
	}
	now := u.cfg.Now()
	switch {
	case now.Before(user.LockedUntil):
		return SessionToken{}, &LoginError{Reason: RefusedLocked, UserID: user.ID}
	case user.Disabled:
		return SessionToken{}, &LoginError{Reason: RefusedDisabled, UserID: user.ID}
	case !ok:
		return SessionToken{}, u.fail(ctx, user, now, RefusedCredentials)
	}
	secret, err := u.keys.Open(user.TOTPSecret, totpAAD(user.ID))
	if err != nil {
		return SessionToken{}, fmt.Errorf("opening the TOTP secret of user %s: %w", user.ID, err)
	}
	step, ok := matchTOTP(string(secret), c.TOTP, now)
	if !ok {
		return SessionToken{}, u.fail(ctx, user, now, RefusedMFA)
	}
	fresh, err := u.st.UseTOTPStep(ctx, user.ID, step)
	if err != nil {
		return SessionToken{}, err
	}
	if !fresh {
		return SessionToken{}, u.fail(ctx, user, now, RefusedMFA)
	}
	if user.FailedLogins > 0 || !user.LockedUntil.IsZero() {
		if err := u.st.ResetLoginFailures(ctx, user.ID); err != nil {
			return SessionToken{}, err
		}
	}
	switch {
	case c.NewPassword == "" && user.MustChangePassword:
		return SessionToken{}, &LoginError{Reason: RefusedPasswordChange, UserID: user.ID}
	case c.NewPassword == c.Password:
		return SessionToken{}, &LoginError{Reason: RefusedNewPassword, UserID: user.ID}
	case c.NewPassword != "":
		if user.PasswordHash, err = u.hash(ctx, c.NewPassword); err != nil {
			return SessionToken{}, err
		}
		user.MustChangePassword = false
		if err := u.st.UpdateUser(ctx, user); err != nil {
			return SessionToken{}, err
		}
	}
	token, hash := newSessionToken()
	s := Session{TokenHash: hash, UserID: user.ID, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(u.cfg.Lifetime)}
	if err := u.st.CreateSession(ctx, s); err != nil {
		return SessionToken{}, err
	}
	return SessionToken{Token: token, UserID: user.ID, Role: user.Role, IdleTimeout: u.cfg.IdleTimeout, ExpiresAt: s.ExpiresAt}, nil
}

// fail counts a failed login and returns its refusal.
func (u *Users) fail(ctx context.Context, user User, now time.Time, reason LoginRefusal) error {
	locked, err := u.st.RecordLoginFailure(ctx, user.ID, now, u.cfg.LockAfter, u.cfg.LockFor)
	if err != nil {
		return fmt.Errorf("counting a failed login: %w", err)
	}
	return &LoginError{Reason: reason, UserID: user.ID, Locked: locked}
}

// VerifySession checks a session token: it must name a session that has
// not ended, is younger than Lifetime, was used within IdleTimeout, and
// whose user exists and is not disabled. The principal it returns has the
// user's role's scopes, in the "user" context. Errors for a token that
// must be refused wrap ErrToken.
//
// The session's last activity is written when it is 30 seconds old or
// more, so a busy session costs one write per 30 seconds, not one per
// request.
func (u *Users) VerifySession(ctx context.Context, token string) (Principal, error) {
	hash, s, user, now, err := u.liveSession(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	seen := s.LastSeen
	if now.Sub(s.LastSeen) >= touchEvery {
		if _, err := u.st.TouchSession(ctx, hash, now); err != nil {
			return Principal{}, fmt.Errorf("touching a session of user %s: %w", user.ID, err)
		}
		seen = now
	}
	return u.principal(hash, s, user, seen), nil
}

// principal is who a live session stands for, last seen at seen.
func (u *Users) principal(hash []byte, s Session, user User, seen time.Time) Principal {
	expires := seen.Add(u.cfg.IdleTimeout)
	if s.ExpiresAt.Before(expires) {
		expires = s.ExpiresAt
	}
	return Principal{Kind: KindUser, ID: user.ID, Role: user.Role, Scopes: user.Role.Scopes(), TokenID: hex.EncodeToString(hash[:8]),
		Expires: expires, Contexts: "user", Recipients: user.Recipients, BreakGlassUntil: s.BreakGlassUntil}
}

// CheckSession is VerifySession without counting as the session's
// activity: for a long-lived connection (an inbox stream) that must end
// when its session does, or narrow when its user's role or recipients
// change, and must not keep an idle session alive.
func (u *Users) CheckSession(ctx context.Context, token string) (Principal, error) {
	hash, s, user, _, err := u.liveSession(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	return u.principal(hash, s, user, s.LastSeen), nil
}

// liveSession finds the session of a token and its user, and checks that
// it may be used at now (see VerifySession).
func (u *Users) liveSession(ctx context.Context, token string) (hash []byte, s Session, user User, now time.Time, err error) {
	hash, ok := sessionHash(token)
	if !ok {
		return nil, s, user, now, fmt.Errorf("%w: not a session token", ErrToken)
	}
	s, err = u.st.GetSession(ctx, hash)
	if errors.Is(err, ErrUnknownSession) {
		return nil, s, user, now, fmt.Errorf("%w: no such session", ErrToken)
	}
	if err != nil {
		return nil, s, user, now, fmt.Errorf("reading a session: %w", err)
	}
	now = u.cfg.Now()
	switch {
	case !s.EndedAt.IsZero():
		return nil, s, user, now, fmt.Errorf("%w: the session has ended", ErrToken)
	case !now.Before(s.ExpiresAt):
		return nil, s, user, now, fmt.Errorf("%w: the session has expired", ErrToken)
	case now.Sub(s.LastSeen) >= u.cfg.IdleTimeout:
		return nil, s, user, now, fmt.Errorf("%w: the session was idle too long", ErrToken)
	}
	user, err = u.st.GetUser(ctx, s.UserID)
	if errors.Is(err, ErrUnknownUser) {
		return nil, s, user, now, fmt.Errorf("%w: the user is gone", ErrToken)
	}
	if err != nil {
		return nil, s, user, now, fmt.Errorf("reading user %s: %w", s.UserID, err)
	}
	if user.Disabled {
		return nil, s, user, now, fmt.Errorf("%w: the user is disabled", ErrToken)
	}
	return hash, s, user, now, nil
}

// Limits of a break-glass.
const (
	DefaultBreakGlass  = 30 * time.Minute
	MaxBreakGlass      = 4 * time.Hour
	minBreakGlassChars = 10
	maxBreakGlassChars = 500
)

// Errors BreakGlass returns for a request it refuses.
var (
	ErrBreakGlassReason = errors.New("breaking the glass needs a reason of 10 to 500 characters")
	ErrBreakGlassLength = errors.New("a break-glass lasts up to 4 hours")
	// ErrBreakGlassRole: the user's role sees no Communication, or sees
	// them all already.
	ErrBreakGlassRole = errors.New("the user's role has no limited access to widen")
)

func sessionAAD(hash []byte) []byte { return []byte("Session/" + hex.EncodeToString(hash)) }

// BreakGlass widens a session's access to every Communication for d (30
// minutes when zero, at most 4 hours), for an emergency: the user gives
// a reason, 10 to 500 characters, which is kept sealed with the session
// (it may name a patient) and never put in the audit trail; what the
// user then sees outside their recipients is flagged there. Asking again
// replaces the end and the reason. It returns when the wider access ends.
// A token that must be refused: an error wrapping ErrToken.
func (u *Users) BreakGlass(ctx context.Context, token, reason string, d time.Duration) (until time.Time, err error) {
	if d == 0 {
		d = DefaultBreakGlass
	}
	if d < 0 || d > MaxBreakGlass {
		return time.Time{}, ErrBreakGlassLength
	}
	reason = strings.TrimSpace(reason)
	if n := utf8.RuneCountInString(reason); n < minBreakGlassChars || n > maxBreakGlassChars || !utf8.ValidString(reason) {
		return time.Time{}, ErrBreakGlassReason
	}
	hash, _, user, now, err := u.liveSession(ctx, token)
	if err != nil {
		return time.Time{}, err
	}
	if !user.Role.limited() {
		return time.Time{}, ErrBreakGlassRole
	}
	sealed, err := u.keys.Seal([]byte(reason), sessionAAD(hash))
	if err != nil {
		return time.Time{}, fmt.Errorf("sealing the break-glass reason of user %s: %w", user.ID, err)
	}
	until = now.Add(d).UTC()
	set, err := u.st.SetBreakGlass(ctx, hash, until, sealed)
	if err != nil {
		return time.Time{}, fmt.Errorf("breaking the glass for user %s: %w", user.ID, err)
	}
	if !set {
		return time.Time{}, fmt.Errorf("%w: the session has ended", ErrToken)
	}
	return until, nil
}

// Logout ends the session of a token, and returns its user. A token that
// names no session, or one that had ended, is refused with an error
// wrapping ErrToken (userID is still set in the second case). A session
// that merely expired is ended all the same.
func (u *Users) Logout(ctx context.Context, token string) (userID string, err error) {
	hash, ok := sessionHash(token)
	if !ok {
		return "", fmt.Errorf("%w: not a session token", ErrToken)
	}
	s, err := u.st.GetSession(ctx, hash)
	if errors.Is(err, ErrUnknownSession) {
		return "", fmt.Errorf("%w: no such session", ErrToken)
	}
	if err != nil {
		return "", fmt.Errorf("reading a session: %w", err)
	}
	ended, err := u.st.EndSession(ctx, hash, u.cfg.Now())
	if err != nil {
		return s.UserID, fmt.Errorf("ending a session of user %s: %w", s.UserID, err)
	}
	if !ended {
		return s.UserID, fmt.Errorf("%w: the session had ended", ErrToken)
	}
	return s.UserID, nil
}
