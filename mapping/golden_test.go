package mapping_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/hl7/hl7test"
	"github.com/carebridge/carebridge/mapping"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden is what one message maps to, as reviewed and kept in
// testdata/golden: the outcome, the routing summary and the Bundle.
type golden struct {
	Source        string               `json:"source"`
	Trigger       string               `json:"trigger"`
	Outcome       fhir.Outcome         `json:"outcome"`
	Notifications []goldenNotification `json:"notifications"`
	Bundle        json.RawMessage      `json:"bundle"`
}

type goldenNotification struct {
	Rule       string   `json:"rule"`
	Priority   string   `json:"priority"`
	Category   string   `json:"category"`
	Recipients []string `json:"recipients"`
}

// goldenCase is one input message: our own synthetic files under
// testdata/hl7, or a corpus file listed in testdata/corpus.txt.
type goldenCase struct {
	name   string // golden file name without .json
	source string // where the message came from, for the golden file
	raw    []byte
}

func testRules(t testing.TB) *mapping.Rules {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := mapping.ParseRules(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ownCases(t testing.TB) []goldenCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "hl7", "*.hl7"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test messages under testdata/hl7: %v", err)
	}
	var out []goldenCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".hl7")
		out = append(out, goldenCase{name: name, source: "testdata/hl7/" + filepath.Base(f), raw: b})
	}
	return out
}

// corpusCases reads testdata/corpus.txt: one corpus path per line, with
// "#N" to pick the N-th message (1-based) of a file that holds several.
func corpusCases(t testing.TB) []goldenCase {
	t.Helper()
	list, err := os.ReadFile(filepath.Join("testdata", "corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	root := hl7test.CorpusDir(t)
	var out []goldenCase
	for _, line := range strings.Split(string(list), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, nth := line, 1
		if p, n, ok := strings.Cut(line, "#"); ok {
			path = p
			if nth, err = strconv.Atoi(n); err != nil || nth < 1 {
				t.Fatalf("corpus.txt: bad message number in %q", line)
			}
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path)))
		if err != nil {
			t.Fatalf("corpus.txt: %v", err)
		}
		msgs, err := hl7.Split(data)
		if err != nil || len(msgs) < nth {
			t.Fatalf("corpus.txt: %s: %d messages, %v", line, len(msgs), err)
		}
		folder := strings.SplitN(path, "/", 2)[0]
		name := "corpus-" + folder + "-" + strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		if nth > 1 {
			name += "-" + strconv.Itoa(nth)
		}
		out = append(out, goldenCase{name: name, source: "corpus/hl7v2/" + line, raw: msgs[nth-1]})
	}
	return out
}

// mapCase runs parse, map and route, and checks every resource against R4.
func mapCase(t *testing.T, v *fhir.Validator, mp *mapping.Mapper, rules *mapping.Rules, c goldenCase) golden {
	t.Helper()
	msg, err := hl7.Parse(c.raw)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	res := mp.Map(msg)
	notes := rules.Route(res, testNow)
	for _, r := range res.Resources {
		if b, err := v.ValidateResource(r); err != nil {
			var ve *fhir.ValidationError
			errors.As(err, &ve)
			t.Errorf("%s is not valid R4: %v: %s\n%s", r.Reference(), err, ve.Diagnostics, b)
		}
	}
	bundle, err := fhir.TransactionBundle(res.Resources)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(bundle); err != nil {
		t.Errorf("bundle is not valid R4: %v", err)
	}
	g := golden{Source: c.source, Trigger: res.Event.Trigger, Outcome: res.Outcome, Bundle: bundle, Notifications: []goldenNotification{}}
	if g.Outcome == nil {
		g.Outcome = fhir.Outcome{}
	}
	for _, n := range notes {
		g.Notifications = append(g.Notifications, goldenNotification{Rule: n.Rule, Priority: n.Priority.String(), Category: n.Category, Recipients: n.Recipients})
	}
	return g
}

// TestGolden maps each test message and compares the result with its
// reviewed golden file. Run with -update to rewrite them, then review the
// diff before committing.
func TestGolden(t *testing.T) {
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	mp := mapping.New(mapping.Config{})
	rules := testRules(t)
	cases := append(ownCases(t), corpusCases(t)...)
	covered := map[string]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := mapCase(t, v, mp, rules, c)
			covered[g.Trigger]++
			got, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", c.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("no golden file (run go test ./mapping -run TestGolden -update, then review it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("mapping of %s differs from %s (run with -update and review the diff):\n%s", c.source, path, firstDiff(want, got))
			}
		})
	}
	for _, trig := range mapping.CoveredTriggers() {
		if covered[trig] < 2 {
			t.Errorf("%s has %d golden messages, want at least 2", trig, covered[trig])
		}
	}
}

// firstDiff shows the first differing line of two texts.
func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + w + "\n  got:  " + g
		}
	}
	return "(no line differs)"
}

// TestRemapIsIdentical: mapping the same message twice gives the same
// resource ids and Communication identifiers, whatever the time.
func TestRemapIsIdentical(t *testing.T) {
	mp := mapping.New(mapping.Config{})
	rules := testRules(t)
	for _, c := range append(ownCases(t), corpusCases(t)...) {
		ids := func(now int) []string {
			msg, err := hl7.Parse(c.raw)
			if err != nil {
				t.Fatal(err)
			}
			res := mp.Map(msg)
			rules.Route(res, testNow.Add(time.Duration(now)*time.Second))
			var out []string
			for _, r := range res.Resources {
				out = append(out, r.Reference())
				if cm, ok := r.Body.(*fhir.Communication); ok {
					out = append(out, *cm.Identifier[0].Value)
				}
			}
			return out
		}
		a, b := ids(0), ids(1)
		if strings.Join(a, " ") != strings.Join(b, " ") {
			t.Errorf("%s: re-mapping changed ids:\n first: %v\nsecond: %v", c.name, a, b)
		}
	}
}
