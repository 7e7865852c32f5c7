package mapping_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/mapping"
)

// FuzzMap: whatever parses as HL7 maps without a panic, and everything it
// emits is valid R4.
func FuzzMap(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "hl7", "*.hl7"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(mshORU + "\r" + pid + "\r" + pv1ICU + "\rOBX|1|SN|2823-3^K^LN||>^120|s|<5|HH~LL|||F"))
	f.Add([]byte("MSH|^~\\&|A|B|||20260101||ADT^A40|1|P|2.3\rPID|1||1^^^A&1.2&ISO^MR\rMRG|1^^^A&1.2&ISO^MR"))
	v, err := fhir.NewValidator()
	if err != nil {
		f.Fatal(err)
	}
	mp := mapping.New(mapping.Config{})
	rules := mapping.DefaultRules()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := hl7.Parse(data)
		if err != nil {
			return
		}
		res := mp.Map(msg)
		rules.Route(res, testNow)
		for _, r := range res.Resources {
			b, err := v.ValidateResource(r)
			if err != nil {
				var ve *fhir.ValidationError
				errors.As(err, &ve)
				t.Fatalf("%s: %v: %s\n%s", r.Reference(), err, ve.Diagnostics, b)
			}
			if std, _ := json.Marshal(r.Body); !bytes.Equal(b, std) {
				t.Fatalf("%s: the fast encoder differs from encoding/json:\n%s\n%s", r.Reference(), b, std)
			}
		}
	})
}

// FuzzParseRules: any rules file is either refused with a *RulesError or
// routes without a panic.
func FuzzParseRules(f *testing.F) {
	f.Add(mapping.DefaultRulesYAML())
	if b, err := os.ReadFile(filepath.Join("testdata", "rules.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("version: 1\nrules:\n- {name: a, notify: [attending], template: '{{range .Results}}{{.Value}}{{end}}'}"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := mapping.ParseRules(data)
		if err != nil {
			var re *mapping.RulesError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RulesError", err)
			}
			return
		}
		res := event()
		for _, n := range r.Route(res, testNow) {
			c := communication(t, res, n)
			if _, err := json.Marshal(c); err != nil {
				t.Fatal(err)
			}
		}
	})
}
