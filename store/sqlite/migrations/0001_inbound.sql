-- inbound is the log of every HL7v2 message received, accepted or rejected.
-- received_at is Unix time in microseconds (UTC). sealed is ciphertext.
CREATE TABLE inbound (
	id                    TEXT    NOT NULL PRIMARY KEY,
	received_at           INTEGER NOT NULL,
	peer                  TEXT    NOT NULL,
	transport             TEXT    NOT NULL,
	sending_application   TEXT    NOT NULL,
	sending_facility      TEXT    NOT NULL,
	receiving_application TEXT    NOT NULL,
	receiving_facility    TEXT    NOT NULL,
	control_id            TEXT    NOT NULL,
	message_type          TEXT    NOT NULL,
	version               TEXT    NOT NULL,
	state                 TEXT    NOT NULL CHECK (state IN ('accepted', 'rejected')),
	ack_code              TEXT    NOT NULL,
	error                 TEXT    NOT NULL,
	correlation_id        TEXT    NOT NULL,
	size                  INTEGER NOT NULL,
	sealed                BLOB    NOT NULL
) STRICT;

-- Duplicate detection looks only at accepted messages.
CREATE INDEX inbound_dedupe ON inbound
	(sending_application, sending_facility, control_id, received_at)
	WHERE state = 'accepted';

CREATE INDEX inbound_state_id ON inbound (state, id);
