package api

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

const testBase = "https://bridge.example/fhir"

func parse(t *testing.T, query string) (communicationSearch, []problem) {
	t.Helper()
	v, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	return parseCommunicationSearch(v, false, testBase)
}

func TestParseCommunicationSearch(t *testing.T) {
	utc := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return t.UTC()
	}
	tests := []struct {
		query string
		want  func(q *store.CommunicationQuery)
	}{
		{"status=completed", func(q *store.CommunicationQuery) { q.Status.Any = []string{"completed"} }},
		{"status=completed,in-progress", func(q *store.CommunicationQuery) { q.Status.Any = []string{"completed", "in-progress"} }},
		{"status=completed,in-progress&status=in-progress", func(q *store.CommunicationQuery) { q.Status.Any = []string{"in-progress"} }},
		{"status=completed&status=in-progress", func(q *store.CommunicationQuery) { q.Status.Any = []string{noMatch} }},
		{"status=http://hl7.org/fhir/event-status|completed", func(q *store.CommunicationQuery) { q.Status.Any = []string{"completed"} }},
		{"status=http://other|completed", func(q *store.CommunicationQuery) { q.Status.Any = []string{noMatch} }},
		{"status:not=completed", func(q *store.CommunicationQuery) { q.Status.Not = []string{"completed"} }},
		{"priority=stat,asap", func(q *store.CommunicationQuery) { q.Priority.Any = []string{"stat", "asap"} }},
		{"priority:missing=false", func(q *store.CommunicationQuery) { q.Priority.Missing = new(false) }},
		{"category=http://terminology.hl7.org/CodeSystem/communication-category|alert", func(q *store.CommunicationQuery) {
			q.Tokens = []store.TokenFilter{{Param: "category", Any: []store.TokenValue{{System: "http://terminology.hl7.org/CodeSystem/communication-category", Code: "alert"}}}}
		}},
		{"identifier=urn:carebridge:communication-source|", func(q *store.CommunicationQuery) {
			q.Tokens = []store.TokenFilter{{Param: "identifier", Any: []store.TokenValue{{System: "urn:carebridge:communication-source", AnyCode: true}}}}
		}},
		{"identifier=FAC%5E123%5Eadmit,|local", func(q *store.CommunicationQuery) {
			q.Tokens = []store.TokenFilter{{Param: "identifier", Any: []store.TokenValue{{Code: "FAC^123^admit", AnySystem: true}, {Code: "local"}}}}
		}},
		{"category:not=alert&category=notification", func(q *store.CommunicationQuery) {
			q.Tokens = []store.TokenFilter{{Param: "category", Any: []store.TokenValue{{Code: "notification", AnySystem: true}}},
				{Param: "category", Not: []store.TokenValue{{Code: "alert", AnySystem: true}}}}
		}},
		{"identifier:missing=true", func(q *store.CommunicationQuery) {
			q.Tokens = []store.TokenFilter{{Param: "identifier", Missing: new(true)}}
		}},
		{"part-of=Observation/o1,Procedure/x", func(q *store.CommunicationQuery) {
			q.Tokens = []store.TokenFilter{{Param: "part-of", Any: []store.TokenValue{{Code: "Observation/o1"}, {Code: "Procedure/x"}}}}
		}},
		{"based-on:ServiceRequest=sr1", func(q *store.CommunicationQuery) {
			q.Tokens = []store.TokenFilter{{Param: "based-on", Any: []store.TokenValue{{Code: "ServiceRequest/sr1"}}}}
		}},
		{"sender=Device/d1", func(q *store.CommunicationQuery) { q.Sender.Any = []string{"Device/d1"} }},
		{"received=ge2026-11", func(q *store.CommunicationQuery) {
			q.Received = []store.TimeBound{{Op: store.GE, At: utc("2026-11-01T00:00:00Z")}}
		}},
		{"received:missing=true", func(q *store.CommunicationQuery) { q.ReceivedMissing = new(true) }},
		{"subject=Patient/p1", func(q *store.CommunicationQuery) { q.Subject.Any = []string{"Patient/p1"} }},
		{"patient=p1", func(q *store.CommunicationQuery) { q.Subject.Any = []string{"Patient/p1"} }},
		{"subject:Patient=p1", func(q *store.CommunicationQuery) { q.Subject.Any = []string{"Patient/p1"} }},
		{"subject=" + testBase + "/Patient/p1", func(q *store.CommunicationQuery) { q.Subject.Any = []string{"Patient/p1"} }},
		{"recipient=Practitioner/a,CareTeam/icu", func(q *store.CommunicationQuery) { q.Recipient.Any = []string{"Practitioner/a", "CareTeam/icu"} }},
		{"encounter:missing=true", func(q *store.CommunicationQuery) { q.Encounter.Missing = new(true) }},
		{"_id=c1", func(q *store.CommunicationQuery) { q.ID.Any = []string{"c1"} }},
		{"sent=2026-11-03", func(q *store.CommunicationQuery) {
			q.Sent = []store.TimeBound{{Op: store.GE, At: utc("2026-11-03T00:00:00Z")}, {Op: store.LT, At: utc("2026-11-04T00:00:00Z")}}
		}},
		{"sent=ge2026-11", func(q *store.CommunicationQuery) {
			q.Sent = []store.TimeBound{{Op: store.GE, At: utc("2026-11-01T00:00:00Z")}}
		}},
		{"sent=gt2026", func(q *store.CommunicationQuery) {
			q.Sent = []store.TimeBound{{Op: store.GE, At: utc("2027-01-01T00:00:00Z")}}
		}},
		{"sent=lt2026-11-03T14:30:00Z", func(q *store.CommunicationQuery) {
			q.Sent = []store.TimeBound{{Op: store.LT, At: utc("2026-11-03T14:30:00Z")}}
		}},
		{"sent=le2026-11-03T14:30:00%2B01:00", func(q *store.CommunicationQuery) {
			q.Sent = []store.TimeBound{{Op: store.LT, At: utc("2026-11-03T13:30:01Z")}}
		}},
		{"sent=2026-11-03T14:30:00.25Z", func(q *store.CommunicationQuery) {
			q.Sent = []store.TimeBound{{Op: store.GE, At: utc("2026-11-03T14:30:00.25Z")}, {Op: store.LT, At: utc("2026-11-03T14:30:00.26Z")}}
		}},
		{"_sort=-sent", func(q *store.CommunicationQuery) { q.Sort = store.SortBySentDesc }},
		{"_sort=priority", func(q *store.CommunicationQuery) { q.Sort = store.SortByPriority }},
		{"_offset=40", func(q *store.CommunicationQuery) { q.Offset = 40 }},
		{"_format=json", func(q *store.CommunicationQuery) {}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, probs := parse(t, tt.query)
			if len(probs) > 0 {
				t.Fatalf("problems: %v", probs)
			}
			var want store.CommunicationQuery
			tt.want(&want)
			if !reflect.DeepEqual(got.Query, want) {
				t.Fatalf("got %+v\nwant %+v", got.Query, want)
			}
		})
	}
}

func TestParseCommunicationSearchOptions(t *testing.T) {
	s, probs := parse(t, "_count=5&_summary=count&_total=none&_include=Communication:subject&patient=Patient/p9")
	if len(probs) > 0 || s.Count != 5 || !s.CountOnly || !s.NoTotal || !s.IncludeSubject || s.Patient != "Patient/p9" {
		t.Fatalf("%+v %v", s, probs)
	}
	if s, _ := parse(t, "_count=5000"); s.Count != maxCount {
		t.Fatalf("_count=5000 gives a page of %d, want %d", s.Count, maxCount)
	}
	if s, _ := parse(t, "_count=0"); !s.CountOnly {
		t.Fatal("_count=0 is not a count")
	}
}

func TestParseCommunicationSearchProblems(t *testing.T) {
	tests := []struct{ query, expression, says string }{
		{"colour=blue", "colour", "unknown search parameter"},
		{"status=done", "status", "not one of"},
		{"status:exact=completed", "status:exact", "modifier :exact"},
		{"subject=Practitioner/x", "subject", "not a reference to Patient"},
		{"subject=p1", "subject", "needs its type"},
		{"part-of=o1", "part-of", "needs its type"},
		{"recipient=Practitioner/bad%20id", "recipient", "resource id"},
		{"sent=yesterday", "sent", `"yesterday" is not a date`}, // whole, not "sterday" after a prefix "ye"
		{"sent=xx2026", "sent", `"xx" is not a date prefix`},
		{"sent=ne2026-11-03", "sent", "not supported"},
		{"sent=2026-13-01", "sent", "not a date"},
		{"sent=2026-11-03T25:00Z", "sent", "not a valid dateTime"},
		{"_count=-1", "_count", "whole number"},
		{"_offset=99999", "_offset", "whole number"},
		{"_sort=colour", "_sort", "_sort takes"},
		{"_summary=text", "_summary", "_summary takes"},
		{"_include=Communication:sender", "_include", "_include takes"},
		{"status:missing=maybe", "status:missing", ":missing takes"},
		{"status=" + strings.Repeat("a", 2000), "status", "longer than"},
		{"status=" + strings.Repeat("a,", 150), "status", "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.query[:min(len(tt.query), 40)], func(t *testing.T) {
			_, probs := parse(t, tt.query)
			if len(probs) != 1 || probs[0].Expression != tt.expression || !strings.Contains(probs[0].Details, tt.says) {
				t.Fatalf("problems %v; want one at %s saying %q", probs, tt.expression, tt.says)
			}
		})
	}
	_, probs := parse(t, "colour=blue&status=done&_sort=x")
	if len(probs) != 3 {
		t.Fatalf("three problems reported as %v: every problem must be named", probs)
	}
	v, _ := url.ParseQuery("colour=blue&status=completed")
	s, probs := parseCommunicationSearch(v, true, testBase)
	if len(probs) != 0 || len(s.Ignored) != 1 || s.Ignored[0].Expression != "colour" || s.Query.Status.Any[0] != "completed" {
		t.Fatalf("lenient: %+v %v", s, probs)
	}
}

func FuzzParseCommunicationSearch(f *testing.F) {
	for _, q := range []string{
		"status=completed,in-progress&_sort=-sent&_count=20",
		"recipient=Practitioner/a&sent=ge2026-11-03T14:30:00.123%2B05:30",
		"subject:Patient=p1&_include=Communication:subject&identifier=urn:carebridge:communication-source|",
		"priority:not=routine&encounter:missing=true&_summary=count",
		"sent=2026&sent=lt2027-01&_offset=20",
		"status=a\\,b",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		s, probs := parseCommunicationSearch(v, false, testBase)
		if len(probs) > 0 {
			for _, p := range probs {
				if p.Details == "" {
					t.Fatalf("a problem without details: %+v", p)
				}
			}
			return
		}
		if s.Count < 0 || s.Count > maxCount || s.Query.Offset < 0 || s.Query.Offset > maxOffset {
			t.Fatalf("page out of bounds: %d at %d", s.Count, s.Query.Offset)
		}
		for _, b := range s.Query.Sent {
			if b.At.Location() != time.UTC {
				t.Fatalf("bound %v is not UTC", b.At)
			}
		}
		// The query the store gets must build.
		s.Query.SQL(store.SQLDialect{Placeholder: func(int) string { return "?" }, Time: func(t time.Time) any { return t }})
	})
}
