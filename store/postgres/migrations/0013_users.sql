-- users are the clinicians and administrators who sign in ("user" is a
-- reserved word). password_hash is an argon2id PHC string; totp_secret is
-- sealed (package secure, with "User/ID" as associated data); totp_step is
-- the last TOTP time step a login used (0: none); locked_until is NULL
-- unless the user was locked. No PHI.
CREATE TABLE users (
	id                   text COLLATE "C" PRIMARY KEY,
	username             text COLLATE "C" NOT NULL UNIQUE,
	role                 text        NOT NULL,
	password_hash        text        NOT NULL,
	totp_secret          bytea       NOT NULL,
	totp_step            bigint      NOT NULL DEFAULT 0,
	must_change_password boolean     NOT NULL,
	disabled             boolean     NOT NULL,
	failed_logins        integer     NOT NULL DEFAULT 0,
	locked_until         timestamptz,
	created_at           timestamptz NOT NULL
);

-- user_session is a signed-in user's session, found by the SHA-256 of its
-- opaque token (the token itself is never stored); ended_at is NULL while
-- it lasts. A session is forgotten once its absolute end (expires_at) has
-- passed.
CREATE TABLE user_session (
	token_hash bytea PRIMARY KEY,
	user_id    text COLLATE "C" NOT NULL REFERENCES users (id),
	created_at timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	ended_at   timestamptz
);

CREATE INDEX user_session_user ON user_session (user_id);
CREATE INDEX user_session_expires ON user_session (expires_at);
