-- subscription.reason is the Subscription.reason an EHR gave when it
-- created the subscription through the FHIR API ('' for those added with
-- carebridge subscriptions add).
ALTER TABLE subscription ADD COLUMN reason TEXT NOT NULL DEFAULT '';

-- subscription.owner is the client that created it through the FHIR API,
-- the only one that sees and deletes it there ('' for those the operator
-- added with carebridge subscriptions add, which no client sees).
ALTER TABLE subscription ADD COLUMN owner TEXT NOT NULL DEFAULT '';
