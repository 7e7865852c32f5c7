package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

const mrnSystem = "urn:storetest:mrn"

// day is the DateMatch of a date value spanning [start, start+days).
func day(prefix store.DatePrefix, date string, days int) store.DateMatch {
	start, err := time.Parse("2006-01-02", date)
	if err != nil {
		panic(err)
	}
	return store.DateMatch{Prefix: prefix, Start: start, End: start.AddDate(0, 0, days)}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func indexedResource(typ, id, subject, status string, tokens ...store.IndexToken) store.SealedResource {
	return store.SealedResource{Type: typ, ID: id, Sealed: []byte("sealed " + typ + "/" + id),
		Index: &store.ResourceIndex{Subject: subject, Status: status, Tokens: tokens}}
}

func withDates(r store.SealedResource, from, to time.Time) store.SealedResource {
	r.Index.Dated, r.Index.From, r.Index.To = true, from, to
	return r
}

func identifier(system, value string) store.IndexToken {
	return store.IndexToken{Param: store.TokenIdentifier, System: system, Code: value}
}

// seedResources stores the resource data set:
//
//	Patient p1 (mrn|100, visit|A1), p2 (mrn|200)
//	Encounter e1  p1 in-progress  [2026-11-03T09:00Z, ongoing)  visit|V1
//	Encounter e2  p2 finished     [2026-11-01, 2026-11-02T12:00Z)
//	Encounter e3  p1 planned      no date
//	Observation o1 p1 final       [2026-11-03T14:20:00Z, +1 s)
//
// and a Communication about p1 to Practitioner/a.
func seedResources(t *testing.T, st store.Store) {
	t.Helper()
	now := time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC)
	m := store.Mapped{InboundID: "res-1", MappedAt: now, Outcome: []byte("x"), Resources: []store.SealedResource{
		indexedResource("Patient", "p1", "Patient/p1", "", identifier(mrnSystem, "100"), identifier("urn:storetest:visit", "A1")),
		indexedResource("Patient", "p2", "Patient/p2", "", identifier(mrnSystem, "200")),
		withDates(indexedResource("Encounter", "e1", "Patient/p1", "in-progress", identifier("urn:storetest:visit", "V1")), at("2026-11-03T09:00:00Z"), store.DateOpenEnd),
		withDates(indexedResource("Encounter", "e2", "Patient/p2", "finished"), at("2026-11-01T00:00:00Z"), at("2026-11-02T12:00:00Z")),
		indexedResource("Encounter", "e3", "Patient/p1", "planned"),
		withDates(indexedResource("Observation", "o1", "Patient/p1", "final"), at("2026-11-03T14:20:00Z"), at("2026-11-03T14:20:01Z")),
	}, Communications: []store.CommunicationRow{{
		ID: "res-c1", Identifier: "GH^res-1^result", Status: "in-progress", Priority: "stat", Category: "alert",
		Subject: "Patient/p1", Recipients: []string{"Practitioner/a"}, Sent: now, Sealed: []byte("comm"),
	}}}
	if ok, err := st.StoreMapped(context.Background(), m); err != nil || !ok {
		t.Fatalf("StoreMapped = %v, %v", ok, err)
	}
}

// findResources runs q, checks that CountResources agrees, and returns
// the ids found.
func findResources(t *testing.T, st store.Store, q store.ResourceQuery) []string {
	t.Helper()
	ctx := context.Background()
	if q.Limit == 0 {
		q.Limit = 100
	}
	rows, err := st.SearchResources(ctx, q)
	if err != nil {
		t.Fatalf("SearchResources(%+v): %v", q, err)
	}
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		if r.Type != q.Type || string(r.Sealed) != "sealed "+r.Type+"/"+r.ID {
			t.Fatalf("SearchResources(%+v) returned %s/%s sealed %q", q, r.Type, r.ID, r.Sealed)
		}
		ids = append(ids, r.ID)
	}
	if q.Offset == 0 && q.Limit >= 100 {
		n, err := st.CountResources(ctx, q)
		if err != nil || n != len(ids) {
			t.Fatalf("CountResources(%+v) = %d, %v; the search found %v", q, n, err, ids)
		}
	}
	return ids
}

// testResourceSearch: every constraint of a ResourceQuery, over the
// index StoreMapped writes with the resources.
func testResourceSearch(t *testing.T, st store.Store) {
	seedResources(t, st)
	enc := func(q store.ResourceQuery) store.ResourceQuery { q.Type = "Encounter"; return q }
	tests := []struct {
		name string
		q    store.ResourceQuery
		want []string
	}{
		{"every Patient", store.ResourceQuery{Type: "Patient"}, []string{"p1", "p2"}},
		{"every Encounter", enc(store.ResourceQuery{}), []string{"e1", "e2", "e3"}},
		{"a type stored nowhere", store.ResourceQuery{Type: "ServiceRequest"}, []string{}},
		{"_id", store.ResourceQuery{Type: "Patient", ID: store.TokenMatch{Any: []string{"p2", "e1"}}}, []string{"p2"}},
		{"identifier system|value", store.ResourceQuery{Type: "Patient", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Any: []store.TokenValue{{System: mrnSystem, Code: "100"}}}}}, []string{"p1"}},
		{"identifier of another system", store.ResourceQuery{Type: "Patient", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Any: []store.TokenValue{{System: "urn:other", Code: "100"}}}}}, []string{}},
		{"identifier value of any system", store.ResourceQuery{Type: "Patient", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Any: []store.TokenValue{{Code: "A1", AnySystem: true}, {Code: "200", AnySystem: true}}}}}, []string{"p1", "p2"}},
		{"identifier system|", store.ResourceQuery{Type: "Patient", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Any: []store.TokenValue{{System: "urn:storetest:visit", AnyCode: true}}}}}, []string{"p1"}},
		{"identifier:not", store.ResourceQuery{Type: "Patient", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Not: []store.TokenValue{{System: mrnSystem, Code: "100"}}}}}, []string{"p2"}},
		{"identifier:missing", enc(store.ResourceQuery{Tokens: []store.TokenFilter{{Param: store.TokenIdentifier, Missing: new(true)}}}), []string{"e2", "e3"}},
		{"an identifier is of its type only", store.ResourceQuery{Type: "Patient", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Any: []store.TokenValue{{Code: "V1", AnySystem: true}}}}}, []string{}},
		{"subject", enc(store.ResourceQuery{Subject: store.TokenMatch{Any: []string{"Patient/p1"}}}), []string{"e1", "e3"}},
		{"subject and status", enc(store.ResourceQuery{Subject: store.TokenMatch{Any: []string{"Patient/p1"}}, Status: store.TokenMatch{Any: []string{"planned"}}}), []string{"e3"}},
		{"status:not", enc(store.ResourceQuery{Status: store.TokenMatch{Not: []string{"planned", "finished"}}}), []string{"e1"}},
		{"eq: within the month", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateEq, "2026-11-01", 30)}}), []string{"e2"}},
		{"eq: a day the period passes over is not enough", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateEq, "2026-11-01", 1)}}), []string{}},
		{"ne", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateNe, "2026-11-01", 30)}}), []string{"e1"}},
		{"ge: an ongoing period reaches any day", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateGe, "2030-01-01", 1)}}), []string{"e1"}},
		{"ge: overlapping", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateGe, "2026-11-02", 1)}}), []string{"e1", "e2"}},
		{"le", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateLe, "2026-11-02", 1)}}), []string{"e2"}},
		{"le: the day it starts", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateLe, "2026-11-03", 1)}}), []string{"e1", "e2"}},
		{"gt", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateGt, "2026-11-02", 1)}}), []string{"e1"}},
		{"lt", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateLt, "2026-11-03", 1)}}), []string{"e2"}},
		{"sa", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateSa, "2026-11-02", 1)}}), []string{"e1"}},
		{"eb", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateEb, "2026-11-03", 1)}}), []string{"e2"}},
		{"ge and le: overlapping a day", enc(store.ResourceQuery{Dates: []store.DateMatch{day(store.DateGe, "2026-11-02", 1), day(store.DateLe, "2026-11-02", 1)}}), []string{"e2"}},
		{"an instant", store.ResourceQuery{Type: "Observation", Dates: []store.DateMatch{day(store.DateEq, "2026-11-03", 1)}}, []string{"o1"}},
		{"an instant, the day after", store.ResourceQuery{Type: "Observation", Dates: []store.DateMatch{day(store.DateEq, "2026-11-04", 1)}}, []string{}},
		{"seen by a recipient", enc(store.ResourceQuery{Limited: true, SeenBy: []string{"Practitioner/a", "CareTeam/x"}}), []string{"e1", "e3"}},
		{"a seen Patient", store.ResourceQuery{Type: "Patient", Limited: true, SeenBy: []string{"Practitioner/a"}}, []string{"p1"}},
		{"seen by another", enc(store.ResourceQuery{Limited: true, SeenBy: []string{"Practitioner/b"}}), []string{}},
		{"limited to no recipient", store.ResourceQuery{Type: "Patient", Limited: true}, []string{}},
		{"by date", enc(store.ResourceQuery{Sort: store.ResourceSortByDate}), []string{"e2", "e1", "e3"}},
		{"by date, newest first", enc(store.ResourceQuery{Sort: store.ResourceSortByDateDesc}), []string{"e1", "e2", "e3"}},
		{"a page", enc(store.ResourceQuery{Offset: 1, Limit: 1}), []string{"e2"}},
		{"past the end", enc(store.ResourceQuery{Offset: 5, Limit: 1}), []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := findResources(t, st, tt.q); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	ctx := context.Background()
	if n, err := st.CountResources(ctx, store.ResourceQuery{Type: "Encounter", Offset: 2, Limit: 1}); err != nil || n != 3 {
		t.Fatalf("CountResources ignores the page: %d, %v", n, err)
	}
	if rows, err := st.SearchResources(ctx, store.ResourceQuery{Type: "Encounter"}); err != nil || len(rows) != 0 {
		t.Fatalf("no limit: %v, %v; want none (a count only)", rows, err)
	}
	for _, bad := range []store.ResourceQuery{{Limit: 10}, {Type: "Encounter", Limit: 10, Dates: []store.DateMatch{{Prefix: "ap"}}}} {
		if _, err := st.SearchResources(ctx, bad); err == nil {
			t.Errorf("SearchResources(%+v) succeeded", bad)
		}
		if _, err := st.CountResources(ctx, bad); err == nil {
			t.Errorf("CountResources(%+v) succeeded", bad)
		}
	}
}

// testResourceIndexReplaced: a resource stored again has its index
// replaced, not added to; one stored without an index drops the old one.
func testResourceIndexReplaced(t *testing.T, st store.Store) {
	seedResources(t, st)
	later := store.Mapped{InboundID: "res-2", MappedAt: time.Date(2026, 11, 7, 10, 0, 0, 0, time.UTC), Outcome: []byte("x"),
		Resources: []store.SealedResource{
			withDates(indexedResource("Encounter", "e1", "Patient/p1", "finished", identifier("urn:storetest:visit", "V1b")),
				at("2026-11-03T09:00:00Z"), at("2026-11-07T10:00:00Z")),
			{Type: "Patient", ID: "p2", Sealed: []byte("sealed Patient/p2")}, // no index
		}}
	if ok, err := st.StoreMapped(context.Background(), later); err != nil || !ok {
		t.Fatalf("StoreMapped = %v, %v", ok, err)
	}
	for _, tt := range []struct {
		name string
		q    store.ResourceQuery
		want []string
	}{
		{"the old status", store.ResourceQuery{Type: "Encounter", Status: store.TokenMatch{Any: []string{"in-progress"}}}, []string{}},
		{"the new status", store.ResourceQuery{Type: "Encounter", Status: store.TokenMatch{Any: []string{"finished"}}}, []string{"e1", "e2"}},
		{"the old identifier", store.ResourceQuery{Type: "Encounter", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Any: []store.TokenValue{{Code: "V1", AnySystem: true}}}}}, []string{}},
		{"the new identifier", store.ResourceQuery{Type: "Encounter", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
			Any: []store.TokenValue{{Code: "V1b", AnySystem: true}}}}}, []string{"e1"}},
		{"no longer ongoing", store.ResourceQuery{Type: "Encounter", Dates: []store.DateMatch{day(store.DateGe, "2030-01-01", 1)}}, []string{}},
		{"stored without an index", store.ResourceQuery{Type: "Patient"}, []string{"p1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := findResources(t, st, tt.q); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// testResourceBackfill: resources stored without index rows are indexed
// by the backfill, in batches; one the index function cannot read is
// left for a later run; a run with nothing to do does nothing.
func testResourceBackfill(t *testing.T, st store.Store) {
	ctx := context.Background()
	const n = 450 // more than one batch
	var rs []store.SealedResource
	for i := range n {
		id := fmt.Sprintf("b%03d", i)
		rs = append(rs, store.SealedResource{Type: "Observation", ID: id, Sealed: []byte("sealed Observation/" + id)})
	}
	rs = append(rs, store.SealedResource{Type: "Patient", ID: "unreadable", Sealed: []byte("sealed Patient/unreadable")})
	// A type that is read by id only gets no index rows, now or later.
	rs = append(rs, store.SealedResource{Type: "Location", ID: "bed-1", Sealed: []byte("sealed Location/bed-1")},
		indexedResource("Practitioner", "dr-1", "", ""))
	m := store.Mapped{InboundID: "res-bf", MappedAt: time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC), Outcome: []byte("x"), Resources: rs}
	if ok, err := st.StoreMapped(ctx, m); err != nil || !ok {
		t.Fatalf("StoreMapped = %v, %v", ok, err)
	}
	if got := findResources(t, st, store.ResourceQuery{Type: "Observation"}); len(got) != 0 {
		t.Fatalf("before the backfill the search finds %v", got)
	}
	if got := findResources(t, st, store.ResourceQuery{Type: "Practitioner"}); len(got) != 0 {
		t.Fatalf("a Practitioner (read by id only) is found by search: %v", got)
	}
	var seen []string
	index := func(r store.SealedResource) (store.ResourceIndex, bool) {
		seen = append(seen, r.Type+"/"+r.ID)
		if string(r.Sealed) != "sealed "+r.Type+"/"+r.ID {
			t.Errorf("the backfill gave %s/%s sealed %q", r.Type, r.ID, r.Sealed)
		}
		if r.ID == "unreadable" {
			return store.ResourceIndex{}, false
		}
		return store.ResourceIndex{Subject: "Patient/p1", Status: "final", Tokens: []store.IndexToken{identifier("urn:storetest:obs", r.ID)}}, true
	}
	indexed, left, err := st.BackfillResourceIndex(ctx, index)
	if err != nil || indexed != n || left != 1 || len(seen) != n+1 {
		t.Fatalf("backfill = %d indexed, %d left, %v (%d seen); want %d, 1", indexed, left, err, len(seen), n)
	}
	if got := findResources(t, st, store.ResourceQuery{Type: "Observation", Subject: store.TokenMatch{Any: []string{"Patient/p1"}}, Limit: 1000}); len(got) != n {
		t.Fatalf("after the backfill the search finds %d, want %d", len(got), n)
	}
	if got := findResources(t, st, store.ResourceQuery{Type: "Observation", Tokens: []store.TokenFilter{{Param: store.TokenIdentifier,
		Any: []store.TokenValue{{System: "urn:storetest:obs", Code: "b123"}}}}}); !slices.Equal(got, []string{"b123"}) {
		t.Fatalf("a backfilled identifier finds %v", got)
	}
	seen = nil
	if indexed, left, err := st.BackfillResourceIndex(ctx, index); err != nil || indexed != 0 || left != 1 || !slices.Equal(seen, []string{"Patient/unreadable"}) {
		t.Fatalf("second backfill = %d, %d, %v, saw %v; want only the unreadable one again", indexed, left, err, seen)
	}
	// A resource stored again (indexed) while it waited keeps that index.
	again := store.Mapped{InboundID: "res-bf-2", MappedAt: m.MappedAt.Add(time.Hour), Outcome: []byte("x"),
		Resources: []store.SealedResource{indexedResource("Patient", "unreadable", "Patient/unreadable", "")}}
	if ok, err := st.StoreMapped(ctx, again); err != nil || !ok {
		t.Fatalf("StoreMapped = %v, %v", ok, err)
	}
	seen = nil
	if indexed, left, err := st.BackfillResourceIndex(ctx, index); err != nil || indexed != 0 || left != 0 || len(seen) != 0 {
		t.Fatalf("third backfill = %d, %d, %v, saw %v; want nothing to do", indexed, left, err, seen)
	}
	if got := findResources(t, st, store.ResourceQuery{Type: "Patient"}); !slices.Equal(got, []string{"unreadable"}) {
		t.Fatalf("the Patient stored again: %v", got)
	}
}
