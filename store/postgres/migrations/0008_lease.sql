-- lease lets one of several instances do a job that must not run twice
-- at once (exporting the audit trail to an EHR): the holder renews it
-- before expires_at; after that anyone may take it.
CREATE TABLE lease (
	name       text        NOT NULL PRIMARY KEY,
	holder     text        NOT NULL,
	expires_at timestamptz NOT NULL
);
