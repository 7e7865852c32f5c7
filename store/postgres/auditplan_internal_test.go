package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/storetest"
)

// TestAuditEntitySearchUsesItsIndex: the condition the dialect writes for
// an entity or a patient is the expression migration 24 indexed, so an
// AuditEvent search by either reads the few records it names through
// audit_entities instead of the whole trail. Should the two drift apart,
// the search would still be right, and slow.
func TestAuditEntitySearchUsesItsIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: storetest.PostgresSchema(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.pool.Exec(ctx, `INSERT INTO audit (chain, seq, at, actor_kind, actor_id, actor_address, action, outcome,
		correlation, entities, entry_id, patient, prev, hash)
		SELECT 'c', i, now() - i * interval '1 second', 'client', 'ehr', '', 'rest.read', 0, '',
			ARRAY['Communication/c' || i], '', 'Patient/p' || (i % 500), '\x00', '\x00'
		FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE audit`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.AuditQuery{
		{Entities: []string{"Communication/c42"}},
		{Entities: []string{"Communication/c42", "Patient/p7"}},
		{Patients: []string{"Patient/p7"}},
	} {
		where, order, args, err := q.SQL(dialect)
		if err != nil {
			t.Fatal(err)
		}
		p := explain(t, s, `EXPLAIN SELECT chain, seq FROM audit a WHERE `+where+` ORDER BY `+order+` LIMIT 21`, args...)
		if !strings.Contains(p, "audit_entities") {
			t.Errorf("%+v is not searched through audit_entities:\n%s", q, p)
		}
	}
	// And the search finds them: a record by its entity, and by its patient.
	got, err := s.SearchAudit(ctx, store.AuditQuery{Entities: []string{"Communication/c42"}, Limit: 10})
	if err != nil || len(got) != 1 || got[0].Seq != 42 {
		t.Fatalf("by entity: %d records, %v; want record 42", len(got), err)
	}
	n, err := s.CountAudit(ctx, store.AuditQuery{Patients: []string{"Patient/p7"}})
	if err != nil || n != 40 {
		t.Fatalf("by patient: %d records, %v; want 40", n, err)
	}
}
