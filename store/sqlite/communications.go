package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// versionColumns are the columns communication and communication_version
// share: a version copied into the history keeps all of them.
const versionColumns = `id, version, identifier, status, priority, category, subject, encounter, sender, recipients, sent, received, updated_at, sealed, created_by`

// Reads of versions, current or past: one statement, so one snapshot of
// both tables.
const (
	sqlReadVersion = `SELECT ` + communicationColumns + ` FROM (
		SELECT ` + versionColumns + ` FROM communication WHERE id = ? AND version = ?
		UNION ALL SELECT ` + versionColumns + ` FROM communication_version WHERE id = ? AND version = ?) c`
	sqlReadHistory = `SELECT ` + communicationColumns + `, c.created_by FROM (
		SELECT ` + versionColumns + ` FROM communication WHERE id = ?
		UNION ALL SELECT ` + versionColumns + ` FROM communication_version WHERE id = ?) c
		ORDER BY c.version DESC`
	// sqlCreatedBy remembers how a Communication was created, when not
	// by POST (see migration 0018).
	sqlCreatedBy = `UPDATE communication SET created_by = ? WHERE id = ?`
	// sqlEndEscalation ends the escalation of a recalled Communication.
	sqlEndEscalation = `UPDATE escalation SET due_at = NULL WHERE communication_id = ?`
)

// updatedAt is when c's version was stored: Updated, or Sent when zero.
func updatedAt(c store.CommunicationRow) time.Time {
	if c.Updated.IsZero() {
		return c.Sent
	}
	return c.Updated
}

// microsOrNull is t in Unix microseconds, or NULL when t is zero.
func microsOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// insertCommunication inserts c as version 1 with its index tokens, in
// tx, unless its id or identifier exists; it reports whether it did.
func (s *Store) insertCommunication(ctx context.Context, tx *sql.Tx, inboundID string, c store.CommunicationRow) (bool, error) {
	recipients, err := json.Marshal(nonNilStrings(c.Recipients))
	if err != nil {
		return false, err
	}
	res, err := s.txExec(ctx, tx, sqlInsertCommunication,
		c.ID, inboundID, c.Identifier, c.Status, c.Priority, c.Category, c.Subject, c.Encounter,
		string(recipients), c.Sent.UnixMicro(), nonNil(c.Sealed), c.Sender, microsOrNull(c.Received), updatedAt(c).UnixMicro())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	return true, s.insertTokens(ctx, tx, c.ID, c.Tokens)
}

// insertTokens adds a Communication's index tokens (a token given twice
// is stored once).
func (s *Store) insertTokens(ctx context.Context, tx *sql.Tx, id string, tokens []store.IndexToken) error {
	if len(tokens) == 0 {
		return nil
	}
	st, _ := s.txStmt(ctx, tx, sqlInsertToken)
	for _, t := range tokens {
		if _, err := st.ExecContext(ctx, id, t.Param, t.System, t.Code); err != nil {
			return fmt.Errorf("writing the %s tokens: %w", t.Param, err)
		}
	}
	return nil
}

// queueIn queues a delivery per recipient that has none, in tx.
func (s *Store) queueIn(ctx context.Context, tx *sql.Tx, id string, recipients []string, at time.Time) error {
	if len(recipients) == 0 {
		return nil
	}
	st, _ := s.txStmt(ctx, tx, sqlQueueDelivery)
	for _, r := range recipients {
		if _, err := st.ExecContext(ctx, id, r, at.UnixMicro()); err != nil {
			return fmt.Errorf("queueing the delivery to %s: %w", r, err)
		}
	}
	return nil
}

// publishIn publishes events in the write transaction tx and appends its
// audit events' records; it must be the last step before commit, which
// owes their AuditDone (see store.AuditAppender).
func (s *Store) publishIn(ctx context.Context, tx *sql.Tx, events []store.Event) error {
	a, err := store.PublishWrite(events, func() (message.Publisher, error) { return s.txPublisher(tx) })
	if err != nil || a == nil {
		return err
	}
	records, checkpoints, err := a.LinkAudit(ctx, func(ctx context.Context, chain string) (store.AuditRecord, error) {
		return auditHead(ctx, tx, chain)
	})
	if err == nil {
		err = s.insertAudit(ctx, tx, records, checkpoints)
	}
	if err != nil {
		err = fmt.Errorf("appending audit records: %w", err)
		a.AuditDone(err)
		return err
	}
	s.publishedMu.Lock()
	s.pendingAudit = a
	s.publishedMu.Unlock()
	return nil
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
	if s.write == nil {
		return fmt.Errorf("creating Communication/%s: %w", row.ID, ErrReadOnly)
	}
	if err := s.createCommunication(ctx, row, by, events); err != nil {
		return fmt.Errorf("creating Communication/%s: %w", row.ID, err)
	}
	return nil
}

func (s *Store) createCommunication(ctx context.Context, row store.CommunicationRow, by store.Method, events []store.Event) (err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	inserted, err := s.insertCommunication(ctx, tx, "", row)
	if err != nil {
		return err
	}
	if !inserted {
		return fmt.Errorf("its id or identifier exists: %w", store.ErrConflict)
	}
	if by != "" {
		if _, err := s.txExec(ctx, tx, sqlCreatedBy, string(by), row.ID); err != nil {
			return fmt.Errorf("recording how it was created: %w", err)
		}
	}
	if err := s.queueIn(ctx, tx, row.ID, row.Recipients, updatedAt(row)); err != nil {
		return err
	}
	if err := s.publishIn(ctx, tx, events); err != nil {
		return err
	}
	if err := s.commit(tx); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// UpdateCommunication stores row as the next version of its
// Communication. The single writer makes updates take turns, and the
// UPDATE names the version it replaces. row.Version is ignored. See
// store.CommunicationWrites.
func (s *Store) UpdateCommunication(ctx context.Context, row store.CommunicationRow, ifVersion int, events ...store.Event) (int, error) {
	if s.write == nil {
		return 0, fmt.Errorf("updating Communication/%s: %w", row.ID, ErrReadOnly)
	}
	v, err := s.updateCommunication(ctx, row, ifVersion, events)
	if err != nil {
		return 0, fmt.Errorf("updating Communication/%s: %w", row.ID, err)
	}
	return v, nil
}

func (s *Store) updateCommunication(ctx context.Context, row store.CommunicationRow, ifVersion int, events []store.Event) (_ int, err error) {
	recipients, err := json.Marshal(nonNilStrings(row.Recipients))
	if err != nil {
		return 0, err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	cur, _ := s.txStmt(ctx, tx, sqlCurrentVersion)
	var current int
	err = cur.QueryRowContext(ctx, row.ID).Scan(&current)
	if isNoRows(err) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("reading the current version: %w", err)
	}
	if ifVersion > 0 && ifVersion != current {
		return 0, fmt.Errorf("version %d is not the current one, %d: %w", ifVersion, current, store.ErrVersionConflict)
	}
	if _, err := s.txExec(ctx, tx, sqlKeepVersion, row.ID); err != nil {
		return 0, fmt.Errorf("keeping version %d: %w", current, err)
	}
	next := current + 1
	res, err := s.txExec(ctx, tx, sqlUpdateCommunication,
		row.Identifier, row.Status, row.Priority, row.Category, row.Subject, row.Encounter, string(recipients),
		row.Sent.UnixMicro(), nonNil(row.Sealed), row.Sender, microsOrNull(row.Received), next, updatedAt(row).UnixMicro(),
		row.ID, current)
	if err != nil {
		return 0, uniqueConflict(err) // the identifier of another Communication
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return 0, fmt.Errorf("writing version %d: %d rows affected (%v): %w", next, n, err, store.ErrVersionConflict)
	}
	if _, err := s.txExec(ctx, tx, sqlDeleteTokens, row.ID); err != nil {
		return 0, fmt.Errorf("replacing the tokens: %w", err)
	}
	if err := s.insertTokens(ctx, tx, row.ID, row.Tokens); err != nil {
		return 0, err
	}
	if err := s.queueIn(ctx, tx, row.ID, row.Recipients, updatedAt(row)); err != nil {
		return 0, err
	}
	if _, err := s.txExec(ctx, tx, sqlDropRecipients, row.ID, string(recipients)); err != nil {
		return 0, fmt.Errorf("forgetting removed recipients: %w", err)
	}
	if row.Status == store.StatusEnteredInError {
		if _, err := s.txExec(ctx, tx, sqlEndEscalation, row.ID); err != nil {
			return 0, fmt.Errorf("ending the escalation of a recalled Communication: %w", err)
		}
	}
	if err := s.publishIn(ctx, tx, events); err != nil {
		return 0, err
	}
	if err := s.commit(tx); err != nil {
		return 0, fmt.Errorf("committing: %w", err)
	}
	return next, nil
}

// CommunicationVersion returns one version of a Communication, Tokens
// nil. See store.CommunicationWrites.
func (s *Store) CommunicationVersion(ctx context.Context, id string, version int) (store.CommunicationRow, error) {
	c, err := scanCommunication(s.queryRow(ctx, sqlReadVersion, id, version, id, version))
	if isNoRows(err) {
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
	rows, err := s.query(ctx, sqlReadHistory, id, id)
	if err != nil {
		return nil, fmt.Errorf("reading the history of Communication/%s: %w", id, err)
	}
	defer rows.Close()
	var out []store.Version
	for rows.Next() {
		var createdBy string
		c, err := scanCommunication(rows, &createdBy)
		if err != nil {
			return nil, fmt.Errorf("reading the history of Communication/%s: %w", id, err)
		}
		out = append(out, store.Version{CommunicationRow: c, Method: store.MethodOf(c.Version, createdBy)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the history of Communication/%s: %w", id, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading the history of Communication/%s: %w", id, store.ErrNotFound)
	}
	return out, nil
}
