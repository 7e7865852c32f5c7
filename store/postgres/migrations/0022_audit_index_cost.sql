-- Every audit record pays for the indexes of audit and audit_entity as
-- it is written, and the FHIR API writes one for each request: the
-- writes' cost is the read path's.
--
-- audit_entity is only ever looked up by entity, for equality (a
-- search's entity and patient lists). A hash index answers that with one
-- bucket page per row written, where the B-tree on (entity, chain, seq)
-- descended to a leaf at a random place in a large tree for each: under
-- the search benchmark (twenty entities a page) its inserts took 0.5 ms
-- of PostgreSQL's time per search instead of 1.1 to 1.4 ms. The lookup
-- now reads the matched rows' (chain, seq) from the table, a few rows
-- for a message, more for a patient.
CREATE INDEX audit_entity_hash ON audit_entity USING hash (entity);
DROP INDEX audit_entity_lookup;

-- audit_patient served no query: a search by patient matches the
-- records' audit_entity rows (a record's patient is one of them).
DROP INDEX audit_patient;
