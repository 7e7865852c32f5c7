-- A recipient's newest Communications of a status (the inbox search,
-- recipient=…&status=…&_sort=-sent) are read from one index on delivery,
-- which carries a copy of its Communication's status and sent for that:
-- kept by the triggers below, so no write path can forget them. sent is
-- Unix microseconds, as in communication.
ALTER TABLE delivery ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE delivery ADD COLUMN sent INTEGER NOT NULL DEFAULT -62135596800000000;

UPDATE delivery SET
	status = coalesce((SELECT c.status FROM communication c WHERE c.id = delivery.communication_id), ''),
	sent = coalesce((SELECT c.sent FROM communication c WHERE c.id = delivery.communication_id), -62135596800000000);

CREATE TRIGGER delivery_copy_communication AFTER INSERT ON delivery
BEGIN
	UPDATE delivery SET
		status = coalesce((SELECT c.status FROM communication c WHERE c.id = NEW.communication_id), ''),
		sent = coalesce((SELECT c.sent FROM communication c WHERE c.id = NEW.communication_id), -62135596800000000)
	WHERE communication_id = NEW.communication_id AND recipient = NEW.recipient;
END;

CREATE TRIGGER communication_copy_to_delivery AFTER UPDATE OF status, sent ON communication
	WHEN OLD.status IS NOT NEW.status OR OLD.sent IS NOT NEW.sent
BEGIN
	UPDATE delivery SET status = NEW.status, sent = NEW.sent WHERE communication_id = NEW.id;
END;

DROP INDEX delivery_recipient;
CREATE INDEX delivery_recipient ON delivery (recipient, sent, communication_id);
CREATE INDEX delivery_inbox ON delivery (recipient, status, sent, communication_id);
