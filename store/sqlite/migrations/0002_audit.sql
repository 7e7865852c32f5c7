-- audit is the hash-chained audit trail (package audit). Rows are only
-- ever inserted; at is Unix time in microseconds (UTC); entities is a JSON
-- array of references. Never message content.
CREATE TABLE audit (
	chain         TEXT    NOT NULL,
	seq           INTEGER NOT NULL,
	at            INTEGER NOT NULL,
	actor_kind    TEXT    NOT NULL,
	actor_id      TEXT    NOT NULL,
	actor_address TEXT    NOT NULL,
	action        TEXT    NOT NULL,
	outcome       INTEGER NOT NULL,
	correlation   TEXT    NOT NULL,
	entities      TEXT    NOT NULL,
	entry_id      TEXT    NOT NULL,
	patient       TEXT    NOT NULL,
	prev          BLOB    NOT NULL,
	hash          BLOB    NOT NULL,
	PRIMARY KEY (chain, seq)
) STRICT;

-- An entry redelivered by the queue is appended once.
CREATE UNIQUE INDEX audit_entry ON audit (entry_id) WHERE entry_id <> '';

-- Signed checkpoints of the chains.
CREATE TABLE audit_checkpoint (
	chain     TEXT    NOT NULL,
	seq       INTEGER NOT NULL,
	hash      BLOB    NOT NULL,
	at        INTEGER NOT NULL,
	key_id    TEXT    NOT NULL,
	signature BLOB    NOT NULL,
	PRIMARY KEY (chain, seq)
) STRICT;
