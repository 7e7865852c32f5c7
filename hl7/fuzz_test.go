package hl7

import (
	"bytes"
	"errors"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	f.Add([]byte(adtA01))
	f.Add([]byte(benchADT))
	f.Add([]byte("MSH^~|\\&^A^B^C^D^20260101^^ADT~A24^X1^P^2.5\rPID^1\r"))
	f.Add([]byte("FHS|^~\\&\rBHS|^~\\&\r" + adtA01 + "BTS|1\rFTS|1\r"))
	f.Add([]byte("MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5||||||8859/1\rPID|1||\\X4142\\|\xfc\r"))
	f.Add([]byte("MSH|"))
	f.Add([]byte(""))
}

// FuzzParse: Parse never panics; an error is a *ParseError; a message that
// parses re-encodes to a form that parses and re-encodes identically.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is not a *ParseError: %v", err)
			}
			_ = pe.Location()
			_ = BuildACK(AckRequest{Outcome: Reject, Errors: []ErrorDetail{ErrorDetailFrom(err)}})
			return
		}
		enc := m.Encode()
		m2, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not parse: %v", err)
		}
		if !bytes.Equal(m2.Encode(), enc) {
			t.Fatal("Encode is not stable")
		}
		for _, p := range []string{"MSH-9.2", "PID-5[2].1", "OBX[2]-5.1.1", "MSH-18"} {
			if _, err := m.Get(p); err != nil {
				t.Fatal(err)
			}
		}
		h := m.Header()
		if _, err := ParseACK(BuildACK(AckRequest{Original: h, Outcome: Accept, ControlID: "X"})); err != nil {
			t.Fatalf("our ACK for a parsed message does not parse: %v", err)
		}
	})
}

// FuzzSplit: Split never panics and every message it returns starts with MSH.
func FuzzSplit(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := Split(data)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if !bytes.HasPrefix(m, []byte("MSH")) {
				t.Fatalf("Split returned a message not starting with MSH")
			}
		}
	})
}

// FuzzParseHeader: ParseHeader never panics and agrees with Parse.
func FuzzParseHeader(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, herr := ParseHeader(data)
		if m, err := Parse(data); err == nil {
			if herr != nil {
				t.Fatalf("ParseHeader fails (%v) where Parse succeeds", herr)
			}
			if h.ControlID != m.Header().ControlID {
				t.Fatalf("ParseHeader control id %q, Parse %q", h.ControlID, m.Header().ControlID)
			}
		}
	})
}
