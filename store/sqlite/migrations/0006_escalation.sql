-- escalation holds the next step of each unread urgent Communication;
-- due_at is NULL once it is finished.
CREATE TABLE escalation (
	communication_id TEXT    NOT NULL PRIMARY KEY,
	unit             TEXT    NOT NULL,
	every_us         INTEGER NOT NULL,
	step             INTEGER NOT NULL,
	due_at           INTEGER
) STRICT;

CREATE INDEX escalation_due ON escalation (due_at) WHERE due_at IS NOT NULL;
