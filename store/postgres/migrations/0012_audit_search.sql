-- AuditEvent read and search (store.AuditQuery). event_id is the id of a
-- record's FHIR AuditEvent (audit.AuditEventID), outside the hash. It is
-- SHA-256 based, so SQL cannot compute it: records older than this
-- migration keep '' until carebridge fills them in at start
-- (audit.BackfillEventIDs).
ALTER TABLE audit ADD COLUMN event_id text NOT NULL DEFAULT '';

CREATE INDEX audit_event_id ON audit (event_id) WHERE event_id <> '';
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_patient ON audit (patient, at);
CREATE INDEX audit_actor ON audit (actor_id, at);
CREATE INDEX audit_action ON audit (action, at);

-- audit_entity is what each record's AuditEvent lists as entity.what: its
-- entities and its patient, one row each, so that a search by entity is
-- an index lookup. Written with the record, never changed.
CREATE TABLE audit_entity (
	chain  text COLLATE "C" NOT NULL,
	seq    bigint           NOT NULL,
	entity text             NOT NULL,
	PRIMARY KEY (chain, seq, entity)
);

CREATE INDEX audit_entity_entity ON audit_entity (entity);

INSERT INTO audit_entity (chain, seq, entity)
	SELECT a.chain, a.seq, e FROM audit a, unnest(a.entities) AS e WHERE e <> ''
	UNION
	SELECT chain, seq, patient FROM audit WHERE patient <> '';
