package store

import (
	"context"
	"time"
)

// User is a clinician or administrator who signs in with a password and a
// TOTP code. None of it is PHI; the TOTP secret is sealed by the caller.
type User struct {
	ID           string // a UUID, assigned by the caller
	Username     string // unique
	Role         string
	PasswordHash string // a PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
	TOTPSecret   []byte // sealed by the caller (package secure, "User/ID" as associated data)
	// TOTPStep is the last TOTP time step a login used (0: none), so that
	// one code is never accepted twice. Only UseTOTPStep moves it.
	TOTPStep           int64
	MustChangePassword bool
	Disabled           bool
	// FailedLogins counts the failures since the last success or lock;
	// LockedUntil (zero: never locked) is when the last lock ends. Only
	// RecordLoginFailure and ResetLoginFailures change them.
	FailedLogins int
	LockedUntil  time.Time
	CreatedAt    time.Time
	// Recipients are the FHIR references that stand for the user as a
	// Communication's recipient: their Practitioner and care teams
	// ("Practitioner/abc", "CareTeam/icu"); nil for none.
	Recipients []string
}

// Session is a signed-in user's session. The store keeps the SHA-256 of
// its opaque token, never the token itself.
type Session struct {
	TokenHash []byte
	UserID    string
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // the absolute end, whatever the activity
	EndedAt   time.Time // zero while it lasts
	// BreakGlassUntil (zero: never) ends the wider access the user asked
	// for with SetBreakGlass; BreakGlassReason is their reason, sealed by
	// the caller ("Session/<token hash in hex>" as associated data): it
	// may contain PHI.
	BreakGlassUntil  time.Time
	BreakGlassReason []byte
}

// Users are the people who sign in, and their sessions.
type Users interface {
	// AddUser stores u; a user with its id or username exists: ErrConflict.
	AddUser(ctx context.Context, u User) error
	// GetUser returns one user, or ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByUsername returns one user, or ErrNotFound.
	GetUserByUsername(ctx context.Context, username string) (User, error)
	// ListUsers returns every user, by username.
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser stores u's role, password hash, TOTP secret, recipients,
	// and its must-change-password and disabled flags; the id, username, creation
	// time and counters (TOTPStep, FailedLogins, LockedUntil) are left as
	// they are, so that it never undoes a concurrent login's count. A
	// user that does not exist: ErrNotFound.
	UpdateUser(ctx context.Context, u User) error
	// RecordLoginFailure counts one failed login, atomically: the
	// lockAfter-th failure in a row locks the user until now+lockFor and
	// starts the count again. locked says whether the user is locked at
	// now, after this failure. A user that does not exist: ErrNotFound.
	RecordLoginFailure(ctx context.Context, userID string, now time.Time, lockAfter int, lockFor time.Duration) (locked bool, err error)
	// ResetLoginFailures zeroes the count and lifts any lock.
	ResetLoginFailures(ctx context.Context, userID string) error
	// UseTOTPStep records that a login used the TOTP time step step,
	// atomically; fresh is false, changing nothing, when the user used
	// that step or a later one before (a replayed code) or does not exist.
	UseTOTPStep(ctx context.Context, userID string, step int64) (fresh bool, err error)

	// CreateSession stores s, forgetting sessions whose absolute end is
	// before s.CreatedAt; one with its token hash exists: ErrConflict.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns the session of a token hash, or ErrNotFound.
	GetSession(ctx context.Context, tokenHash []byte) (Session, error)
	// TouchSession moves a session's LastSeen to now (never back, and not
	// once it has ended); touched says whether it did.
	TouchSession(ctx context.Context, tokenHash []byte, now time.Time) (touched bool, err error)
	// EndSession ends a session at now; ended is false when it had ended
	// before or does not exist.
	EndSession(ctx context.Context, tokenHash []byte, now time.Time) (ended bool, err error)
	// SetBreakGlass records that a session's user broke the glass until
	// until, with their sealed reason (replacing an earlier one); set is
	// false, changing nothing, when the session has ended or does not
	// exist.
	SetBreakGlass(ctx context.Context, tokenHash []byte, until time.Time, sealedReason []byte) (set bool, err error)
	// EndUserSessions ends every session of a user that has not ended,
	// and says how many it ended.
	EndUserSessions(ctx context.Context, userID string, now time.Time) (int, error)
}
