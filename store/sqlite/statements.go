package sqlite

// The writer's hot statements, prepared once when the store opens: the
// writer has one connection, which a transaction holds, so a statement
// prepared on first use inside one would wait for it forever.
const (
	sqlInsertAudit = `INSERT INTO audit (` + auditColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	sqlInsertMapped   = `INSERT INTO mapped (inbound_id, mapped_at, outcome) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	sqlUpsertResource = `INSERT INTO resource (type, id, version, updated_at, sealed) VALUES (?, ?, 1, ?, ?)
		ON CONFLICT (type, id) DO UPDATE SET version = version + 1, updated_at = excluded.updated_at, sealed = excluded.sealed`
	sqlInsertCommunication = `INSERT INTO communication (id, inbound_id, identifier, status, priority, category,
		subject, encounter, recipients, sent, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlInsertEscalation = `INSERT INTO escalation (communication_id, unit, every_us, step, due_at) VALUES (?, ?, ?, 0, ?) ON CONFLICT DO NOTHING`

	sqlQueueDelivery = `INSERT INTO delivery (communication_id, recipient, state, rank, updated_at)
		VALUES (?, ?, 'queued', 0, ?) ON CONFLICT DO NOTHING`
	sqlDeliveryExists = `SELECT count(*) FROM delivery WHERE communication_id = ? AND recipient = ?`
	sqlSetDelivery    = `UPDATE delivery SET state = ?, rank = ?, updated_at = ?
		WHERE communication_id = ? AND recipient = ? AND rank < ?`
	sqlCompleteCommunication = `UPDATE communication SET status = 'completed', sealed = ? WHERE id = ? AND status <> 'completed'`

	sqlForgetAssertions = `DELETE FROM client_assertion WHERE expires_at < ?`
	sqlSpendAssertion   = `INSERT INTO client_assertion (client_id, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
)

var writeQueries = []string{
	sqlInsertAudit, sqlInsertMapped, sqlUpsertResource, sqlInsertCommunication, sqlInsertEscalation,
	sqlQueueDelivery, sqlDeliveryExists, sqlSetDelivery, sqlCompleteCommunication,
	sqlForgetAssertions, sqlSpendAssertion,
}
