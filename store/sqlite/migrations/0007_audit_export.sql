-- audit_export_target lists the EHR FHIR servers audit records go to (by
-- base URL); audit_export is how far each chain has gone to each. A
-- position only moves forward: a record at or behind it was accepted by
-- the target or is in audit_dead_letter with the reason.
CREATE TABLE audit_export_target (
	target   TEXT    NOT NULL PRIMARY KEY,
	added_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_export (
	target     TEXT    NOT NULL,
	chain      TEXT    NOT NULL,
	seq        INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (target, chain)
) STRICT;

-- Records a target refused for good, or that were not valid R4: kept and
-- visible (carebridge audit pending), never dropped. reason is PHI-free.
CREATE TABLE audit_dead_letter (
	target TEXT    NOT NULL,
	chain  TEXT    NOT NULL,
	seq    INTEGER NOT NULL,
	at     INTEGER NOT NULL,
	reason TEXT    NOT NULL,
	PRIMARY KEY (target, chain, seq)
) STRICT;
