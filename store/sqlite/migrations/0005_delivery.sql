-- delivery is where each Communication stands for each recipient. rank
-- orders the states (queued 0 < failed 1 < delivered 2 < read 3) so that an
-- update never moves one back.
CREATE TABLE delivery (
	communication_id TEXT    NOT NULL,
	recipient        TEXT    NOT NULL,
	state            TEXT    NOT NULL CHECK (state IN ('queued', 'failed', 'delivered', 'read')),
	rank             INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	PRIMARY KEY (communication_id, recipient)
) STRICT;

CREATE INDEX delivery_unread ON delivery (recipient) WHERE state <> 'read';
