package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// TestFastEncoderMatchesEncodingJSON: for the listed resource types the
// fast path is taken and writes exactly what encoding/json writes,
// including the escapes of awkward strings and numbers.
func TestFastEncoderMatchesEncodingJSON(t *testing.T) {
	awkward := []string{
		"plain", "", "quote\" backslash\\ slash/", "<b>&amp;</b>", "tab\tnl\ncr\r bs\b ff\f nul\x00 us\x1f del\x7f",
		"latin-1 \xe9 invalid", "truncated \xe2\x82", "line sep \u2028 para sep \u2029", "emoji 🩺 and ümlaut",
	}
	for _, s := range awkward {
		num := json.Number("6.90")
		status := fhirmodel.ObservationStatusFinal
		gender := fhirmodel.AdministrativeGenderOther
		obs := &fhirmodel.Observation{
			Id:     &s,
			Status: status,
			Code:   fhirmodel.CodeableConcept{Text: &s, Coding: []fhirmodel.Coding{{Code: &s}, {}}},
			Note:   []fhirmodel.Annotation{{Text: s}},
			ValueQuantity: &fhirmodel.Quantity{
				Value: &num, Unit: &s,
			},
			Extension: []fhirmodel.Extension{{Url: s, Extension: []fhirmodel.Extension{{Url: s, ValueString: &s}}}},
		}
		pat := &fhirmodel.Patient{Gender: &gender, Active: new(false), Name: []fhirmodel.HumanName{{Given: []string{s, ""}}}}
		comm := &Communication{Payload: []CommunicationPayload{{ContentString: &s}, {}}}
		comm.Id = &s
		comm.Status = fhirmodel.EventStatusInProgress
		comm.Recipient = []fhirmodel.Reference{{Reference: &s}}
		for _, body := range []any{obs, pat, &fhirmodel.Device{}, comm, &Communication{}} {
			fast, ok, err := encodeFast(body)
			if !ok {
				t.Fatalf("%T: fast path not taken", body)
			}
			if err != nil {
				t.Fatalf("%T: %v", body, err)
			}
			std, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fast, std) {
				t.Errorf("%T with %q:\n fast: %s\n  std: %s", body, s, fast, std)
			}
		}
	}
}

func TestFastEncoderRefusesWhatEncodingJSONRefuses(t *testing.T) {
	bad := json.Number("12abc")
	obs := &fhirmodel.Observation{ValueQuantity: &fhirmodel.Quantity{Value: &bad}}
	_, ok, err := encodeFast(obs)
	if !ok || err == nil {
		t.Fatalf("invalid number: ok=%v err=%v, want an error", ok, err)
	}
	if _, err := json.Marshal(obs); err == nil {
		t.Fatal("encoding/json accepted it; the test's premise is wrong")
	}
	if _, ok, _ := encodeFast(map[string]any{"resourceType": "Patient"}); ok {
		t.Error("a map took the fast path")
	}
}

func BenchmarkEncodeObservation(b *testing.B) {
	num := json.Number("4.2")
	obs := &fhirmodel.Observation{
		Id: new("x"), Status: fhirmodel.ObservationStatusFinal,
		Code:          fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{{System: new("http://loinc.org"), Code: new("2823-3"), Display: new("Potassium")}}},
		Subject:       &fhirmodel.Reference{Reference: new("Patient/1")},
		ValueQuantity: &fhirmodel.Quantity{Value: &num, Unit: new("mmol/L")},
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeFast(obs)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(obs)
		}
	})
}

// TestFastEncoderConcurrentFirstUse: plans built by several goroutines at
// once (run with -race) are complete and agree with encoding/json.
func TestFastEncoderConcurrentFirstUse(t *testing.T) {
	org := &fhirmodel.Organization{Name: new("Good Health <ICU>"), Alias: []string{"GH"}}
	role := &fhirmodel.PractitionerRole{Active: new(true), Practitioner: &fhirmodel.Reference{Reference: new("Practitioner/1")}}
	done := make(chan error, 16)
	for i := 0; i < 16; i++ {
		go func() {
			for _, body := range []any{org, role} {
				fast, ok, err := encodeFast(body)
				std, _ := json.Marshal(body)
				if !ok || err != nil || !bytes.Equal(fast, std) {
					done <- fmt.Errorf("%T: ok=%v err=%v\n fast: %s\n  std: %s", body, ok, err, fast, std)
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 16; i++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
