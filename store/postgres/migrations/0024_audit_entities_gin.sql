-- A record's entities and patient (what its AuditEvent lists as
-- entity.what, and what AuditEvent search matches by entity and patient)
-- are indexed on the audit row itself, by a GIN index over both, in place
-- of the audit_entity table with a row and a hash index entry for each.
--
-- The audit trail is kept for years (HIPAA asks for six), and every
-- request the FHIR API answers adds a record to it, a search's with
-- twenty entities or more. On a benchmark schema after reads, searches
-- and creates had written 340,000 records, the GIN index took 30 MB where
-- audit_entity and its hash index took 222 MB: a GIN index keeps each
-- entity once with a compressed list of the rows that name it. Writing
-- costs about the same. In pgbench runs against the two layouts, a
-- read's record (two entities) was written as fast or faster, a search's
-- (twenty) 5 to 10 % slower; in the server the difference was within the
-- noise of the benchmark.
--
-- A record without a patient would index '' (many of them, all on one
-- key): array_remove leaves it out, as store.AuditEntities does.
--
-- fastupdate is off: with it on, inserts are cheaper on average, but the
-- one that finds the pending list full merges it into the index while
-- its request waits (up to 1.9 s in a test with pgbench).
--
-- Building the index holds audit writes while it runs: 9 s for a million
-- records with 1.7 million entities on a two-core test machine; the
-- memory speeds it up.
SET LOCAL maintenance_work_mem = '256MB';
CREATE INDEX audit_entities ON audit USING gin (array_remove(array_append(entities, patient), '')) WITH (fastupdate = off);
DROP TABLE audit_entity;
