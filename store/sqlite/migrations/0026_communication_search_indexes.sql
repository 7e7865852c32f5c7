-- Two Communication search parameters had no index, and were answered by
-- reading every Communication (0.4 to 0.8 s on a million):
--
-- priority, the published custom SearchParameter: the open
-- Communications of a rare priority (priority=asap&status=in-progress&
-- _sort=-sent), and those of a common one newest first. This index holds
-- each priority's newest first.
CREATE INDEX communication_priority ON communication (priority, sent, id);
-- encounter: a Communication about an encounter. (PostgreSQL's leaves
-- out those about none; SQLite would not use such an index for a search
-- whose encounter is a bound parameter.)
CREATE INDEX communication_encounter ON communication (encounter, sent);
