package fhir_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/fhir"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

func newValidator(t testing.TB) *fhir.Validator {
	t.Helper()
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidatorRejects(t *testing.T) {
	v := newValidator(t)
	tests := []struct {
		name, json string
	}{
		{"unknown element", `{"resourceType":"Patient","id":"a","shoeSize":42}`},
		{"bad date", `{"resourceType":"Patient","id":"a","birthDate":"1980-13-45"}`},
		{"bad code", `{"resourceType":"Patient","id":"a","gender":"mostly"}`},
		{"missing required status", `{"resourceType":"Communication","id":"a"}`},
		{"two choice values", `{"resourceType":"Communication","id":"a","status":"in-progress","payload":[{"contentString":"x","contentAttachment":{}}]}`},
		{"not JSON", `{"resourceType":`},
		{"unknown resource", `{"resourceType":"Spaceship","id":"a"}`},
		{"bad id", `{"resourceType":"Patient","id":"has space"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Validate([]byte(tt.json))
			var ve *fhir.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			if strings.Contains(ve.Error(), "42") || strings.Contains(ve.Error(), "mostly") {
				t.Errorf("Error() quotes content: %q", ve.Error())
			}
		})
	}
	if err := v.Validate(make([]byte, fhir.MaxResourceBytes+1)); !errors.Is(err, fhir.ErrTooLarge) {
		t.Errorf("oversized resource: %v, want ErrTooLarge", err)
	}
}

// A client told its resource is invalid must be told where each problem
// is: an unknown element by its own path (google/fhir names only the
// element that holds it, the same for two of them), a code that is not
// allowed with the codes that are, and never the value sent.
func TestValidatorNamesEachProblem(t *testing.T) {
	v := newValidator(t)
	for _, tt := range []struct {
		json string
		want []string // the Diagnostics lines, in any order
	}{
		{`{"resourceType":"Communication","status":"in-progress","shoeSize":42}`,
			[]string{`error at "Communication.shoeSize": unknown element (not in FHIR R4 here)`}},
		{`{"resourceType":"Communication","status":"in-progress","subject":{"reference":"Patient/p1","colour":1,"_mood":{}}}`,
			[]string{`error at "Communication.subject.colour": unknown element (not in FHIR R4 here)`,
				`error at "Communication.subject._mood": unknown element (not in FHIR R4 here)`}},
		{`{"resourceType":"Communication","status":"in-progress","payload":[{"contentString":"x"},{"contentSmell":"y"}]}`,
			[]string{`error at "Communication.payload[1].contentSmell": unknown element (not in FHIR R4 here)`}},
		{`{"resourceType":"Communication","status":"done"}`,
			[]string{`error at "Communication.status": not a code this element allows (one of preparation, in-progress, not-done, on-hold, stopped, completed, entered-in-error, unknown)`}},
		{`{"resourceType":"Communication","status":"in-progress","priority":"meh"}`,
			[]string{`error at "Communication.priority": not a code this element allows (one of routine, urgent, asap, stat)`}},
		{`{"resourceType":"Communication","status":"in-progress","sent":"yesterday"}`,
			[]string{`error at "Communication.sent": expected datetime`}},
		{`{"resourceType":"Communication"}`,
			[]string{`error at "Communication": missing required field "status"`}},
	} {
		err := v.Validate([]byte(tt.json))
		var ve *fhir.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: %v, want a *ValidationError", tt.json, err)
			continue
		}
		got := strings.Split(ve.Diagnostics, "\n")
		slices.Sort(got)
		slices.Sort(tt.want)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n got %q\nwant %q", tt.json, got, tt.want)
		}
	}
}

// TestSamplyCommunicationTrap proves why fhir.Communication exists: samply's
// own struct serialises every payload variant and fails R4; ours passes.
func TestSamplyCommunicationTrap(t *testing.T) {
	v := newValidator(t)
	text := "hello"
	bad := fhirmodel.Communication{Status: fhirmodel.EventStatusInProgress, Payload: []fhirmodel.CommunicationPayload{{ContentString: text}}}
	b, _ := json.Marshal(bad)
	if err := v.Validate(b); err == nil {
		t.Fatal("samply's Communication validated; the trap is gone and fhir.Communication may be removed")
	}
	var good fhir.Communication
	good.Id = new("c1")
	good.Status = fhirmodel.EventStatusInProgress
	good.Payload = []fhir.CommunicationPayload{{ContentString: &text}}
	b, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(b); err != nil {
		t.Fatalf("fhir.Communication: %v\n%s", err, b)
	}
	var back fhir.Communication
	if err := json.Unmarshal(b, &back); err != nil || back.Payload[0].ContentString == nil || *back.Payload[0].ContentString != text {
		t.Fatalf("round trip lost the payload: %v %+v", err, back.Payload)
	}
}

// TestValidatorAcceptsOfficialExamples runs the spec's own examples of the
// resources carebridge emits through the validator.
func TestValidatorAcceptsOfficialExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "corpus", "fhir-r4")
	if d := os.Getenv("CAREBRIDGE_CORPUS"); d != "" {
		dir = filepath.Join(d, "fhir-r4")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		if os.Getenv("CAREBRIDGE_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatalf("no FHIR examples under %s", dir)
		}
		t.Skipf("no FHIR examples under %s (the shared corpus is not beside this checkout)", dir)
	}
	v := newValidator(t)
	n := 0
	for _, f := range files {
		base := filepath.Base(f)
		if !strings.HasPrefix(base, "Patient-") && !strings.HasPrefix(base, "Encounter-") &&
			!strings.HasPrefix(base, "Communication-") && !strings.HasPrefix(base, "ServiceRequest-") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(b); err != nil {
			var ve *fhir.ValidationError
			errors.As(err, &ve)
			t.Errorf("%s: %v: %s", base, err, ve.Diagnostics)
		}
		n++
	}
	if n < 40 {
		t.Errorf("validated %d examples, want the corpus's 50-odd", n)
	}
}

func TestIDIsDeterministicAndOpaque(t *testing.T) {
	a := fhir.ID("Patient", "urn:oid:1.2.3", "100234")
	if a != fhir.ID("Patient", "urn:oid:1.2.3", "100234") {
		t.Fatal("same parts, different ids")
	}
	for _, other := range []string{
		fhir.ID("Patient", "urn:oid:1.2.3", "100235"),
		fhir.ID("Patient", "urn:oid:1.2.31", "00234"), // parts are separated, not concatenated
		fhir.ID("Encounter", "urn:oid:1.2.3", "100234"),
	} {
		if other == a {
			t.Errorf("different parts gave the same id %s", a)
		}
	}
	if strings.Contains(a, "100234") || len(a) != 36 || a[14] != '8' {
		t.Errorf("id %s: want a UUIDv8 shape that does not show the identifier", a)
	}
	v := newValidator(t)
	if err := v.Validate([]byte(`{"resourceType":"Patient","id":"` + a + `"}`)); err != nil {
		t.Errorf("id is not a valid FHIR id: %v", err)
	}
}

func TestTransactionBundleValidates(t *testing.T) {
	v := newValidator(t)
	p := &fhirmodel.Patient{Id: new(fhir.ID("Patient", "x")), Active: new(true)}
	b, err := fhir.TransactionBundle([]fhir.Resource{{Type: "Patient", ID: *p.Id, Body: p}})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(b); err != nil {
		var ve *fhir.ValidationError
		errors.As(err, &ve)
		t.Fatalf("bundle: %v %s\n%s", err, ve.Diagnostics, b)
	}
}

func TestOperationOutcomeKeepsDiagnosticsApart(t *testing.T) {
	o := fhir.Outcome{{Severity: fhir.SeverityWarning, Code: fhir.CodeValue, Location: "PID-7", Details: "birth date is not an HL7 date", Diagnostics: "value 19801345"}}
	v := newValidator(t)
	for _, diag := range []bool{false, true} {
		oo := o.OperationOutcome(diag)
		b, _ := json.Marshal(oo)
		if err := v.Validate(b); err != nil {
			t.Fatalf("OperationOutcome is not valid R4: %v\n%s", err, b)
		}
		if got := strings.Contains(string(b), "19801345"); got != diag {
			t.Errorf("diagnostics=%v: content present=%v", diag, got)
		}
	}
	if !strings.Contains(o[0].String(), "PID-7") || strings.Contains(o[0].String(), "19801345") {
		t.Errorf("String() = %q", o[0].String())
	}
}

// TestGateKeepsValidAndReportsInvalid: an invalid resource never leaves;
// the outcome names it without quoting its content, and the valid ones
// around it still go out, in order.
func TestGateKeepsValidAndReportsInvalid(t *testing.T) {
	v := newValidator(t)
	good := &fhirmodel.Patient{Id: new(fhir.ID("Patient", "ok")), Active: new(true)}
	bad := map[string]any{"resourceType": "Patient", "id": "bad", "birthDate": "ZZTOPSECRET"}
	other := &fhirmodel.Patient{Id: new(fhir.ID("Patient", "ok2"))}
	var out fhir.Outcome
	kept := v.Gate([]fhir.Resource{
		{Type: "Patient", ID: *good.Id, Body: good},
		{Type: "Patient", ID: "bad", Body: bad},
		{Type: "Patient", ID: *other.Id, Body: other},
	}, &out)
	if len(kept) != 2 || kept[0].ID != *good.Id || kept[1].ID != *other.Id {
		t.Fatalf("kept %d resources, want the two valid ones in order", len(kept))
	}
	if len(out) != 1 || out[0].Severity != fhir.SeverityError || out[0].Code != fhir.CodeInvalid || out[0].Location != "Patient/bad" {
		t.Fatalf("outcome = %+v, want one invalid error for Patient/bad", out)
	}
	if strings.Contains(out[0].String(), "ZZTOPSECRET") {
		t.Errorf("issue text quotes content: %s", out[0])
	}
	if !json.Valid(kept[0].JSON) {
		t.Errorf("kept JSON is not JSON")
	}
	if b, err := fhir.SerializedBundle(kept); err != nil || v.Validate(b) != nil {
		t.Errorf("bundle of kept resources: %v", err)
	}
}

// TestValidatorRemembersOnlyValid: a resource that failed fails again (an
// invalid one is never remembered as valid), and a valid one stays valid.
func TestValidatorRemembersOnlyValid(t *testing.T) {
	v := newValidator(t)
	bad := []byte(`{"resourceType":"Patient","birthDate":"not a date"}`)
	good := []byte(`{"resourceType":"Patient","birthDate":"1980-01-01"}`)
	for range 3 {
		if err := v.Validate(bad); err == nil {
			t.Fatal("an invalid Patient passed")
		}
		if err := v.Validate(good); err != nil {
			t.Fatalf("a valid Patient failed: %v", err)
		}
	}
}
