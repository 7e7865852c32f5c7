package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// referenceMembers is members done with encoding/json, to compare with.
func referenceMembers(b []byte) ([]member, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	tok, err := d.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var out []member
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, false
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, false
		}
		out = append(out, member{tok.(string), v})
	}
	if _, err := d.Token(); err != nil || d.More() {
		return nil, false
	}
	return out, true
}

func FuzzMembers(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Communication","id":"x","meta":{"versionId":"1"},"payload":[{"contentString":"a \"quoted\" }] text"}]}`,
		`{}`, ` { "a" : 1 , "b":[1,2,{"c":null}] , "\u0041":true } `, `{"a":-1.5e3}`, `{"a":"\\"}`, `[1]`, `{"a":1}{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := members(nil, b)
		want, ok := referenceMembers(b)
		if !ok || !json.Valid(b) {
			return // members may accept some invalid JSON; the validator sees every body after it
		}
		if err != nil {
			t.Fatalf("members refused valid %q: %v", b, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d members, want %d", b, len(got), len(want))
		}
		for i := range got {
			var g, w bytes.Buffer
			json.Compact(&g, got[i].value)
			json.Compact(&w, want[i].value)
			if got[i].key != want[i].key || g.String() != w.String() {
				t.Fatalf("%q member %d: %q=%s, want %q=%s", b, i, got[i].key, got[i].value, want[i].key, want[i].value)
			}
		}
		if again, err := members(nil, encodeMembers(got)); err != nil || len(again) != len(got) {
			t.Fatalf("encodeMembers of %q does not read back: %v", b, err)
		}
		if out, err := withMeta(b, "c<1>", 2, time.Unix(0, 0)); err == nil && !json.Valid(out) {
			t.Fatalf("withMeta of %q is not JSON: %s", b, out)
		}
	})
}

func TestWithMeta(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 30, 0, 123456000, time.UTC)
	got, err := withMeta([]byte(`{"status":"completed","meta":{"versionId":"9","tag":[{"code":"x"}]},"resourceType":"Communication","id":"old"}`), "c1", 3, at)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Communication","id":"c1","meta":{"versionId":"3","lastUpdated":"2026-12-01T09:30:00.123456Z","tag":[{"code":"x"}]},"status":"completed"}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{`[]`, `{"status":"x"}`, `{"resourceType":"Communication","meta":[]}`, `{"a":1,}`, `{"a":"x`} {
		if _, err := withMeta([]byte(bad), "c1", 1, at); err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("withMeta(%s): %v, want an error that does not quote it", bad, err)
		}
	}
}

// BenchmarkWithMeta: a stored Communication as a search page opens twenty
// of them.
func BenchmarkWithMeta(b *testing.B) {
	body := []byte(`{"resourceType":"Communication","id":"bench-0000042","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:07:00.000000Z"},` +
		`"identifier":[{"system":"urn:carebridge:communication-source","value":"BENCH^bench-0000042^rule"}],"status":"in-progress","priority":"urgent",` +
		`"category":[{"coding":[{"system":"urn:carebridge:communication-category","code":"alert"}]}],"subject":{"reference":"Patient/bench-p00042"},` +
		`"recipient":[{"reference":"Practitioner/bench-0042"}],"sender":{"reference":"Device/carebridge"},"sent":"2026-01-01T00:07:00Z",` +
		`"payload":[{"contentString":"Synthetic benchmark message bench-0000042: potassium 6.1 mmol/L, please review."}]}`)
	at := time.Date(2026, 12, 1, 9, 30, 0, 123456000, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := withMeta(body, "bench-0000042", 2, at); err != nil {
			b.Fatal(err)
		}
	}
}
