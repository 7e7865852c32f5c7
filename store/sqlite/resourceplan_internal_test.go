package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/store"
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
	rows, err := s.read.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT i.id FROM resource_index i WHERE `+where+` ORDER BY `+order+` LIMIT 21`, args...)
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
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "resource_index_subject_date") || strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("a patient's newest resources are not read off resource_index_subject_date:\n%s", p)
	}
}
