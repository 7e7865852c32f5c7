package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/carebridge/carebridge/store"
)

// versionColumns are the columns communication and communication_version
// share: a version copied into the history keeps all of them.
const versionColumns = `id, version, identifier, status, priority, category, subject, encounter, sender, recipients, sent, received, updated_at, sealed, created_by`

// Writes and reads of versions. The reads are one statement, so one
// snapshot of both tables.
const (
	sqlInsertCommunication = `INSERT INTO communication (id, inbound_id, identifier, status, priority, category,
		subject, encounter, recipients, sent, sealed, sender, received, version, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14) ON CONFLICT DO NOTHING`
	// sqlCreateCommunication is sqlInsertCommunication for a create in one
	// batch (inBatch): a Communication whose id or identifier exists fails
	// it, and so the batch.
	sqlCreateCommunication = `INSERT INTO communication (id, inbound_id, identifier, status, priority, category,
		subject, encounter, recipients, sent, sealed, sender, received, version, updated_at, created_by)
		VALUES ($1, '', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14)`
	// sqlInsertTokens adds tokens given as three arrays (param, system,
	// code); one given twice is stored once.
	sqlInsertTokens = `INSERT INTO communication_token (communication_id, param, system, code)
		SELECT $1, t.param, t.system, t.code FROM unnest($2::text[], $3::text[], $4::text[]) AS t(param, system, code)
		ON CONFLICT DO NOTHING`
	sqlQueueDeliveries = `INSERT INTO delivery (communication_id, recipient, state, rank, updated_at)
		SELECT $1, r, 'queued', 0, $3 FROM unnest($2::text[]) AS r ON CONFLICT DO NOTHING`
	sqlReadVersion = `SELECT ` + communicationColumns + ` FROM (
		SELECT ` + versionColumns + ` FROM communication WHERE id = $1 AND version = $2
		UNION ALL SELECT ` + versionColumns + ` FROM communication_version WHERE id = $1 AND version = $2) c`
	sqlReadHistory = `SELECT ` + communicationColumns + `, c.created_by FROM (
		SELECT ` + versionColumns + ` FROM communication WHERE id = $1
		UNION ALL SELECT ` + versionColumns + ` FROM communication_version WHERE id = $1) c
		ORDER BY c.version DESC`
)

// updatedAt is when c's version was stored: Updated, or Sent when zero.
func updatedAt(c store.CommunicationRow) time.Time {
	if c.Updated.IsZero() {
		return c.Sent
	}
	return c.Updated
}

// timeOrNull is t, or NULL when t is zero.
func timeOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// tokenArrays are tokens as the arrays of sqlInsertTokens.
func tokenArrays(tokens []store.IndexToken) (params, systems, codes []string) {
	params, systems, codes = make([]string, len(tokens)), make([]string, len(tokens)), make([]string, len(tokens))
	for i, t := range tokens {
		params[i], systems[i], codes[i] = t.Param, t.System, t.Code
	}
	return params, systems, codes
}

// queueInsertCommunication queues the insert of c as version 1 with its
// tokens, as one statement, unless its id or identifier exists (then the
// tokens are not written either).
func queueInsertCommunication(b *pgx.Batch, inboundID string, c store.CommunicationRow) {
	params, systems, codes := tokenArrays(c.Tokens)
	b.Queue(`WITH c AS (`+sqlInsertCommunication+` RETURNING id)
		INSERT INTO communication_token (communication_id, param, system, code)
		SELECT c.id, t.param, t.system, t.code FROM c, unnest($15::text[], $16::text[], $17::text[]) AS t(param, system, code)
		ON CONFLICT DO NOTHING`,
		c.ID, inboundID, c.Identifier, c.Status, c.Priority, c.Category, c.Subject, c.Encounter, nonNilStrings(c.Recipients),
		c.Sent, nonNil(c.Sealed), c.Sender, timeOrNull(c.Received), updatedAt(c), params, systems, codes)
}

// publishIn publishes events in tx, an inTx transaction, and appends its
// audit events' records last (see store.AuditAppender).
func (s *Store) publishIn(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	a, err := store.PublishWrite(events, func() (message.Publisher, error) { return s.txPublisher(tx) })
	if err != nil || a == nil {
		return err
	}
	wt, ok := tx.(*wakeTx)
	if !ok {
		return errors.New("appending audit records: not in an inTx transaction")
	}
	wt.appender = a // AuditDone is owed from here on
	records, checkpoints, err := a.LinkAudit(ctx, func(ctx context.Context, chain string) (store.AuditRecord, error) {
		return auditHead(ctx, tx, chain)
	})
	if err != nil {
		return fmt.Errorf("linking audit records: %w", err)
	}
	b := &pgx.Batch{}
	queueAudit(b, records, checkpoints)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("appending audit records: %w", err)
	}
	return nil
}

// isUniqueViolation reports a unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// uniqueConstraint is the constraint a unique violation broke, or "" for
// any other error.
func uniqueConstraint(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return pgErr.ConstraintName
	}
	return ""
}

// CreateCommunication stores a new Communication as version 1, with no
// inbound message. row.Version is ignored. See store.CommunicationWrites.
func (s *Store) CreateCommunication(ctx context.Context, row store.CommunicationRow, events ...store.Event) error {
	return s.createAs(ctx, row, "", events)
}

// PutCommunication stores a new Communication a client created by
// update. See store.CommunicationWrites.
func (s *Store) PutCommunication(ctx context.Context, row store.CommunicationRow, events ...store.Event) error {
	return s.createAs(ctx, row, store.MethodPut, events)
}

func (s *Store) createAs(ctx context.Context, row store.CommunicationRow, by store.Method, events []store.Event) error {
	params, systems, codes := tokenArrays(row.Tokens)
	var b pgx.Batch
	b.Queue(sqlCreateCommunication,
		row.ID, row.Identifier, row.Status, row.Priority, row.Category, row.Subject, row.Encounter,
		nonNilStrings(row.Recipients), row.Sent, nonNil(row.Sealed), row.Sender, timeOrNull(row.Received), updatedAt(row), string(by))
	b.Queue(sqlInsertTokens, row.ID, params, systems, codes)
	b.Queue(sqlQueueDeliveries, row.ID, nonNilStrings(row.Recipients), updatedAt(row))
	err := s.inBatch(ctx, &b, events)
	switch uniqueConstraint(err) {
	case "communication_pkey", "communication_identifier_key":
		err = fmt.Errorf("its id or identifier exists: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("creating Communication/%s: %w", row.ID, err)
	}
	return nil
}

// UpdateCommunication stores row as the next version of its
// Communication. The current row is locked (SELECT … FOR UPDATE) before
// its version is compared, so updates from one version take turns and
// only the first succeeds. row.Version is ignored. See
// store.CommunicationWrites.
func (s *Store) UpdateCommunication(ctx context.Context, row store.CommunicationRow, ifVersion int, events ...store.Event) (int, error) {
	var next int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var current int
		err := tx.QueryRow(ctx, `SELECT version FROM communication WHERE id = $1 FOR UPDATE`, row.ID).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("reading the current version: %w", err)
		}
		if ifVersion > 0 && ifVersion != current {
			return fmt.Errorf("version %d is not the current one, %d: %w", ifVersion, current, store.ErrVersionConflict)
		}
		next = current + 1
		params, systems, codes := tokenArrays(row.Tokens)
		var b pgx.Batch
		b.Queue(`INSERT INTO communication_version (`+versionColumns+`) SELECT `+versionColumns+` FROM communication WHERE id = $1`, row.ID)
		b.Queue(`UPDATE communication SET identifier = $3, status = $4, priority = $5, category = $6, subject = $7,
			encounter = $8, recipients = $9, sent = $10, sealed = $11, sender = $12, received = $13, version = $14, updated_at = $15
			WHERE id = $1 AND version = $2`,
			row.ID, current, row.Identifier, row.Status, row.Priority, row.Category, row.Subject, row.Encounter,
			nonNilStrings(row.Recipients), row.Sent, nonNil(row.Sealed), row.Sender, timeOrNull(row.Received), next, updatedAt(row))
		b.Queue(`DELETE FROM communication_token WHERE communication_id = $1`, row.ID)
		b.Queue(sqlInsertTokens, row.ID, params, systems, codes)
		b.Queue(sqlQueueDeliveries, row.ID, nonNilStrings(row.Recipients), updatedAt(row))
		// The deliveries of recipients the update took off go.
		b.Queue(`DELETE FROM delivery WHERE communication_id = $1 AND NOT (recipient = ANY($2::text[]))`, row.ID, nonNilStrings(row.Recipients))
		if row.Status == store.StatusEnteredInError { // recalled: its escalation ends
			b.Queue(`UPDATE escalation SET due_at = NULL WHERE communication_id = $1`, row.ID)
		}
		res := tx.SendBatch(ctx, &b)
		if _, err := res.Exec(); err != nil {
			res.Close()
			return fmt.Errorf("keeping version %d: %w", current, err)
		}
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			if isUniqueViolation(err) { // the identifier of another Communication
				return fmt.Errorf("%w: %v", store.ErrConflict, err)
			}
			return err
		}
		if tag.RowsAffected() != 1 {
			res.Close()
			return fmt.Errorf("writing version %d: %d rows affected: %w", next, tag.RowsAffected(), store.ErrVersionConflict)
		}
		if err := res.Close(); err != nil {
			return err
		}
		return s.publishIn(ctx, tx, events)
	})
	if err != nil {
		return 0, fmt.Errorf("updating Communication/%s: %w", row.ID, err)
	}
	return next, nil
}

// CommunicationVersion returns one version of a Communication, Tokens
// nil. See store.CommunicationWrites.
func (s *Store) CommunicationVersion(ctx context.Context, id string, version int) (store.CommunicationRow, error) {
	c, err := scanCommunication(s.pool.QueryRow(ctx, sqlReadVersion, id, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("reading Communication/%s version %d: %w", id, version, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading Communication/%s version %d: %w", id, version, err)
	}
	return c, nil
}

// CommunicationHistory returns every version of a Communication, newest
// first, Tokens nil. See store.CommunicationWrites.
func (s *Store) CommunicationHistory(ctx context.Context, id string) ([]store.CommunicationRow, error) {
	vs, err := s.CommunicationVersions(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]store.CommunicationRow, len(vs))
	for i, v := range vs {
		out[i] = v.CommunicationRow
	}
	return out, nil
}

// CommunicationVersions returns every version of a Communication, newest
// first, with how it was written, Tokens nil. See
// store.CommunicationWrites.
func (s *Store) CommunicationVersions(ctx context.Context, id string) ([]store.Version, error) {
	rows, err := s.pool.Query(ctx, sqlReadHistory, id)
	if err != nil {
		return nil, fmt.Errorf("reading the history of Communication/%s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Version, error) {
		var createdBy string
		c, err := scanCommunication(row, &createdBy)
		return store.Version{CommunicationRow: c, Method: store.MethodOf(c.Version, createdBy)}, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the history of Communication/%s: %w", id, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading the history of Communication/%s: %w", id, store.ErrNotFound)
	}
	return out, nil
}
