-- audit_filed holds the AuditEvents other systems (the EHR, interface
-- engines) filed with carebridge through POST /fhir/AuditEvent, as an
-- IHE Audit Record Repository keeps them: append only, never updated or
-- deleted. recorded is AuditEvent.recorded and updated_at when it was
-- filed; sealed is the resource, sealed with "AuditEvent/" + id (it may
-- hold PHI). carebridge's own trail stays in audit.
CREATE TABLE audit_filed (
	id         text COLLATE "C" NOT NULL PRIMARY KEY,
	recorded   timestamptz      NOT NULL,
	updated_at timestamptz      NOT NULL,
	sealed     bytea            NOT NULL
);

CREATE INDEX audit_filed_recorded ON audit_filed (recorded, id);

-- audit_filed_token is their PHI-minimal search index: type, subtype,
-- action and outcome codings (system, code); agent and entity
-- references (system the type, code the id) and identifiers (system,
-- value); and the Patients among the entities.
CREATE TABLE audit_filed_token (
	id     text COLLATE "C" NOT NULL,
	param  text COLLATE "C" NOT NULL,
	system text COLLATE "C" NOT NULL,
	code   text COLLATE "C" NOT NULL,
	PRIMARY KEY (id, param, system, code)
);

CREATE INDEX audit_filed_token_code ON audit_filed_token (param, code, id);

-- Append only, whatever the code above the database does.
CREATE FUNCTION audit_filed_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit_filed is append-only';
END;
$$;
CREATE TRIGGER audit_filed_no_change BEFORE UPDATE OR DELETE ON audit_filed
	FOR EACH ROW EXECUTE FUNCTION audit_filed_append_only();
CREATE TRIGGER audit_filed_no_truncate BEFORE TRUNCATE ON audit_filed
	FOR EACH STATEMENT EXECUTE FUNCTION audit_filed_append_only();
-- Its index likewise: a token taken away would hide a filed AuditEvent
-- from the searches that should find it.
CREATE TRIGGER audit_filed_token_no_change BEFORE UPDATE OR DELETE ON audit_filed_token
	FOR EACH ROW EXECUTE FUNCTION audit_filed_append_only();
CREATE TRIGGER audit_filed_token_no_truncate BEFORE TRUNCATE ON audit_filed_token
	FOR EACH STATEMENT EXECUTE FUNCTION audit_filed_append_only();
