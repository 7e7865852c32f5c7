package mapping_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/hl7/hl7test"
	"github.com/carebridge/carebridge/mapping"
)

// corpusMessages reads every message in the shared HL7v2 corpus, by folder.
func corpusMessages(t *testing.T) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	hl7test.WalkCorpus(t, func(folder, rel string, data []byte) {
		if strings.HasSuffix(rel, ".txt") || strings.HasSuffix(rel, ".md") || strings.Contains(rel, "LICENSE") {
			return
		}
		msgs, err := hl7.Split(data)
		if err != nil {
			return // not splittable: the hl7 corpus test covers it
		}
		out[folder] = append(out[folder], msgs...)
	})
	return out
}

// TestCorpusMapsAndValidates maps every ADT, ORM and ORU message of the
// shared corpus: none may panic, every emitted resource must pass the strict
// R4 validator, and the outcome issues are counted per folder.
func TestCorpusMapsAndValidates(t *testing.T) {
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	mp := mapping.New(mapping.Config{})
	rules := mapping.DefaultRules()
	now := testNow
	folders := corpusMessages(t)
	names := make([]string, 0, len(folders))
	for f := range folders {
		names = append(names, f)
	}
	sort.Strings(names)
	var report strings.Builder
	total := 0
	for _, folder := range names {
		var mapped, resources, comms int
		issues := map[string]int{}
		for i, raw := range folders[folder] {
			msg, err := hl7.Parse(raw)
			if err != nil {
				continue
			}
			typ := msg.Header().MessageType
			if typ != "ADT" && typ != "ORM" && typ != "ORU" {
				continue
			}
			var res *mapping.Result
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s message %d: mapping panicked: %v", folder, i, r)
					}
				}()
				res = mp.Map(msg)
				rules.Route(res, now)
			}()
			if res == nil {
				continue
			}
			mapped++
			for _, r := range res.Resources {
				b, err := v.ValidateResource(r)
				if err != nil {
					var ve *fhir.ValidationError
					diag := err.Error()
					if errorsAs(err, &ve) {
						diag = ve.Diagnostics
					}
					t.Errorf("%s message %d (%s): %s is not valid R4: %s\n%s", folder, i, res.Event.Trigger, r.Type, diag, b)
				}
				if std, _ := json.Marshal(r.Body); !bytes.Equal(b, std) {
					t.Errorf("%s message %d: %s: the fast encoder differs from encoding/json:\n%s\n%s", folder, i, r.Type, b, std)
				}
				resources++
				if r.Type == "Communication" {
					comms++
				}
			}
			for _, is := range res.Outcome {
				issues[string(is.Severity)]++
			}
		}
		total += mapped
		fmt.Fprintf(&report, "%-26s %4d messages %5d resources %4d communications  issues: %d error, %d warning, %d information\n",
			folder, mapped, resources, comms, issues["error"], issues["warning"], issues["information"])
	}
	t.Logf("outcome issues per corpus folder:\n%s", report.String())
	if total < 400 {
		t.Errorf("mapped %d corpus messages, want the corpus's 500-odd ADT/ORM/ORU", total)
	}
}
