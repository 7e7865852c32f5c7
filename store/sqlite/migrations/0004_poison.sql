-- poison keeps queue messages a handler failed on for good, with the
-- reason, until "carebridge replay" publishes them again. Payloads are ids.
CREATE TABLE poison (
	id        TEXT    NOT NULL,
	handler   TEXT    NOT NULL,
	topic     TEXT    NOT NULL,
	payload   BLOB    NOT NULL,
	metadata  TEXT    NOT NULL,
	reason    TEXT    NOT NULL,
	failed_at INTEGER NOT NULL,
	PRIMARY KEY (id, handler)
) STRICT;
