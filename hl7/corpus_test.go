package hl7

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/carebridge/carebridge/hl7/hl7test"
	"strings"
	"testing"
	"time"
)

func looksLikeHL7(b []byte) bool {
	b = bytes.TrimLeft(bytes.TrimPrefix(b, bom), " \t\r\n")
	return bytes.HasPrefix(b, []byte("MSH")) || bytes.HasPrefix(b, []byte("FHS")) || bytes.HasPrefix(b, []byte("BHS"))
}

// parseWithin parses msg in a goroutine and fails the test on a panic or
// on taking longer than d.
func parseWithin(t *testing.T, name string, msg []byte, d time.Duration) (*Message, error) {
	t.Helper()
	type result struct {
		m   *Message
		err error
		p   any
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- result{p: p}
			}
		}()
		m, err := Parse(msg)
		ch <- result{m: m, err: err}
	}()
	select {
	case r := <-ch:
		if r.p != nil {
			t.Fatalf("%s: Parse panicked: %v", name, r.p)
		}
		return r.m, r.err
	case <-time.After(d):
		t.Fatalf("%s: Parse did not return in %s", name, d)
	}
	return nil, nil
}

// TestCorpus parses every message of every corpus folder: each parses or
// fails with a positioned *ParseError; none panics or hangs. Messages from
// microsoft-fhir-converter re-encode canonically and parse back equal.
func TestCorpus(t *testing.T) {
	type counts struct{ files, parsed, failed int }
	perFolder := map[string]*counts{}
	hl7test.WalkCorpus(t, func(folder, rel string, data []byte) {
		isBad := strings.Contains(rel, "BadInputs")
		if !isBad && !looksLikeHL7(data) {
			return
		}
		c := perFolder[folder]
		if c == nil {
			c = &counts{}
			perFolder[folder] = c
		}
		c.files++
		msgs, err := Split(data)
		if err != nil {
			// Not even a message: parse the file whole to prove it errors cleanly.
			msgs = [][]byte{data}
		}
		for i, msg := range msgs {
			name := fmt.Sprintf("%s#%d", rel, i+1)
			m, err := parseWithin(t, name, msg, 2*time.Second)
			if err != nil {
				c.failed++
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Errorf("%s: error is not a *ParseError: %v", name, err)
				}
				continue
			}
			c.parsed++
			if folder != "microsoft-fhir-converter" {
				continue
			}
			canon := m.Encode()
			if bytes.HasPrefix(canon, bom) || bytes.ContainsRune(canon, '\n') {
				t.Errorf("%s: canonical form has a BOM or LF", name)
			}
			back, err := Parse(canon)
			if err != nil {
				t.Errorf("%s: canonical form does not parse: %v", name, err)
				continue
			}
			if !bytes.Equal(back.Encode(), canon) {
				t.Errorf("%s: canonical form does not re-encode byte for byte", name)
			}
			if back.SegmentCount() != m.SegmentCount() || back.Header().ControlID != m.Header().ControlID {
				t.Errorf("%s: re-parsed message differs", name)
			}
		}
	})
	for folder, c := range perFolder {
		t.Logf("%-28s files %4d  messages parsed %4d  failed with a position %3d", folder, c.files, c.parsed, c.failed)
	}
	if c := perFolder["microsoft-fhir-converter"]; c == nil || c.parsed < 100 || c.failed != 0 {
		t.Errorf("microsoft-fhir-converter: %+v, want 100+ parsed and none failed", c)
	}
}
