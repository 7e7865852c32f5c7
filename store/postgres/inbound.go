package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

const metadataColumns = `id, received_at, peer, transport, sending_application, sending_facility,
	receiving_application, receiving_facility, control_id, message_type, version,
	state, ack_code, error, correlation_id, size`

// lockDedupeKeys takes a transaction advisory lock per dedupe key, in the
// order of the (sorted) array, so concurrent batches never deadlock.
const lockDedupeKeys = `SELECT count(pg_advisory_xact_lock(k))
	FROM unnest($1::bigint[]) WITH ORDINALITY AS u(k, n)`

// findOriginals returns, per batch position n, the earliest accepted message
// with the same dedupe key received at or after since.
const findOriginals = `SELECT u.n, o.id, o.ack_code
	FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[])
		AS u(app, fac, ctrl, since, n)
	CROSS JOIN LATERAL (
		SELECT id, ack_code FROM inbound
		WHERE sending_application = u.app AND sending_facility = u.fac AND control_id = u.ctrl
			AND state = 'accepted' AND received_at >= u.since
		ORDER BY received_at, id LIMIT 1
	) AS o`

// insertInbound inserts one row per array element.
const insertInbound = `INSERT INTO inbound (` + metadataColumns + `, sealed)
	SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
		$7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
		$15::text[], $16::int[], $17::bytea[])`

// AcceptInbound stores batch in one transaction, publishing the events of
// the messages it stores in the same transaction. See store.Inbound.
func (s *Store) AcceptInbound(ctx context.Context, batch []store.Accept) ([]store.AcceptResult, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	if err := store.ValidateBatch(batch); err != nil {
		return nil, fmt.Errorf("storing inbound batch: %w", err)
	}
	var results []store.AcceptResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		results, err = s.acceptInbound(ctx, tx, batch)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storing inbound batch: %w", err)
	}
	return results, nil
}

func (s *Store) acceptInbound(ctx context.Context, tx pgx.Tx, batch []store.Accept) ([]store.AcceptResult, error) {
	results := make([]store.AcceptResult, len(batch))
	found := make([]bool, len(batch))
	if err := lookupOriginals(ctx, tx, batch, results, found); err != nil {
		return nil, err
	}

	var rows inboundRows
	stored := map[store.DedupeKey][]int{}
	var events store.EventsByTopic
	for i := range batch {
		a := &batch[i]
		m := &a.Message
		if found[i] {
			continue
		}
		if a.Dedupe {
			if j, ok := store.EarlierInBatch(batch, stored[m.Key()], a.DedupeSince); ok {
				e := &batch[j].Message
				results[i] = store.AcceptResult{ID: e.ID, Duplicate: true, State: e.State, AckCode: e.AckCode}
				continue
			}
		}
		rows.add(m)
		results[i] = store.AcceptResult{ID: m.ID, State: m.State, AckCode: m.AckCode}
		if m.State == store.StateAccepted {
			stored[m.Key()] = append(stored[m.Key()], i)
		}
		events.Add(a.Events)
	}

	if len(rows.id) > 0 {
		tag, err := tx.Exec(ctx, insertInbound, rows.args()...)
		if err != nil {
			return nil, fmt.Errorf("inserting %d inbound messages: %w", len(rows.id), err)
		}
		if n := tag.RowsAffected(); n != int64(len(rows.id)) {
			return nil, fmt.Errorf("inserting %d inbound messages: %d rows affected", len(rows.id), n)
		}
	}
	if events.Len() > 0 {
		pub, err := s.txPublisher(tx)
		if err != nil {
			return nil, fmt.Errorf("creating publisher: %w", err)
		}
		if err := events.Publish(pub); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// lookupOriginals locks the dedupe keys of the batch and finds the earlier
// accepted messages in the database, in one round trip.
func lookupOriginals(ctx context.Context, tx pgx.Tx, batch []store.Accept, results []store.AcceptResult, found []bool) error {
	var locks []int64
	var apps, facs, ctrls []string
	var sinces []time.Time
	var ns []int32
	for i := range batch {
		a := &batch[i]
		if !a.Dedupe {
			continue
		}
		m := &a.Message
		locks = append(locks, keyLock(m.Key()))
		apps, facs, ctrls = append(apps, m.SendingApplication), append(facs, m.SendingFacility), append(ctrls, m.ControlID)
		sinces = append(sinces, a.DedupeSince)
		ns = append(ns, int32(i))
	}
	if len(ns) == 0 {
		return nil
	}
	slices.Sort(locks)
	locks = slices.Compact(locks)

	b := &pgx.Batch{}
	b.Queue(lockDedupeKeys, locks)
	b.Queue(findOriginals, apps, facs, ctrls, sinces, ns)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("locking dedupe keys: %w", err)
	}
	rs, err := br.Query()
	if err != nil {
		return fmt.Errorf("looking up duplicates: %w", err)
	}
	for rs.Next() {
		var n int32
		var id, ack string
		if err := rs.Scan(&n, &id, &ack); err != nil {
			rs.Close()
			return fmt.Errorf("looking up duplicates: %w", err)
		}
		results[n] = store.AcceptResult{ID: id, Duplicate: true, State: store.StateAccepted, AckCode: ack}
		found[n] = true
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("looking up duplicates: %w", err)
	}
	return br.Close()
}

// keyLock hashes a dedupe key to an advisory lock id.
func keyLock(k store.DedupeKey) int64 {
	h := fnv.New64a()
	for _, s := range []string{"carebridge.inbound", k.SendingApplication, k.SendingFacility, k.ControlID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}

// inboundRows holds the columns of the rows to insert, as arrays.
type inboundRows struct {
	id, peer, transport, sapp, sfac, rapp, rfac, ctrl, typ, ver, state, ack, errs, corr []string
	received                                                                            []time.Time
	size                                                                                []int32
	sealed                                                                              [][]byte
}

func (r *inboundRows) add(m *store.InboundMessage) {
	r.id = append(r.id, m.ID)
	r.received = append(r.received, m.ReceivedAt)
	r.peer = append(r.peer, m.Peer)
	r.transport = append(r.transport, m.Transport)
	r.sapp = append(r.sapp, m.SendingApplication)
	r.sfac = append(r.sfac, m.SendingFacility)
	r.rapp = append(r.rapp, m.ReceivingApplication)
	r.rfac = append(r.rfac, m.ReceivingFacility)
	r.ctrl = append(r.ctrl, m.ControlID)
	r.typ = append(r.typ, m.MessageType)
	r.ver = append(r.ver, m.Version)
	r.state = append(r.state, string(m.State))
	r.ack = append(r.ack, m.AckCode)
	r.errs = append(r.errs, m.Error)
	r.corr = append(r.corr, m.CorrelationID)
	r.size = append(r.size, int32(m.Size))
	sealed := m.Sealed
	if sealed == nil {
		sealed = []byte{}
	}
	r.sealed = append(r.sealed, sealed)
}

func (r *inboundRows) args() []any {
	return []any{r.id, r.received, r.peer, r.transport, r.sapp, r.sfac, r.rapp, r.rfac,
		r.ctrl, r.typ, r.ver, r.state, r.ack, r.errs, r.corr, r.size, r.sealed}
}

// ListInbound returns metadata of inbound messages in id order. See
// store.Inbound.
func (s *Store) ListInbound(ctx context.Context, f store.InboundFilter) ([]store.InboundMessage, error) {
	q := `SELECT ` + metadataColumns + ` FROM inbound WHERE id > $1`
	args := []any{f.AfterID}
	if f.State != "" {
		q += ` AND state = $3`
		args = append(args, f.PageSize(), string(f.State))
	} else {
		args = append(args, f.PageSize())
	}
	q += ` ORDER BY id LIMIT $2`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing inbound messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.InboundMessage, error) {
		var m store.InboundMessage
		err := row.Scan(scanTargets(&m)...)
		m.ReceivedAt = m.ReceivedAt.UTC()
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing inbound messages: %w", err)
	}
	return out, nil
}

// GetInbound returns one inbound message including Sealed, or an error
// wrapping store.ErrNotFound.
func (s *Store) GetInbound(ctx context.Context, id string) (store.InboundMessage, error) {
	var m store.InboundMessage
	err := s.pool.QueryRow(ctx, `SELECT `+metadataColumns+`, sealed FROM inbound WHERE id = $1`, id).
		Scan(append(scanTargets(&m), &m.Sealed)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.InboundMessage{}, fmt.Errorf("getting inbound message %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.InboundMessage{}, fmt.Errorf("getting inbound message %s: %w", id, err)
	}
	m.ReceivedAt = m.ReceivedAt.UTC()
	return m, nil
}

func scanTargets(m *store.InboundMessage) []any {
	return []any{&m.ID, &m.ReceivedAt, &m.Peer, &m.Transport,
		&m.SendingApplication, &m.SendingFacility, &m.ReceivingApplication, &m.ReceivingFacility,
		&m.ControlID, &m.MessageType, &m.Version, (*string)(&m.State), &m.AckCode, &m.Error,
		&m.CorrelationID, &m.Size}
}
