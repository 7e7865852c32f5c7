-- Two Communication search parameters had no index, and were answered by
-- reading every Communication (0.4 to 0.8 s on a million):
--
-- priority, the published custom SearchParameter: the open
-- Communications of a rare priority (priority=asap&status=in-progress&
-- _sort=-sent), and those of a common one newest first. This index holds
-- each priority's newest first.
CREATE INDEX communication_priority ON communication (priority, sent, id);
-- encounter: a Communication about an encounter. Those about none (most
-- of those created through the API) have '', which no search by
-- encounter looks up, so they are left out (as in migration 23).
CREATE INDEX communication_encounter ON communication (encounter, sent) WHERE encounter <> '';
