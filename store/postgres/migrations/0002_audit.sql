-- audit is the hash-chained audit trail (package audit). Rows are only
-- ever inserted. Never message content.
CREATE TABLE audit (
	chain         text COLLATE "C" NOT NULL,
	seq           bigint      NOT NULL,
	at            timestamptz NOT NULL,
	actor_kind    text        NOT NULL,
	actor_id      text        NOT NULL,
	actor_address text        NOT NULL,
	action        text        NOT NULL,
	outcome       smallint    NOT NULL,
	correlation   text        NOT NULL,
	entities      text[]      NOT NULL,
	entry_id      text        NOT NULL,
	patient       text        NOT NULL,
	prev          bytea       NOT NULL,
	hash          bytea       NOT NULL,
	PRIMARY KEY (chain, seq)
);

-- An entry redelivered by the queue is appended once.
CREATE UNIQUE INDEX audit_entry ON audit (entry_id) WHERE entry_id <> '';

-- Signed checkpoints of the chains.
CREATE TABLE audit_checkpoint (
	chain     text COLLATE "C" NOT NULL,
	seq       bigint      NOT NULL,
	hash      bytea       NOT NULL,
	at        timestamptz NOT NULL,
	key_id    text        NOT NULL,
	signature bytea       NOT NULL,
	PRIMARY KEY (chain, seq)
);
