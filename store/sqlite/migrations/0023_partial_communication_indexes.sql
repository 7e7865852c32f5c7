-- A Communication created through the FHIR API comes from no inbound
-- message (inbound_id '') and most are not yet received (received NULL):
-- every such row went into the same place of communication_inbound and
-- of communication_received, pages that each create then waited its turn
-- for. Neither value is ever looked up: the Communications of an inbound
-- message are asked for by a real id (and say inbound_id <> ''), and a
-- bound on received never matches NULL (received:missing=true is the one
-- search that wants those rows; it filters what its other terms find).
CREATE INDEX communication_inbound_message ON communication (inbound_id) WHERE inbound_id <> '';
DROP INDEX communication_inbound;
CREATE INDEX communication_received_at ON communication (received) WHERE received IS NOT NULL;
DROP INDEX communication_received;
