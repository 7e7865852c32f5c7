package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// SearchAudit returns the page of matching audit records that q's Offset
// and Limit select. See store.AuditSearch.
func (s *Store) SearchAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	where, order, args, err := q.SQL(dialect)
	if err != nil {
		return nil, fmt.Errorf("searching the audit trail: %w", err)
	}
	n := len(args)
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit a WHERE `+where+
		` ORDER BY `+order+` LIMIT `+dialect.Placeholder(n+1)+` OFFSET `+dialect.Placeholder(n+2), append(planEachTime(args), limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("searching the audit trail: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("searching the audit trail: %w", err)
	}
	return out, nil
}

// CountAudit counts matching audit records. See store.AuditSearch.
func (s *Store) CountAudit(ctx context.Context, q store.AuditQuery) (int, error) {
	where, _, args, err := q.SQL(dialect)
	if err != nil {
		return 0, fmt.Errorf("counting audit records: %w", err)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit a WHERE `+where, planEachTime(args)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting audit records: %w", err)
	}
	return n, nil
}

// planEachTime runs a search as an unnamed statement, which PostgreSQL
// plans for the values it is given each time, never with the generic
// plan a prepared statement falls back to after five runs. A generic
// plan cannot know how rare a value is. For an audit search it guesses
// that one record in a hundred names any entity or patient, and for a
// newest-first page then walks the whole trail by time (half a second on
// a million records) instead of looking up the few records through
// audit_entities; for a resource search it cannot tell a patient with
// ten Observations from one with fifty thousand (on such a set, a
// patient's newest final Observations took 137 ms with the generic plan,
// 33 ms planned for the patient). Planning costs a fraction of a
// millisecond, which these searches can spend; the inbox search, the
// hot one, keeps its cached statements (its LIMIT and OFFSET are written
// out instead: see SearchCommunications).
func planEachTime(args []any) []any {
	return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
}

// backfillBatch is how many records one backfill statement updates.
const backfillBatch = 1000

// BackfillAuditEventIDs sets the event id of every audit record stored
// without one (those older than migration 12) to id(record), a thousand
// records a statement, and returns how many it set. It is safe to run
// while records are appended, and from several instances at once: a
// record that has its id is left as it is.
func (s *Store) BackfillAuditEventIDs(ctx context.Context, id func(store.AuditRecord) string) (int, error) {
	done := 0
	var chain string
	var seq int64
	for {
		rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit
			WHERE (chain, seq) > ($1, $2) AND event_id = '' ORDER BY chain, seq LIMIT $3`, chain, seq, backfillBatch)
		if err != nil {
			return done, fmt.Errorf("backfilling AuditEvent ids: %w", err)
		}
		batch, err := pgx.CollectRows(rows, scanAudit)
		if err != nil {
			return done, fmt.Errorf("backfilling AuditEvent ids: %w", err)
		}
		if len(batch) == 0 {
			return done, nil
		}
		chains, seqs, ids := make([]string, len(batch)), make([]int64, len(batch)), make([]string, len(batch))
		for i, r := range batch {
			if ids[i] = id(r); ids[i] == "" {
				return done, fmt.Errorf("backfilling AuditEvent ids: audit record %s/%d: no event id", r.Chain, r.Seq)
			}
			chains[i], seqs[i] = r.Chain, int64(r.Seq)
		}
		tag, err := s.pool.Exec(ctx, `UPDATE audit a SET event_id = v.id
			FROM unnest($1::text[], $2::bigint[], $3::text[]) AS v(chain, seq, id)
			WHERE a.chain = v.chain COLLATE "C" AND a.seq = v.seq AND a.event_id = ''`, chains, seqs, ids)
		if err != nil {
			return done, fmt.Errorf("backfilling AuditEvent ids: %w", err)
		}
		done += int(tag.RowsAffected())
		last := batch[len(batch)-1]
		chain, seq = last.Chain, int64(last.Seq)
	}
}
