-- Communications written through the FHIR API are versioned: communication
-- keeps the current version (version 1, 2, …; updated_at is when it was
-- stored), communication_version every version it replaced. sender is a
-- reference or ''; received is NULL until received.
ALTER TABLE communication
	ADD COLUMN sender     text COLLATE "C" NOT NULL DEFAULT '',
	ADD COLUMN received   timestamptz,
	ADD COLUMN version    integer     NOT NULL DEFAULT 1,
	ADD COLUMN updated_at timestamptz;
UPDATE communication SET updated_at = sent;
ALTER TABLE communication ALTER COLUMN updated_at SET NOT NULL;

CREATE INDEX communication_sender ON communication (sender, sent);
CREATE INDEX communication_received ON communication (received);

CREATE TABLE communication_version (
	id         text COLLATE "C" NOT NULL,
	version    integer     NOT NULL,
	identifier text        NOT NULL,
	status     text        NOT NULL,
	priority   text        NOT NULL,
	category   text        NOT NULL,
	subject    text        NOT NULL,
	encounter  text        NOT NULL,
	sender     text COLLATE "C" NOT NULL,
	recipients text[]      NOT NULL,
	sent       timestamptz NOT NULL,
	received   timestamptz,
	updated_at timestamptz NOT NULL,
	sealed     bytea       NOT NULL,
	PRIMARY KEY (id, version)
);

-- communication_token holds the multi-valued search values of the current
-- version of each Communication (store.IndexToken): identifiers, category
-- codings, part-of, based-on and in-response-to references.
CREATE TABLE communication_token (
	communication_id text COLLATE "C" NOT NULL,
	param            text COLLATE "C" NOT NULL,
	system           text COLLATE "C" NOT NULL,
	code             text COLLATE "C" NOT NULL,
	PRIMARY KEY (communication_id, param, system, code)
);

CREATE INDEX communication_token_code ON communication_token (param, code, communication_id);

-- The Communications stored so far were found by the identifier and
-- category columns: they become tokens.
INSERT INTO communication_token (communication_id, param, system, code)
	SELECT id, 'identifier', 'urn:carebridge:communication-source', identifier FROM communication WHERE identifier <> '';
INSERT INTO communication_token (communication_id, param, system, code)
	SELECT id, 'category', 'http://terminology.hl7.org/CodeSystem/communication-category', category FROM communication WHERE category <> '';
