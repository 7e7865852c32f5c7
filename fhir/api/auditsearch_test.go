package api

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

func parseAudit(t *testing.T, query string) (auditEventSearch, []problem) {
	t.Helper()
	v, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	return parseAuditEventSearch(v, false, testBase, "")
}

func TestParseAuditEventSearch(t *testing.T) {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t.UTC()
	}
	tests := []struct {
		query string
		want  store.AuditQuery
	}{
		{"", store.AuditQuery{}},
		{"_id=a,b&_id=b,c", store.AuditQuery{EventIDs: []string{"b"}}},
		{"_id=a&_id=c", store.AuditQuery{EventIDs: []string{noMatch}}},
		{"date=2026-11-03", store.AuditQuery{At: []store.TimeBound{{Op: store.GE, At: at("2026-11-03T00:00:00Z")}, {Op: store.LT, At: at("2026-11-04T00:00:00Z")}}}},
		{"patient=" + testBase + "/Patient/p1", store.AuditQuery{Patients: []string{"Patient/p1"}}},
		{"agent=ehr,ehr", store.AuditQuery{Actors: []string{"ehr"}}},
		{"agent=ehr&agent=Device/carebridge", store.AuditQuery{Actors: []string{"ehr"}}},
		{"agent=" + testBase + "/Device/carebridge,ehr", store.AuditQuery{}},
		{"agent:identifier=urn:carebridge:actor:user|Practitioner/a,urn:carebridge:actor:system|carebridge", store.AuditQuery{Actors: []string{"Practitioner/a"}}},
		{"agent:identifier=urn:carebridge:actor:system|carebridge", store.AuditQuery{EventIDs: []string{noMatch}}},
		{"entity:Communication=c1,Patient/p1", store.AuditQuery{}}, // an error, below
		{"entity=Communication/c1,Patient/p1", store.AuditQuery{Entities: []string{"Communication/c1", "Patient/p1"}}},
		{"entity:identifier=urn:carebridge:entity|inbound/1,urn:other|x", store.AuditQuery{Entities: []string{"inbound/1"}}},
		{"type=110114&action=E", store.AuditQuery{Actions: []string{"client.token", "user.break-glass", "user.login", "user.logout"}}},
		{"type=110114&action=C", store.AuditQuery{EventIDs: []string{noMatch}}},
		{"type=|110114", store.AuditQuery{EventIDs: []string{noMatch}}},
		{"subtype=urn:carebridge:audit-action|something.new", store.AuditQuery{Actions: []string{"something.new"}}},
		{"subtype=urn:carebridge:audit-action|", store.AuditQuery{}},
		{"action=http://other|R", store.AuditQuery{EventIDs: []string{noMatch}}},
		{"outcome=4", store.AuditQuery{Outcomes: []uint8{4, 5, 6, 7}}},
		{"outcome=0,4&outcome=4,8", store.AuditQuery{Outcomes: []uint8{4, 5, 6, 7}}},
		{"outcome=http://hl7.org/fhir/audit-event-outcome|", store.AuditQuery{}},
		{"_sort=date&_offset=40", store.AuditQuery{Oldest: true, Offset: 40}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			s, probs := parseAudit(t, tt.query)
			if strings.HasPrefix(tt.query, "entity:Communication=") {
				if len(probs) != 1 || probs[0].Expression != "entity:Communication" {
					t.Fatalf("problems %v, want one naming entity:Communication", probs)
				}
				return
			}
			if len(probs) > 0 {
				t.Fatalf("problems: %v", probs)
			}
			if !reflect.DeepEqual(s.Query, tt.want) {
				t.Fatalf("query\n got %+v\nwant %+v", s.Query, tt.want)
			}
		})
	}
	if s, _ := parseAudit(t, "outcome=12"); len(s.Query.Outcomes) != 244 || s.Query.Outcomes[243] != 255 {
		t.Errorf("outcome=12 gives %v, want 12 to 255", s.Query.Outcomes)
	}
	if s, _ := parseAudit(t, "patient=p1&entity=Communication/c1"); s.Patient != "Patient/p1" {
		t.Errorf("Patient = %q", s.Patient)
	}
	if s, _ := parseAudit(t, "entity=Patient/p2"); s.Patient != "Patient/p2" {
		t.Errorf("Patient of an entity search = %q", s.Patient)
	}
	s, _ := parseAudit(t, "agent=ehr&_count=5&_offset=10&_format=json")
	if s.Count != 5 || !reflect.DeepEqual(s.Canonical, url.Values{"agent": {"ehr"}}) {
		t.Errorf("count %d, canonical %v", s.Count, s.Canonical)
	}
	if s, _ := parseAudit(t, "_count=0"); !s.CountOnly {
		t.Error("_count=0 is not a count")
	}
	v, _ := url.ParseQuery("colour=blue&outcome=0")
	s, probs := parseAuditEventSearch(v, true, testBase, "")
	if len(probs) != 0 || len(s.Ignored) != 1 || s.Ignored[0].Expression != "colour" {
		t.Errorf("lenient: %+v %v", s, probs)
	}
	if s, probs := parseAuditEventSearch(url.Values{"agent": {"Device/bridge-7"}}, false, testBase, "bridge-7"); len(probs) != 0 || len(s.Query.Actors) != 0 {
		t.Errorf("the configured Device is not every event's agent: %+v %v", s.Query, probs)
	}
}

// TestAuditEventCapability: the AuditEvent entry is valid R4 in a
// CapabilityStatement, and every parameter it lists is served.
func TestAuditEventCapability(t *testing.T) {
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	entry := (&Server{}).auditEventCapability()
	b, err := json.Marshal(map[string]any{
		"resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-01", "kind": "instance",
		"implementation": map[string]any{"description": "test"}, "fhirVersion": "4.0.1", "format": []string{"json"},
		"rest": []map[string]any{{"mode": "server", "resource": []map[string]any{entry}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(b); err != nil {
		t.Fatalf("not valid R4: %v\n%s", err, b)
	}
	for _, p := range auditEventParams {
		if !strings.HasPrefix(p.Definition, r4Params) {
			t.Errorf("%s: definition %q", p.Name, p.Definition)
		}
		_, probs := parseAuditEventSearch(url.Values{p.Name: {"x"}}, false, testBase, "")
		for _, pr := range probs {
			if strings.Contains(pr.Details, "unknown search parameter") {
				t.Errorf("%s is listed but not served", p.Name)
			}
		}
	}
}

func FuzzParseAuditEventSearch(f *testing.F) {
	for _, q := range []string{
		"date=ge2026-11-03T14:30:00Z&date=lt2026-11-04&_sort=date&_count=20",
		"patient=Patient/p1&agent=ehr,Device/carebridge&entity=Communication/c1",
		"agent:identifier=urn:carebridge:actor:client|ehr&entity:identifier=urn:carebridge:entity|inbound/1",
		"type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&subtype=read&action=R&outcome=0,4",
		"subtype=urn:carebridge:audit-action|&outcome=http://hl7.org/fhir/audit-event-outcome|12&_summary=count",
		"_id=a\\,b&_offset=20&_total=none",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		s, probs := parseAuditEventSearch(v, false, testBase, "")
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
		for _, b := range s.Query.At {
			if b.At.Location() != time.UTC {
				t.Fatalf("bound %v is not UTC", b.At)
			}
		}
		if len(s.Query.Outcomes) > 256 {
			t.Fatalf("%d outcomes", len(s.Query.Outcomes))
		}
		// The query the store gets must build.
		d := store.SQLDialect{Placeholder: func(int) string { return "?" }, Time: func(t time.Time) any { return t },
			AuditEntityIn: func(ps string) string { return "a.entity IN (" + ps + ")" }}
		if _, _, _, err := s.Query.SQL(d); err != nil {
			t.Fatalf("the query does not build: %v", err)
		}
	})
}
