package access_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/access/accesstest"
	"github.com/carebridge/carebridge/secure"
)

// cheapParams keep the many logins of these tests fast.
var cheapParams = access.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type loginFixture struct {
	users *access.Users
	st    *accesstest.Users
	clock *accesstest.Clock
	keys  *secure.KeyRing
}

func newLoginFixture(t *testing.T, cfg access.UsersConfig) *loginFixture {
	t.Helper()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := &loginFixture{st: &accesstest.Users{}, keys: kr,
		// On a step boundary: codes made "now" stay current for 30 s.
		clock: accesstest.NewClock(time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC))}
	cfg.Now = f.clock.Now
	f.users, err = access.NewUsers(f.st, kr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	access.SetPasswordParams(f.users, cheapParams)
	return f
}

// person is a user as the tests know them: their password and TOTP
// secret.
type person struct {
	id, username, password, secret string
}

// add adds a user and replaces their one-time password, as at a first
// login, so that they can sign in with password.
func (f *loginFixture) add(t *testing.T, username string, role access.Role) person {
	t.Helper()
	en, err := f.users.Add(context.Background(), username, role)
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(en.TOTPURI)
	if err != nil {
		t.Fatal(err)
	}
	p := person{id: en.UserID, username: en.Username, password: "a long new password " + username, secret: key.Secret()}
	if _, err := f.users.Login(context.Background(), access.Credentials{Username: username, Password: en.OneTimePassword,
		TOTP: f.code(t, p), NewPassword: p.password}); err != nil {
		t.Fatalf("first login of %s: %v", username, err)
	}
	f.clock.Add(30 * time.Second) // the code is spent
	return p
}

func (f *loginFixture) code(t *testing.T, p person) string {
	t.Helper()
	c, err := totp.GenerateCode(p.secret, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *loginFixture) login(t *testing.T, p person) access.SessionToken {
	t.Helper()
	tok, err := f.users.Login(context.Background(), access.Credentials{Username: p.username, Password: p.password, TOTP: f.code(t, p)})
	if err != nil {
		t.Fatalf("login of %s: %v", p.username, err)
	}
	return tok
}

// refusal returns the reason of a refused login, failing on anything else.
func refusal(t *testing.T, err error) access.LoginRefusal {
	t.Helper()
	var le *access.LoginError
	if !errors.As(err, &le) {
		t.Fatalf("login: %v, want a refusal", err)
	}
	return le.Reason
}

func (f *loginFixture) user(t *testing.T, id string) access.User {
	t.Helper()
	u, err := f.st.GetUser(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRoleScopes(t *testing.T) {
	for _, tc := range []struct {
		role     access.Role
		resource string
		perm     access.Perm
		want     bool
	}{
		{access.RolePhysician, "Communication", access.Read | access.Search | access.Update, true},
		{access.RolePhysician, "Communication", access.Create, true},
		{access.RoleUnitClerk, "Communication", access.Create, false},
		{access.RolePhysician, "Patient", access.Read, true},
		{access.RolePhysician, "Observation", access.Read, true},
		{access.RolePhysician, "AuditEvent", access.Search, false},
		{access.RoleNurse, "ServiceRequest", access.Read, true},
		{access.RoleNurse, "Encounter", access.Read, true},
		{access.RoleNurse, "Observation", access.Read | access.Search, true},
		{access.RolePhysician, "Patient", access.Search, true},
		{access.RoleUnitClerk, "Patient", access.Search, false},
		{access.RoleNurse, "Patient", access.Update, false},
		{access.RoleUnitClerk, "Communication", access.Search, true},
		{access.RoleUnitClerk, "Communication", access.Read, false},
		{access.RoleUnitClerk, "Patient", access.Read, false},
		{access.RoleAdministrator, "Communication", access.Search, false},
		{access.RoleAdministrator, "Patient", access.Read, false},
		{access.RoleSecurityOfficer, "AuditEvent", access.Read | access.Search, true},
		{access.RoleSecurityOfficer, "Communication", access.Read, false},
		{access.Role("surgeon"), "Communication", access.Read, false},
	} {
		if got := tc.role.Scopes().Allows("user", tc.resource, tc.perm); got != tc.want {
			t.Errorf("%s may %s %s = %v, want %v", tc.role, tc.perm, tc.resource, got, tc.want)
		}
		if tc.role.Scopes().Allows("system", tc.resource, tc.perm) {
			t.Errorf("%s has system scopes", tc.role)
		}
	}
	if got := access.RolePhysician.Scopes().String(); got != "user/Communication.crus user/Patient.rs user/Encounter.rs user/Observation.rs user/ServiceRequest.rs" {
		t.Errorf("physician scopes %q", got)
	}
	if _, err := access.ParseRole("unit-clerk"); err != nil {
		t.Error(err)
	}
	if _, err := access.ParseRole("root"); err == nil || !strings.Contains(err.Error(), "security-officer") {
		t.Errorf("ParseRole(root) = %v, want an error listing the roles", err)
	}
}

// TestFirstLogin: a new user signs in with the one-time password and
// must choose a new one; the one-time password then stops working.
func TestFirstLogin(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	ctx := context.Background()
	en, err := f.users.Add(ctx, "  Ann.MD ", access.RolePhysician)
	if err != nil {
		t.Fatal(err)
	}
	if en.Username != "ann.md" || len(en.OneTimePassword) < 16 || !strings.HasPrefix(en.TOTPURI, "otpauth://totp/carebridge:ann.md?") {
		t.Fatalf("enrollment %+v: want username ann.md, a one-time password of 16+ characters and an otpauth URI", en)
	}
	if _, err := f.users.Add(ctx, "ann.md", access.RoleNurse); !errors.Is(err, access.ErrUserExists) {
		t.Fatalf("adding ann.md again: %v, want ErrUserExists", err)
	}
	for _, bad := range []string{"", "-ann", "ann md", strings.Repeat("a", 65)} {
		if _, err := f.users.Add(ctx, bad, access.RoleNurse); err == nil {
			t.Errorf("Add(%q) succeeded", bad)
		}
	}
	if _, err := f.users.Add(ctx, "bob", access.Role("root")); err == nil {
		t.Error("Add with an unknown role succeeded")
	}
	stored := f.user(t, en.UserID)
	if !stored.MustChangePassword || !strings.HasPrefix(stored.PasswordHash, "$argon2id$") || strings.Contains(string(stored.TOTPSecret), "secret") {
		t.Fatalf("stored user %+v", stored)
	}
	key, _ := otp.NewKeyFromURL(en.TOTPURI)
	if strings.Contains(string(stored.TOTPSecret), key.Secret()) {
		t.Fatal("the TOTP secret is stored in the clear")
	}
	p := person{id: en.UserID, username: "ann.md", password: en.OneTimePassword, secret: key.Secret()}

	_, err = f.users.Login(ctx, access.Credentials{Username: "ann.md", Password: en.OneTimePassword, TOTP: f.code(t, p)})
	if got := refusal(t, err); got != access.RefusedPasswordChange {
		t.Fatalf("first login without a new password: %s, want %s", got, access.RefusedPasswordChange)
	}
	// The code is spent; a too-short new password is refused before
	// anything is checked or counted.
	_, err = f.users.Login(ctx, access.Credentials{Username: "ann.md", Password: en.OneTimePassword, TOTP: f.code(t, p), NewPassword: "short"})
	if got := refusal(t, err); got != access.RefusedNewPassword {
		t.Fatalf("a short new password: %s, want %s", got, access.RefusedNewPassword)
	}
	_, err = f.users.Login(ctx, access.Credentials{Username: "ann.md", Password: en.OneTimePassword, TOTP: f.code(t, p), NewPassword: "a good new password"})
	if got := refusal(t, err); got != access.RefusedMFA {
		t.Fatalf("the spent code again: %s, want %s", got, access.RefusedMFA)
	}
	f.clock.Add(30 * time.Second)
	tok, err := f.users.Login(ctx, access.Credentials{Username: "ANN.md", Password: en.OneTimePassword, TOTP: f.code(t, p), NewPassword: "a good new password"})
	if err != nil || tok.UserID != en.UserID || tok.Role != access.RolePhysician || tok.IdleTimeout != 15*time.Minute {
		t.Fatalf("login with a new password = %+v, %v", tok, err)
	}
	if u := f.user(t, en.UserID); u.MustChangePassword || u.FailedLogins != 0 {
		t.Fatalf("after the change: %+v", u)
	}
	f.clock.Add(30 * time.Second)
	_, err = f.users.Login(ctx, access.Credentials{Username: "ann.md", Password: en.OneTimePassword, TOTP: f.code(t, p)})
	if got := refusal(t, err); got != access.RefusedCredentials {
		t.Fatalf("the one-time password after the change: %s, want %s", got, access.RefusedCredentials)
	}
	p.password = "a good new password"
	f.login(t, p)
}

// TestUnknownUserLooksLikeWrongPassword: both are the same refusal; only
// the wrong password names (and counts against) a user.
func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "nia.rn", access.RoleNurse)
	ctx := context.Background()
	var unknown, wrong *access.LoginError
	_, err := f.users.Login(ctx, access.Credentials{Username: "nobody", Password: p.password, TOTP: f.code(t, p)})
	if !errors.As(err, &unknown) {
		t.Fatal(err)
	}
	_, err = f.users.Login(ctx, access.Credentials{Username: p.username, Password: "not it", TOTP: f.code(t, p)})
	if !errors.As(err, &wrong) {
		t.Fatal(err)
	}
	if unknown.Reason != access.RefusedCredentials || wrong.Reason != access.RefusedCredentials || unknown.Error() != wrong.Error() {
		t.Fatalf("unknown user %+v and wrong password %+v differ", unknown, wrong)
	}
	if unknown.UserID != "" || wrong.UserID != p.id {
		t.Fatalf("user ids %q, %q; want none and %s", unknown.UserID, wrong.UserID, p.id)
	}
	if got := f.user(t, p.id).FailedLogins; got != 1 {
		t.Fatalf("FailedLogins = %d, want 1", got)
	}
}

// TestLockout: ten wrong passwords lock the account; the eleventh
// attempt, with the right password and code, is refused until the lock
// ends, and attempts during the lock do not count.
func TestLockout(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "locked.out", access.RoleNurse)
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		_, err := f.users.Login(ctx, access.Credentials{Username: p.username, Password: "guess " + string(rune('a'+i)), TOTP: f.code(t, p)})
		var le *access.LoginError
		if !errors.As(err, &le) || le.Reason != access.RefusedCredentials || le.Locked != (i == 10) {
			t.Fatalf("wrong password %d: %+v, want invalid credentials, locked only at the 10th", i, err)
		}
		f.clock.Add(time.Second)
	}
	_, err := f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: f.code(t, p)})
	if got := refusal(t, err); got != access.RefusedLocked {
		t.Fatalf("the right password while locked: %s, want %s", got, access.RefusedLocked)
	}
	if u := f.user(t, p.id); u.FailedLogins != 0 {
		t.Fatalf("attempts while locked counted: %d", u.FailedLogins)
	}
	f.clock.Add(14 * time.Minute)
	_, err = f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: f.code(t, p)})
	if got := refusal(t, err); got != access.RefusedLocked {
		t.Fatalf("the right password before the 15 minutes are up: %s, want %s", got, access.RefusedLocked)
	}
	f.clock.Add(time.Minute)
	f.login(t, p)
	if u := f.user(t, p.id); u.FailedLogins != 0 || !u.LockedUntil.IsZero() {
		t.Fatalf("after a login: %d failures, locked until %v", u.FailedLogins, u.LockedUntil)
	}
}

// TestWrongCodesLock: wrong codes count towards the lock as wrong
// passwords do, and a success starts the count again.
func TestWrongCodesLock(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{LockAfter: 3, LockFor: time.Hour})
	p := f.add(t, "mfa.guesser", access.RolePhysician)
	ctx := context.Background()
	for _, code := range []string{"000000", "12345", "abcdef"} {
		_, err := f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: code})
		if got := refusal(t, err); got != access.RefusedMFA {
			t.Fatalf("code %q: %s, want %s", code, got, access.RefusedMFA)
		}
	}
	_, err := f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: f.code(t, p)})
	if got := refusal(t, err); got != access.RefusedLocked {
		t.Fatalf("after 3 wrong codes: %s, want %s", got, access.RefusedLocked)
	}
	if _, err := f.users.Unlock(ctx, p.username); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(30 * time.Second)
	f.login(t, p)
}

// TestCodeUsedOnce: a code that signed in is refused afterwards, as is
// one of an earlier step still within the skew.
func TestCodeUsedOnce(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "once", access.RoleNurse)
	ctx := context.Background()
	code := f.code(t, p)
	if _, err := f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: code}); err != nil {
		t.Fatal(err)
	}
	_, err := f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: code})
	if got := refusal(t, err); got != access.RefusedMFA {
		t.Fatalf("the same code again: %s, want %s", got, access.RefusedMFA)
	}
	f.clock.Add(30 * time.Second)
	// The previous step's code is within the skew, but older than the
	// step used.
	_, err = f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: code})
	if got := refusal(t, err); got != access.RefusedMFA {
		t.Fatalf("the used code a step later: %s, want %s", got, access.RefusedMFA)
	}
	f.login(t, p)
}

// TestDisabledUser: disabling ends the sessions and refuses logins, even
// with the right password; enabling admits them again.
func TestDisabledUser(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "leaver", access.RoleNurse)
	ctx := context.Background()
	tok := f.login(t, p)
	if _, err := f.users.VerifySession(ctx, tok.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := f.users.SetDisabled(ctx, p.username, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.users.VerifySession(ctx, tok.Token); !errors.Is(err, access.ErrToken) {
		t.Fatalf("a session of a disabled user: %v, want ErrToken", err)
	}
	f.clock.Add(30 * time.Second)
	_, err := f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: f.code(t, p)})
	if got := refusal(t, err); got != access.RefusedDisabled {
		t.Fatalf("login of a disabled user: %s, want %s", got, access.RefusedDisabled)
	}
	if _, err := f.users.SetDisabled(ctx, p.username, false); err != nil {
		t.Fatal(err)
	}
	f.login(t, p)
	if _, err := f.users.SetDisabled(ctx, "nobody", true); !errors.Is(err, access.ErrUnknownUser) {
		t.Fatalf("disabling nobody: %v, want ErrUnknownUser", err)
	}
}

// TestResetMFA: the new secret works, the old one no longer does, and the
// user's sessions end.
func TestResetMFA(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "lost.phone", access.RolePhysician)
	ctx := context.Background()
	tok := f.login(t, p)
	en, err := f.users.ResetMFA(ctx, p.username)
	if err != nil {
		t.Fatal(err)
	}
	if en.OneTimePassword != "" || en.UserID != p.id {
		t.Fatalf("ResetMFA = %+v", en)
	}
	if _, err := f.users.VerifySession(ctx, tok.Token); !errors.Is(err, access.ErrToken) {
		t.Fatalf("a session after the reset: %v, want ErrToken", err)
	}
	f.clock.Add(30 * time.Second)
	_, err = f.users.Login(ctx, access.Credentials{Username: p.username, Password: p.password, TOTP: f.code(t, p)})
	if got := refusal(t, err); got != access.RefusedMFA {
		t.Fatalf("the old secret's code: %s, want %s", got, access.RefusedMFA)
	}
	key, err := otp.NewKeyFromURL(en.TOTPURI)
	if err != nil || key.Secret() == p.secret {
		t.Fatalf("new secret: %v, %v", key, err)
	}
	p.secret = key.Secret()
	f.login(t, p)
}

// TestIdleExpiry: a session used within the idle timeout lasts; one left
// alone for it ends. Activity is written at most every 30 seconds.
func TestIdleExpiry(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "idle", access.RoleNurse)
	ctx := context.Background()
	tok := f.login(t, p)
	pr, err := f.users.VerifySession(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Kind != access.KindUser || pr.ID != p.id || pr.Contexts != "user" || pr.Scopes.String() != access.RoleNurse.Scopes().String() ||
		!pr.Expires.Equal(f.clock.Now().Add(15*time.Minute)) {
		t.Fatalf("principal %+v", pr)
	}
	for range 5 {
		f.clock.Add(5 * time.Second)
		if _, err := f.users.VerifySession(ctx, tok.Token); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.st.TouchCount(); n != 0 {
		t.Fatalf("%d touches within 25 seconds, want none", n)
	}
	f.clock.Add(5 * time.Second)
	if _, err := f.users.VerifySession(ctx, tok.Token); err != nil {
		t.Fatal(err)
	}
	if n := f.st.TouchCount(); n != 1 {
		t.Fatalf("%d touches after 30 seconds, want 1", n)
	}
	f.clock.Add(14*time.Minute + 59*time.Second)
	if _, err := f.users.VerifySession(ctx, tok.Token); err != nil {
		t.Fatalf("used just within the idle timeout: %v", err)
	}
	f.clock.Add(15 * time.Minute)
	if _, err := f.users.VerifySession(ctx, tok.Token); !errors.Is(err, access.ErrToken) || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("after 15 idle minutes: %v, want ErrToken (idle)", err)
	}
}

// TestAbsoluteExpiry: a session ends at its lifetime however busy.
func TestAbsoluteExpiry(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{IdleTimeout: 10 * time.Minute, Lifetime: time.Hour})
	p := f.add(t, "busy", access.RolePhysician)
	ctx := context.Background()
	tok := f.login(t, p)
	for range 11 {
		f.clock.Add(5 * time.Minute)
		if _, err := f.users.VerifySession(ctx, tok.Token); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Add(5 * time.Minute)
	if _, err := f.users.VerifySession(ctx, tok.Token); !errors.Is(err, access.ErrToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after the lifetime: %v, want ErrToken (expired)", err)
	}
}

func TestLogout(t *testing.T) {
	f := newLoginFixture(t, access.UsersConfig{})
	p := f.add(t, "leaving", access.RoleNurse)
	ctx := context.Background()
	tok := f.login(t, p)
	if id, err := f.users.Logout(ctx, tok.Token); err != nil || id != p.id {
		t.Fatalf("Logout = %q, %v", id, err)
	}
	if _, err := f.users.VerifySession(ctx, tok.Token); !errors.Is(err, access.ErrToken) {
		t.Fatalf("after logout: %v, want ErrToken", err)
	}
	if id, err := f.users.Logout(ctx, tok.Token); !errors.Is(err, access.ErrToken) || id != p.id {
		t.Fatalf("Logout again = %q, %v; want the user and ErrToken", id, err)
	}
	for _, bad := range []string{"", "a.b.c", strings.Repeat("A", 43), tok.Token + "A", strings.Repeat("*", 43)} {
		if _, err := f.users.VerifySession(ctx, bad); !errors.Is(err, access.ErrToken) {
			t.Errorf("VerifySession(%q) = %v, want ErrToken", bad, err)
		}
		if _, err := f.users.Logout(ctx, bad); !errors.Is(err, access.ErrToken) {
			t.Errorf("Logout(%q) = %v, want ErrToken", bad, err)
		}
	}
}

func TestUsersConfig(t *testing.T) {
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []access.UsersConfig{
		{IdleTimeout: 30 * time.Second},
		{IdleTimeout: time.Hour, Lifetime: 30 * time.Minute},
		{Lifetime: 30 * 24 * time.Hour},
		{LockAfter: -1},
		{LockFor: -time.Minute},
	} {
		if _, err := access.NewUsers(&accesstest.Users{}, kr, cfg); err == nil {
			t.Errorf("NewUsers(%+v) succeeded", cfg)
		}
	}
	if _, err := access.NewUsers(nil, kr, access.UsersConfig{}); err == nil {
		t.Error("NewUsers without a store succeeded")
	}
}
