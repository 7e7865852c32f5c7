package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

func TestIndexCommunicationOfTheR4Examples(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "corpus", "fhir-r4")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("the corpus is not at %s", dir)
	}
	read := func(name string) *Communication {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var c Communication
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	ix, err := IndexCommunication(read("Communication-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := CommunicationIndex{
		Status: "completed", Subject: "Patient/example", Encounter: "Encounter/example", Sender: "Device/f001",
		Recipients:  []string{"Practitioner/example"},
		Identifiers: []Token{{"urn:oid:1.3.4.5.6.7", "2345678901"}},
		Categories:  []Token{{"http://acme.org/messagetypes", "Alert"}},
		Sent:        time.Date(2014, 12, 13, 2, 1, 10, 0, time.UTC),
		Received:    time.Date(2014, 12, 13, 2, 1, 11, 0, time.UTC),
	}
	if !reflect.DeepEqual(ix, want) {
		t.Fatalf("got  %+v\nwant %+v", ix, want)
	}
	ix, err = IndexCommunication(read("Communication-fm-solicited.json"))
	if err != nil || len(ix.BasedOn) != 0 || ix.Subject != "Patient/1" || len(ix.Identifiers) != 1 || ix.Identifiers[0].Code != "12345" {
		t.Fatalf("solicited (basedOn a contained resource, not indexed): %+v %v", ix, err)
	}
}

func TestLiteralReferences(t *testing.T) {
	for in, want := range map[string]string{
		"Patient/1":                          "Patient/1",
		"Patient/1/_history/2":               "Patient/1",
		"https://ehr.example/fhir/Patient/1": "Patient/1",
		"#contained":                         "",
		"urn:uuid:9f2b":                      "",
		"patient/1":                          "",
		"Patient":                            "",
		"Patient/1/extra":                    "",
	} {
		s := in
		if got := literal(&fhirmodel.Reference{Reference: &s}); got != want {
			t.Errorf("literal(%q) = %q, want %q", in, got, want)
		}
	}
}
