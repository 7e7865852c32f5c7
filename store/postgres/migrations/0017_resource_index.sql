-- The search index of the resources mapping stores (Patient, Encounter,
-- ServiceRequest, Observation …), whose JSON is sealed: PHI-minimal
-- fields only. resource_index has one row per resource: its subject
-- ("Patient/id"; a Patient's own reference), status, and date range
-- [date_lo, date_hi) (NULL when it has no date); subject is collated as
-- communication.subject, which the minimum necessary compares it to.
-- StoreMapped writes it in the transaction that stores the resource.
CREATE TABLE resource_index (
	type    text COLLATE "C" NOT NULL,
	id      text COLLATE "C" NOT NULL,
	subject text             NOT NULL,
	status  text COLLATE "C" NOT NULL,
	date_lo timestamptz,
	date_hi timestamptz,
	PRIMARY KEY (type, id)
);

CREATE INDEX resource_index_subject ON resource_index (type, subject, id);
CREATE INDEX resource_index_status ON resource_index (type, status, id);
CREATE INDEX resource_index_date ON resource_index (type, date_lo, date_hi);

-- resource_token holds the multi-valued search values (identifiers).
CREATE TABLE resource_token (
	type   text COLLATE "C" NOT NULL,
	id     text COLLATE "C" NOT NULL,
	param  text COLLATE "C" NOT NULL,
	system text COLLATE "C" NOT NULL,
	code   text COLLATE "C" NOT NULL,
	PRIMARY KEY (type, id, param, system, code)
);

CREATE INDEX resource_token_code ON resource_token (type, param, code, id);

-- resource_unindexed lists the resources still without index rows: every
-- one stored before this migration, and any stored without an index.
-- serve's start-up backfill opens, indexes and takes them off; once it
-- is empty the look costs nothing.
CREATE TABLE resource_unindexed (
	type text COLLATE "C" NOT NULL,
	id   text COLLATE "C" NOT NULL,
	PRIMARY KEY (type, id)
);

INSERT INTO resource_unindexed (type, id) SELECT type, id FROM resource;
