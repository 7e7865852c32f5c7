package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/carebridge/carebridge/store"
)

// The index of mapped resources (migration 17).
const (
	sqlDeleteResourceTokens = `DELETE FROM resource_token WHERE type = ? AND id = ?`
	sqlUpsertResourceIndex  = `INSERT INTO resource_index (type, id, subject, status, date_lo, date_hi) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (type, id) DO UPDATE SET subject = excluded.subject, status = excluded.status,
		date_lo = excluded.date_lo, date_hi = excluded.date_hi`
	sqlInsertResourceIndex = `INSERT INTO resource_index (type, id, subject, status, date_lo, date_hi) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`
	sqlInsertResourceToken = `INSERT INTO resource_token (type, id, param, system, code) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlQueueUnindexed      = `INSERT INTO resource_unindexed (type, id) VALUES (?, ?) ON CONFLICT DO NOTHING`
	sqlDropUnindexed       = `DELETE FROM resource_unindexed WHERE type = ? AND id = ?`
)

// indexResource writes r's index rows in tx, replacing those of an
// earlier version; a resource without an index is queued for the
// backfill instead, and its old rows are dropped.
//
// A resource still listed for the backfill (stored before the index) is
// left listed: the backfill finds it indexed and only takes it off.
func (s *Store) indexResource(ctx context.Context, tx *sql.Tx, r store.SealedResource) error {
	if !store.IndexedType(r.Type) {
		return nil
	}
	if _, err := s.txExec(ctx, tx, sqlDeleteResourceTokens, r.Type, r.ID); err != nil {
		return err
	}
	if r.Index == nil {
		if _, err := s.txExec(ctx, tx, `DELETE FROM resource_index WHERE type = ? AND id = ?`, r.Type, r.ID); err != nil {
			return err
		}
		_, err := s.txExec(ctx, tx, sqlQueueUnindexed, r.Type, r.ID)
		return err
	}
	lo, hi := indexDates(r.Index)
	if _, err := s.txExec(ctx, tx, sqlUpsertResourceIndex, r.Type, r.ID, r.Index.Subject, r.Index.Status, lo, hi); err != nil {
		return err
	}
	return s.insertResourceTokens(ctx, tx, r.Type, r.ID, r.Index.Tokens)
}

func (s *Store) insertResourceTokens(ctx context.Context, tx *sql.Tx, typ, id string, tokens []store.IndexToken) error {
	for _, t := range tokens {
		if _, err := s.txExec(ctx, tx, sqlInsertResourceToken, typ, id, t.Param, t.System, t.Code); err != nil {
			return err
		}
	}
	return nil
}

// indexDates are ix's date bounds as stored: Unix microseconds, NULL
// when it has no date.
func indexDates(ix *store.ResourceIndex) (lo, hi sql.NullInt64) {
	if !ix.Dated {
		return lo, hi
	}
	return sql.NullInt64{Int64: ix.From.UnixMicro(), Valid: true}, sql.NullInt64{Int64: ix.To.UnixMicro(), Valid: true}
}

// SearchResources returns a page of matching resources, read from the
// read pool. See store.ResourceSearch.
func (s *Store) SearchResources(ctx context.Context, q store.ResourceQuery) ([]store.SealedResource, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("searching resources: %w", err)
	}
	where, order, args := q.SQL(dialect)
	rows, err := s.read.QueryContext(ctx, `SELECT r.type, r.id, r.sealed FROM resource_index i
		JOIN resource r ON r.type = i.type AND r.id = i.id WHERE `+where+` ORDER BY `+order+` LIMIT ? OFFSET ?`,
		append(args, limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", q.Type, err)
	}
	defer rows.Close()
	var out []store.SealedResource
	for rows.Next() {
		var r store.SealedResource
		if err := rows.Scan(&r.Type, &r.ID, &r.Sealed); err != nil {
			return nil, fmt.Errorf("searching %s: %w", q.Type, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching %s: %w", q.Type, err)
	}
	return out, nil
}

// CountResources counts matching resources. See store.ResourceSearch.
func (s *Store) CountResources(ctx context.Context, q store.ResourceQuery) (int, error) {
	if err := q.Validate(); err != nil {
		return 0, fmt.Errorf("counting resources: %w", err)
	}
	where, _, args := q.SQL(dialect)
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM resource_index i WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting %s: %w", q.Type, err)
	}
	return n, nil
}

// resourceBackfillBatch is how many resources one backfill transaction
// indexes.
const resourceBackfillBatch = 200

// BackfillResourceIndex indexes the resources listed in
// resource_unindexed, a batch a transaction, and takes them off the list.
// One that has index rows by then (StoreMapped wrote it again meanwhile)
// keeps them. See store.ResourceSearch.
func (s *Store) BackfillResourceIndex(ctx context.Context, index func(store.SealedResource) (store.ResourceIndex, bool)) (indexed, left int, err error) {
	if s.write == nil {
		return 0, 0, fmt.Errorf("backfilling the resource index: %w", ErrReadOnly)
	}
	var typ, id string
	for {
		batch, err := s.unindexed(ctx, typ, id)
		if err != nil {
			return indexed, left, fmt.Errorf("backfilling the resource index: %w", err)
		}
		if len(batch) == 0 {
			return indexed, left, nil
		}
		n, skipped, err := s.backfillBatch(ctx, batch, index)
		indexed += n
		left += skipped
		if err != nil {
			return indexed, left, fmt.Errorf("backfilling the resource index: %w", err)
		}
		last := batch[len(batch)-1]
		typ, id = last.Type, last.ID
	}
}

// unindexed returns the next resources listed for the backfill after
// (typ, id); one no longer stored, or indexed by now, has a nil Sealed.
func (s *Store) unindexed(ctx context.Context, typ, id string) ([]store.SealedResource, error) {
	// One indexed meanwhile (stored again) comes without its seal: there
	// is nothing to do but take it off the list.
	rows, err := s.read.QueryContext(ctx, `SELECT u.type, u.id, CASE WHEN i.id IS NULL THEN r.sealed END FROM resource_unindexed u
		LEFT JOIN resource r ON r.type = u.type AND r.id = u.id
		LEFT JOIN resource_index i ON i.type = u.type AND i.id = u.id
		WHERE (u.type, u.id) > (?, ?) ORDER BY u.type, u.id LIMIT ?`, typ, id, resourceBackfillBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.SealedResource
	for rows.Next() {
		var r store.SealedResource
		if err := rows.Scan(&r.Type, &r.ID, &r.Sealed); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) backfillBatch(ctx context.Context, batch []store.SealedResource, index func(store.SealedResource) (store.ResourceIndex, bool)) (indexed, left int, err error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, r := range batch {
		if r.Sealed == nil || !store.IndexedType(r.Type) { // not stored, or not searchable: nothing to index
			if _, err := s.txExec(ctx, tx, sqlDropUnindexed, r.Type, r.ID); err != nil {
				return 0, 0, err
			}
			continue
		}
		ix, ok := index(r)
		if !ok {
			left++
			continue
		}
		lo, hi := indexDates(&ix)
		res, err := s.txExec(ctx, tx, sqlInsertResourceIndex, r.Type, r.ID, ix.Subject, ix.Status, lo, hi)
		if err != nil {
			return 0, 0, fmt.Errorf("indexing %s/%s: %w", r.Type, r.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, 0, err
		} else if n > 0 {
			if err := s.insertResourceTokens(ctx, tx, r.Type, r.ID, ix.Tokens); err != nil {
				return 0, 0, fmt.Errorf("indexing %s/%s: %w", r.Type, r.ID, err)
			}
			indexed++
		}
		if _, err := s.txExec(ctx, tx, sqlDropUnindexed, r.Type, r.ID); err != nil {
			return 0, 0, err
		}
	}
	return indexed, left, tx.Commit()
}
