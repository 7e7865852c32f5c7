-- client is an EHR system registered for SMART on FHIR backend services
-- (https://hl7.org/fhir/smart-app-launch/backend-services.html): its public
-- keys (jwks, empty when they are published at jwks_url) and the scopes it
-- may be granted; created_at is Unix time in microseconds (UTC). No PHI.
CREATE TABLE client (
	id         TEXT    NOT NULL PRIMARY KEY,
	jwks       BLOB    NOT NULL,
	jwks_url   TEXT    NOT NULL,
	scope      TEXT    NOT NULL,
	disabled   INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

-- client_assertion is the jti of each client assertion spent, kept until
-- it expires (expires_at, Unix microseconds), so that a replay is refused.
CREATE TABLE client_assertion (
	client_id  TEXT    NOT NULL,
	jti        TEXT    NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (client_id, jti)
) STRICT;

CREATE INDEX client_assertion_expires ON client_assertion (expires_at);

-- Communication search (store.CommunicationQuery): by recipient through
-- the deliveries, by subject or status in time order, and by time.
CREATE INDEX delivery_recipient ON delivery (recipient, communication_id);
CREATE INDEX communication_sent ON communication (sent, id);
CREATE INDEX communication_subject ON communication (subject, sent);
CREATE INDEX communication_status ON communication (status, sent);
