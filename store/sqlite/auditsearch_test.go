package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// TestMigrateAuditSearch: records stored before migration 12 are found by
// their entities and patient at once, and get their event ids from the
// backfill.
func TestMigrateAuditSearch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "carebridge.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL,
		applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= 12 {
			break
		}
		if _, err := db.ExecContext(ctx, m.SQL); err != nil {
			t.Fatalf("migration %s: %v", m.Name, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	for i, row := range []struct{ entities, patient string }{
		{`["Communication/c1","Patient/p1"]`, "Patient/p1"},
		{`[]`, "Patient/p2"},
		{`["inbound/7"]`, ""},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO audit (chain, seq, at, actor_kind, actor_id, actor_address, action, outcome,
			correlation, entities, entry_id, patient, prev, hash) VALUES ('old', ?, ?, 'system', 'carebridge', '', 'message.mapped', 0,
			'', ?, '', ?, zeroblob(32), zeroblob(32))`, i+1, at.Add(time.Duration(i)*time.Second).UnixMicro(), row.entities, row.patient); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s := openAt(t, path)
	for _, tc := range []struct {
		entity string
		want   []uint64
	}{
		{"Patient/p1", []uint64{1}}, {"Communication/c1", []uint64{1}}, {"Patient/p2", []uint64{2}}, {"inbound/7", []uint64{3}},
	} {
		got, err := s.SearchAudit(ctx, store.AuditQuery{Entities: []string{tc.entity}, Limit: 10})
		if err != nil || len(got) != len(tc.want) || got[0].Seq != tc.want[0] || got[0].EventID != "" {
			t.Errorf("entity %s: %+v, %v; want seq %v without an event id", tc.entity, got, err, tc.want)
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
