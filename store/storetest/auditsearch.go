package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// auditSearchTrail appends six records over two chains and returns them
// by name.
func auditSearchTrail(t *testing.T, st store.Store) (time.Time, map[string]store.AuditRecord) {
	t.Helper()
	t0 := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	rec := func(chain string, seq uint64, sec int, kind, actor, action string, outcome uint8, patient, eventID string, entities ...string) store.AuditRecord {
		r := auditRecord(chain, seq)
		r.At = t0.Add(time.Duration(sec) * time.Second)
		r.ActorKind, r.ActorID, r.Action, r.Outcome, r.Patient, r.EventID = kind, actor, action, outcome, patient, eventID
		r.Entities = append([]string{}, entities...)
		return r
	}
	trail := map[string]store.AuditRecord{
		"a1": rec("a", 1, 1, "client", "ehr", "rest.read", 0, "Patient/p1", "ev-a1", "Communication/c1"),
		"a2": rec("a", 2, 2, "user", "Practitioner/x", "communication.read", 0, "Patient/p2", "ev-a2", "Communication/c2", "Patient/p2"),
		"a3": rec("a", 3, 3, "peer", "ENGINE", "message.rejected", 4, "", "ev-a3", "inbound/9"),
		"b1": rec("b", 1, 2, "client", "ehr", "rest.search-type", 0, "Patient/p1", "ev-b1", "Communication/c1", "Communication/c2"),
		"b2": rec("b", 2, 5, "system", "carebridge", "message.mapped", 8, "Patient/p3", ""),
		"b3": rec("b", 3, 6, "client", "ehr", "rest.read", 12, "", "ev-b3", "Patient/p1"),
	}
	ctx := context.Background()
	for _, batch := range [][]string{{"a1", "a2"}, {"b1", "b2", "b3"}, {"a3"}} {
		var rs []store.AuditRecord
		for _, name := range batch {
			rs = append(rs, trail[name])
		}
		if err := st.AppendAudit(ctx, rs, nil); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	return t0, trail
}

// auditNames names the records of rows, by their correlation id.
func auditNames(trail map[string]store.AuditRecord, rows []store.AuditRecord) string {
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		name := "?"
		for n, w := range trail {
			if w.Chain == r.Chain && w.Seq == r.Seq {
				name = n
			}
		}
		names = append(names, name)
	}
	return strings.Join(names, ",")
}

// testAuditSearch: each constraint of an AuditQuery finds what it should
// and only that, constraints AND, the order is by time (newest first by
// default, then chain and sequence) and counts agree with searches.
func testAuditSearch(t *testing.T, st store.Store) {
	ctx := context.Background()
	t0, trail := auditSearchTrail(t, st)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	tests := []struct {
		name string
		q    store.AuditQuery
		want string
	}{
		{"all", store.AuditQuery{}, "b3,b2,a3,b1,a2,a1"},
		{"oldest first", store.AuditQuery{Oldest: true}, "a1,a2,b1,a3,b2,b3"},
		{"event ids", store.AuditQuery{EventIDs: []string{"ev-a2", "ev-b3", "ev-none"}}, "b3,a2"},
		{"an empty event id is none", store.AuditQuery{EventIDs: []string{""}}, ""},
		{"action", store.AuditQuery{Actions: []string{"rest.read"}}, "b3,a1"},
		{"actions", store.AuditQuery{Actions: []string{"message.mapped", "message.rejected"}}, "b2,a3"},
		{"outcomes", store.AuditQuery{Outcomes: []uint8{4, 8}}, "b2,a3"},
		{"outcome success", store.AuditQuery{Outcomes: []uint8{0}}, "b1,a2,a1"},
		{"patient, or among the entities", store.AuditQuery{Patients: []string{"Patient/p1"}}, "b3,b1,a1"},
		{"patients", store.AuditQuery{Patients: []string{"Patient/p2", "Patient/p3"}}, "b2,a2"},
		{"actor", store.AuditQuery{Actors: []string{"ehr"}}, "b3,b1,a1"},
		{"actor with a slash", store.AuditQuery{Actors: []string{"Practitioner/x"}}, "a2"},
		{"entity", store.AuditQuery{Entities: []string{"Communication/c1"}}, "b1,a1"},
		{"entity that is the patient of some", store.AuditQuery{Entities: []string{"Patient/p1"}}, "b3,b1,a1"},
		{"entity only as patient", store.AuditQuery{Entities: []string{"Patient/p3"}}, "b2"},
		{"entity in entities and patient, once", store.AuditQuery{Entities: []string{"Patient/p2"}}, "a2"},
		{"entities, each record once", store.AuditQuery{Entities: []string{"Communication/c1", "Communication/c2"}}, "b1,a2,a1"},
		{"not a FHIR entity", store.AuditQuery{Entities: []string{"inbound/9"}}, "a3"},
		{"time range", store.AuditQuery{At: []store.TimeBound{{Op: store.GE, At: at(2)}, {Op: store.LT, At: at(5)}}}, "a3,b1,a2"},
		{"after", store.AuditQuery{At: []store.TimeBound{{Op: store.GT, At: at(2)}}}, "b3,b2,a3"},
		{"up to", store.AuditQuery{At: []store.TimeBound{{Op: store.LE, At: at(2)}}}, "b1,a2,a1"},
		{"microseconds count", store.AuditQuery{At: []store.TimeBound{{Op: store.GT, At: at(6).Add(-time.Microsecond)}}}, "b3"},
		{"and", store.AuditQuery{Actors: []string{"ehr"}, Actions: []string{"rest.read", "rest.search-type"},
			At: []store.TimeBound{{Op: store.GE, At: at(2)}}}, "b3,b1"},
		{"and of all", store.AuditQuery{EventIDs: []string{"ev-b1", "ev-a1"}, Entities: []string{"Communication/c2"}, Patients: []string{"Patient/p1"},
			Actions: []string{"rest.search-type"}, Actors: []string{"ehr"}, Outcomes: []uint8{0}}, "b1"},
		{"nothing", store.AuditQuery{Actions: []string{"rest.read"}, Patients: []string{"Patient/p2"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Limit = 100
			got, err := st.SearchAudit(ctx, q)
			if err != nil {
				t.Fatalf("SearchAudit: %v", err)
			}
			if names := auditNames(trail, got); names != tt.want {
				t.Fatalf("got %s, want %s", names, tt.want)
			}
			for _, r := range got {
				if w := trail[auditNames(trail, []store.AuditRecord{r})]; !reflect.DeepEqual(r, w) {
					t.Errorf("record %s/%d:\n got %+v\nwant %+v", r.Chain, r.Seq, r, w)
				}
			}
			n, err := st.CountAudit(ctx, q)
			if err != nil || n != len(got) {
				t.Fatalf("CountAudit = %d, %v; want %d", n, err, len(got))
			}
		})
	}
}

// testAuditSearchPaging: Offset and Limit select pages of the order;
// Limit 0 returns nothing; an unknown comparator is an error.
func testAuditSearchPaging(t *testing.T, st store.Store) {
	ctx := context.Background()
	_, trail := auditSearchTrail(t, st)
	var pages []string
	for off := 0; off <= 6; off += 2 {
		got, err := st.SearchAudit(ctx, store.AuditQuery{Offset: off, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, auditNames(trail, got))
	}
	if got := strings.Join(pages, "|"); got != "b3,b2|a3,b1|a2,a1|" {
		t.Fatalf("pages %s", got)
	}
	got, err := st.SearchAudit(ctx, store.AuditQuery{Oldest: true, Offset: 1, Limit: 3, Actors: []string{"ehr"}})
	if err != nil || auditNames(trail, got) != "b1,b3" {
		t.Fatalf("oldest page of ehr = %s, %v", auditNames(trail, got), err)
	}
	if got, err := st.SearchAudit(ctx, store.AuditQuery{}); err != nil || len(got) != 0 {
		t.Fatalf("Limit 0 returned %d, %v", len(got), err)
	}
	if got, err := st.SearchAudit(ctx, store.AuditQuery{Offset: -5, Limit: 1}); err != nil || auditNames(trail, got) != "b3" {
		t.Fatalf("negative offset: %s, %v", auditNames(trail, got), err)
	}
	if n, err := st.CountAudit(ctx, store.AuditQuery{Offset: 4, Limit: 1}); err != nil || n != 6 {
		t.Fatalf("CountAudit ignores the page: %d, %v", n, err)
	}
	bad := store.AuditQuery{Limit: 10, At: []store.TimeBound{{Op: "!=", At: time.Now()}}}
	if _, err := st.SearchAudit(ctx, bad); err == nil {
		t.Fatal("SearchAudit with an unknown comparator succeeded")
	}
	if _, err := st.CountAudit(ctx, bad); err == nil {
		t.Fatal("CountAudit with an unknown comparator succeeded")
	}
}

// eventIDBackfiller is the store method audit.BackfillEventIDs uses;
// both backends have it.
type eventIDBackfiller interface {
	BackfillAuditEventIDs(ctx context.Context, id func(store.AuditRecord) string) (int, error)
}

// testAuditEventIDs: event ids are stored as given and come back from
// every read; the backfill gives every record without one its id, in
// batches, leaves the others alone, finds nothing the second time, and
// sets nothing when the id function gives none.
func testAuditEventIDs(t *testing.T, st store.Store) {
	ctx := context.Background()
	bf, ok := st.(eventIDBackfiller)
	if !ok {
		t.Fatalf("%T has no BackfillAuditEventIDs", st)
	}
	const n = 1234 // more than one batch
	var rs []store.AuditRecord
	for seq := uint64(1); seq <= n; seq++ {
		r := auditRecord("z", seq)
		if seq%100 == 0 {
			r.EventID = fmt.Sprintf("given-%d", seq)
		}
		rs = append(rs, r)
	}
	if err := st.AppendAudit(ctx, rs, nil); err != nil {
		t.Fatal(err)
	}
	head, err := st.AuditHead(ctx, "z")
	if err != nil || head.EventID != "" {
		t.Fatalf("head %+v, %v", head, err)
	}
	exported, err := st.ReadAudit(ctx, "z", 99, 1)
	if err != nil || len(exported) != 1 || exported[0].EventID != "given-100" {
		t.Fatalf("ReadAudit = %+v, %v", exported, err)
	}

	if got, err := bf.BackfillAuditEventIDs(ctx, func(store.AuditRecord) string { return "" }); err == nil || got != 0 {
		t.Fatalf("backfill with no ids = %d, %v; want an error", got, err)
	}
	id := func(r store.AuditRecord) string { return fmt.Sprintf("%s-%d", r.Chain, r.Seq) }
	got, err := bf.BackfillAuditEventIDs(ctx, id)
	if want := n - n/100; err != nil || got != want {
		t.Fatalf("backfill = %d, %v; want %d", got, err, want)
	}
	seen := 0
	err = st.WalkAudit(ctx, func(r store.AuditRecord) error {
		want := id(r)
		if r.Seq%100 == 0 {
			want = fmt.Sprintf("given-%d", r.Seq)
		}
		if r.EventID != want {
			return fmt.Errorf("record %d: event id %q, want %q", r.Seq, r.EventID, want)
		}
		seen++
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("after the backfill: %v (%d records)", err, seen)
	}
	if got, err := bf.BackfillAuditEventIDs(ctx, id); err != nil || got != 0 {
		t.Fatalf("second backfill = %d, %v; want 0", got, err)
	}
	found, err := st.SearchAudit(ctx, store.AuditQuery{EventIDs: []string{"z-1234", "given-200"}, Limit: 10})
	if err != nil || len(found) != 2 || found[0].Seq != 1234 || found[1].Seq != 200 {
		t.Fatalf("search by backfilled ids = %+v, %v", found, err)
	}
}
