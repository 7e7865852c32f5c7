-- users are the clinicians and administrators who sign in ("user" is a
-- reserved word in PostgreSQL, so both backends say users). password_hash
-- is an argon2id PHC string; totp_secret is sealed (package secure, with
-- "User/ID" as associated data); totp_step is the last TOTP time step a
-- login used (0: none); locked_until is NULL or Unix microseconds, as is
-- created_at (UTC). No PHI.
CREATE TABLE users (
	id                   TEXT    NOT NULL PRIMARY KEY,
	username             TEXT    NOT NULL UNIQUE,
	role                 TEXT    NOT NULL,
	password_hash        TEXT    NOT NULL,
	totp_secret          BLOB    NOT NULL,
	totp_step            INTEGER NOT NULL DEFAULT 0,
	must_change_password INTEGER NOT NULL,
	disabled             INTEGER NOT NULL,
	failed_logins        INTEGER NOT NULL DEFAULT 0,
	locked_until         INTEGER,
	created_at           INTEGER NOT NULL
) STRICT;

-- user_session is a signed-in user's session, found by the SHA-256 of its
-- opaque token (the token itself is never stored). Times are Unix
-- microseconds; ended_at is NULL while it lasts. A session is forgotten
-- once its absolute end (expires_at) has passed.
CREATE TABLE user_session (
	token_hash BLOB    NOT NULL PRIMARY KEY,
	user_id    TEXT    NOT NULL REFERENCES users (id),
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	ended_at   INTEGER
) STRICT, WITHOUT ROWID;

CREATE INDEX user_session_user ON user_session (user_id);
CREATE INDEX user_session_expires ON user_session (expires_at);
