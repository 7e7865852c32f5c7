-- audit_patient served no query: a search by patient matches the
-- records' audit_entity rows (a record's patient is one of them), and
-- every audit record written paid for it.
DROP INDEX audit_patient;
