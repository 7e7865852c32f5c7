package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

var userAt = time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)

func newUser(id, username, role string) store.User {
	return store.User{ID: id, Username: username, Role: role, PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
		TOTPSecret: []byte("sealed " + id), MustChangePassword: true, CreatedAt: userAt}
}

func sameUser(t *testing.T, got, want store.User) {
	t.Helper()
	if got.CreatedAt.Location() != time.UTC || (!got.LockedUntil.IsZero() && got.LockedUntil.Location() != time.UTC) {
		t.Errorf("user %s: times not in UTC: %v, %v", want.ID, got.CreatedAt, got.LockedUntil)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("user:\n got %+v\nwant %+v", got, want)
	}
}

func mustUser(t *testing.T, st store.Store, id string) store.User {
	t.Helper()
	u, err := st.GetUser(context.Background(), id)
	if err != nil {
		t.Fatalf("GetUser(%s): %v", id, err)
	}
	return u
}

// testUsers: users are added once per id and per username, found by
// either, listed by username, and updated without touching their
// counters.
func testUsers(t *testing.T, st store.Store) {
	ctx := context.Background()
	a := newUser("0190a7c2-0000-7000-8000-00000000000a", "zoe.nurse", "nurse")
	b := newUser("0190a7c2-0000-7000-8000-00000000000b", "adam.md", "physician")
	b.MustChangePassword, b.Disabled = false, true
	b.Recipients = []string{"Practitioner/adam", "CareTeam/icu"}
	for _, u := range []store.User{a, b} {
		if err := st.AddUser(ctx, u); err != nil {
			t.Fatalf("AddUser(%s): %v", u.Username, err)
		}
	}
	for _, dup := range []store.User{
		newUser("0190a7c2-0000-7000-8000-0000000000ff", a.Username, "physician"), // same username
		newUser(a.ID, "someone.else", "physician"),                               // same id
	} {
		if err := st.AddUser(ctx, dup); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("AddUser(%s, %s): %v, want ErrConflict", dup.ID, dup.Username, err)
		}
	}
	sameUser(t, mustUser(t, st, a.ID), a) // untouched by the conflicts
	got, err := st.GetUserByUsername(ctx, b.Username)
	if err != nil {
		t.Fatal(err)
	}
	sameUser(t, got, b)
	if _, err := st.GetUser(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := st.GetUserByUsername(ctx, "Zoe.Nurse"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUserByUsername is not exact: %v, want ErrNotFound", err)
	}
	list, err := st.ListUsers(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListUsers = %+v, %v; want 2", list, err)
	}
	sameUser(t, list[0], b)
	sameUser(t, list[1], a)

	// Times are kept to the microsecond, in UTC.
	c := newUser("0190a7c2-0000-7000-8000-00000000000c", "clerk", "unit-clerk")
	c.CreatedAt = time.Date(2026, 11, 3, 20, 0, 0, 987654321, time.FixedZone("UTC+5:30", 5*3600+1800))
	c.LockedUntil = c.CreatedAt.Add(time.Hour)
	c.FailedLogins, c.TOTPStep = 3, 59000000
	if err := st.AddUser(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.CreatedAt = time.Date(2026, 11, 3, 14, 30, 0, 987654000, time.UTC)
	c.LockedUntil = c.CreatedAt.Add(time.Hour)
	sameUser(t, mustUser(t, st, c.ID), c)

	// UpdateUser changes role, credentials and flags, not the rest.
	up := c
	up.Username, up.CreatedAt = "renamed", userAt
	up.Role, up.PasswordHash, up.TOTPSecret = "physician", "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3", []byte("new sealed secret")
	up.MustChangePassword, up.Disabled = false, true
	up.FailedLogins, up.LockedUntil, up.TOTPStep = 0, time.Time{}, 1
	up.Recipients = []string{"Practitioner/c", "CareTeam/ward-3"}
	if err := st.UpdateUser(ctx, up); err != nil {
		t.Fatal(err)
	}
	want := c
	want.Role, want.PasswordHash, want.TOTPSecret = up.Role, up.PasswordHash, up.TOTPSecret
	want.MustChangePassword, want.Disabled = false, true
	want.Recipients = up.Recipients
	sameUser(t, mustUser(t, st, c.ID), want)
	// An update without recipients clears them.
	up.Recipients = nil
	if err := st.UpdateUser(ctx, up); err != nil {
		t.Fatal(err)
	}
	want.Recipients = nil
	sameUser(t, mustUser(t, st, c.ID), want)
	if err := st.UpdateUser(ctx, newUser("unknown", "x", "nurse")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateUser of an unknown id: %v, want ErrNotFound", err)
	}
}

// testLoginFailures: the lockAfter-th failure in a row locks until
// now+lockFor and starts the count again; a reset lifts the lock.
func testLoginFailures(t *testing.T, st store.Store) {
	ctx := context.Background()
	u := newUser("0190a7c2-0000-7000-8000-000000000001", "lock.me", "nurse")
	if err := st.AddUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	const lockAfter, lockFor = 3, 15 * time.Minute
	now := userAt
	for i, want := range []struct {
		locked bool
		count  int
		until  time.Time
	}{
		{false, 1, time.Time{}},
		{false, 2, time.Time{}},
		{true, 0, now.Add(2*time.Second + lockFor)},
	} {
		at := now.Add(time.Duration(i) * time.Second)
		locked, err := st.RecordLoginFailure(ctx, u.ID, at, lockAfter, lockFor)
		if err != nil || locked != want.locked {
			t.Fatalf("failure %d: locked = %v, %v; want %v", i+1, locked, err, want.locked)
		}
		got := mustUser(t, st, u.ID)
		if got.FailedLogins != want.count || !got.LockedUntil.Equal(want.until) {
			t.Fatalf("after failure %d: count %d, locked until %v; want %d, %v", i+1, got.FailedLogins, got.LockedUntil, want.count, want.until)
		}
	}
	// After the lock has ended, a failure counts again from one.
	after := now.Add(time.Hour)
	if locked, err := st.RecordLoginFailure(ctx, u.ID, after, lockAfter, lockFor); err != nil || locked {
		t.Fatalf("failure after the lock: locked = %v, %v; want false", locked, err)
	}
	if got := mustUser(t, st, u.ID); got.FailedLogins != 1 {
		t.Fatalf("count after the lock = %d, want 1", got.FailedLogins)
	}
	if err := st.ResetLoginFailures(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if got := mustUser(t, st, u.ID); got.FailedLogins != 0 || !got.LockedUntil.IsZero() {
		t.Fatalf("after a reset: count %d, locked until %v; want 0, never", got.FailedLogins, got.LockedUntil)
	}
	if _, err := st.RecordLoginFailure(ctx, "unknown", now, lockAfter, lockFor); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordLoginFailure of an unknown user: %v, want ErrNotFound", err)
	}
	if err := st.ResetLoginFailures(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ResetLoginFailures of an unknown user: %v, want ErrNotFound", err)
	}
}

// testConcurrentLoginFailures: failures at once are each counted: the
// first lockAfter-1 of them find the user unlocked, the lockAfter-th
// locks it and the rest find it locked (counting on: Login records no
// failure while a user is locked, but the store does not refuse one).
func testConcurrentLoginFailures(t *testing.T, st store.Store) {
	ctx := context.Background()
	u := newUser("0190a7c2-0000-7000-8000-000000000002", "guessed", "nurse")
	if err := st.AddUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	const workers, each, lockAfter = 8, 6, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	unlocked := 0
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				at := userAt.Add(time.Duration(w*each+i) * time.Millisecond)
				locked, err := st.RecordLoginFailure(ctx, u.ID, at, lockAfter, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if !locked {
					mu.Lock()
					unlocked++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := mustUser(t, st, u.ID)
	const total = workers * each
	if got.FailedLogins != total%lockAfter || got.LockedUntil.IsZero() || unlocked != lockAfter-1 {
		t.Fatalf("after %d failures at once: count %d, locked until %v, %d found it unlocked; want count %d, a lock, %d unlocked",
			total, got.FailedLogins, got.LockedUntil, unlocked, total%lockAfter, lockAfter-1)
	}
}

// testTOTPSteps: each time step is used once, and never one before the
// last used; logins with one code at once use it once.
func testTOTPSteps(t *testing.T, st store.Store) {
	ctx := context.Background()
	u := newUser("0190a7c2-0000-7000-8000-000000000003", "mfa", "physician")
	if err := st.AddUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		step  int64
		fresh bool
	}{{59000000, true}, {59000000, false}, {58999999, false}, {59000001, true}} {
		fresh, err := st.UseTOTPStep(ctx, u.ID, step.step)
		if err != nil || fresh != step.fresh {
			t.Fatalf("UseTOTPStep(%d) = %v, %v; want %v", step.step, fresh, err, step.fresh)
		}
	}
	if got := mustUser(t, st, u.ID); got.TOTPStep != 59000001 {
		t.Fatalf("TOTPStep = %d, want 59000001", got.TOTPStep)
	}
	if fresh, err := st.UseTOTPStep(ctx, "unknown", 1); err != nil || fresh {
		t.Fatalf("UseTOTPStep of an unknown user = %v, %v; want false", fresh, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := st.UseTOTPStep(ctx, u.ID, 59000002)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fresh != 1 {
		t.Fatalf("one step used at once by 8 logins: fresh %d times, want 1", fresh)
	}
}

func tokenHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func sameSession(t *testing.T, got, want store.Session) {
	t.Helper()
	if !bytes.Equal(got.TokenHash, want.TokenHash) {
		t.Errorf("session of user %s: token hash %x, want %x", want.UserID, got.TokenHash, want.TokenHash)
	}
	got.TokenHash, want.TokenHash = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("session:\n got %+v\nwant %+v", got, want)
	}
}

// testSessions: a session is found by its token hash, touched forward
// only, ended once (alone or with its user's others), and forgotten after
// its absolute end.
func testSessions(t *testing.T, st store.Store) {
	ctx := context.Background()
	a := newUser("0190a7c2-0000-7000-8000-000000000004", "sess.a", "nurse")
	b := newUser("0190a7c2-0000-7000-8000-000000000005", "sess.b", "nurse")
	for _, u := range []store.User{a, b} {
		if err := st.AddUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	at := userAt
	mk := func(token, user string, created time.Time) store.Session {
		return store.Session{TokenHash: tokenHash(token), UserID: user, CreatedAt: created, LastSeen: created, ExpiresAt: created.Add(12 * time.Hour)}
	}
	s1 := mk("t1", a.ID, at)
	if err := st.CreateSession(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSession(ctx, mk("t1", b.ID, at)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateSession of an existing token hash: %v, want ErrConflict", err)
	}
	got, err := st.GetSession(ctx, tokenHash("t1"))
	if err != nil {
		t.Fatal(err)
	}
	sameSession(t, got, s1)
	if _, err := st.GetSession(ctx, tokenHash("unknown")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSession of an unknown hash: %v, want ErrNotFound", err)
	}

	for _, step := range []struct {
		name    string
		at      time.Time
		touched bool
		seen    time.Time
	}{
		{"forward", at.Add(time.Minute), true, at.Add(time.Minute)},
		{"back", at.Add(30 * time.Second), false, at.Add(time.Minute)},
		{"same time", at.Add(time.Minute), false, at.Add(time.Minute)},
		{"a microsecond on", at.Add(time.Minute + time.Microsecond), true, at.Add(time.Minute + time.Microsecond)},
	} {
		touched, err := st.TouchSession(ctx, tokenHash("t1"), step.at)
		if err != nil || touched != step.touched {
			t.Fatalf("%s: TouchSession = %v, %v; want %v", step.name, touched, err, step.touched)
		}
		if got, err := st.GetSession(ctx, tokenHash("t1")); err != nil || !got.LastSeen.Equal(step.seen) || got.LastSeen.Location() != time.UTC {
			t.Fatalf("%s: LastSeen = %v, %v; want %v", step.name, got.LastSeen, err, step.seen)
		}
	}
	if touched, err := st.TouchSession(ctx, tokenHash("unknown"), at); err != nil || touched {
		t.Fatalf("TouchSession of an unknown hash = %v, %v; want false", touched, err)
	}

	end := at.Add(2 * time.Minute)
	if ended, err := st.EndSession(ctx, tokenHash("t1"), end); err != nil || !ended {
		t.Fatalf("EndSession = %v, %v; want true", ended, err)
	}
	if ended, err := st.EndSession(ctx, tokenHash("t1"), end.Add(time.Second)); err != nil || ended {
		t.Fatalf("EndSession again = %v, %v; want false", ended, err)
	}
	if ended, err := st.EndSession(ctx, tokenHash("unknown"), end); err != nil || ended {
		t.Fatalf("EndSession of an unknown hash = %v, %v; want false", ended, err)
	}
	if touched, err := st.TouchSession(ctx, tokenHash("t1"), end.Add(time.Minute)); err != nil || touched {
		t.Fatalf("TouchSession of an ended session = %v, %v; want false", touched, err)
	}
	got, err = st.GetSession(ctx, tokenHash("t1"))
	if err != nil || !got.EndedAt.Equal(end) || got.EndedAt.Location() != time.UTC {
		t.Fatalf("ended session = %+v, %v; want ended at %v", got, err, end)
	}

	// EndUserSessions ends the user's live sessions only.
	for _, s := range []store.Session{mk("a2", a.ID, at), mk("a3", a.ID, at), mk("b1", b.ID, at)} {
		if err := st.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.EndUserSessions(ctx, a.ID, end); err != nil || n != 2 {
		t.Fatalf("EndUserSessions(a) = %d, %v; want 2 (a2, a3; t1 had ended)", n, err)
	}
	if n, err := st.EndUserSessions(ctx, a.ID, end); err != nil || n != 0 {
		t.Fatalf("EndUserSessions(a) again = %d, %v; want 0", n, err)
	}
	if got, err := st.GetSession(ctx, tokenHash("b1")); err != nil || !got.EndedAt.IsZero() {
		t.Fatalf("b's session after ending a's = %+v, %v; want it live", got, err)
	}

	// A session created after another's absolute end forgets that one.
	later := mk("late", b.ID, at.Add(12*time.Hour+time.Microsecond))
	if err := st.CreateSession(ctx, later); err != nil {
		t.Fatal(err)
	}
	for i, tok := range []string{"t1", "a2", "a3", "b1"} {
		if _, err := st.GetSession(ctx, tokenHash(tok)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %d (%s) after its absolute end: %v, want ErrNotFound", i, tok, err)
		}
	}
	if _, err := st.GetSession(ctx, tokenHash("late")); err != nil {
		t.Errorf("the new session: %v", err)
	}
}

// testBreakGlass: a live session records a break-glass (time and sealed
// reason) and a later one replaces it; an ended or unknown session does
// not; a new session has none.
func testBreakGlass(t *testing.T, st store.Store) {
	ctx := context.Background()
	u := newUser("0190a7c2-0000-7000-8000-000000000006", "glass", "physician")
	if err := st.AddUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	s := store.Session{TokenHash: tokenHash("bg"), UserID: u.ID, CreatedAt: userAt, LastSeen: userAt, ExpiresAt: userAt.Add(12 * time.Hour)}
	if err := st.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetSession(ctx, s.TokenHash)
	if err != nil || !got.BreakGlassUntil.IsZero() || got.BreakGlassReason != nil {
		t.Fatalf("a new session = %+v, %v; want no break-glass", got, err)
	}
	for i, bg := range []struct {
		until  time.Time
		reason []byte
	}{
		{userAt.Add(30*time.Minute + 123456*time.Nanosecond), []byte("sealed reason one")},
		{userAt.Add(4 * time.Hour), []byte("sealed reason two")},
	} {
		set, err := st.SetBreakGlass(ctx, s.TokenHash, bg.until, bg.reason)
		if err != nil || !set {
			t.Fatalf("SetBreakGlass %d = %v, %v; want true", i+1, set, err)
		}
		want := s
		want.BreakGlassUntil, want.BreakGlassReason = bg.until.Truncate(time.Microsecond), bg.reason
		got, err := st.GetSession(ctx, s.TokenHash)
		if err != nil {
			t.Fatal(err)
		}
		if got.BreakGlassUntil.Location() != time.UTC {
			t.Errorf("BreakGlassUntil %v not in UTC", got.BreakGlassUntil)
		}
		sameSession(t, got, want)
	}
	if set, err := st.SetBreakGlass(ctx, tokenHash("unknown"), userAt, []byte("x")); err != nil || set {
		t.Fatalf("SetBreakGlass of an unknown session = %v, %v; want false", set, err)
	}
	if _, err := st.EndSession(ctx, s.TokenHash, userAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if set, err := st.SetBreakGlass(ctx, s.TokenHash, userAt.Add(5*time.Hour), []byte("x")); err != nil || set {
		t.Fatalf("SetBreakGlass of an ended session = %v, %v; want false", set, err)
	}
	if got, err := st.GetSession(ctx, s.TokenHash); err != nil || !got.BreakGlassUntil.Equal(userAt.Add(4*time.Hour)) {
		t.Fatalf("after refusing an ended session: %+v, %v; want the earlier break-glass", got, err)
	}
}
