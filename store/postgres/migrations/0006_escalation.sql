-- escalation holds the next step of each unread urgent Communication;
-- due_at is NULL once it is finished.
CREATE TABLE escalation (
	communication_id text COLLATE "C" PRIMARY KEY,
	unit             text        NOT NULL,
	every_us         bigint      NOT NULL,
	step             integer     NOT NULL,
	due_at           timestamptz
);

CREATE INDEX escalation_due ON escalation (due_at) WHERE due_at IS NOT NULL;
