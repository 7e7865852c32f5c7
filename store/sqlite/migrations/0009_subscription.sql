-- subscription is an EHR's FHIR R4 rest-hook Subscription to
-- Communications; header is sealed (it carries the EHR's credentials);
-- events counts the notifications it was given.
CREATE TABLE subscription (
	id         TEXT    NOT NULL PRIMARY KEY,
	criteria   TEXT    NOT NULL,
	endpoint   TEXT    NOT NULL,
	header     BLOB,
	active     INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	events     INTEGER NOT NULL DEFAULT 0
) STRICT;

-- subscription_notice is one id-only notification of a Communication to a
-- subscription, retried until next_at is NULL (sent, or dead after the
-- retry window, with the last error kept).
CREATE TABLE subscription_notice (
	subscription_id  TEXT    NOT NULL,
	communication_id TEXT    NOT NULL,
	event_no         INTEGER NOT NULL,
	state            TEXT    NOT NULL,
	attempts         INTEGER NOT NULL,
	first_at         INTEGER NOT NULL,
	next_at          INTEGER,
	last_error       TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (subscription_id, communication_id)
) STRICT;

CREATE INDEX subscription_notice_due ON subscription_notice (next_at) WHERE next_at IS NOT NULL;
