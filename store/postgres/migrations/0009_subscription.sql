-- subscription is an EHR's FHIR R4 rest-hook Subscription to
-- Communications; header is sealed (it carries the EHR's credentials);
-- events counts the notifications it was given.
CREATE TABLE subscription (
	id         text        NOT NULL PRIMARY KEY,
	criteria   text        NOT NULL,
	endpoint   text        NOT NULL,
	header     bytea,
	active     boolean     NOT NULL,
	created_at timestamptz NOT NULL,
	events     bigint      NOT NULL DEFAULT 0
);

-- subscription_notice is one id-only notification of a Communication to a
-- subscription, retried until next_at is NULL (sent, or dead after the
-- retry window, with the last error kept).
CREATE TABLE subscription_notice (
	subscription_id  text        NOT NULL,
	communication_id text        NOT NULL,
	event_no         bigint      NOT NULL,
	state            text        NOT NULL,
	attempts         integer     NOT NULL,
	first_at         timestamptz NOT NULL,
	next_at          timestamptz,
	last_error       text        NOT NULL DEFAULT '',
	PRIMARY KEY (subscription_id, communication_id)
);

CREATE INDEX subscription_notice_due ON subscription_notice (next_at) WHERE next_at IS NOT NULL;
