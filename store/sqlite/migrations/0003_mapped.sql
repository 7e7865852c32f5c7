-- mapped records each inbound message the map stage has stored, so that a
-- redelivered message is a no-op. outcome is sealed.
CREATE TABLE mapped (
	inbound_id TEXT    NOT NULL PRIMARY KEY,
	mapped_at  INTEGER NOT NULL,
	outcome    BLOB    NOT NULL
) STRICT;

-- resource holds the latest version of each FHIR resource mapping wrote;
-- the JSON is sealed. version counts writes.
CREATE TABLE resource (
	type       TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	sealed     BLOB    NOT NULL,
	PRIMARY KEY (type, id)
) STRICT;

-- communication is one secure message: PHI-free search fields and the
-- sealed resource. recipients is a JSON array of references.
CREATE TABLE communication (
	id         TEXT    NOT NULL PRIMARY KEY,
	inbound_id TEXT    NOT NULL,
	identifier TEXT    NOT NULL UNIQUE,
	status     TEXT    NOT NULL,
	priority   TEXT    NOT NULL,
	category   TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	encounter  TEXT    NOT NULL,
	recipients TEXT    NOT NULL,
	sent       INTEGER NOT NULL,
	sealed     BLOB    NOT NULL
) STRICT;

CREATE INDEX communication_inbound ON communication (inbound_id);
