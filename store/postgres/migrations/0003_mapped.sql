-- mapped records each inbound message the map stage has stored, so that a
-- redelivered message is a no-op. outcome is sealed.
CREATE TABLE mapped (
	inbound_id text COLLATE "C" PRIMARY KEY,
	mapped_at  timestamptz NOT NULL,
	outcome    bytea       NOT NULL
);

-- resource holds the latest version of each FHIR resource mapping wrote;
-- the JSON is sealed. version counts writes.
CREATE TABLE resource (
	type       text COLLATE "C" NOT NULL,
	id         text COLLATE "C" NOT NULL,
	version    bigint      NOT NULL,
	updated_at timestamptz NOT NULL,
	sealed     bytea       NOT NULL,
	PRIMARY KEY (type, id)
);

-- communication is one secure message: PHI-free search fields and the
-- sealed resource.
CREATE TABLE communication (
	id         text COLLATE "C" PRIMARY KEY,
	inbound_id text COLLATE "C" NOT NULL,
	identifier text        NOT NULL UNIQUE,
	status     text        NOT NULL,
	priority   text        NOT NULL,
	category   text        NOT NULL,
	subject    text        NOT NULL,
	encounter  text        NOT NULL,
	recipients text[]      NOT NULL,
	sent       timestamptz NOT NULL,
	sealed     bytea       NOT NULL
);

CREATE INDEX communication_inbound ON communication (inbound_id);
