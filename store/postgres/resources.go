package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// The index of mapped resources (migration 17).
const (
	sqlInsertResourceIndex = `INSERT INTO resource_index (type, id, subject, status, date_lo, date_hi) VALUES ($1, $2, $3, $4, $5, $6)`
	sqlInsertResourceToken = `INSERT INTO resource_token (type, id, param, system, code) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`
	sqlDropUnindexed       = `DELETE FROM resource_unindexed WHERE type = $1 AND id = $2`
)

// queueIndexResource queues the statements that write r's index rows,
// replacing those of an earlier version; a resource without an index is
// queued for the backfill instead, and its old rows are dropped.
//
// A resource still listed for the backfill (stored before the index) is
// left listed: the backfill finds it indexed and only takes it off.
func queueIndexResource(b *pgx.Batch, r store.SealedResource) {
	if !store.IndexedType(r.Type) {
		return
	}
	b.Queue(`DELETE FROM resource_token WHERE type = $1 AND id = $2`, r.Type, r.ID)
	if r.Index == nil {
		b.Queue(`DELETE FROM resource_index WHERE type = $1 AND id = $2`, r.Type, r.ID)
		b.Queue(`INSERT INTO resource_unindexed (type, id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, r.Type, r.ID)
		return
	}
	lo, hi := indexDates(r.Index)
	b.Queue(sqlInsertResourceIndex+` ON CONFLICT (type, id) DO UPDATE SET subject = excluded.subject, status = excluded.status,
		date_lo = excluded.date_lo, date_hi = excluded.date_hi`, r.Type, r.ID, r.Index.Subject, r.Index.Status, lo, hi)
	for _, t := range r.Index.Tokens {
		b.Queue(sqlInsertResourceToken, r.Type, r.ID, t.Param, t.System, t.Code)
	}
}

// indexDates are ix's date bounds as stored: nil (NULL) when it has no
// date.
func indexDates(ix *store.ResourceIndex) (lo, hi any) {
	if !ix.Dated {
		return nil, nil
	}
	return ix.From.UTC(), ix.To.UTC()
}

// SearchResources returns a page of matching resources. See
// store.ResourceSearch.
func (s *Store) SearchResources(ctx context.Context, q store.ResourceQuery) ([]store.SealedResource, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("searching resources: %w", err)
	}
	where, order, args := q.SQL(dialect)
	n := len(args)
	rows, err := s.pool.Query(ctx, `SELECT r.type, r.id, r.sealed FROM resource_index i
		JOIN resource r ON r.type = i.type AND r.id = i.id WHERE `+where+` ORDER BY `+order+
		` LIMIT `+dialect.Placeholder(n+1)+` OFFSET `+dialect.Placeholder(n+2), append(planEachTime(args), limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", q.Type, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.SealedResource, error) {
		var r store.SealedResource
		err := row.Scan(&r.Type, &r.ID, &r.Sealed)
		return r, err
	})
	if err != nil {
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
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM resource_index i WHERE `+where, planEachTime(args)...).Scan(&n); err != nil {
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
// keeps them, so that it is safe beside the map stage and from several
// instances at once. See store.ResourceSearch.
func (s *Store) BackfillResourceIndex(ctx context.Context, index func(store.SealedResource) (store.ResourceIndex, bool)) (indexed, left int, err error) {
	var typ, id string
	for {
		// One indexed meanwhile (stored again) comes without its seal:
		// there is nothing to do but take it off the list.
		rows, err := s.pool.Query(ctx, `SELECT u.type, u.id, CASE WHEN i.id IS NULL THEN r.sealed END FROM resource_unindexed u
			LEFT JOIN resource r ON r.type = u.type AND r.id = u.id
			LEFT JOIN resource_index i ON i.type = u.type AND i.id = u.id
			WHERE (u.type, u.id) > ($1, $2) ORDER BY u.type, u.id LIMIT $3`, typ, id, resourceBackfillBatch)
		if err != nil {
			return indexed, left, fmt.Errorf("backfilling the resource index: %w", err)
		}
		batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.SealedResource, error) {
			var r store.SealedResource
			err := row.Scan(&r.Type, &r.ID, &r.Sealed)
			return r, err
		})
		if err != nil {
			return indexed, left, fmt.Errorf("backfilling the resource index: %w", err)
		}
		if len(batch) == 0 {
			return indexed, left, nil
		}
		var n, skipped int
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			n, skipped = 0, 0
			for _, r := range batch {
				if r.Sealed != nil && store.IndexedType(r.Type) { // else not stored, or not searchable: nothing to index
					ix, ok := index(r)
					if !ok {
						skipped++
						continue
					}
					lo, hi := indexDates(&ix)
					tag, err := tx.Exec(ctx, sqlInsertResourceIndex+` ON CONFLICT DO NOTHING`, r.Type, r.ID, ix.Subject, ix.Status, lo, hi)
					if err != nil {
						return fmt.Errorf("indexing %s/%s: %w", r.Type, r.ID, err)
					}
					if tag.RowsAffected() > 0 {
						for _, t := range ix.Tokens {
							if _, err := tx.Exec(ctx, sqlInsertResourceToken, r.Type, r.ID, t.Param, t.System, t.Code); err != nil {
								return fmt.Errorf("indexing %s/%s: %w", r.Type, r.ID, err)
							}
						}
						n++
					}
				}
				if _, err := tx.Exec(ctx, sqlDropUnindexed, r.Type, r.ID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return indexed, left, fmt.Errorf("backfilling the resource index: %w", err)
		}
		indexed += n
		left += skipped
		last := batch[len(batch)-1]
		typ, id = last.Type, last.ID
	}
}
