-- inbound is the log of every HL7v2 message received, accepted or rejected.
-- sealed is ciphertext; every other column is PHI-free metadata.
CREATE TABLE inbound (
	id                    text COLLATE "C" PRIMARY KEY,
	received_at           timestamptz NOT NULL,
	peer                  text        NOT NULL,
	transport             text        NOT NULL,
	sending_application   text        NOT NULL,
	sending_facility      text        NOT NULL,
	receiving_application text        NOT NULL,
	receiving_facility    text        NOT NULL,
	control_id            text        NOT NULL,
	message_type          text        NOT NULL,
	version               text        NOT NULL,
	state                 text        NOT NULL CHECK (state IN ('accepted', 'rejected')),
	ack_code              text        NOT NULL,
	error                 text        NOT NULL,
	correlation_id        text        NOT NULL,
	size                  integer     NOT NULL,
	sealed                bytea       NOT NULL
);

-- Duplicate detection looks only at accepted messages.
CREATE INDEX inbound_dedupe ON inbound
	(sending_application, sending_facility, control_id, received_at)
	WHERE state = 'accepted';

CREATE INDEX inbound_state_id ON inbound (state, id);
