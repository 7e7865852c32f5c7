package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/storetest"
)

// TestPatientNewestFirstIsReadOffItsIndex: a page of one patient's
// resources newest first comes off resource_index_subject_date in its
// order, not from sorting every resource the patient has (a patient in
// a long stay has tens of thousands of Observations). Should the search's
// ORDER BY drift from the index's, the search would still be right, and
// slow.
func TestPatientNewestFirstIsReadOffItsIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: storetest.PostgresSchema(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.pool.Exec(ctx, `INSERT INTO resource_index (type, id, subject, status, date_lo, date_hi)
		SELECT 'Observation', 'o' || i, CASE WHEN i % 2 = 0 THEN 'Patient/heavy' ELSE 'Patient/p' || i END, 'final',
			CASE WHEN i % 100 = 0 THEN NULL ELSE timestamptz '2026-01-01' + i * interval '1 minute' END,
			CASE WHEN i % 100 = 0 THEN NULL ELSE timestamptz '2026-01-01' + i * interval '1 minute' END
		FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE resource_index`); err != nil {
		t.Fatal(err)
	}
	q := store.ResourceQuery{Type: "Observation", Subject: store.TokenMatch{Any: []string{"Patient/heavy"}}, Sort: store.ResourceSortByDateDesc}
	where, order, args := q.SQL(dialect)
	plan := explain(t, s, `EXPLAIN SELECT i.id FROM resource_index i WHERE `+where+` ORDER BY `+order+` LIMIT 21`, args...)
	if !strings.Contains(plan, "resource_index_subject_date") || strings.Contains(plan, "Sort") {
		t.Errorf("a patient's newest resources are not read off resource_index_subject_date:\n%s", plan)
	}
}

// TestCommunicationSearchesUseTheirIndexes: the open Communications of a
// rare priority are looked up through communication_priority, and those
// about an encounter through communication_encounter, not found by
// reading every Communication. Planned for their values
// (communicationPlan), a search can use the encounter index, which
// leaves out those about none.
func TestCommunicationSearchesUseTheirIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: storetest.PostgresSchema(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.pool.Exec(ctx, `INSERT INTO communication (id, inbound_id, identifier, status, priority, category, subject,
		encounter, recipients, sent, sealed, updated_at)
		SELECT 'c' || i, '', 'x^c' || i, 'in-progress', CASE WHEN i % 1000 = 0 THEN 'asap' ELSE 'routine' END, 'alert',
			'Patient/p' || (i % 500), CASE WHEN i % 2000 = 7 THEN 'Encounter/e7' ELSE '' END, ARRAY['Practitioner/a'], timestamptz '2026-01-01' + i * interval '1 minute', '\x00', now()
		FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE communication`); err != nil {
		t.Fatal(err)
	}
	for _, c := range storetest.IndexedSearches() {
		where, order, args := c.Query.SQL(dialect)
		plan := explain(t, s, `EXPLAIN SELECT c.id FROM `+c.Query.From(false)+` WHERE `+where+` ORDER BY `+order+` LIMIT 21`, communicationPlan(c.Query, args)...)
		if !strings.Contains(plan, " "+c.Index+" ") {
			t.Errorf("%+v is not looked up through %s:\n%s", c.Query, c.Index, plan)
		}
	}
	// PostgreSQL, which knows how many are open, reads the open ones by
	// priority off the same indexes (SQLite, without statistics, takes
	// them by status and sorts them)
	for _, sort := range []store.CommunicationSort{store.SortByPriority, store.SortByPriorityDesc} {
		q := store.CommunicationQuery{Status: store.TokenMatch{Any: []string{"in-progress"}}, Sort: sort}
		where, order, args := q.SQL(dialect)
		if plan := explain(t, s, `EXPLAIN SELECT c.id FROM communication c WHERE `+where+` ORDER BY `+order+` LIMIT 21`, communicationPlan(q, args)...); !strings.Contains(plan, " communication_rank") || strings.Contains(plan, "Sort") {
			t.Errorf("the open Communications by priority (%v) are sorted, not read off an index:\n%s", sort, plan)
		}
	}
	got, err := s.SearchCommunications(ctx, store.CommunicationQuery{Priority: store.TokenMatch{Any: []string{"asap"}}, Sort: store.SortBySentDesc, Limit: 5})
	if err != nil || len(got) != 5 || got[0].ID != "c20000" || got[4].ID != "c16000" {
		t.Fatalf("the newest asap Communications: %d, %v; want c20000 … c16000", len(got), err)
	}
}

func explain(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
