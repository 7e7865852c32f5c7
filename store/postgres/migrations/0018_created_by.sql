-- A Communication's history tells how its version 1 was written: by POST
-- (and the pipeline's), or by a client's update as create (PUT to an id not
-- known yet). created_by is 'PUT' for those, '' for the rest and for every
-- Communication stored before; it is an attribute of the Communication, so
-- every version row carries it (communication_version copies it with the
-- version it keeps).
ALTER TABLE communication ADD COLUMN created_by text NOT NULL DEFAULT '';
ALTER TABLE communication_version ADD COLUMN created_by text NOT NULL DEFAULT '';
