package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

const userColumns = `id, username, role, password_hash, totp_secret, totp_step, must_change_password, disabled,
	failed_logins, locked_until, created_at, recipients`

// AddUser stores a user. See store.Users.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT DO NOTHING`,
		u.ID, u.Username, u.Role, u.PasswordHash, nonNil(u.TOTPSecret), u.TOTPStep, u.MustChangePassword, u.Disabled,
		u.FailedLogins, timeOrNull(u.LockedUntil), u.CreatedAt, nonNilStrings(u.Recipients))
	if err != nil {
		return fmt.Errorf("adding user %s: %w", u.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("adding user %s: %w", u.ID, store.ErrConflict)
	}
	return nil
}

func scanUser(row pgx.CollectableRow) (store.User, error) {
	var u store.User
	var locked *time.Time
	err := row.Scan(&u.ID, &u.Username, &u.Role, &u.PasswordHash, &u.TOTPSecret, &u.TOTPStep, &u.MustChangePassword,
		&u.Disabled, &u.FailedLogins, &locked, &u.CreatedAt, &u.Recipients)
	if len(u.TOTPSecret) == 0 {
		u.TOTPSecret = nil
	}
	if len(u.Recipients) == 0 {
		u.Recipients = nil
	}
	if locked != nil {
		u.LockedUntil = locked.UTC()
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

func (s *Store) oneUser(ctx context.Context, what, q string, arg string) (store.User, error) {
	rows, err := s.pool.Query(ctx, q, arg)
	if err != nil {
		return store.User{}, fmt.Errorf("%s: %w", what, err)
	}
	u, err := pgx.CollectExactlyOneRow(rows, scanUser)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("%s: %w", what, err)
	}
	return u, nil
}

// GetUser returns one user. See store.Users.
func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	return s.oneUser(ctx, "reading user "+id, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
}

// GetUserByUsername returns one user. See store.Users.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (store.User, error) {
	return s.oneUser(ctx, "reading a user by username", `SELECT `+userColumns+` FROM users WHERE username = $1`, username)
}

// ListUsers returns every user, by username. See store.Users.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	return out, nil
}

// UpdateUser stores a user's role, credentials and flags. See store.Users.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET role = $1, password_hash = $2, totp_secret = $3,
		must_change_password = $4, disabled = $5, recipients = $6 WHERE id = $7`,
		u.Role, u.PasswordHash, nonNil(u.TOTPSecret), u.MustChangePassword, u.Disabled, nonNilStrings(u.Recipients), u.ID)
	if err != nil {
		return fmt.Errorf("updating user %s: %w", u.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("updating user %s: %w", u.ID, store.ErrNotFound)
	}
	return nil
}

// RecordLoginFailure counts a failed login in one statement: concurrent
// failures queue on the user's row and each sees the one before. See
// store.Users.
func (s *Store) RecordLoginFailure(ctx context.Context, userID string, now time.Time, lockAfter int, lockFor time.Duration) (bool, error) {
	// Every expression of SET reads the row as it was before the update.
	var locked *time.Time
	err := s.pool.QueryRow(ctx, `UPDATE users SET
		failed_logins = CASE WHEN failed_logins + 1 >= $1 THEN 0 ELSE failed_logins + 1 END,
		locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END
		WHERE id = $3 RETURNING locked_until`, lockAfter, now.Add(lockFor), userID).Scan(&locked)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("counting a failed login of user %s: %w", userID, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("counting a failed login of user %s: %w", userID, err)
	}
	return locked != nil && locked.After(now), nil
}

// ResetLoginFailures zeroes the count and lifts the lock. See store.Users.
func (s *Store) ResetLoginFailures(ctx context.Context, userID string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1`, userID)
	if err != nil {
		return fmt.Errorf("resetting the failed logins of user %s: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("resetting the failed logins of user %s: %w", userID, store.ErrNotFound)
	}
	return nil
}

// UseTOTPStep spends a TOTP time step; two logins with one code queue on
// the user's row, and the second finds the step spent. See store.Users.
func (s *Store) UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET totp_step = $1 WHERE id = $2 AND totp_step < $1`, step, userID)
	if err != nil {
		return false, fmt.Errorf("spending a TOTP step of user %s: %w", userID, err)
	}
	return tag.RowsAffected() == 1, nil
}

const sessionColumns = `token_hash, user_id, created_at, last_seen, expires_at, ended_at, break_glass_until, break_glass_reason`

// CreateSession stores a session and forgets those past their absolute
// end, in one transaction. See store.Users.
func (s *Store) CreateSession(ctx context.Context, ss store.Session) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO user_session (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			nonNil(ss.TokenHash), ss.UserID, ss.CreatedAt, ss.LastSeen, ss.ExpiresAt, timeOrNull(ss.EndedAt),
			timeOrNull(ss.BreakGlassUntil), bytesOrNull(ss.BreakGlassReason))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrConflict
		}
		// Rows another transaction holds are left for the next time, so
		// that concurrent sign-ins never wait for each other here.
		if _, err := tx.Exec(ctx, `DELETE FROM user_session WHERE token_hash IN (
			SELECT token_hash FROM user_session WHERE expires_at < $1 FOR UPDATE SKIP LOCKED)`, ss.CreatedAt); err != nil {
			return fmt.Errorf("forgetting expired sessions: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("creating a session of user %s: %w", ss.UserID, err)
	}
	return nil
}

// GetSession returns the session of a token hash. See store.Users.
func (s *Store) GetSession(ctx context.Context, tokenHash []byte) (store.Session, error) {
	var ss store.Session
	var ended, breakGlass *time.Time
	err := s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM user_session WHERE token_hash = $1`, nonNil(tokenHash)).
		Scan(&ss.TokenHash, &ss.UserID, &ss.CreatedAt, &ss.LastSeen, &ss.ExpiresAt, &ended, &breakGlass, &ss.BreakGlassReason)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Session{}, fmt.Errorf("reading a session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("reading a session: %w", err)
	}
	ss.CreatedAt, ss.LastSeen, ss.ExpiresAt = ss.CreatedAt.UTC(), ss.LastSeen.UTC(), ss.ExpiresAt.UTC()
	if ended != nil {
		ss.EndedAt = ended.UTC()
	}
	if breakGlass != nil {
		ss.BreakGlassUntil = breakGlass.UTC()
	}
	if len(ss.BreakGlassReason) == 0 {
		ss.BreakGlassReason = nil
	}
	return ss, nil
}

// bytesOrNull is b, or NULL when it is empty.
func bytesOrNull(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// TouchSession moves a session's LastSeen forward. See store.Users.
func (s *Store) TouchSession(ctx context.Context, tokenHash []byte, now time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE user_session SET last_seen = $1 WHERE token_hash = $2 AND ended_at IS NULL AND last_seen < $1`,
		now, nonNil(tokenHash))
	if err != nil {
		return false, fmt.Errorf("touching a session: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// EndSession ends a session. See store.Users.
func (s *Store) EndSession(ctx context.Context, tokenHash []byte, now time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE user_session SET ended_at = $1 WHERE token_hash = $2 AND ended_at IS NULL`, now, nonNil(tokenHash))
	if err != nil {
		return false, fmt.Errorf("ending a session: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SetBreakGlass records a break-glass on a live session. See store.Users.
func (s *Store) SetBreakGlass(ctx context.Context, tokenHash []byte, until time.Time, sealedReason []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE user_session SET break_glass_until = $1, break_glass_reason = $2
		WHERE token_hash = $3 AND ended_at IS NULL`, until, bytesOrNull(sealedReason), nonNil(tokenHash))
	if err != nil {
		return false, fmt.Errorf("breaking the glass in a session: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// EndUserSessions ends a user's sessions. See store.Users.
func (s *Store) EndUserSessions(ctx context.Context, userID string, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE user_session SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL`, now, userID)
	if err != nil {
		return 0, fmt.Errorf("ending the sessions of user %s: %w", userID, err)
	}
	return int(tag.RowsAffected()), nil
}
