package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/storetest"
)

// TestMigrateAuditSearch: records stored before migration 12 are found by
// their entities and patient at once, and get their event ids from the
// backfill.
func TestMigrateAuditSearch(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresSchema(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= 12 {
			break
		}
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("migration %s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	for i, row := range []struct {
		entities []string
		patient  string
	}{
		{[]string{"Communication/c1", "Patient/p1"}, "Patient/p1"},
		{[]string{}, "Patient/p2"},
		{[]string{"inbound/7"}, ""},
	} {
		if _, err := conn.Exec(ctx, `INSERT INTO audit (chain, seq, at, actor_kind, actor_id, actor_address, action, outcome,
			correlation, entities, entry_id, patient, prev, hash) VALUES ('old', $1, $2, 'system', 'carebridge', '', 'message.mapped', 0,
			'', $3, '', $4, '\x00', '\x00')`, i+1, at.Add(time.Duration(i)*time.Second), row.entities, row.patient); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	s := openAt(t, url)
	for _, tc := range []struct {
		entity string
		want   uint64
	}{
		{"Patient/p1", 1}, {"Communication/c1", 1}, {"Patient/p2", 2}, {"inbound/7", 3},
	} {
		got, err := s.SearchAudit(ctx, store.AuditQuery{Entities: []string{tc.entity}, Limit: 10})
		if err != nil || len(got) != 1 || got[0].Seq != tc.want || got[0].EventID != "" {
			t.Errorf("entity %s: %+v, %v; want seq %d without an event id", tc.entity, got, err, tc.want)
		}
	}
	n, err := s.BackfillAuditEventIDs(ctx, func(r store.AuditRecord) string { return "ev-" + r.Chain })
	if err != nil || n != 3 {
		t.Fatalf("backfill = %d, %v; want 3", n, err)
	}
	if got, err := s.CountAudit(ctx, store.AuditQuery{EventIDs: []string{"ev-old"}}); err != nil || got != 3 {
		t.Fatalf("count by the backfilled id = %d, %v", got, err)
	}
}
