-- audit_filed holds the AuditEvents other systems (the EHR, interface
-- engines) filed with carebridge through POST /fhir/AuditEvent, as an
-- IHE Audit Record Repository keeps them: append only, never updated or
-- deleted. recorded is AuditEvent.recorded and updated_at when it was
-- filed, both Unix microseconds; sealed is the resource, sealed with
-- "AuditEvent/" + id (it may hold PHI). carebridge's own trail stays in
-- audit.
CREATE TABLE audit_filed (
	id         TEXT    NOT NULL PRIMARY KEY,
	recorded   INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	sealed     BLOB    NOT NULL
) STRICT;

CREATE INDEX audit_filed_recorded ON audit_filed (recorded, id);

-- audit_filed_token is their PHI-minimal search index: type, subtype,
-- action and outcome codings (system, code); agent and entity
-- references (system the type, code the id) and identifiers (system,
-- value); and the Patients among the entities.
CREATE TABLE audit_filed_token (
	id     TEXT NOT NULL,
	param  TEXT NOT NULL,
	system TEXT NOT NULL,
	code   TEXT NOT NULL,
	PRIMARY KEY (id, param, system, code)
) STRICT;

CREATE INDEX audit_filed_token_code ON audit_filed_token (param, code, id);

-- Append only, whatever the code above the database does.
CREATE TRIGGER audit_filed_no_update BEFORE UPDATE ON audit_filed
BEGIN SELECT RAISE(ABORT, 'audit_filed is append-only'); END;
CREATE TRIGGER audit_filed_no_delete BEFORE DELETE ON audit_filed
BEGIN SELECT RAISE(ABORT, 'audit_filed is append-only'); END;
-- Its index likewise: a token taken away would hide a filed AuditEvent
-- from the searches that should find it.
CREATE TRIGGER audit_filed_token_no_update BEFORE UPDATE ON audit_filed_token
BEGIN SELECT RAISE(ABORT, 'audit_filed is append-only'); END;
CREATE TRIGGER audit_filed_token_no_delete BEFORE DELETE ON audit_filed_token
BEGIN SELECT RAISE(ABORT, 'audit_filed is append-only'); END;
