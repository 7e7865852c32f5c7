-- subscription.reason is the Subscription.reason an EHR gave when it
-- created the subscription through the FHIR API ('' for those added with
-- carebridge subscriptions add).
ALTER TABLE subscription ADD COLUMN reason TEXT NOT NULL DEFAULT '';
