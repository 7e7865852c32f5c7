package index_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/store"
)

func TestAuditEvent(t *testing.T) {
	tok := func(param, system, code string) store.IndexToken {
		return store.IndexToken{Param: param, System: system, Code: code}
	}
	const dcm = "http://dicom.nema.org/resources/ontology/DCM"
	body := `{"resourceType":"AuditEvent","id":"ignored",
		"type":{"system":"` + dcm + `","code":"110106","display":"Export"},
		"subtype":[{"code":"Disclosure"},{"system":"urn:x","code":"a"},{"system":"urn:x","code":"a"},{"display":"no code"}],
		"action":"R","recorded":"2012-10-25T22:04:27.1234567+11:00","outcome":"4","outcomeDesc":"synthetic free text",
		"agent":[{"who":{"identifier":{"value":"95"}},"name":"Synthetic Name","network":{"address":"10.0.0.1"},"requestor":true},
			{"who":{"reference":"Practitioner/example","identifier":{"system":"urn:oid:1.2","value":"pr-1"}},"requestor":false},
			{"who":{"reference":"#contained"},"requestor":false},
			{"type":{"coding":[{"code":"110154"}]},"requestor":false}],
		"source":{"observer":{"display":"x"}},
		"entity":[{"what":{"reference":"Patient/example"}},
			{"what":{"reference":"Patient/example/_history/1","identifier":{"value":"What.id"}}},
			{"what":{"reference":"https://ehr.example.org/fhir/DocumentManifest/dm-1"}},
			{"what":{"reference":"urn:uuid:0d5a4e1c-6d1b-4a0e-9a6f-0b0c1d2e3f40"}},
			{"name":"synthetic query","query":"c2VjcmV0"}]}`
	got, err := index.AuditEvent([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := store.FiledAuditEvent{Recorded: time.Date(2012, 10, 25, 11, 4, 27, 123456000, time.UTC), Tokens: []store.IndexToken{
		tok(store.FiledType, dcm, "110106"),
		tok(store.FiledSubtype, "", "Disclosure"), tok(store.FiledSubtype, "urn:x", "a"),
		tok(store.FiledAction, "http://hl7.org/fhir/audit-event-action", "R"),
		tok(store.FiledOutcome, "http://hl7.org/fhir/audit-event-outcome", "4"),
		tok(store.FiledAgentIdentifier, "", "95"),
		tok(store.FiledAgent, "Practitioner", "example"), tok(store.FiledAgentIdentifier, "urn:oid:1.2", "pr-1"),
		tok(store.FiledEntity, "Patient", "example"), tok(store.FiledPatient, "Patient", "example"),
		tok(store.FiledEntityIdentifier, "", "What.id"),
		tok(store.FiledEntity, "DocumentManifest", "dm-1"),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AuditEvent =\n%+v\nwant\n%+v", got, want)
	}
	if p := index.AuditEventPatient(got); p != "Patient/example" {
		t.Errorf("AuditEventPatient = %q, want Patient/example", p)
	}
	for _, v := range []string{"Synthetic Name", "10.0.0.1", "synthetic", "c2VjcmV0", "contained", "urn:uuid"} {
		if strings.Contains(fmt.Sprint(got), v) {
			t.Errorf("the index keeps %q", v)
		}
	}
}

func TestAuditEventErrors(t *testing.T) {
	many := make([]string, fhir.MaxIndexValues+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"code":"c%d"}`, i)
	}
	for _, tc := range []struct {
		name, body string
		tooMany    bool
	}{
		{"not JSON", `{"resourceType":`, false},
		{"no recorded", `{"resourceType":"AuditEvent"}`, false},
		{"a date, not an instant", `{"resourceType":"AuditEvent","recorded":"2012-10-25"}`, false},
		{"too many subtypes", `{"resourceType":"AuditEvent","recorded":"2012-10-25T22:04:27Z","subtype":[` + strings.Join(many, ",") + `]}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := index.AuditEvent([]byte(tc.body))
			if err == nil || errors.Is(err, index.ErrTooManyValues) != tc.tooMany {
				t.Errorf("AuditEvent = %v, want an error (too many values: %v)", err, tc.tooMany)
			}
		})
	}
	ok := `{"resourceType":"AuditEvent","recorded":"2012-10-25T22:04:27Z","subtype":[` + strings.Join(many[1:], ",") + `]}`
	if _, err := index.AuditEvent([]byte(ok)); err != nil {
		t.Errorf("%d subtypes: %v", fhir.MaxIndexValues, err)
	}
}
