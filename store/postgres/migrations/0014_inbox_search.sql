-- A recipient's newest Communications of a status (the inbox search,
-- recipient=…&status=…&_sort=-sent) are read from one index on delivery,
-- which carries a copy of its Communication's status and sent for that:
-- kept by the triggers below, so no write path can forget them.
ALTER TABLE delivery
	ADD COLUMN status text        NOT NULL DEFAULT '',
	ADD COLUMN sent   timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00';

UPDATE delivery d SET status = c.status, sent = c.sent FROM communication c WHERE c.id = d.communication_id;

CREATE FUNCTION delivery_copy_communication() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	SELECT c.status, c.sent INTO NEW.status, NEW.sent FROM communication c WHERE c.id = NEW.communication_id;
	IF NEW.status IS NULL THEN
		NEW.status := '';
		NEW.sent := '0001-01-01 00:00:00+00';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER delivery_copy_communication BEFORE INSERT ON delivery
	FOR EACH ROW EXECUTE FUNCTION delivery_copy_communication();

CREATE FUNCTION communication_copy_to_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE delivery SET status = NEW.status, sent = NEW.sent WHERE communication_id = NEW.id;
	RETURN NULL;
END $$;

CREATE TRIGGER communication_copy_to_delivery AFTER UPDATE OF status, sent ON communication
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.sent IS DISTINCT FROM NEW.sent)
	EXECUTE FUNCTION communication_copy_to_delivery();

DROP INDEX delivery_recipient;
CREATE INDEX delivery_recipient ON delivery (recipient, sent, communication_id);
CREATE INDEX delivery_inbox ON delivery (recipient, status, sent, communication_id);
