-- The search index of the resources mapping stores (Patient, Encounter,
-- ServiceRequest, Observation …), whose JSON is sealed: PHI-minimal
-- fields only. resource_index has one row per resource: its subject
-- ("Patient/id"; a Patient's own reference), status, and date range
-- [date_lo, date_hi) in Unix microseconds (NULL when it has no date).
-- StoreMapped writes it in the transaction that stores the resource.
CREATE TABLE resource_index (
	type    TEXT NOT NULL,
	id      TEXT NOT NULL,
	subject TEXT NOT NULL,
	status  TEXT NOT NULL,
	date_lo INTEGER,
	date_hi INTEGER,
	PRIMARY KEY (type, id)
) STRICT;

CREATE INDEX resource_index_subject ON resource_index (type, subject, id);
CREATE INDEX resource_index_status ON resource_index (type, status, id);
CREATE INDEX resource_index_date ON resource_index (type, date_lo, date_hi);

-- resource_token holds the multi-valued search values (identifiers).
CREATE TABLE resource_token (
	type   TEXT NOT NULL,
	id     TEXT NOT NULL,
	param  TEXT NOT NULL,
	system TEXT NOT NULL,
	code   TEXT NOT NULL,
	PRIMARY KEY (type, id, param, system, code)
) STRICT;

CREATE INDEX resource_token_code ON resource_token (type, param, code, id);

-- resource_unindexed lists the resources still without index rows: every
-- one stored before this migration, and any stored without an index.
-- serve's start-up backfill opens, indexes and takes them off; once it
-- is empty the look costs nothing.
CREATE TABLE resource_unindexed (
	type TEXT NOT NULL,
	id   TEXT NOT NULL,
	PRIMARY KEY (type, id)
) STRICT;

INSERT INTO resource_unindexed (type, id) SELECT type, id FROM resource;
