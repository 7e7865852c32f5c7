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
		got, err := members(b)
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
		if again, err := members(encodeMembers(got)); err != nil || len(again) != len(got) {
			t.Fatalf("encodeMembers of %q does not read back: %v", b, err)
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
