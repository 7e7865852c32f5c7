-- poison keeps queue messages a handler failed on for good, with the
-- reason, until "carebridge replay" publishes them again. Payloads are ids.
CREATE TABLE poison (
	id        text COLLATE "C" NOT NULL,
	handler   text COLLATE "C" NOT NULL,
	topic     text        NOT NULL,
	payload   bytea       NOT NULL,
	metadata  jsonb       NOT NULL,
	reason    text        NOT NULL,
	failed_at timestamptz NOT NULL,
	PRIMARY KEY (id, handler)
);
