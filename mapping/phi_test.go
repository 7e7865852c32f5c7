package mapping_test

import (
	"strings"
	"testing"

	"github.com/carebridge/carebridge/mapping"
)

// distinctive is a synthetic name no code table holds.
const distinctive = "QUIXOTEZYX"

// TestIssuesNeverQuoteContent puts a distinctive name in every field the
// mapping reads and complains about, and checks that no issue's details
// (the part that reaches logs and peers) carry it.
func TestIssuesNeverQuoteContent(t *testing.T) {
	n := distinctive
	res := mapMessage(t,
		strings.Replace(mshORU, "ORU^R01^ORU_R01", "ORU^R01^ORU_R01", 1),
		segment("PID", map[int]string{1: "1", 3: "100234^^^GOODHEALTH^MR", 5: n + "^" + n, 7: n, 8: n, 29: n, 30: "Y"}),
		segment("PV1", map[int]string{2: n, 3: n + "^" + n, 7: "^" + n, 19: "V1", 44: n, 45: n}),
		segment("ORC", map[int]string{1: n, 5: n, 7: "^^^^^" + n, 9: n, 12: "^" + n}),
		segment("OBR", map[int]string{4: "X^" + n, 16: "^" + n, 25: n}),
		segment("OBX", map[int]string{1: "1", 2: n, 3: "X^" + n, 5: n, 7: n, 8: n, 11: n, 14: n}),
		segment("OBX", map[int]string{1: "2", 2: "NM", 3: "Y^" + n, 5: n, 11: "F"}),
		segment("OBX", map[int]string{1: "3", 2: "SN", 3: "Z^" + n, 5: n, 11: "F"}),
		segment("OBX", map[int]string{1: "4", 2: "DT", 3: "W^" + n, 5: n, 11: "F"}),
		segment("OBX", map[int]string{1: "5", 2: "TM", 3: "V^" + n, 5: n, 11: "F"}),
	)
	mapping.DefaultRules().Route(res, testNow)
	if len(res.Outcome) < 8 {
		t.Fatalf("only %d issues; the test message should trip many: %v", len(res.Outcome), res.Outcome)
	}
	for _, is := range res.Outcome {
		if strings.Contains(is.String(), n) || strings.Contains(is.Details, n) || strings.Contains(is.Location, n) {
			t.Errorf("issue quotes content: %q", is.String())
		}
	}
}

// TestMalformedTriggerIsNotQuoted: even MSH-9 free text stays out.
func TestMalformedTriggerIsNotQuoted(t *testing.T) {
	res := mapMessage(t, strings.Replace(mshORU, "ORU^R01^ORU_R01", distinctive+"^"+distinctive, 1), pid)
	for _, is := range res.Outcome {
		if strings.Contains(is.String(), distinctive) {
			t.Errorf("issue quotes content: %q", is.String())
		}
	}
	if res.Event.Mapped || len(res.Resources) != 0 {
		t.Error("an unknown trigger was mapped")
	}
}
