-- delivery is where each Communication stands for each recipient. rank
-- orders the states (queued 0 < failed 1 < delivered 2 < read 3) so that an
-- update never moves one back.
CREATE TABLE delivery (
	communication_id text COLLATE "C" NOT NULL,
	recipient        text COLLATE "C" NOT NULL,
	state            text        NOT NULL CHECK (state IN ('queued', 'failed', 'delivered', 'read')),
	rank             smallint    NOT NULL,
	updated_at       timestamptz NOT NULL,
	PRIMARY KEY (communication_id, recipient)
);

CREATE INDEX delivery_unread ON delivery (recipient) WHERE state <> 'read';
