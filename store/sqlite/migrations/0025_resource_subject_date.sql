-- A patient's resources newest first (Observation?patient=…&_sort=-date,
-- the commonest query an EHR makes of results) were sorted from all of
-- the patient's rows for every page. This index holds them in that
-- order: SQLite sorts NULL lowest, so a descending index puts undated
-- resources last, as the search orders them. resource_index_subject
-- stays for the default order, by id.
CREATE INDEX resource_index_subject_date ON resource_index (type, subject, date_lo DESC, id DESC);
-- Version 24 changed only PostgreSQL's audit indexes.
