// Package accesstest has in-memory fakes of what package access consumes,
// for the tests of access and of the packages that sit on it: a UserStore
// that behaves as store.Users does, and a clock that tests move.
package accesstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/carebridge/carebridge/access"
)

// Users is an in-memory access.UserStore. The zero value is ready to use.
type Users struct {
	mu       sync.Mutex
	users    map[string]access.User // by id
	steps    map[string]int64       // last TOTP step used, by user id
	sessions map[string]access.Session
	touches  int
}

func (s *Users) init() {
	if s.users == nil {
		s.users, s.steps, s.sessions = map[string]access.User{}, map[string]int64{}, map[string]access.Session{}
	}
}

// AddUser implements access.UserStore.
func (s *Users) AddUser(_ context.Context, u access.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	for _, o := range s.users {
		if o.ID == u.ID || o.Username == u.Username {
			return fmt.Errorf("adding %s: %w", u.Username, access.ErrUserExists)
		}
	}
	s.users[u.ID] = u
	return nil
}

// GetUser implements access.UserStore.
func (s *Users) GetUser(_ context.Context, id string) (access.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	u, ok := s.users[id]
	if !ok {
		return u, fmt.Errorf("user %s: %w", id, access.ErrUnknownUser)
	}
	return u, nil
}

// GetUserByUsername implements access.UserStore.
func (s *Users) GetUserByUsername(_ context.Context, username string) (access.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	for _, u := range s.users {
		if u.Username == username {
			return u, nil
		}
	}
	return access.User{}, access.ErrUnknownUser
}

// ListUsers implements access.UserStore.
func (s *Users) ListUsers(context.Context) ([]access.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []access.User
	for _, u := range s.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Username < out[j].Username })
	return out, nil
}

// UpdateUser implements access.UserStore: the counters stay as they are.
func (s *Users) UpdateUser(_ context.Context, u access.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	old, ok := s.users[u.ID]
	if !ok {
		return access.ErrUnknownUser
	}
	old.Role, old.PasswordHash, old.TOTPSecret = u.Role, u.PasswordHash, u.TOTPSecret
	old.MustChangePassword, old.Disabled = u.MustChangePassword, u.Disabled
	old.Recipients = slices.Clone(u.Recipients)
	s.users[u.ID] = old
	return nil
}

// RecordLoginFailure implements access.UserStore.
func (s *Users) RecordLoginFailure(_ context.Context, id string, now time.Time, lockAfter int, lockFor time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	u, ok := s.users[id]
	if !ok {
		return false, access.ErrUnknownUser
	}
	u.FailedLogins++
	if u.FailedLogins >= lockAfter {
		u.FailedLogins, u.LockedUntil = 0, now.Add(lockFor)
	}
	s.users[id] = u
	return now.Before(u.LockedUntil), nil
}

// ResetLoginFailures implements access.UserStore.
func (s *Users) ResetLoginFailures(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	u, ok := s.users[id]
	if !ok {
		return access.ErrUnknownUser
	}
	u.FailedLogins, u.LockedUntil = 0, time.Time{}
	s.users[id] = u
	return nil
}

// UseTOTPStep implements access.UserStore.
func (s *Users) UseTOTPStep(_ context.Context, id string, step int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if _, ok := s.users[id]; !ok || s.steps[id] >= step {
		return false, nil
	}
	s.steps[id] = step
	return true, nil
}

// CreateSession implements access.UserStore.
func (s *Users) CreateSession(_ context.Context, ss access.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	for k, o := range s.sessions {
		if o.ExpiresAt.Before(ss.CreatedAt) {
			delete(s.sessions, k)
		}
	}
	if _, ok := s.sessions[string(ss.TokenHash)]; ok {
		return errors.New("a session with this token hash exists")
	}
	ss.TokenHash = bytes.Clone(ss.TokenHash)
	s.sessions[string(ss.TokenHash)] = ss
	return nil
}

// GetSession implements access.UserStore.
func (s *Users) GetSession(_ context.Context, hash []byte) (access.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	ss, ok := s.sessions[string(hash)]
	if !ok {
		return ss, access.ErrUnknownSession
	}
	return ss, nil
}

// TouchSession implements access.UserStore.
func (s *Users) TouchSession(_ context.Context, hash []byte, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	ss, ok := s.sessions[string(hash)]
	if !ok || !ss.EndedAt.IsZero() || !ss.LastSeen.Before(now) {
		return false, nil
	}
	ss.LastSeen = now
	s.sessions[string(hash)] = ss
	s.touches++
	return true, nil
}

// EndSession implements access.UserStore.
func (s *Users) EndSession(_ context.Context, hash []byte, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	ss, ok := s.sessions[string(hash)]
	if !ok || !ss.EndedAt.IsZero() {
		return false, nil
	}
	ss.EndedAt = now
	s.sessions[string(hash)] = ss
	return true, nil
}

// SetBreakGlass implements access.UserStore.
func (s *Users) SetBreakGlass(_ context.Context, hash []byte, until time.Time, sealedReason []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	ss, ok := s.sessions[string(hash)]
	if !ok || !ss.EndedAt.IsZero() {
		return false, nil
	}
	ss.BreakGlassUntil, ss.BreakGlassReason = until, bytes.Clone(sealedReason)
	s.sessions[string(hash)] = ss
	return true, nil
}

// EndUserSessions implements access.UserStore.
func (s *Users) EndUserSessions(_ context.Context, id string, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	n := 0
	for k, ss := range s.sessions {
		if ss.UserID == id && ss.EndedAt.IsZero() {
			ss.EndedAt = now
			s.sessions[k] = ss
			n++
		}
	}
	return n, nil
}

// TouchCount is how many times TouchSession moved a session on.
func (s *Users) TouchCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.touches
}

// Clock is a time that tests set and move. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var _ access.UserStore = (*Users)(nil)
