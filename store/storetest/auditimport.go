package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// filedAt is when the suite's filed AuditEvents were recorded.
var filedAt = time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)

// filedRow is a filed AuditEvent, recorded minutes after filedAt, with
// tokens.
func filedRow(id string, minutes int, tokens ...store.IndexToken) store.FiledAuditEvent {
	return store.FiledAuditEvent{ID: id, Recorded: filedAt.Add(time.Duration(minutes) * time.Minute),
		Updated: filedAt.Add(time.Hour), Sealed: []byte("sealed " + id), Tokens: tokens}
}

func filedIDs(rows []store.FiledAuditEvent) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

// testAuditImport: a filed AuditEvent reads back as written, its event
// is published with it, an id filed twice is a conflict that writes and
// publishes nothing, and searches find the filed ones by id, recorded
// time and tokens (system|code, code, system|), newest first or oldest
// first, paged, counted alike.
func testAuditImport(t *testing.T, st store.Store) {
	ctx := context.Background()
	tok := func(param, system, code string) store.IndexToken {
		return store.IndexToken{Param: param, System: system, Code: code}
	}
	const dcm = "http://dicom.nema.org/resources/ontology/DCM"
	rows := []store.FiledAuditEvent{
		filedRow("fa-1", 0, tok(store.FiledType, dcm, "110114"), tok(store.FiledSubtype, dcm, "110122"),
			tok(store.FiledAction, "http://hl7.org/fhir/audit-event-action", "E"), tok(store.FiledAgentIdentifier, "", "95")),
		filedRow("fa-2", 1, tok(store.FiledType, dcm, "110106"), tok(store.FiledSubtype, "", "Disclosure"),
			tok(store.FiledEntity, "Patient", "example"), tok(store.FiledPatient, "Patient", "example"), tok(store.FiledAgent, "Practitioner", "example")),
		filedRow("fa-3", 2, tok(store.FiledType, dcm, "110114"), tok(store.FiledSubtype, dcm, "110123"),
			tok(store.FiledAgentIdentifier, "urn:oid:2.16.840.1.113883.4.2", "2.16.840.1.113883.4.2")),
		filedRow("fa-4", 2, tok(store.FiledType, dcm, "110114")), // the same time as fa-3: by id
	}
	ev := textEvent("filed")
	if err := st.FileAuditEvent(ctx, rows[0], ev); err != nil {
		t.Fatalf("FileAuditEvent: %v", err)
	}
	for _, r := range rows[1:] {
		if err := st.FileAuditEvent(ctx, r); err != nil {
			t.Fatalf("FileAuditEvent(%s): %v", r.ID, err)
		}
	}
	again := rows[0]
	again.Sealed = []byte("another")
	if err := st.FileAuditEvent(ctx, again, textEvent("again")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("FileAuditEvent of an id filed = %v, want ErrConflict", err)
	}
	got := received(t, st, "storetest-auditimport", TopicOther, 1, 200*time.Millisecond)
	sameEvent(t, got[0], ev)

	r, err := st.GetFiledAuditEvent(ctx, "fa-1")
	if err != nil {
		t.Fatalf("GetFiledAuditEvent: %v", err)
	}
	want := rows[0]
	want.Tokens = nil
	if r.ID != want.ID || !r.Recorded.Equal(want.Recorded) || !r.Updated.Equal(want.Updated) || string(r.Sealed) != string(want.Sealed) || r.Tokens != nil {
		t.Errorf("GetFiledAuditEvent = %+v, want %+v", r, want)
	}
	if r.Recorded.Location() != time.UTC || r.Updated.Location() != time.UTC {
		t.Errorf("times not in UTC: %v %v", r.Recorded, r.Updated)
	}
	if _, err := st.GetFiledAuditEvent(ctx, "fa-nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetFiledAuditEvent of an unknown id = %v, want ErrNotFound", err)
	}

	filter := func(param string, vs ...store.TokenValue) store.TokenFilter {
		return store.TokenFilter{Param: param, Any: vs}
	}
	code := func(c string) store.TokenValue { return store.TokenValue{Code: c, AnySystem: true} }
	both := func(s, c string) store.TokenValue { return store.TokenValue{System: s, Code: c} }
	system := func(s string) store.TokenValue { return store.TokenValue{System: s, AnyCode: true} }
	for _, tc := range []struct {
		name string
		q    store.FiledAuditQuery
		want []string
	}{
		{"all, newest first", store.FiledAuditQuery{}, []string{"fa-4", "fa-3", "fa-2", "fa-1"}},
		{"all, oldest first", store.FiledAuditQuery{Oldest: true}, []string{"fa-1", "fa-2", "fa-3", "fa-4"}},
		{"ids", store.FiledAuditQuery{IDs: []string{"fa-2", "fa-4", "nope"}}, []string{"fa-4", "fa-2"}},
		{"type system|code", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledType, both(dcm, "110114"))}}, []string{"fa-4", "fa-3", "fa-1"}},
		{"type code", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledType, code("110106"))}}, []string{"fa-2"}},
		{"subtype system|", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledSubtype, system(dcm))}}, []string{"fa-3", "fa-1"}},
		{"subtype |code", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledSubtype, both("", "Disclosure"))}}, []string{"fa-2"}},
		{"subtype |code of a system", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledSubtype, both("", "110122"))}}, nil},
		{"OR", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledSubtype, code("110122"), code("110123"))}}, []string{"fa-3", "fa-1"}},
		{"AND", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledType, code("110114")), filter(store.FiledSubtype, code("110123"))}}, []string{"fa-3"}},
		{"Not", store.FiledAuditQuery{Tokens: []store.TokenFilter{{Param: store.FiledType, Not: []store.TokenValue{code("110114")}}}}, []string{"fa-2"}},
		{"reference by id", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledAgent, code("example"))}}, []string{"fa-2"}},
		{"reference of another type", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledAgent, both("Patient", "example"))}}, nil},
		{"patient", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledPatient, both("Patient", "example"))}}, []string{"fa-2"}},
		{"identifier", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledAgentIdentifier, code("95"))}}, []string{"fa-1"}},
		{"token of another param", store.FiledAuditQuery{Tokens: []store.TokenFilter{filter(store.FiledEntity, code("95"))}}, nil},
		{"recorded from", store.FiledAuditQuery{At: []store.TimeBound{{Op: store.GE, At: filedAt.Add(time.Minute)}}}, []string{"fa-4", "fa-3", "fa-2"}},
		{"recorded within", store.FiledAuditQuery{At: []store.TimeBound{{Op: store.GT, At: filedAt}, {Op: store.LT, At: filedAt.Add(2 * time.Minute)}}}, []string{"fa-2"}},
		{"recorded to the microsecond", store.FiledAuditQuery{At: []store.TimeBound{{Op: store.LE, At: filedAt}}}, []string{"fa-1"}},
		{"recorded before", store.FiledAuditQuery{At: []store.TimeBound{{Op: store.LT, At: filedAt}}}, nil},
		{"page", store.FiledAuditQuery{Offset: 1, Limit: 2}, []string{"fa-3", "fa-2"}},
		{"page oldest first", store.FiledAuditQuery{Oldest: true, Offset: 3, Limit: 2}, []string{"fa-4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			if q.Limit == 0 {
				q.Limit = 10
			}
			got, err := st.SearchFiledAuditEvents(ctx, q)
			if err != nil {
				t.Fatalf("SearchFiledAuditEvents: %v", err)
			}
			if !slices.Equal(filedIDs(got), tc.want) {
				t.Errorf("SearchFiledAuditEvents = %v, want %v", filedIDs(got), tc.want)
			}
			for _, r := range got {
				if r.Tokens != nil || string(r.Sealed) != "sealed "+r.ID {
					t.Errorf("%s: Sealed %q, Tokens %v", r.ID, r.Sealed, r.Tokens)
				}
			}
			n, err := st.CountFiledAuditEvents(ctx, q)
			wantN := len(tc.want)
			if q.Offset > 0 || tc.q.Limit > 0 {
				wantN = 4 // counted without the page
			}
			if err != nil || n != wantN {
				t.Errorf("CountFiledAuditEvents = %d, %v; want %d", n, err, wantN)
			}
		})
	}
	if got, err := st.SearchFiledAuditEvents(ctx, store.FiledAuditQuery{}); err != nil || got != nil {
		t.Errorf("SearchFiledAuditEvents without a limit = %v, %v; want none", filedIDs(got), err)
	}
	if _, err := st.SearchFiledAuditEvents(ctx, store.FiledAuditQuery{Limit: 1, At: []store.TimeBound{{Op: "=", At: filedAt}}}); err == nil {
		t.Error("an unknown comparator is not an error")
	}
	missing := true
	if _, err := st.CountFiledAuditEvents(ctx, store.FiledAuditQuery{Tokens: []store.TokenFilter{{Param: store.FiledType, Missing: &missing}}}); err == nil {
		t.Error("a Missing token filter is not an error")
	}
}
