package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

// dialect is how SQLite takes a search's arguments: ? parameters and
// times in Unix microseconds, as they are stored. An audit record's
// entities and patient are its audit_entity rows (store.AuditEntities);
// the IN, not EXISTS, lets the planner start from the entities' rows.
var dialect = store.SQLDialect{
	Placeholder: func(int) string { return "?" },
	Time:        func(t time.Time) any { return t.UnixMicro() },
	AuditEntityIn: func(ps string) string {
		return "(a.chain, a.seq) IN (SELECT e.chain, e.seq FROM audit_entity e WHERE e.entity IN (" + ps + "))"
	},
}

// SearchCommunications returns a page of matching Communications, read
// from the read pool. See store.CommunicationSearch.
//
// The statement is not prepared (s.query would keep one per shape of
// query, without bound): a search's SQL varies with its constraints.
func (s *Store) SearchCommunications(ctx context.Context, q store.CommunicationQuery) ([]store.CommunicationRow, error) {
	offset, limit := q.Page()
	if limit == 0 {
		return nil, nil
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("searching Communications: %w", err)
	}
	where, order, args := q.SQL(dialect)
	rows, err := s.read.QueryContext(ctx, `SELECT `+communicationColumns+` FROM `+q.From(false)+` WHERE `+where+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("searching Communications: %w", err)
	}
	defer rows.Close()
	var out []store.CommunicationRow
	for rows.Next() {
		c, err := scanCommunication(rows)
		if err != nil {
			return nil, fmt.Errorf("searching Communications: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
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
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM `+q.From(true)+` WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting Communications: %w", err)
	}
	return n, nil
}
