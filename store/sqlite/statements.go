package sqlite

// The writer's hot statements, prepared once when the store opens: the
// writer has one connection, which a transaction holds, so a statement
// prepared on first use inside one would wait for it forever.
const (
	sqlInsertAudit       = `INSERT INTO audit (` + auditColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlInsertAuditEntity = `INSERT INTO audit_entity (chain, seq, entity) VALUES (?, ?, ?)`

	sqlInsertMapped   = `INSERT INTO mapped (inbound_id, mapped_at, outcome) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	sqlUpsertResource = `INSERT INTO resource (type, id, version, updated_at, sealed) VALUES (?, ?, 1, ?, ?)
		ON CONFLICT (type, id) DO UPDATE SET version = version + 1, updated_at = excluded.updated_at, sealed = excluded.sealed`
	sqlInsertCommunication = `INSERT INTO communication (id, inbound_id, identifier, status, priority, category,
		subject, encounter, recipients, sent, sealed, sender, received, version, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT DO NOTHING`
	sqlInsertToken  = `INSERT INTO communication_token (communication_id, param, system, code) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlDeleteTokens = `DELETE FROM communication_token WHERE communication_id = ?`
	// sqlDropRecipients forgets the deliveries of recipients an update
	// took off the Communication (a JSON array of those it keeps).
	sqlDropRecipients = `DELETE FROM delivery WHERE communication_id = ? AND recipient NOT IN (SELECT value FROM json_each(?))`

	sqlInsertEscalation = `INSERT INTO escalation (communication_id, unit, every_us, step, due_at) VALUES (?, ?, ?, 0, ?) ON CONFLICT DO NOTHING`

	sqlQueueDelivery = `INSERT INTO delivery (communication_id, recipient, state, rank, updated_at)
		VALUES (?, ?, 'queued', 0, ?) ON CONFLICT DO NOTHING`
	sqlDeliveryExists = `SELECT count(*) FROM delivery WHERE communication_id = ? AND recipient = ?`
	sqlSetDelivery    = `UPDATE delivery SET state = ?, rank = ?, updated_at = ?
		WHERE communication_id = ? AND recipient = ? AND rank < ?`
	// The version a write replaces is copied into the history first.
	sqlKeepVersion = `INSERT INTO communication_version (` + versionColumns + `) SELECT ` + versionColumns + ` FROM communication WHERE id = ?`
	// A recalled Communication (entered-in-error) is not completed:
	// reading it cannot undo the recall.
	sqlKeepIncomplete        = sqlKeepVersion + ` AND status NOT IN ('completed', 'entered-in-error')`
	sqlCompleteCommunication = `UPDATE communication SET status = 'completed', sealed = ?, received = coalesce(?, received),
		version = version + 1, updated_at = ? WHERE id = ? AND status NOT IN ('completed', 'entered-in-error')`
	sqlCurrentVersion      = `SELECT version FROM communication WHERE id = ?`
	sqlUpdateCommunication = `UPDATE communication SET identifier = ?, status = ?, priority = ?, category = ?, subject = ?,
		encounter = ?, recipients = ?, sent = ?, sealed = ?, sender = ?, received = ?, version = ?, updated_at = ?
		WHERE id = ? AND version = ?`

	sqlForgetAssertions = `DELETE FROM client_assertion WHERE expires_at < ?`
	sqlSpendAssertion   = `INSERT INTO client_assertion (client_id, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
)

var writeQueries = []string{
	sqlInsertAudit, sqlInsertAuditEntity, sqlInsertMapped, sqlUpsertResource, sqlInsertCommunication, sqlInsertToken, sqlDeleteTokens, sqlDropRecipients,
	sqlInsertEscalation, sqlQueueDelivery, sqlDeliveryExists, sqlSetDelivery,
	sqlKeepVersion, sqlKeepIncomplete, sqlCompleteCommunication, sqlCurrentVersion, sqlUpdateCommunication,
	sqlForgetAssertions, sqlSpendAssertion,
	sqlDeleteResourceTokens, sqlUpsertResourceIndex, sqlInsertResourceToken, sqlQueueUnindexed,
}
