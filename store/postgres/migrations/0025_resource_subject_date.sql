-- A patient's resources newest first (Observation?patient=…&_sort=-date,
-- the commonest query an EHR makes of results) were sorted from all of
-- the patient's rows for every page: 33 ms for a patient with 50,000
-- Observations, and growing with the stay. This index holds them in that
-- order, undated last, so a page is read off it (0.7 ms for the same
-- patient). resource_index_subject stays for the default order, by id.
CREATE INDEX resource_index_subject_date ON resource_index (type, subject, date_lo DESC NULLS LAST, id DESC);
