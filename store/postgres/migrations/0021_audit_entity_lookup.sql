-- audit_entity is only ever read by entity, for the chain and sequence
-- number of the records naming it: one index on (entity, chain, seq)
-- answers that from the index alone. Its primary key guarded nothing
-- (a record's rows are written once, with the record, whose own key is
-- unique) and cost a second B-tree insert per row: a search page's record
-- names twenty or more entities.
CREATE INDEX audit_entity_lookup ON audit_entity (entity, chain, seq);
DROP INDEX audit_entity_entity;
ALTER TABLE audit_entity DROP CONSTRAINT audit_entity_pkey;
