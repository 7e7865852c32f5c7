-- recipients are the FHIR references that stand for a user as the
-- recipient of a Communication: their Practitioner and their care teams
-- ("Practitioner/abc", "CareTeam/icu"). The minimum-necessary policy shows
-- a clinician the Communications one of them receives.
ALTER TABLE users ADD COLUMN recipients text[] NOT NULL DEFAULT '{}';

-- break_glass_until is NULL unless the session's user broke the glass:
-- wider access until then, flagged in the audit trail. break_glass_reason
-- is the reason they gave, sealed (package secure, with
-- "Session/<token hash in hex>" as associated data): it may name a patient.
ALTER TABLE user_session ADD COLUMN break_glass_until timestamptz;
ALTER TABLE user_session ADD COLUMN break_glass_reason bytea;
