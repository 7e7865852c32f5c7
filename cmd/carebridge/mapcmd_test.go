package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/mapping"
)

const mapTestdata = "../../mapping/testdata"

func TestMapSummaryRoutesCriticalResult(t *testing.T) {
	out, stderr, err := runCLI(t, "", "map", "--summary", "--rules", filepath.Join(mapTestdata, "rules.yaml"),
		"--now", "2026-11-07T03:00:00Z", // a Saturday night: the night intensivist is on call
		filepath.Join(mapTestdata, "hl7", "oru-r01-critical-k-v251.hl7"),
		filepath.Join(mapTestdata, "hl7", "adt-a08-v251.hl7"))
	if err != nil {
		t.Fatalf("map: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "# source") {
		t.Fatalf("want a header and one line per message, got:\n%s", out)
	}
	f := strings.Split(lines[1], "\t")
	if len(f) != 6 || f[1] != "ORU^R01" || f[3] != "urgent" || f[4] != "critical-result" {
		t.Fatalf("critical result line = %q", lines[1])
	}
	for _, want := range []string{"ordering DR OLIVIA ORDERLY <Practitioner/", "attending DR MARCUS WELBY <Practitioner/", "on_call Night intensivist (synthetic) <Practitioner/"} {
		if !strings.Contains(f[5], want) {
			t.Errorf("recipients %q lack %q", f[5], want)
		}
	}
	if strings.Contains(out, "SAMPLE") || strings.Contains(out, "200345") {
		t.Errorf("the summary names the patient:\n%s", out)
	}
	if !strings.HasSuffix(lines[2], "no Communication") {
		t.Errorf("A08 line = %q, want no Communication", lines[2])
	}
}

func TestMapPrintsValidBundles(t *testing.T) {
	out, stderr, err := runCLI(t, "", "map", "--compact", "--rules", filepath.Join(mapTestdata, "rules.yaml"), "--now", "2026-11-03T14:30:00Z",
		filepath.Join(mapTestdata, "hl7", "adt-a01-v23.hl7"), filepath.Join(mapTestdata, "hl7", "orm-o01-new-stat-v251.hl7"))
	if err != nil {
		t.Fatalf("map: %v\n%s", err, stderr)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one Bundle per message, got %d lines", len(lines))
	}
	for i, l := range lines {
		if err := v.Validate([]byte(l)); err != nil {
			t.Errorf("bundle %d is not valid R4: %v", i, err)
		}
		var b struct {
			Type  string
			Entry []struct {
				Resource struct{ ResourceType string }
				Request  struct{ Method, URL string }
			}
		}
		if err := json.Unmarshal([]byte(l), &b); err != nil {
			t.Fatal(err)
		}
		types := map[string]int{}
		for _, e := range b.Entry {
			types[e.Resource.ResourceType]++
			if e.Request.Method != "PUT" {
				t.Errorf("entry %s: method %q, want PUT", e.Request.URL, e.Request.Method)
			}
		}
		if b.Type != "transaction" || types["Patient"] != 1 || types["Communication"] != 1 {
			t.Errorf("bundle %d: type %q, resources %v", i, b.Type, types)
		}
	}
}

// TestMapLogsNoPHI is acceptance 5: with debug logging, no log line carries
// the patient's name, identifiers or birth date, though the output does.
func TestMapLogsNoPHI(t *testing.T) {
	dir := t.TempDir()
	msg := strings.Join([]string{
		"MSH|^~\\&|LAB|GOODHEALTH|CAREBRIDGE|CAREBRIDGE|20261103143000||ORU^R01^ORU_R01|PHI-1|P|2.5.1",
		"PID|1||ZQX778812^^^GOODHEALTH^MR||QUILLFEATHER^ZEPHYRINE||19450230|Q|||1 QUILLFEATHER LANE^^SPRINGFIELD",
		"PV1|1|I|ICU^7^^GOODHEALTH||||1234^WELBY^MARCUS",
		"ORC|RE|ORD1^CPOE||||||||||2001^ORDERLY^OLIVIA",
		"OBR|1|ORD1^CPOE||2823-3^Potassium^LN",
		"OBX|1|NM|2823-3^Potassium^LN||QUILLFEATHER-7.1|mmol/L|3.5-5.1|HH|||F",
		"OBX|2|NM|2823-3^Potassium^LN||7.1|mmol/L|3.5-5.1|HH|||ZQXSTATUS",
	}, "\r")
	path := filepath.Join(dir, "phi.hl7")
	if err := os.WriteFile(path, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI(t, "", "map", "--log-level", "debug", "--now", "2026-11-03T14:30:00Z", path)
	if err != nil {
		t.Fatalf("map: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "ZEPHYRINE") {
		t.Fatalf("the message was not mapped (no name in the Bundle); the test would prove nothing")
	}
	if !strings.Contains(stderr, "level=DEBUG") || !strings.Contains(stderr, "warning") {
		t.Fatalf("want debug log lines and outcome issues on stderr, got:\n%s", stderr)
	}
	for _, phi := range []string{"QUILLFEATHER", "ZEPHYRINE", "ZQX778812", "19450230", "1945", "ZQXSTATUS"} {
		for _, line := range strings.Split(stderr, "\n") {
			if strings.Contains(line, phi) {
				t.Errorf("stderr line carries %q: %s", phi, line)
			}
		}
	}
}

func TestMapRejectsBadRulesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nrules:\n  - name: x\n    notify: [nobody-known]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, "", "map", "--rules", path, filepath.Join(mapTestdata, "hl7", "adt-a01-v23.hl7"))
	if !errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a usage error", err)
	}
	if !strings.Contains(stderr, "rule 1 (x)") || !strings.Contains(stderr, "nobody-known") {
		t.Errorf("the error does not say where the rules file is wrong:\n%s", stderr)
	}
}

func TestMapPrintDefaultRulesRoundTrips(t *testing.T) {
	out, _, err := runCLI(t, "", "map", "--print-default-rules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mapping.ParseRules([]byte(out)); err != nil {
		t.Fatalf("the printed default rules do not parse: %v", err)
	}
}

func TestMapCountsUnparsableMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.hl7")
	if err := os.WriteFile(path, []byte("MSH|^~\\&|A|B|||20261103||ADT^A01|1|P|2.5\rPID|1||1^^^A^MR\rMSH|"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI(t, "", "map", "--summary", path)
	if !errors.Is(err, errFailed) {
		t.Fatalf("err = %v, want a failed run\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "bad.hl7#2: not parsed") || !strings.Contains(out, "bad.hl7#1") {
		t.Errorf("want the first message mapped and the second reported:\nstdout: %s\nstderr: %s", out, stderr)
	}
}
