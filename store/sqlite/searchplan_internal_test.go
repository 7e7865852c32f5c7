package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/storetest"
)

// TestPatientNewestFirstIsReadOffItsIndex: a page of one patient's
// resources newest first comes off resource_index_subject_date in its
// order (undated last), not from sorting every resource the patient has.
func TestPatientNewestFirstIsReadOffItsIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "carebridge.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := store.ResourceQuery{Type: "Observation", Subject: store.TokenMatch{Any: []string{"Patient/heavy"}}, Sort: store.ResourceSortByDateDesc}
	where, order, args := q.SQL(dialect)
	p := queryPlan(t, s, `SELECT i.id FROM resource_index i WHERE `+where+` ORDER BY `+order+` LIMIT 21`, args...)
	if !strings.Contains(p, "resource_index_subject_date") || strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("a patient's newest resources are not read off resource_index_subject_date:\n%s", p)
	}
}

// TestCommunicationSearchesUseTheirIndexes: a priority's Communications
// are looked up through communication_priority, an encounter's through
// communication_encounter, not found by reading them all.
func TestCommunicationSearchesUseTheirIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "carebridge.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range storetest.IndexedSearches() {
		where, order, args := c.Query.SQL(dialect)
		if p := queryPlan(t, s, `SELECT c.id FROM `+c.Query.From(false)+` WHERE `+where+` ORDER BY `+order+` LIMIT 21`, args...); !strings.Contains(p+" ", " "+c.Index+" ") {
			t.Errorf("%+v is not looked up through %s:\n%s", c.Query, c.Index, p)
		}
	}
}

// queryPlan is SQLite's EXPLAIN QUERY PLAN of query, one step a line.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
