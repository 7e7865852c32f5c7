package index_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/store"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestResource(t *testing.T) {
	tests := []struct {
		name, typ, body string
		want            store.ResourceIndex
	}{
		{"a Patient is its own subject", "Patient",
			`{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"200345"},{"value":"A1"},{"system":"urn:empty"}],"name":[{"family":"Synthetic"}]}`,
			store.ResourceIndex{Subject: "Patient/p1", Tokens: []store.IndexToken{
				{Param: store.TokenIdentifier, System: "urn:mrn", Code: "200345"}, {Param: store.TokenIdentifier, Code: "A1"}}}},
		{"an Encounter's period, ongoing", "Encounter",
			`{"resourceType":"Encounter","id":"e1","status":"in-progress","subject":{"reference":"Patient/p1"},"period":{"start":"2026-11-03T09:00:00-05:00"}}`,
			store.ResourceIndex{Subject: "Patient/p1", Status: "in-progress", Dated: true, From: utc("2026-11-03T14:00:00Z"), To: store.DateOpenEnd}},
		{"an Encounter's period, ended on a day", "Encounter",
			`{"resourceType":"Encounter","id":"e1","status":"finished","subject":{"reference":"https://ehr.example/fhir/Patient/p1/_history/2"},"period":{"start":"2026-11-03","end":"2026-11-07"}}`,
			store.ResourceIndex{Subject: "Patient/p1", Status: "finished", Dated: true, From: utc("2026-11-03T00:00:00Z"), To: utc("2026-11-08T00:00:00Z")}},
		{"an Encounter without a start", "Encounter",
			`{"resourceType":"Encounter","id":"e1","status":"finished","period":{"end":"2026-11"}}`,
			store.ResourceIndex{Status: "finished", Dated: true, From: store.DateOpenStart, To: utc("2026-12-01T00:00:00Z")}},
		{"an Encounter without a period", "Encounter",
			`{"resourceType":"Encounter","id":"e1","status":"unknown","subject":{"reference":"#contained"}}`,
			store.ResourceIndex{Status: "unknown"}},
		{"a ServiceRequest's authoredOn", "ServiceRequest",
			`{"resourceType":"ServiceRequest","id":"s1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"authoredOn":"2026-11-03T10:15:00-05:00"}`,
			store.ResourceIndex{Subject: "Patient/p1", Status: "active", Dated: true, From: utc("2026-11-03T15:15:00Z"), To: utc("2026-11-03T15:15:01Z")}},
		{"an Observation's effectiveDateTime of milliseconds", "Observation",
			`{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-11-03T14:20:00.250Z"}`,
			store.ResourceIndex{Subject: "Patient/p1", Status: "final", Dated: true, From: utc("2026-11-03T14:20:00.25Z"), To: utc("2026-11-03T14:20:00.251Z")}},
		{"an Observation's effectivePeriod", "Observation",
			`{"resourceType":"Observation","id":"o1","status":"final","effectivePeriod":{"start":"2026","end":"2027"}}`,
			store.ResourceIndex{Status: "final", Dated: true, From: utc("2026-01-01T00:00:00Z"), To: utc("2028-01-01T00:00:00Z")}},
		{"an Observation's effectiveInstant", "Observation",
			`{"resourceType":"Observation","id":"o1","status":"final","effectiveInstant":"2026-11-03T14:20:00Z"}`,
			store.ResourceIndex{Status: "final", Dated: true, From: utc("2026-11-03T14:20:00Z"), To: utc("2026-11-03T14:20:01Z")}},
		{"another type: no date", "Practitioner",
			`{"resourceType":"Practitioner","id":"d1","identifier":[{"value":"4001"}],"period":{"start":"2026"}}`,
			store.ResourceIndex{Tokens: []store.IndexToken{{Param: store.TokenIdentifier, Code: "4001"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := index.Resource(tt.typ, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// A date that does not read leaves it undated; only JSON that does not
	// read fails.
	for _, odd := range []struct{ typ, body string }{
		{"Encounter", `{"resourceType":"Encounter","status":"finished","period":{"start":"yesterday"}}`},
		{"Encounter", `{"resourceType":"Encounter","status":"finished","period":{"start":"2026-11-07","end":"2026-11-03"}}`},
		{"Observation", `{"resourceType":"Observation","status":"finished","effectiveDateTime":"2026-13"}`},
	} {
		ix, err := index.Resource(odd.typ, []byte(odd.body))
		if err != nil || ix.Dated || ix.Status != "finished" {
			t.Errorf("Resource(%s) = %+v, %v; want it undated", odd.body, ix, err)
		}
	}
	if _, err := index.Resource("Patient", []byte("not json")); err == nil {
		t.Error("Resource of what is not JSON succeeded")
	}
}

// TestResourceKeepsNoPHI: names, birth dates, values and notes of the
// mapped golden resources stay out of the index.
func TestResourceKeepsNoPHI(t *testing.T) {
	body := []byte(`{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1","display":"SAMPLE, JORDAN"},` +
		`"effectiveDateTime":"2026-11-03T14:20:00Z","valueQuantity":{"value":6.9,"unit":"mmol/L"},"note":[{"text":"Critical value called to unit"}]}`)
	ix, err := index.Resource("Observation", body)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join([]string{ix.Subject, ix.Status}, " ")
	for _, tok := range ix.Tokens {
		got += " " + tok.System + " " + tok.Code
	}
	for _, phi := range []string{"SAMPLE", "6.9", "Critical"} {
		if strings.Contains(got, phi) {
			t.Errorf("the index keeps %q: %+v", phi, ix)
		}
	}
}

// backfillStore hands the backfill's function every resource it holds.
type backfillStore struct {
	resources []store.SealedResource
	got       map[string]store.ResourceIndex
}

func (b *backfillStore) BackfillResourceIndex(_ context.Context, index func(store.SealedResource) (store.ResourceIndex, bool)) (int, int, error) {
	n, left := 0, 0
	for _, r := range b.resources {
		ix, ok := index(r)
		if !ok {
			left++
			continue
		}
		b.got[r.Type+"/"+r.ID] = ix
		n++
	}
	return n, left, nil
}

// xorKeys "seals" by prefixing the associated data, so that a wrong one
// does not open.
type xorKeys struct{}

func (xorKeys) Open(sealed, aad []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(string(sealed), string(aad)+":")
	if !ok {
		return nil, errors.New("cipher: message authentication failed")
	}
	return []byte(rest), nil
}

func TestBackfill(t *testing.T) {
	st := &backfillStore{got: map[string]store.ResourceIndex{}, resources: []store.SealedResource{
		{Type: "Patient", ID: "p1", Sealed: []byte(`Patient/p1:{"resourceType":"Patient","id":"p1","identifier":[{"value":"1"}]}`)},
		{Type: "Observation", ID: "o1", Sealed: []byte(`Observation/o2:{"resourceType":"Observation"}`)}, // sealed for another id
		{Type: "Encounter", ID: "e1", Sealed: []byte(`Encounter/e1:{"resourceType":`)},                   // opens, does not read
	}}
	n, left, err := index.Backfill(context.Background(), st, xorKeys{})
	if err != nil || n != 1 || left != 2 {
		t.Fatalf("Backfill = %d, %d, %v; want 1 indexed, 2 left", n, left, err)
	}
	if ix := st.got["Patient/p1"]; ix.Subject != "Patient/p1" || len(ix.Tokens) != 1 {
		t.Fatalf("Patient/p1 indexed as %+v", ix)
	}
}

// TestResourceOfTheGoldenMappings: every resource the mapping's golden
// outputs hold indexes.
func TestResourceOfTheGoldenMappings(t *testing.T) {
	files, err := filepath.Glob("../../mapping/testdata/golden/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden mappings: %v", err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range goldenResources(t, b) {
			if _, err := index.Resource(r.typ, r.body); err != nil {
				t.Errorf("%s: %s: %v", filepath.Base(f), r.typ, err)
			}
			n++
		}
	}
	if n < 50 {
		t.Fatalf("only %d resources in the golden mappings", n)
	}
}

type goldenResource struct {
	typ  string
	body []byte
}

func goldenResources(t *testing.T, b []byte) []goldenResource {
	t.Helper()
	var g struct {
		Bundle *struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		} `json:"bundle"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if g.Bundle == nil {
		return nil
	}
	var out []goldenResource
	for _, e := range g.Bundle.Entry {
		var h struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(e.Resource, &h); err != nil {
			t.Fatal(err)
		}
		out = append(out, goldenResource{h.ResourceType, e.Resource})
	}
	return out
}
