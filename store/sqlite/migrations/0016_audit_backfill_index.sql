-- serve gives records stored before AuditEvent ids existed their ids at
-- every start (audit.BackfillEventIDs); this index holds only those still
-- without one, so that the look costs nothing once they are done instead
-- of a walk over the whole trail.
CREATE INDEX audit_without_event_id ON audit (chain, seq) WHERE event_id = '';
