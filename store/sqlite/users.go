package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

const userColumns = `id, username, role, password_hash, totp_secret, totp_step, must_change_password, disabled,
	failed_logins, locked_until, created_at, recipients`

// recipientsJSON is a user's recipients as stored: a JSON array.
func recipientsJSON(rs []string) string {
	b, _ := json.Marshal(nonNilStrings(rs)) // strings: it cannot fail
	return string(b)
}

// AddUser stores a user. See store.Users.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	if s.write == nil {
		return fmt.Errorf("adding user %s: %w", u.ID, ErrReadOnly)
	}
	res, err := s.write.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`,
		u.ID, u.Username, u.Role, u.PasswordHash, nonNil(u.TOTPSecret), u.TOTPStep, u.MustChangePassword, u.Disabled,
		u.FailedLogins, microsOrNull(u.LockedUntil), u.CreatedAt.UnixMicro(), recipientsJSON(u.Recipients))
	if err != nil {
		return fmt.Errorf("adding user %s: %w", u.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("adding user %s: %w", u.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("adding user %s: %w", u.ID, store.ErrConflict)
	}
	return nil
}

func scanUser(sc scanner) (store.User, error) {
	var u store.User
	var locked sql.NullInt64
	var created int64
	var recipients string
	if err := sc.Scan(&u.ID, &u.Username, &u.Role, &u.PasswordHash, &u.TOTPSecret, &u.TOTPStep, &u.MustChangePassword,
		&u.Disabled, &u.FailedLogins, &locked, &created, &recipients); err != nil {
		return u, err
	}
	if err := json.Unmarshal([]byte(recipients), &u.Recipients); err != nil {
		return u, fmt.Errorf("the recipients of user %s: %w", u.ID, err)
	}
	if len(u.Recipients) == 0 {
		u.Recipients = nil
	}
	if len(u.TOTPSecret) == 0 {
		u.TOTPSecret = nil
	}
	if locked.Valid {
		u.LockedUntil = time.UnixMicro(locked.Int64).UTC()
	}
	u.CreatedAt = time.UnixMicro(created).UTC()
	return u, nil
}

// GetUser returns one user. See store.Users.
func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if isNoRows(err) {
		return u, fmt.Errorf("reading user %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("reading user %s: %w", id, err)
	}
	return u, nil
}

// GetUserByUsername returns one user. See store.Users.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (store.User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if isNoRows(err) {
		return u, fmt.Errorf("reading a user by username: %w", store.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("reading a user by username: %w", err)
	}
	return u, nil
}

// ListUsers returns every user, by username. See store.Users.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.query(ctx, `SELECT `+userColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("listing users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	return out, nil
}

// execOne runs one write statement and fails with ErrNotFound when it
// changed no row.
func (s *Store) execOne(ctx context.Context, what, q string, args ...any) error {
	if s.write == nil {
		return fmt.Errorf("%s: %w", what, ErrReadOnly)
	}
	res, err := s.write.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// UpdateUser stores a user's role, credentials and flags. See store.Users.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	return s.execOne(ctx, "updating user "+u.ID, `UPDATE users SET role = ?, password_hash = ?, totp_secret = ?,
		must_change_password = ?, disabled = ?, recipients = ? WHERE id = ?`,
		u.Role, u.PasswordHash, nonNil(u.TOTPSecret), u.MustChangePassword, u.Disabled, recipientsJSON(u.Recipients), u.ID)
}

// RecordLoginFailure counts a failed login in one statement, which the
// single writer serialises. See store.Users.
func (s *Store) RecordLoginFailure(ctx context.Context, userID string, now time.Time, lockAfter int, lockFor time.Duration) (bool, error) {
	if s.write == nil {
		return false, fmt.Errorf("counting a failed login of user %s: %w", userID, ErrReadOnly)
	}
	// Every expression of SET reads the row as it was before the update.
	var locked sql.NullInt64
	err := s.write.QueryRowContext(ctx, `UPDATE users SET
		failed_logins = CASE WHEN failed_logins + 1 >= ? THEN 0 ELSE failed_logins + 1 END,
		locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END
		WHERE id = ? RETURNING locked_until`, lockAfter, lockAfter, now.Add(lockFor).UnixMicro(), userID).Scan(&locked)
	if isNoRows(err) {
		return false, fmt.Errorf("counting a failed login of user %s: %w", userID, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("counting a failed login of user %s: %w", userID, err)
	}
	return locked.Valid && locked.Int64 > now.UnixMicro(), nil
}

// ResetLoginFailures zeroes the count and lifts the lock. See store.Users.
func (s *Store) ResetLoginFailures(ctx context.Context, userID string) error {
	return s.execOne(ctx, "resetting the failed logins of user "+userID,
		`UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?`, userID)
}

// UseTOTPStep spends a TOTP time step. See store.Users.
func (s *Store) UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	if s.write == nil {
		return false, fmt.Errorf("spending a TOTP step of user %s: %w", userID, ErrReadOnly)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE users SET totp_step = ? WHERE id = ? AND totp_step < ?`, step, userID, step)
	if err != nil {
		return false, fmt.Errorf("spending a TOTP step of user %s: %w", userID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("spending a TOTP step of user %s: %w", userID, err)
	}
	return n == 1, nil
}

const sessionColumns = `token_hash, user_id, created_at, last_seen, expires_at, ended_at, break_glass_until, break_glass_reason`

// CreateSession stores a session and forgets those past their absolute
// end, in one transaction. See store.Users.
func (s *Store) CreateSession(ctx context.Context, ss store.Session) (err error) {
	if s.write == nil {
		return fmt.Errorf("creating a session of user %s: %w", ss.UserID, ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating a session of user %s: %w", ss.UserID, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `DELETE FROM user_session WHERE expires_at < ?`, ss.CreatedAt.UnixMicro()); err != nil {
		return fmt.Errorf("forgetting expired sessions: %w", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO user_session (`+sessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		nonNil(ss.TokenHash), ss.UserID, ss.CreatedAt.UnixMicro(), ss.LastSeen.UnixMicro(), ss.ExpiresAt.UnixMicro(), microsOrNull(ss.EndedAt),
		microsOrNull(ss.BreakGlassUntil), bytesOrNull(ss.BreakGlassReason))
	if err != nil {
		return fmt.Errorf("creating a session of user %s: %w", ss.UserID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("creating a session of user %s: %w", ss.UserID, err)
	}
	if n == 0 {
		return fmt.Errorf("creating a session of user %s: %w", ss.UserID, store.ErrConflict)
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("creating a session of user %s: %w", ss.UserID, err)
	}
	return nil
}

// GetSession returns the session of a token hash. See store.Users.
func (s *Store) GetSession(ctx context.Context, tokenHash []byte) (store.Session, error) {
	var ss store.Session
	var created, seen, expires int64
	var ended, breakGlass sql.NullInt64
	err := s.queryRow(ctx, `SELECT `+sessionColumns+` FROM user_session WHERE token_hash = ?`, nonNil(tokenHash)).
		Scan(&ss.TokenHash, &ss.UserID, &created, &seen, &expires, &ended, &breakGlass, &ss.BreakGlassReason)
	if isNoRows(err) {
		return ss, fmt.Errorf("reading a session: %w", store.ErrNotFound)
	}
	if err != nil {
		return ss, fmt.Errorf("reading a session: %w", err)
	}
	ss.CreatedAt = time.UnixMicro(created).UTC()
	ss.LastSeen = time.UnixMicro(seen).UTC()
	ss.ExpiresAt = time.UnixMicro(expires).UTC()
	if ended.Valid {
		ss.EndedAt = time.UnixMicro(ended.Int64).UTC()
	}
	if breakGlass.Valid {
		ss.BreakGlassUntil = time.UnixMicro(breakGlass.Int64).UTC()
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

// changed runs one write statement and says how many rows it changed.
func (s *Store) changed(ctx context.Context, what, q string, args ...any) (int, error) {
	if s.write == nil {
		return 0, fmt.Errorf("%s: %w", what, ErrReadOnly)
	}
	res, err := s.write.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return int(n), nil
}

// TouchSession moves a session's LastSeen forward. See store.Users.
func (s *Store) TouchSession(ctx context.Context, tokenHash []byte, now time.Time) (bool, error) {
	n, err := s.changed(ctx, "touching a session", `UPDATE user_session SET last_seen = ?
		WHERE token_hash = ? AND ended_at IS NULL AND last_seen < ?`, now.UnixMicro(), nonNil(tokenHash), now.UnixMicro())
	return n == 1, err
}

// EndSession ends a session. See store.Users.
func (s *Store) EndSession(ctx context.Context, tokenHash []byte, now time.Time) (bool, error) {
	n, err := s.changed(ctx, "ending a session", `UPDATE user_session SET ended_at = ? WHERE token_hash = ? AND ended_at IS NULL`,
		now.UnixMicro(), nonNil(tokenHash))
	return n == 1, err
}

// SetBreakGlass records a break-glass on a live session. See store.Users.
func (s *Store) SetBreakGlass(ctx context.Context, tokenHash []byte, until time.Time, sealedReason []byte) (bool, error) {
	n, err := s.changed(ctx, "breaking the glass in a session", `UPDATE user_session SET break_glass_until = ?, break_glass_reason = ?
		WHERE token_hash = ? AND ended_at IS NULL`, until.UnixMicro(), bytesOrNull(sealedReason), nonNil(tokenHash))
	return n == 1, err
}

// EndUserSessions ends a user's sessions. See store.Users.
func (s *Store) EndUserSessions(ctx context.Context, userID string, now time.Time) (int, error) {
	return s.changed(ctx, "ending the sessions of user "+userID, `UPDATE user_session SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL`,
		now.UnixMicro(), userID)
}
