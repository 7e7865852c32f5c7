-- audit_entity is only ever read by entity, for the chain and sequence
-- number of the records naming it: keyed by (entity, chain, seq), the
-- table is that lookup itself, and the separate index on entity, a second
-- B-tree insert per row, goes.
CREATE TABLE audit_entity_new (
	entity TEXT    NOT NULL,
	chain  TEXT    NOT NULL,
	seq    INTEGER NOT NULL,
	PRIMARY KEY (entity, chain, seq)
) STRICT, WITHOUT ROWID;

INSERT INTO audit_entity_new (entity, chain, seq) SELECT entity, chain, seq FROM audit_entity;
DROP TABLE audit_entity;
ALTER TABLE audit_entity_new RENAME TO audit_entity;
