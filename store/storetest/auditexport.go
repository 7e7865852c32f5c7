package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// testAuditExport: chains and their heads are listed, records are read in
// ranges, a target's positions only move forward, and dead letters are
// kept with their reason, all per target.
func testAuditExport(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	if heads, err := st.AuditChains(ctx); err != nil || len(heads) != 0 {
		t.Fatalf("chains of an empty trail: %v, %v", heads, err)
	}
	for _, chain := range []string{"node-b", "node-a"} {
		var rs []store.AuditRecord
		n := uint64(5)
		if chain == "node-b" {
			n = 2
		}
		for seq := uint64(1); seq <= n; seq++ {
			rs = append(rs, auditRecord(chain, seq))
		}
		if err := st.AppendAudit(ctx, rs, nil); err != nil {
			t.Fatal(err)
		}
	}
	heads, err := st.AuditChains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.AuditChainHead{{Chain: "node-a", Seq: 5}, {Chain: "node-b", Seq: 2}}; !reflect.DeepEqual(heads, want) {
		t.Fatalf("chains = %+v, want %+v", heads, want)
	}
	got, err := st.ReadAudit(ctx, "node-a", 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.AuditRecord{auditRecord("node-a", 3), auditRecord("node-a", 4)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("read after 2:\n got %+v\nwant %+v", got, want)
	}
	if got, err := st.ReadAudit(ctx, "node-a", 5, 10); err != nil || len(got) != 0 {
		t.Fatalf("read after the head: %v, %v", got, err)
	}

	const ehr, other = "https://ehr.example/fhir", "https://other.example/fhir"
	for range 2 {
		if err := st.AddAuditTarget(ctx, ehr, at); err != nil {
			t.Fatalf("adding a target (twice is fine): %v", err)
		}
	}
	if targets, err := st.AuditTargets(ctx); err != nil || !reflect.DeepEqual(targets, []string{ehr}) {
		t.Fatalf("targets = %v, %v", targets, err)
	}
	if pos, err := st.AuditExported(ctx, ehr); err != nil || len(pos) != 0 {
		t.Fatalf("positions before any export: %v, %v", pos, err)
	}
	dead := []store.AuditDeadLetter{{Chain: "node-a", Seq: 2, At: at, Reason: "HTTP 422 (invalid)"}}
	if err := st.AdvanceAuditExport(ctx, ehr, map[string]uint64{"node-a": 3, "node-b": 2}, dead, at); err != nil {
		t.Fatal(err)
	}
	// A slower worker's older position does not move it back.
	if err := st.AdvanceAuditExport(ctx, ehr, map[string]uint64{"node-a": 1}, nil, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if pos, err := st.AuditExported(ctx, ehr); err != nil || !reflect.DeepEqual(pos, map[string]uint64{"node-a": 3, "node-b": 2}) {
		t.Fatalf("positions = %v, %v", pos, err)
	}
	if pos, err := st.AuditExported(ctx, other); err != nil || len(pos) != 0 {
		t.Fatalf("another target's positions: %v, %v", pos, err)
	}
	letters, total, err := st.AuditDeadLetters(ctx, ehr, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.AuditDeadLetter{{Target: ehr, Chain: "node-a", Seq: 2, At: at, Reason: "HTTP 422 (invalid)"}}
	if total != 1 || !reflect.DeepEqual(letters, want) {
		t.Fatalf("dead letters = %+v (%d), want %+v", letters, total, want)
	}
	if letters, total, err := st.AuditDeadLetters(ctx, other, 10); err != nil || total != 0 || len(letters) != 0 {
		t.Fatalf("another target's dead letters: %v %d %v", letters, total, err)
	}

	// A lease: one holder at a time, renewed by its holder, free once expired.
	take := func(holder string, now time.Duration, want bool) {
		t.Helper()
		got, err := st.TakeLease(ctx, "export", holder, at.Add(now), at.Add(now+30*time.Second))
		if err != nil || got != want {
			t.Fatalf("%s takes the lease at +%v: %v, %v; want %v", holder, now, got, err, want)
		}
	}
	take("node-a", 0, true)
	take("node-b", time.Second, false)
	take("node-a", 10*time.Second, true) // renewed to +40 s
	take("node-b", 35*time.Second, false)
	take("node-b", 40*time.Second, true)
	take("node-a", 41*time.Second, false)
}
