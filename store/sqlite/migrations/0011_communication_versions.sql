-- Communications written through the FHIR API are versioned: communication
-- keeps the current version (version 1, 2, …; updated_at is when it was
-- stored, Unix microseconds), communication_version every version it
-- replaced. sender is a reference or ''; received is NULL until received.
ALTER TABLE communication ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE communication ADD COLUMN received INTEGER;
ALTER TABLE communication ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE communication ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE communication SET updated_at = sent;

CREATE INDEX communication_sender ON communication (sender, sent);
CREATE INDEX communication_received ON communication (received);

CREATE TABLE communication_version (
	id         TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	identifier TEXT    NOT NULL,
	status     TEXT    NOT NULL,
	priority   TEXT    NOT NULL,
	category   TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	encounter  TEXT    NOT NULL,
	sender     TEXT    NOT NULL,
	recipients TEXT    NOT NULL,
	sent       INTEGER NOT NULL,
	received   INTEGER,
	updated_at INTEGER NOT NULL,
	sealed     BLOB    NOT NULL,
	PRIMARY KEY (id, version)
) STRICT;

-- communication_token holds the multi-valued search values of the current
-- version of each Communication (store.IndexToken): identifiers, category
-- codings, part-of, based-on and in-response-to references.
CREATE TABLE communication_token (
	communication_id TEXT NOT NULL,
	param            TEXT NOT NULL,
	system           TEXT NOT NULL,
	code             TEXT NOT NULL,
	PRIMARY KEY (communication_id, param, system, code)
) STRICT, WITHOUT ROWID;

CREATE INDEX communication_token_code ON communication_token (param, code, communication_id);

-- The Communications stored so far were found by the identifier and
-- category columns: they become tokens.
INSERT INTO communication_token (communication_id, param, system, code)
	SELECT id, 'identifier', 'urn:carebridge:communication-source', identifier FROM communication WHERE identifier <> '';
INSERT INTO communication_token (communication_id, param, system, code)
	SELECT id, 'category', 'http://terminology.hl7.org/CodeSystem/communication-category', category FROM communication WHERE category <> '';
