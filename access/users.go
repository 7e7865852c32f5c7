package access

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Role is what a signed-in person does, and so what they may read.
type Role string

// Roles. Each has fixed permissions, its Scopes.
const (
	RolePhysician       Role = "physician"
	RoleNurse           Role = "nurse"
	RoleUnitClerk       Role = "unit-clerk"
	RoleAdministrator   Role = "administrator"
	RoleSecurityOfficer Role = "security-officer"
)

// Roles lists every role.
func Roles() []Role {
	return []Role{RolePhysician, RoleNurse, RoleUnitClerk, RoleAdministrator, RoleSecurityOfficer}
}

// ParseRole reads a role by its name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, 0, 5)
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return "", fmt.Errorf("role %q is not one of %s", s, strings.Join(names, ", "))
}

// clinical is what those who care for patients do: read and search the
// chart resources mapping stores, search, read and update (mark read)
// Communications.
var clinical = Scopes{
	{"user", "Communication", Create | Read | Update | Search},
	{"user", "Patient", Read | Search},
	{"user", "Encounter", Read | Search},
	{"user", "Observation", Read | Search},
	{"user", "ServiceRequest", Read | Search},
}

// Scopes are the role's permissions, as SMART v2 scopes in the "user"
// context (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
//
//   - physician, nurse: user/Communication.crus (they write replies as
//     themselves), and read and search
//     Patient, Encounter, Observation and ServiceRequest (.rs);
//   - unit clerk: user/Communication.s, to see what waits on the unit;
//   - administrator: nothing clinical (they manage users, with the CLI);
//   - security officer: user/AuditEvent.rs, to review the audit trail.
//
// An unknown role has none.
func (r Role) Scopes() Scopes {
	switch r {
	case RolePhysician, RoleNurse:
		return append(Scopes(nil), clinical...)
	case RoleUnitClerk:
		// What a clerk's search returns is cut to CommunicationFields,
		// and to their CommunicationScope.
		return Scopes{{"user", "Communication", Search}}
	case RoleSecurityOfficer:
		return Scopes{{"user", "AuditEvent", Read | Search}}
	}
	return nil
}

// User is a clinician or administrator as the login service sees it.
type User struct {
	ID                 string
	Username           string
	Role               Role
	PasswordHash       string // an argon2id PHC string
	TOTPSecret         []byte // sealed, with "User/ID" as associated data
	MustChangePassword bool
	Disabled           bool
	FailedLogins       int
	LockedUntil        time.Time
	CreatedAt          time.Time
	// Recipients are the references that stand for the user as a
	// Communication's recipient: "Practitioner/id" and "CareTeam/id".
	Recipients []string
}

// Session is a signed-in user's session as stored: by the SHA-256 of its
// token.
type Session struct {
	TokenHash []byte
	UserID    string
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
	EndedAt   time.Time
	// BreakGlassUntil (zero: never) ends the wider access asked for with
	// BreakGlass; BreakGlassReason is the reason, sealed with
	// "Session/<token hash in hex>" as associated data.
	BreakGlassUntil  time.Time
	BreakGlassReason []byte
}

// ErrUsername is returned by Add for a username that cannot be one.
var ErrUsername = errors.New("a username has 1 to 64 of a-z 0-9 . _ @ -, starting with a letter or digit")

// Errors a UserStore returns.
var (
	ErrUnknownUser    = errors.New("unknown user")
	ErrUserExists     = errors.New("a user with this username exists")
	ErrUnknownSession = errors.New("unknown session")
)

// UserStore is where users and their sessions are kept (store.Users, with
// its errors mapped to ErrUnknownUser, ErrUserExists and
// ErrUnknownSession). Counters change only through their own methods, so
// that concurrent logins never undo each other's counts.
type UserStore interface {
	AddUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, id string) (User, error)
	GetUserByUsername(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser stores the role, password hash, TOTP secret and flags.
	UpdateUser(ctx context.Context, u User) error
	RecordLoginFailure(ctx context.Context, userID string, now time.Time, lockAfter int, lockFor time.Duration) (locked bool, err error)
	ResetLoginFailures(ctx context.Context, userID string) error
	// UseTOTPStep is false when the user used that step or a later one.
	UseTOTPStep(ctx context.Context, userID string, step int64) (fresh bool, err error)
	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, tokenHash []byte) (Session, error)
	TouchSession(ctx context.Context, tokenHash []byte, now time.Time) (bool, error)
	EndSession(ctx context.Context, tokenHash []byte, now time.Time) (bool, error)
	// SetBreakGlass is false, changing nothing, for a session that has
	// ended or does not exist.
	SetBreakGlass(ctx context.Context, tokenHash []byte, until time.Time, sealedReason []byte) (bool, error)
	EndUserSessions(ctx context.Context, userID string, now time.Time) (int, error)
}

// Sealer seals and opens TOTP secrets (*secure.KeyRing).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// Defaults of UsersConfig.
const (
	DefaultIdleTimeout = 15 * time.Minute
	DefaultLifetime    = 12 * time.Hour
	DefaultLockAfter   = 10
	DefaultLockFor     = 15 * time.Minute
	// touchEvery is how often a session's last activity is written:
	// at most once per 30 seconds and session, so the idle timeout is
	// kept to within 30 seconds (a session may end up to 30 seconds
	// before IdleTimeout has passed since its last request).
	touchEvery = 30 * time.Second
)

// UsersConfig configures Users.
type UsersConfig struct {
	// IdleTimeout ends a session unused for this long: 15 minutes when
	// zero; 1 minute to 24 hours. It is kept to within 30 seconds: a
	// session's last activity is written at most every 30 seconds.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after sign-in, however busy: 12
	// hours when zero; at least IdleTimeout, at most 7 days.
	Lifetime time.Duration
	// LockAfter failed logins in a row lock the account for LockFor: 10
	// and 15 minutes when zero.
	LockAfter int
	LockFor   time.Duration
	Now       func() time.Time
}

func (c *UsersConfig) setDefaults() {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Lifetime == 0 {
		c.Lifetime = DefaultLifetime
	}
	if c.LockAfter == 0 {
		c.LockAfter = DefaultLockAfter
	}
	if c.LockFor == 0 {
		c.LockFor = DefaultLockFor
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports what is wrong with c (after defaults).
func (c UsersConfig) Validate() error {
	var errs []error
	if c.IdleTimeout < time.Minute || c.IdleTimeout > 24*time.Hour {
		errs = append(errs, fmt.Errorf("a session idle timeout of %v (want 1 minute to 24 hours)", c.IdleTimeout))
	}
	if c.Lifetime < c.IdleTimeout || c.Lifetime > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("a session lifetime of %v (want the idle timeout, %v, to 7 days)", c.Lifetime, c.IdleTimeout))
	}
	if c.LockAfter < 1 || c.LockAfter > 1000 {
		errs = append(errs, fmt.Errorf("locking after %d failed logins (want 1 to 1000)", c.LockAfter))
	}
	if c.LockFor <= 0 || c.LockFor > 24*time.Hour {
		errs = append(errs, fmt.Errorf("a lock of %v (want up to 24 hours)", c.LockFor))
	}
	return errors.Join(errs...)
}

// Users signs clinicians and administrators in and keeps their sessions;
// administrators add, disable and reset them through it. It is safe for
// concurrent use.
type Users struct {
	cfg    UsersConfig
	st     UserStore
	keys   Sealer
	params PasswordParams
	// dummy is the hash of a random password, checked for a username
	// nobody has, so that it takes as long as a wrong password.
	dummy string
	// hashing bounds the argon2id computations at once (19 MiB each), so
	// that a flood of logins cannot exhaust memory.
	hashing chan struct{}
}

// NewUsers returns the login service over a user store.
func NewUsers(st UserStore, keys Sealer, cfg UsersConfig) (*Users, error) {
	if st == nil || keys == nil {
		return nil, errors.New("access: the login service needs a user store and the key ring")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	u := &Users{cfg: cfg, st: st, keys: keys, hashing: make(chan struct{}, 4)}
	u.setParams(DefaultPasswordParams)
	return u, nil
}

func (u *Users) setParams(p PasswordParams) {
	u.params = p
	u.dummy = hashPassword(rand.Text(), p)
}

// IdleTimeout is how long an unused session lasts.
func (u *Users) IdleTimeout() time.Duration { return u.cfg.IdleTimeout }

// hash and verify run argon2id within the bound on computations at once.
func (u *Users) hash(ctx context.Context, password string) (string, error) {
	if err := u.acquire(ctx); err != nil {
		return "", err
	}
	defer u.release()
	return hashPassword(password, u.params), nil
}

func (u *Users) verify(ctx context.Context, password, phc string) (bool, error) {
	if err := u.acquire(ctx); err != nil {
		return false, err
	}
	defer u.release()
	return verifyPassword(password, phc)
}

func (u *Users) acquire(ctx context.Context) error {
	select {
	case u.hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *Users) release() { <-u.hashing }

// normalizeUsername is the form usernames are stored and looked up in:
// lower case, 1 to 64 of a-z 0-9 . _ @ -, starting with a letter or digit;
// "" when s cannot be one.
func normalizeUsername(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || len(s) > 64 {
		return ""
	}
	for i, c := range s {
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._@-", c)) {
			return ""
		}
	}
	return s
}

// NewPasswordRule says what a new password must be.
const NewPasswordRule = "a new password has 12 to 1024 characters and is neither the username nor the current password"

func checkNewPassword(password, username string) error {
	if n := utf8.RuneCountInString(password); n < 12 || len(password) > maxPasswordLen || !utf8.ValidString(password) {
		return errors.New(NewPasswordRule)
	}
	if strings.EqualFold(strings.TrimSpace(password), username) {
		return errors.New(NewPasswordRule)
	}
	return nil
}

// Enrollment is what an administrator hands a new user, or one whose
// second factor was reset, once: it is not stored in the clear anywhere.
type Enrollment struct {
	UserID   string
	Username string
	Role     Role
	// OneTimePassword is the first password (empty after ResetMFA): the
	// user must replace it at their first login.
	OneTimePassword string
	// TOTPURI is the otpauth:// URI of the user's TOTP secret, for their
	// authenticator app.
	TOTPURI string
}

func totpAAD(userID string) []byte { return []byte("User/" + userID) }

// sealTOTP makes a TOTP secret for a user and seals it.
func (u *Users) sealTOTP(userID, username string) (sealed []byte, uri string, err error) {
	secret, uri, err := newTOTP(username)
	if err != nil {
		return nil, "", err
	}
	sealed, err = u.keys.Seal([]byte(secret), totpAAD(userID))
	if err != nil {
		return nil, "", fmt.Errorf("sealing the TOTP secret of user %s: %w", userID, err)
	}
	return sealed, uri, nil
}

// Add adds a user with a one-time password (26 random base32 characters,
// 130 bits) and a new TOTP secret, linked to the references that stand for
// them as recipients (see ParseRecipients). A user with the username
// exists: ErrUserExists.
func (u *Users) Add(ctx context.Context, username string, role Role, recipients ...string) (Enrollment, error) {
	name := normalizeUsername(username)
	if name == "" {
		return Enrollment{}, ErrUsername
	}
	if _, err := ParseRole(string(role)); err != nil {
		return Enrollment{}, err
	}
	recipients, err := ParseRecipients(recipients)
	if err != nil {
		return Enrollment{}, err
	}
	id := uuid.NewString()
	sealed, uri, err := u.sealTOTP(id, name)
	if err != nil {
		return Enrollment{}, err
	}
	password := rand.Text()
	hash, err := u.hash(ctx, password)
	if err != nil {
		return Enrollment{}, err
	}
	user := User{ID: id, Username: name, Role: role, PasswordHash: hash, TOTPSecret: sealed, MustChangePassword: true,
		CreatedAt: u.cfg.Now().UTC(), Recipients: recipients}
	if err := u.st.AddUser(ctx, user); err != nil {
		return Enrollment{}, err
	}
	return Enrollment{UserID: id, Username: name, Role: role, OneTimePassword: password, TOTPURI: uri}, nil
}

func (u *Users) byName(ctx context.Context, username string) (User, error) {
	name := normalizeUsername(username)
	if name == "" {
		return User{}, fmt.Errorf("%q: %w", username, ErrUnknownUser)
	}
	return u.st.GetUserByUsername(ctx, name)
}

// ResetMFA gives a user a new TOTP secret (the old one stops working) and
// ends their sessions.
func (u *Users) ResetMFA(ctx context.Context, username string) (Enrollment, error) {
	user, err := u.byName(ctx, username)
	if err != nil {
		return Enrollment{}, err
	}
	sealed, uri, err := u.sealTOTP(user.ID, user.Username)
	if err != nil {
		return Enrollment{}, err
	}
	user.TOTPSecret = sealed
	if err := u.st.UpdateUser(ctx, user); err != nil {
		return Enrollment{}, err
	}
	if _, err := u.st.EndUserSessions(ctx, user.ID, u.cfg.Now()); err != nil {
		return Enrollment{}, err
	}
	return Enrollment{UserID: user.ID, Username: user.Username, Role: user.Role, TOTPURI: uri}, nil
}

// SetDisabled disables a user, ending their sessions at once, or enables
// them again. It returns the user.
func (u *Users) SetDisabled(ctx context.Context, username string, disabled bool) (User, error) {
	user, err := u.byName(ctx, username)
	if err != nil {
		return User{}, err
	}
	user.Disabled = disabled
	if err := u.st.UpdateUser(ctx, user); err != nil {
		return User{}, err
	}
	if disabled {
		if _, err := u.st.EndUserSessions(ctx, user.ID, u.cfg.Now()); err != nil {
			return User{}, err
		}
	}
	return user, nil
}

// SetRecipients replaces the references that stand for a user as a
// recipient (see ParseRecipients; none is allowed), and returns the user.
// Sessions that are open see the change at their next request.
func (u *Users) SetRecipients(ctx context.Context, username string, recipients []string) (User, error) {
	rs, err := ParseRecipients(recipients)
	if err != nil {
		return User{}, err
	}
	user, err := u.byName(ctx, username)
	if err != nil {
		return User{}, err
	}
	user.Recipients = rs
	if err := u.st.UpdateUser(ctx, user); err != nil {
		return User{}, err
	}
	return user, nil
}

// ErrRecipient is returned for a recipient reference a user cannot be
// linked to.
var ErrRecipient = errors.New(`a user's recipient is "Practitioner/<id>" or "CareTeam/<id>", with a FHIR id (1 to 64 of A-Z a-z 0-9 - .)`)

// maxRecipients bounds the references of one user.
const maxRecipients = 64

// ParseRecipients checks the references a user may be linked to as a
// recipient: Practitioner/<id> and CareTeam/<id>. It returns them without
// repeats, in their order; nil for none.
func ParseRecipients(refs []string) ([]string, error) {
	var out []string
	for _, r := range refs {
		r = strings.TrimSpace(r)
		typ, id, _ := strings.Cut(r, "/")
		if (typ != "Practitioner" && typ != "CareTeam") || !fhirID(id) {
			return nil, fmt.Errorf("%q: %w", r, ErrRecipient)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if len(out) > maxRecipients {
		return nil, fmt.Errorf("%d recipients, at most %d", len(out), maxRecipients)
	}
	return out, nil
}

// fhirID reports whether s is a FHIR id: 1 to 64 of A-Z a-z 0-9 - and ..
func fhirID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Unlock lifts a lock after failed logins, and zeroes their count.
func (u *Users) Unlock(ctx context.Context, username string) (User, error) {
	user, err := u.byName(ctx, username)
	if err != nil {
		return User{}, err
	}
	return user, u.st.ResetLoginFailures(ctx, user.ID)
}

// List returns every user, by username.
func (u *Users) List(ctx context.Context) ([]User, error) { return u.st.ListUsers(ctx) }

// clerkFields are the elements of a Communication a unit clerk sees: that
// it exists, its status and priority, where it belongs (the encounter,
// which holds the location), who it is for and from, and when; never
// the payload, the subject or what it is about.
var clerkFields = []string{"resourceType", "id", "meta", "status", "priority", "category", "encounter",
	"recipient", "sender", "sent", "received"}

// CommunicationFields is the minimum necessary of a Communication for
// p: the top-level elements p may see, or nil for all of them.
func (p Principal) CommunicationFields() []string {
	if p.Kind == KindUser && p.Role == RoleUnitClerk {
		return clerkFields
	}
	return nil
}

// CommunicationScope is which Communications a principal may see.
type CommunicationScope struct {
	// All: every Communication. Otherwise only those one of whose
	// recipients is in Recipients (none when it is empty).
	All        bool
	Recipients []string
	// BreakGlass: All only because the user broke the glass; what lies
	// outside Recipients is then flagged in the audit trail.
	BreakGlass bool
}

// Allows says whether the scope lets its principal see a Communication
// with these recipients, and whether that must be flagged as break-glass.
func (s CommunicationScope) Allows(recipients []string) (ok, breakGlass bool) {
	for _, r := range recipients {
		if slices.Contains(s.Recipients, r) {
			return true, false
		}
	}
	if s.All {
		return true, s.BreakGlass
	}
	return false, false
}

// limited reports whether a role sees only the Communications of its
// recipients (the minimum necessary): those who care for patients, and
// unit clerks. Other roles have no Communication scopes.
func (r Role) limited() bool {
	return r == RolePhysician || r == RoleNurse || r == RoleUnitClerk
}

// CommunicationScope is which Communications p may see at now: a client
// (an EHR system) every one its scopes permit; a physician, nurse or unit
// clerk those whose recipients include one of p.Recipients, or every one
// while a break-glass lasts (flagged).
func (p Principal) CommunicationScope(now time.Time) CommunicationScope {
	if p.Kind != KindUser || !p.Role.limited() {
		return CommunicationScope{All: true}
	}
	s := CommunicationScope{Recipients: p.Recipients}
	if now.Before(p.BreakGlassUntil) {
		s.All, s.BreakGlass = true, true
	}
	return s
}
