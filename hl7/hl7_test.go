package hl7

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const adtA01 = "MSH|^~\\&|ADTSYS|GENHOSP|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01|CTRL0001|P|2.5.1\r" +
	"EVN|A01|20261124093000\r" +
	"PID|1||MRN1^^^GENHOSP^MR~ALT9^^^X^PI||DOE^JANE^Q~ROE^J||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701||\"\"\r" +
	"PV1|1|I|4W^401^1&A&B\r" +
	"OBX|1|TX|NOTE||Fever \\T\\ chills\\.br\\see\\F\\note \\E\\ \\X41\\ \\H\\bold\\N\\\r" +
	"OBX|2|NM|8867-4^Heart rate^LN||72\r"

func mustParse(t *testing.T, s string) *Message {
	t.Helper()
	m, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func TestGet(t *testing.T) {
	m := mustParse(t, adtA01)
	for _, tc := range []struct {
		path          string
		want          string
		present, null bool
	}{
		{"MSH-1", "|", true, false},
		{"MSH-2", "^~\\&", true, false},
		{"MSH-9", "ADT^A01^ADT_A01", true, false},
		{"MSH-9.2", "A01", true, false},
		{"MSH-10", "CTRL0001", true, false},
		{"PID-3", "MRN1^^^GENHOSP^MR", true, false}, {"PID-3.1", "MRN1", true, false},
		{"PID-3[2].1", "ALT9", true, false},
		{"PID-3[2].5", "PI", true, false},
		{"PID-5.2", "JANE", true, false},
		{"PID-5[2].1", "ROE", true, false},
		{"PID-5[3]", "", false, false},
		{"PID-4", "", true, false},
		{"PID-13", "\"\"", true, true},
		{"PID-40", "", false, false},
		{"PV1-3.3.2", "A", true, false},
		{"OBX[2]-5", "72", true, false},
		{"OBX[3]-5", "", false, false},
		{"ZZZ-1", "", false, false},
		{"OBX-5", "Fever & chills\\.br\\see|note \\ A \\H\\bold\\N\\", true, false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			v, err := m.Get(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if v.Present() != tc.present || v.Null() != tc.null {
				t.Errorf("present=%v null=%v, want %v %v", v.Present(), v.Null(), tc.present, tc.null)
			}
			if tc.present && !tc.null && v.String() != tc.want {
				t.Errorf("got %q, want %q", v.String(), tc.want)
			}
		})
	}
	for _, bad := range []string{"PID", "PID-", "PID-x", "PID-0", "PID[0]-1", "PID-1[", "PID-1.a"} {
		if _, err := m.Get(bad); err == nil {
			t.Errorf("Get(%q) accepted a bad path", bad)
		}
	}
}

func TestTerminatorsAndBOM(t *testing.T) {
	canon := mustParse(t, adtA01).Encode()
	if !bytes.Equal(canon, []byte(adtA01)) {
		t.Fatalf("canonical message does not re-encode byte for byte")
	}
	for name, in := range map[string]string{
		"LF":       strings.ReplaceAll(adtA01, "\r", "\n"),
		"CRLF":     strings.ReplaceAll(adtA01, "\r", "\r\n"),
		"mixed":    strings.Replace(strings.Replace(adtA01, "\r", "\n", 2), "\r", "\r\n", 1),
		"BOM":      "\xef\xbb\xbf" + adtA01,
		"trailing": adtA01 + "\r\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			if got := mustParse(t, in).Encode(); !bytes.Equal(got, canon) {
				t.Errorf("Encode = %q, want the canonical form", got)
			}
		})
	}
}

func TestNonStandardDelimiters(t *testing.T) {
	m := mustParse(t, "MSH^~|\\&^A^B^C^D^20260101^^ADT~A24^X1^P^2.5\rPID^1^^123~~~H^^DOE~JOHN|DOE~JIM\r")
	for path, want := range map[string]string{"MSH-9.2": "A24", "PID-5.2": "JOHN", "PID-5[2].2": "JIM", "PID-3.4": "H"} {
		if v, _ := m.Get(path); v.String() != want {
			t.Errorf("%s = %q, want %q", path, v.String(), want)
		}
	}
	m = mustParse(t, "MSH|^~\\&#|A|B|C|D|20260101||ADT^A01|X|P|2.7\rPID|1||a\\P\\b\r")
	if m.Delimiters().Truncation != '#' {
		t.Errorf("truncation = %q, want #", m.Delimiters().Truncation)
	}
	if v, _ := m.Get("PID-3"); v.String() != "a#b" {
		t.Errorf("PID-3 = %q, want a#b", v.String())
	}
}

func TestCharsets(t *testing.T) {
	latin := "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X|P|2.5||||||8859/1\rPID|1||1||M\xfcller\r"
	if v, _ := mustParse(t, latin).Get("PID-5"); v.String() != "Müller" {
		t.Errorf("8859/1 PID-5 = %q, want Müller", v.String())
	}
	utf := "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X|P|2.5||||||UNICODE UTF-8\rPID|1||1||Müller\r"
	if v, _ := mustParse(t, utf).Get("PID-5"); v.String() != "Müller" {
		t.Errorf("UTF-8 PID-5 = %q", v.String())
	}
	mislabeled := "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X|P|2.5||||||8859/1\rPID|1||1||Müller\r"
	if v, _ := mustParse(t, mislabeled).Get("PID-5"); v.String() != "Müller" {
		t.Errorf("8859/1 holding UTF-8: PID-5 = %q, want Müller", v.String())
	}
	_, err := Parse([]byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X|P|2.5\rEVN|A01\rPID|1||1||M\xfcller\r"))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Segment != 3 || pe.SegmentID != "PID" || pe.Field != 5 || pe.Code != CodeDataType {
		t.Fatalf("invalid UTF-8: err = %v, want segment 3 (PID) field 5 code 102", err)
	}
	if strings.Contains(err.Error(), "ller") {
		t.Error("the error text carries message content")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		seg      int
		field    int
		code     ErrorCode
	}{
		{"empty", "", 0, 0, CodeRequiredMissing},
		{"not MSH", "PID|1\r", 1, 0, CodeSegmentSequence},
		{"short MSH-2", "MSH|^~|A\r", 1, 2, CodeRequiredMissing},
		{"duplicate delimiter", "MSH|^^\\&|A\r", 1, 2, CodeDataType},
		{"alnum delimiter", "MSH|^~a&|A\r", 1, 2, CodeDataType},
		{"no type", "MSH|^~\\&|A|B|C|D|2026|||1|P|2.5\r", 1, 9, CodeRequiredMissing},
		{"no control id", "MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r", 1, 10, CodeRequiredMissing},
		{"no version", "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P\r", 1, 12, CodeRequiredMissing},
		{"bad segment id", "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rpid|1\r", 2, 0, CodeSegmentSequence},
		{"unknown charset", "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5||||||KLINGON\r", 1, 18, CodeTableValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.Segment != tc.seg || pe.Field != tc.field || pe.Code != tc.code {
				t.Errorf("got segment %d field %d code %d (%v), want %d %d %d", pe.Segment, pe.Field, pe.Code, pe, tc.seg, tc.field, tc.code)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	big := "MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.5.1\rOBX|1|ED|PDF||^AP^PDF^Base64^" + strings.Repeat("QUJD", 9000) + "\r"
	if _, err := Parse([]byte(big)); err != nil {
		t.Fatalf("a 36 KB ED field is refused: %v", err)
	}
	l := DefaultLimits()
	l.MaxFieldBytes = 1000
	var pe *ParseError
	if _, err := ParseWithLimits([]byte(big), l); !errors.As(err, &pe) || pe.SegmentID != "OBX" || pe.Field != 5 {
		t.Errorf("field limit: err = %v, want OBX field 5", err)
	}
	l = DefaultLimits()
	l.MaxSegments = 2
	if _, err := ParseWithLimits([]byte(adtA01), l); err == nil {
		t.Error("segment limit not enforced")
	}
	l = DefaultLimits()
	l.MaxMessageBytes = 100
	if _, err := ParseWithLimits([]byte(adtA01), l); err == nil {
		t.Error("size limit not enforced")
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "a|b^c~d\\e&f", "line1\rline2", ""} {
		msg := "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rNTE|1||" + Escape(DefaultDelimiters, s) + "\r"
		v, _ := mustParse(t, msg).Get("NTE-3")
		want := strings.ReplaceAll(s, "\r", "\\.br\\")
		if v.String() != want {
			t.Errorf("round trip of %q = %q, want %q", s, v.String(), want)
		}
	}
}

func TestSplit(t *testing.T) {
	one := "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1\r"
	two := "MSH|^~\\&|A|B|C|D|2026||ADT^A08|2|P|2.5\rPID|2\r"
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"single", one, []string{one}},
		{"back to back LF", strings.ReplaceAll(one+two, "\r", "\n"), []string{one, two}},
		{"batch", "\xef\xbb\xbfFHS|^~\\&|A\rBHS|^~\\&|A\r" + one + "\n\n" + two + "BTS|2\rFTS|1\r", []string{one, two}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Split([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d messages, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if string(got[i]) != tc.want[i] {
					t.Errorf("message %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
	if _, err := Split([]byte("hello\nworld")); err == nil {
		t.Error("Split of non-HL7 succeeded")
	}
}

func TestACK(t *testing.T) {
	h, err := ParseHeader([]byte(adtA01))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 9, 30, 1, 0, time.UTC)
	t.Run("original accept", func(t *testing.T) {
		raw := BuildACK(AckRequest{Original: h, Outcome: Accept, ControlID: "ACK1", Time: now})
		want := "MSH|^~\\&|CAREBRIDGE|CB|ADTSYS|GENHOSP|20261124093001+0000||ACK^A01^ACK|ACK1|P|2.5.1\rMSA|AA|CTRL0001\r"
		if string(raw) != want {
			t.Fatalf("ACK =\n%q\nwant\n%q", raw, want)
		}
	})
	t.Run("enhanced error with ERR", func(t *testing.T) {
		eh := h
		eh.AcceptAckType = "AL"
		pe := &ParseError{Segment: 3, SegmentID: "PID", Field: 5, Repetition: 2, Component: 1, Code: CodeDataType, Reason: "bad name"}
		raw := BuildACK(AckRequest{Original: eh, Outcome: Error, Errors: []ErrorDetail{ErrorDetailFrom(pe), ErrorDetailFrom(errors.New("boom"))}, ControlID: "ACK2", Time: now})
		a, err := ParseACK(raw)
		if err != nil {
			t.Fatal(err)
		}
		if a.Code != "CE" || a.ControlID != "CTRL0001" || len(a.Errors) != 2 {
			t.Fatalf("ACK = %+v", a)
		}
		if a.Errors[0].Location != "PID^3^5^2^1" || a.Errors[0].Code != CodeDataType || a.Errors[0].Text != "bad name" {
			t.Errorf("ERR 1 = %+v", a.Errors[0])
		}
		if a.Errors[1].Code != CodeInternal || strings.Contains(string(raw), "boom") {
			t.Errorf("ERR 2 = %+v; a non-HL7 error must not leak its text", a.Errors[1])
		}
	})
	t.Run("reject of an unparseable message", func(t *testing.T) {
		h, err := ParseHeader([]byte("garbage"))
		raw := BuildACK(AckRequest{Original: h, Outcome: Reject, Errors: []ErrorDetail{ErrorDetailFrom(err)}, ControlID: "ACK3", Time: now})
		a, perr := ParseACK(raw)
		if perr != nil || a.Code != "AR" || len(a.Errors) != 1 {
			t.Fatalf("ACK = %+v, %v\n%q", a, perr, raw)
		}
	})
}

func TestPositionalAccess(t *testing.T) {
	msg := "MSH|^~\\&|APP|FAC|||20261103||ADT^A01|C1|P|2.5.1\rPID|1||111^^^A&1.2&ISO^MR~222^^^B^SS||DOE^JANE^Q~ROE^J\rPV1||I|ICU^101^A\r"
	m, err := Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !m.SegmentIs(1, "PID") || m.SegmentIs(1, "PV1") || m.SegmentIs(9, "PID") {
		t.Fatal("SegmentIs wrong")
	}
	pid3 := m.Field(1, 3)
	if got := pid3.Repetitions(); got != 2 {
		t.Fatalf("PID-3 repetitions = %d, want 2", got)
	}
	tests := []struct {
		name string
		v    Value
		want string
		pres bool
	}{
		{"rep2 comp1", pid3.Repetition(2).Component(1), "222", true},
		{"comp4 sub2", pid3.Component(4).Subcomponent(2), "1.2", true},
		{"field comp on first rep", pid3.Component(5), "MR", true},
		{"sub of field", m.Field(1, 5).Subcomponent(1), "DOE", true},
		{"rep 3 absent", pid3.Repetition(3), "", false},
		{"comp beyond", m.Field(2, 3).Component(4), "", false},
		{"MSH-2 not split", m.Field(0, 2).Component(1), "", false},
		{"MSH-9.2", m.Field(0, 9).Component(2), "A01", true},
		{"field beyond", m.Field(2, 40), "", false},
		{"comp of comp 1 is itself", m.Field(2, 3).Component(1).Component(1), "ICU", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.String(); got != tt.want || tt.v.Present() != tt.pres {
				t.Errorf("got %q present=%v, want %q present=%v", got, tt.v.Present(), tt.want, tt.pres)
			}
		})
	}
	// Get and positional access agree on levels.
	v, _ := m.Get("PID-3[2]")
	if got := v.Component(5).String(); got != "SS" {
		t.Errorf("Get(PID-3[2]).Component(5) = %q", got)
	}
}
