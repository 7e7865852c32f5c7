-- AuditEvent read and search (store.AuditQuery). event_id is the id of a
-- record's FHIR AuditEvent (audit.AuditEventID), outside the hash. It is
-- SHA-256 based, so SQL cannot compute it: records older than this
-- migration keep '' until carebridge fills them in at start
-- (audit.BackfillEventIDs).
ALTER TABLE audit ADD COLUMN event_id TEXT NOT NULL DEFAULT '';

CREATE INDEX audit_event_id ON audit (event_id) WHERE event_id <> '';
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_patient ON audit (patient, at);
CREATE INDEX audit_actor ON audit (actor_id, at);
CREATE INDEX audit_action ON audit (action, at);

-- audit_entity is what each record's AuditEvent lists as entity.what: its
-- entities and its patient, one row each, so that a search by entity is
-- an index lookup. Written with the record, never changed.
CREATE TABLE audit_entity (
	chain  TEXT    NOT NULL,
	seq    INTEGER NOT NULL,
	entity TEXT    NOT NULL,
	PRIMARY KEY (chain, seq, entity)
) STRICT, WITHOUT ROWID;

CREATE INDEX audit_entity_entity ON audit_entity (entity);

INSERT INTO audit_entity (chain, seq, entity)
	SELECT a.chain, a.seq, e.value FROM audit a, json_each(a.entities) e WHERE e.value <> ''
	UNION
	SELECT chain, seq, patient FROM audit WHERE patient <> '';
