-- lease lets one of several instances do a job that must not run twice
-- at once (exporting the audit trail to an EHR): the holder renews it
-- before expires_at (Unix microseconds); after that anyone may take it.
CREATE TABLE lease (
	name       TEXT    NOT NULL PRIMARY KEY,
	holder     TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;
