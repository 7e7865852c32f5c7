-- client is an EHR system registered for SMART on FHIR backend services
-- (https://hl7.org/fhir/smart-app-launch/backend-services.html): its public
-- keys (jwks, empty when they are published at jwks_url) and the scopes it
-- may be granted. No PHI.
CREATE TABLE client (
	id         text COLLATE "C" PRIMARY KEY,
	jwks       bytea       NOT NULL,
	jwks_url   text        NOT NULL,
	scope      text        NOT NULL,
	disabled   boolean     NOT NULL,
	created_at timestamptz NOT NULL
);

-- client_assertion is the jti of each client assertion spent, kept until
-- it expires, so that a replay is refused.
CREATE TABLE client_assertion (
	client_id  text COLLATE "C" NOT NULL,
	jti        text COLLATE "C" NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (client_id, jti)
);

CREATE INDEX client_assertion_expires ON client_assertion (expires_at);

-- Communication search (store.CommunicationQuery): by recipient through
-- the deliveries, by subject or status in time order, and by time.
CREATE INDEX delivery_recipient ON delivery (recipient, communication_id);
CREATE INDEX communication_sent ON communication (sent, id);
CREATE INDEX communication_subject ON communication (subject, sent);
CREATE INDEX communication_status ON communication (status, sent);
