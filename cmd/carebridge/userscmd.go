package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/store"
)

// runUsers is "carebridge users": the clinicians and administrators who
// sign in.
func runUsers(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		w := env.stdout
		if len(args) == 0 {
			w = env.stderr
		}
		fmt.Fprint(w, `Usage: carebridge users add|list|set-recipients|disable|enable|reset-mfa|unlock [flags]

Clinicians and administrators sign in at POST /auth/login with their
username, password and the 6-digit code of an authenticator app (TOTP),
and get a session token for the FHIR API. A session ends after 15 minutes
unused or 12 hours after sign-in (serve --session-idle, --session-lifetime).
Ten wrong passwords or codes in a row lock the account for 15 minutes.

  add        add a user (--username, --role); prints a one-time password and
             the TOTP secret as an otpauth:// URI, once: hand them over in
             person. The user chooses a new password at the first sign-in.
  list       the users, their roles and recipients, and whether they are
             disabled or locked
  set-recipients
             replace the Practitioner and CareTeam references that stand for
             a user as the recipient of messages (--recipient, repeated)
  disable    refuse a user's logins and end their sessions at once
  enable     accept a disabled user again
  reset-mfa  give a user a new TOTP secret (a lost phone); ends their sessions
  unlock     lift a lock after failed logins

Roles: physician, nurse (read and update messages, read the chart
resources they point to), unit-clerk (search messages), administrator
(manages users here; no clinical data), security-officer (the audit trail).
Physicians, nurses and unit clerks see only the messages addressed to
their recipients (--recipient Practitioner/… or CareTeam/…), unless they
break the glass (POST /auth/break-glass with a reason; audited).

Run "carebridge users add --help" for the flags.

Examples:
  carebridge users add --username ann.lee --role physician --recipient Practitioner/ann --recipient CareTeam/icu
  carebridge users set-recipients --username ann.lee --recipient Practitioner/ann
  carebridge users reset-mfa --username ann.lee
  carebridge users disable --username ann.lee
`)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "add":
		return runUsersAdd(ctx, env, args[1:])
	case "list":
		return runUsersList(ctx, env, args[1:])
	case "set-recipients":
		return runUsersSetRecipients(ctx, env, args[1:])
	case "disable", "enable", "reset-mfa", "unlock":
		return runUsersChange(ctx, env, args[0], args[1:])
	}
	fmt.Fprintf(env.stderr, "carebridge users: unknown subcommand %q (want add, list, set-recipients, disable, enable, reset-mfa or unlock)\n", args[0])
	return errUsage
}

// usersService opens the store and the key ring (with create, creating
// both if need be, as serve does) and returns the login service over them.
func usersService(ctx context.Context, storage storageFlags, create bool) (*access.Users, func(), error) {
	keys, err := storage.keyRing(create)
	if err != nil {
		return nil, nil, err
	}
	st, err := storage.openStore(ctx, quietLogger(), false)
	if err != nil {
		return nil, nil, err
	}
	users, err := access.NewUsers(userStore{st}, keys, access.UsersConfig{})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return users, func() { st.Close() }, nil
}

func runUsersAdd(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	var username, role string
	var recipients recipientFlag
	fs := newFlagSet(env, "users add", "users add --username NAME --role ROLE [--recipient REF]... [flags]", `
Adds a clinician or administrator. It prints their id, a one-time password
and their TOTP secret as an otpauth:// URI (for an authenticator app: type
it in, or make a QR code of it). Both are shown this once and never stored
in the clear; this output is sensitive, so do not paste it into tickets or
chats. At the first sign-in the user must choose a new password.
Roles: physician, nurse, unit-clerk, administrator, security-officer.
Physicians, nurses and unit clerks see the messages addressed to their
recipients: give their Practitioner and care teams with --recipient.`,
		`  carebridge users add --username ann.lee --role physician --recipient Practitioner/ann --recipient CareTeam/icu`)
	storage.register(fs)
	fs.StringVar(&username, "username", "", "the sign-in name: up to 64 of a-z 0-9 . _ @ - (upper case is folded)")
	fs.StringVar(&role, "role", "", "physician, nurse, unit-clerk, administrator or security-officer")
	fs.Var(&recipients, "recipient", "a reference that stands for the user as a message's recipient: Practitioner/ID or CareTeam/ID (repeatable)")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	r, err := access.ParseRole(role)
	if err == nil {
		_, err = access.ParseRecipients(recipients)
	}
	if err == nil && username == "" {
		err = errors.New("--username is required")
	}
	if err == nil && fs.NArg() > 0 {
		err = errors.New("unexpected arguments")
	}
	if err == nil {
		err = storage.validate()
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge users add: %v\n", err)
		return errUsage
	}
	users, done, err := usersService(ctx, storage, true)
	if err != nil {
		return err
	}
	defer done()
	en, err := users.Add(ctx, username, r, recipients...)
	if errors.Is(err, access.ErrUserExists) {
		fmt.Fprintf(env.stderr, "carebridge users add: user %q exists (carebridge users list)\n", username)
		return errUsage
	}
	if errors.Is(err, access.ErrUsername) {
		fmt.Fprintf(env.stderr, "carebridge users add: --username: %v\n", err)
		return errUsage
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "user %s added: id %s, role %s\none-time password: %s\nTOTP (for the authenticator app): %s\n"+
		"Hand both over in person; they are not shown again. The user chooses a new password at the first sign-in.\n",
		en.Username, en.UserID, en.Role, en.OneTimePassword, en.TOTPURI)
	return nil
}

func runUsersList(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	fs := newFlagSet(env, "users list", "users list [flags]", `
Lists the users: username, id, role, and whether they are active, disabled,
locked after failed logins, or yet to replace their one-time password.`, `  carebridge users list`)
	storage.register(fs)
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge users list: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), true)
	if err != nil {
		return err
	}
	defer st.Close()
	us, err := st.ListUsers(ctx)
	if err != nil {
		return err
	}
	if len(us) == 0 {
		fmt.Fprintln(env.stdout, "no users (carebridge users add)")
		return nil
	}
	now := time.Now()
	for _, u := range us {
		var state []string
		switch {
		case u.Disabled:
			state = append(state, "disabled")
		case now.Before(u.LockedUntil):
			state = append(state, "locked until "+u.LockedUntil.Format(time.RFC3339))
		default:
			state = append(state, "active")
		}
		if u.MustChangePassword {
			state = append(state, "one-time password not yet replaced")
		}
		recipients := ""
		if len(u.Recipients) > 0 {
			recipients = "; recipients " + strings.Join(u.Recipients, " ")
		}
		fmt.Fprintf(env.stdout, "%s %s: %s; %s; since %s%s\n", u.Username, u.ID, u.Role, strings.Join(state, ", "), u.CreatedAt.Format(time.RFC3339), recipients)
	}
	return nil
}

// recipientFlag is a repeated --recipient.
type recipientFlag []string

func (f *recipientFlag) String() string { return strings.Join(*f, " ") }

func (f *recipientFlag) Set(v string) error {
	*f = append(*f, v)
	return nil
}

func runUsersSetRecipients(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	var username string
	var recipients recipientFlag
	fs := newFlagSet(env, "users set-recipients", "users set-recipients --username NAME [--recipient REF]... [flags]", `
Replaces the references that stand for a user as a message's recipient:
their Practitioner and care teams. A physician, nurse or unit clerk sees
the messages addressed to one of them; with none, they see none (unless
they break the glass). Open sessions see the change at their next request.`,
		"  carebridge users set-recipients --username ann.lee --recipient Practitioner/ann --recipient CareTeam/icu")
	storage.register(fs)
	fs.StringVar(&username, "username", "", "the user's sign-in name")
	fs.Var(&recipients, "recipient", "Practitioner/ID or CareTeam/ID (repeatable; none clears them)")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	err := storage.validate()
	if err == nil && (username == "" || fs.NArg() > 0) {
		err = errors.New("--username is required, and nothing else")
	}
	if err == nil {
		_, err = access.ParseRecipients(recipients)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge users set-recipients: %v\n", err)
		return errUsage
	}
	users, done, err := usersService(ctx, storage, false)
	if err != nil {
		return err
	}
	defer done()
	u, err := users.SetRecipients(ctx, username, recipients)
	if errors.Is(err, access.ErrUnknownUser) {
		fmt.Fprintf(env.stderr, "carebridge users set-recipients: no user %q (carebridge users list)\n", username)
		return errUsage
	}
	if err != nil {
		return err
	}
	if len(u.Recipients) == 0 {
		fmt.Fprintf(env.stdout, "user %s has no recipients now: they see no messages\n", u.Username)
		return nil
	}
	fmt.Fprintf(env.stdout, "user %s: recipients %s\n", u.Username, strings.Join(u.Recipients, " "))
	return nil
}

// runUsersChange is disable, enable, reset-mfa and unlock.
func runUsersChange(ctx context.Context, env *environment, sub string, args []string) error {
	about := map[string]string{
		"disable":   "Disables a user: their logins are refused and their sessions end at once.",
		"enable":    "Accepts a disabled user again.",
		"reset-mfa": "Gives a user a new TOTP secret, printed as an otpauth:// URI (sensitive: hand it over in person),\nand ends their sessions. The old secret stops working.",
		"unlock":    "Lifts the lock of a user locked after failed logins, and zeroes the count.",
	}[sub]
	var storage storageFlags
	var username string
	fs := newFlagSet(env, "users "+sub, "users "+sub+" --username NAME [flags]", about, "  carebridge users "+sub+" --username ann.lee")
	storage.register(fs)
	fs.StringVar(&username, "username", "", "the user's sign-in name")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil || username == "" || fs.NArg() > 0 {
		if err == nil {
			err = errors.New("--username is required")
		}
		fmt.Fprintf(env.stderr, "carebridge users %s: %v\n", sub, err)
		return errUsage
	}
	users, done, err := usersService(ctx, storage, false)
	if err != nil {
		return err
	}
	defer done()
	var msg string
	switch sub {
	case "disable", "enable":
		_, err = users.SetDisabled(ctx, username, sub == "disable")
		msg = "user " + username + " " + sub + "d"
		if sub == "disable" {
			msg += "; their sessions have ended"
		}
	case "reset-mfa":
		var en access.Enrollment
		en, err = users.ResetMFA(ctx, username)
		msg = "user " + en.Username + " has a new TOTP secret; their sessions have ended\nTOTP (for the authenticator app): " + en.TOTPURI
	case "unlock":
		_, err = users.Unlock(ctx, username)
		msg = "user " + username + " unlocked"
	}
	if errors.Is(err, access.ErrUnknownUser) {
		fmt.Fprintf(env.stderr, "carebridge users %s: no user %q (carebridge users list)\n", sub, username)
		return errUsage
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, msg)
	return nil
}

// sessionFlags are serve's settings of clinicians' sessions.
type sessionFlags struct {
	idle, lifetime time.Duration
}

func (s *sessionFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&s.idle, "session-idle", access.DefaultIdleTimeout, "a clinician's session ends after this long unused (1m to 24h; kept to within 30s)")
	fs.DurationVar(&s.lifetime, "session-lifetime", access.DefaultLifetime, "a clinician's session ends this long after sign-in, however busy (up to 7 days)")
}

// userStore is the login service's view of the store's users.
type userStore struct{ st store.Users }

func toStoreUser(u access.User) store.User {
	return store.User{ID: u.ID, Username: u.Username, Role: string(u.Role), PasswordHash: u.PasswordHash, TOTPSecret: u.TOTPSecret,
		MustChangePassword: u.MustChangePassword, Disabled: u.Disabled, FailedLogins: u.FailedLogins, LockedUntil: u.LockedUntil,
		CreatedAt: u.CreatedAt, Recipients: u.Recipients}
}

func fromStoreUser(u store.User) access.User {
	return access.User{ID: u.ID, Username: u.Username, Role: access.Role(u.Role), PasswordHash: u.PasswordHash, TOTPSecret: u.TOTPSecret,
		MustChangePassword: u.MustChangePassword, Disabled: u.Disabled, FailedLogins: u.FailedLogins, LockedUntil: u.LockedUntil,
		CreatedAt: u.CreatedAt, Recipients: u.Recipients}
}

// userErr maps the store's errors to the login service's.
func userErr(err error, notFound error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w", notFound, err)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %w", access.ErrUserExists, err)
	}
	return err
}

func (s userStore) AddUser(ctx context.Context, u access.User) error {
	return userErr(s.st.AddUser(ctx, toStoreUser(u)), access.ErrUnknownUser)
}

func (s userStore) GetUser(ctx context.Context, id string) (access.User, error) {
	u, err := s.st.GetUser(ctx, id)
	return fromStoreUser(u), userErr(err, access.ErrUnknownUser)
}

func (s userStore) GetUserByUsername(ctx context.Context, username string) (access.User, error) {
	u, err := s.st.GetUserByUsername(ctx, username)
	return fromStoreUser(u), userErr(err, access.ErrUnknownUser)
}

func (s userStore) ListUsers(ctx context.Context) ([]access.User, error) {
	us, err := s.st.ListUsers(ctx)
	out := make([]access.User, len(us))
	for i, u := range us {
		out[i] = fromStoreUser(u)
	}
	return out, err
}

func (s userStore) UpdateUser(ctx context.Context, u access.User) error {
	return userErr(s.st.UpdateUser(ctx, toStoreUser(u)), access.ErrUnknownUser)
}

func (s userStore) RecordLoginFailure(ctx context.Context, id string, now time.Time, lockAfter int, lockFor time.Duration) (bool, error) {
	locked, err := s.st.RecordLoginFailure(ctx, id, now, lockAfter, lockFor)
	return locked, userErr(err, access.ErrUnknownUser)
}

func (s userStore) ResetLoginFailures(ctx context.Context, id string) error {
	return userErr(s.st.ResetLoginFailures(ctx, id), access.ErrUnknownUser)
}

func (s userStore) UseTOTPStep(ctx context.Context, id string, step int64) (bool, error) {
	return s.st.UseTOTPStep(ctx, id, step)
}

func (s userStore) CreateSession(ctx context.Context, ss access.Session) error {
	return s.st.CreateSession(ctx, store.Session{TokenHash: ss.TokenHash, UserID: ss.UserID, CreatedAt: ss.CreatedAt,
		LastSeen: ss.LastSeen, ExpiresAt: ss.ExpiresAt, EndedAt: ss.EndedAt, BreakGlassUntil: ss.BreakGlassUntil,
		BreakGlassReason: ss.BreakGlassReason})
}

func (s userStore) GetSession(ctx context.Context, hash []byte) (access.Session, error) {
	ss, err := s.st.GetSession(ctx, hash)
	out := access.Session{TokenHash: ss.TokenHash, UserID: ss.UserID, CreatedAt: ss.CreatedAt, LastSeen: ss.LastSeen,
		ExpiresAt: ss.ExpiresAt, EndedAt: ss.EndedAt, BreakGlassUntil: ss.BreakGlassUntil, BreakGlassReason: ss.BreakGlassReason}
	return out, userErr(err, access.ErrUnknownSession)
}

func (s userStore) TouchSession(ctx context.Context, hash []byte, now time.Time) (bool, error) {
	return s.st.TouchSession(ctx, hash, now)
}

func (s userStore) EndSession(ctx context.Context, hash []byte, now time.Time) (bool, error) {
	return s.st.EndSession(ctx, hash, now)
}

func (s userStore) SetBreakGlass(ctx context.Context, hash []byte, until time.Time, sealedReason []byte) (bool, error) {
	return s.st.SetBreakGlass(ctx, hash, until, sealedReason)
}

func (s userStore) EndUserSessions(ctx context.Context, id string, now time.Time) (int, error) {
	return s.st.EndUserSessions(ctx, id, now)
}
