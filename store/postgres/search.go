package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/carebridge/carebridge/store"
)

// dialect is how PostgreSQL takes a search's arguments: $n parameters and
// times as timestamptz. An audit record's entities and patient are found
// through the GIN index audit_entities (migration 24), on exactly this
// expression.
var dialect = store.SQLDialect{
	Placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	Time:        func(t time.Time) any { return t.UTC() },
	AuditEntityIn: func(ps string) string {
		return "array_remove(array_append(a.entities, a.patient), '') && ARRAY[" + ps + "]::text[]"
	},
}

// SearchCommunications returns a page of matching Communications. See
// store.CommunicationSearch.
func (s *Store) SearchCommunications(ctx context.Context, q store.CommunicationQuery) ([]store.CommunicationRow, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("searching Communications: %w", err)
	}
	where, order, args := q.SQL(dialect)
	// LIMIT and OFFSET are written out, not parameters: PostgreSQL costs
	// a generic plan with an unknown LIMIT as if it read a tenth of the
	// rows, so it planned every search anew (a fifth of its time under
	// search load); with them known, the inbox's cached generic plan
	// wins (communicationPlan).
	rows, err := s.pool.Query(ctx, `SELECT `+communicationColumns+` FROM `+q.From(false)+` WHERE `+where+
		` ORDER BY `+order+` LIMIT `+strconv.Itoa(limit)+` OFFSET `+strconv.Itoa(offset), communicationPlan(q, args)...)
	if err != nil {
		return nil, fmt.Errorf("searching Communications: %w", err)
	}
	out, err := collectCommunications(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("searching Communications: %w", err)
	}
	return out, nil
}

// CountCommunications counts matching Communications. See
// store.CommunicationSearch.
func (s *Store) CountCommunications(ctx context.Context, q store.CommunicationQuery) (int, error) {
	if err := q.Validate(); err != nil {
		return 0, fmt.Errorf("counting Communications: %w", err)
	}
	where, _, args := q.SQL(dialect)
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+q.From(true)+` WHERE `+where, communicationPlan(q, args)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting Communications: %w", err)
	}
	return n, nil
}

// communicationPlan is how a Communication search runs: one recipient's
// inbox, the hot search, as a cached statement, since the recipient's
// deliveries drive it in their index's order whatever the values; any
// other planned for its values (planEachTime), since which index serves
// it best depends on how common they are: the open Communications of a
// priority that a tenth of them have are found fastest by walking them
// newest first, those of one that ten have through the priority's
// index.
func communicationPlan(q store.CommunicationQuery, args []any) []any {
	if q.Inbox() {
		return args
	}
	return planEachTime(args)
}
