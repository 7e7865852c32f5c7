// Package hl7 reads and writes HL7 version 2 messages in their ER7 ("pipe
// and hat") encoding: delimiters from MSH-1 and MSH-2, segments, fields,
// repetitions, components and subcomponents, escape sequences, the MSH-18
// character sets, batches, and the acknowledgements of HL7 v2.5.1 chapter 2
// (sections 2.5 to 2.9, 2.15 and 2.A.29 for the ERR segment).
//
// Parsing keeps the input bytes and records where segments and fields
// start and end; repetitions and components are split only when a path
// asks for them. Errors are *ParseError values that carry the position and
// the HL7 table 0357 code, never the message content.
package hl7

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Delimiters are the separators a message declares in MSH-1 and MSH-2.
// Truncation is 0 unless MSH-2 has a fifth character (v2.7+).
type Delimiters struct {
	Field, Component, Repetition, Escape, Subcomponent, Truncation byte
}

// DefaultDelimiters are |^~\& .
var DefaultDelimiters = Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}

// encodingChars returns MSH-2 for d.
func (d Delimiters) encodingChars() string {
	s := string([]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent})
	if d.Truncation != 0 {
		s += string(d.Truncation)
	}
	return s
}

// Limits bound what Parse accepts.
type Limits struct {
	MaxMessageBytes int
	MaxSegments     int
	MaxFieldBytes   int
}

// DefaultLimits take a message of 4 MiB, 10,000 segments and fields of
// 1 MiB (a base64 PDF in OBX-5 of 35 KB passes easily).
func DefaultLimits() Limits {
	return Limits{MaxMessageBytes: 4 << 20, MaxSegments: 10000, MaxFieldBytes: 1 << 20}
}

// ErrorCode is a value of HL7 table 0357 (message error condition codes).
type ErrorCode int

// Table 0357 codes.
const (
	CodeAccepted           ErrorCode = 0
	CodeSegmentSequence    ErrorCode = 100
	CodeRequiredMissing    ErrorCode = 101
	CodeDataType           ErrorCode = 102
	CodeTableValue         ErrorCode = 103
	CodeUnsupportedType    ErrorCode = 200
	CodeUnsupportedEvent   ErrorCode = 201
	CodeUnsupportedProcID  ErrorCode = 202
	CodeUnsupportedVersion ErrorCode = 203
	CodeInternal           ErrorCode = 207
)

// Text is the table 0357 description of c.
func (c ErrorCode) Text() string {
	switch c {
	case CodeAccepted:
		return "Message accepted"
	case CodeSegmentSequence:
		return "Segment sequence error"
	case CodeRequiredMissing:
		return "Required field missing"
	case CodeDataType:
		return "Data type error"
	case CodeTableValue:
		return "Table value not found"
	case CodeUnsupportedType:
		return "Unsupported message type"
	case CodeUnsupportedEvent:
		return "Unsupported event code"
	case CodeUnsupportedProcID:
		return "Unsupported processing id"
	case CodeUnsupportedVersion:
		return "Unsupported version id"
	}
	return "Application internal error"
}

// ParseError is a problem with the input, at a position. Reason never
// holds message content.
type ParseError struct {
	Segment                                    int    // 1-based position of the segment in the message; 0 if none
	SegmentID                                  string // e.g. "PID"
	Field, Repetition, Component, Subcomponent int    // 0 when not applicable
	Code                                       ErrorCode
	Reason                                     string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.Segment > 0 || e.SegmentID != "" {
		fmt.Fprintf(&b, "segment %d", e.Segment)
		if e.SegmentID != "" {
			fmt.Fprintf(&b, " (%s)", e.SegmentID)
		}
		for _, p := range []struct {
			name string
			v    int
		}{{"field", e.Field}, {"repetition", e.Repetition}, {"component", e.Component}, {"subcomponent", e.Subcomponent}} {
			if p.v > 0 {
				fmt.Fprintf(&b, ", %s %d", p.name, p.v)
			}
		}
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s (HL7 0357 code %d)", e.Reason, e.Code)
	return b.String()
}

// Location is the ERR-2 value (ERL datatype) of e, components joined with ^:
// segment id, segment position, field, repetition, component, subcomponent.
func (e *ParseError) Location() string {
	if e.SegmentID == "" {
		return ""
	}
	parts := []string{e.SegmentID, strconv.Itoa(max(e.Segment, 1))}
	rest := []int{e.Field, e.Repetition, e.Component, e.Subcomponent}
	last := -1
	for i, v := range rest {
		if v > 0 {
			last = i
		}
	}
	for i := 0; i <= last; i++ {
		if rest[i] > 0 {
			parts = append(parts, strconv.Itoa(rest[i]))
		} else {
			parts = append(parts, "")
		}
	}
	return strings.Join(parts, "^")
}

type span struct{ start, end int32 }

type segment struct {
	id          [3]byte
	start, end  int32 // bytes of the whole segment in data
	first, last int32 // its fields in Message.fields; fields[first] is the segment id
}

// Message is a parsed ER7 message.
type Message struct {
	data    []byte
	delims  Delimiters
	latin1  bool
	segs    []segment
	fields  []span
	charset string
}

// Parse parses one message with DefaultLimits.
func Parse(data []byte) (*Message, error) { return ParseWithLimits(data, DefaultLimits()) }

var bom = []byte("\xef\xbb\xbf")

func isTerm(c byte) bool { return c == '\r' || c == '\n' }

// readDelimiters reads MSH-1 and MSH-2 from the start of data.
func readDelimiters(data []byte) (Delimiters, int, error) {
	if len(data) == 0 {
		return Delimiters{}, 0, &ParseError{Code: CodeRequiredMissing, Reason: "empty message"}
	}
	if !bytes.HasPrefix(data, []byte("MSH")) {
		return Delimiters{}, 0, &ParseError{Segment: 1, Code: CodeSegmentSequence, Reason: "message does not start with an MSH segment"}
	}
	msh := func(field int, reason string) error {
		return &ParseError{Segment: 1, SegmentID: "MSH", Field: field, Code: CodeRequiredMissing, Reason: reason}
	}
	if len(data) < 4 || isTerm(data[3]) {
		return Delimiters{}, 0, msh(1, "MSH-1 field separator missing")
	}
	d := Delimiters{Field: data[3]}
	i := 4
	for i < len(data) && data[i] != d.Field && !isTerm(data[i]) {
		i++
	}
	enc := data[4:i]
	if len(enc) < 4 || len(enc) > 5 {
		return Delimiters{}, 0, msh(2, fmt.Sprintf("MSH-2 encoding characters: want 4 or 5, have %d", len(enc)))
	}
	d.Component, d.Repetition, d.Escape, d.Subcomponent = enc[0], enc[1], enc[2], enc[3]
	if len(enc) == 5 {
		d.Truncation = enc[4]
	}
	var buf [6]byte
	buf[0] = d.Field
	all := buf[:1+copy(buf[1:], enc)]
	for j, c := range all {
		if c < 0x20 || c > 0x7e || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == ' ' {
			return Delimiters{}, 0, &ParseError{Segment: 1, SegmentID: "MSH", Field: 2, Code: CodeDataType, Reason: "delimiter is not a printable punctuation character"}
		}
		if bytes.IndexByte(all[:j], c) >= 0 {
			return Delimiters{}, 0, &ParseError{Segment: 1, SegmentID: "MSH", Field: 2, Code: CodeDataType, Reason: "the same delimiter is declared twice"}
		}
	}
	return d, i, nil
}

func trimInput(data []byte) []byte {
	data = bytes.TrimPrefix(data, bom)
	for len(data) > 0 && (isTerm(data[len(data)-1]) || data[len(data)-1] == 0x1a) {
		data = data[:len(data)-1]
	}
	return data
}

// ParseWithLimits parses one message: a leading BOM is dropped, segments may
// end in CR, LF or CRLF (mixed), empty lines are ignored.
func ParseWithLimits(data []byte, l Limits) (*Message, error) {
	if l.MaxMessageBytes > 0 && len(data) > l.MaxMessageBytes {
		return nil, &ParseError{Code: CodeInternal, Reason: fmt.Sprintf("message of %d bytes exceeds the limit of %d", len(data), l.MaxMessageBytes)}
	}
	data = trimInput(data)
	d, _, err := readDelimiters(data)
	if err != nil {
		return nil, err
	}
	nseg := 1 + bytes.Count(data, []byte{'\r'}) + bytes.Count(data, []byte{'\n'})
	if l.MaxSegments > 0 && nseg > l.MaxSegments*2+1 {
		return nil, &ParseError{Code: CodeInternal, Reason: fmt.Sprintf("more than %d segments", l.MaxSegments)}
	}
	m := &Message{data: data, delims: d}
	m.segs = make([]segment, 0, nseg)
	m.fields = make([]span, 0, nseg+bytes.Count(data, []byte{d.Field}))
	pos := 0
	for pos < len(data) {
		end := pos
		for end < len(data) && !isTerm(data[end]) {
			end++
		}
		if end > pos {
			if err := m.addSegment(pos, end, l); err != nil {
				return nil, err
			}
		}
		pos = end + 1
	}
	if err := m.checkCharset(); err != nil {
		return nil, err
	}
	if err := checkRequired(d, func(n int) []byte { return m.fieldBytes(0, n) }); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Message) addSegment(start, end int, l Limits) error {
	n := len(m.segs) + 1
	if l.MaxSegments > 0 && n > l.MaxSegments {
		return &ParseError{Segment: n, Code: CodeInternal, Reason: fmt.Sprintf("more than %d segments", l.MaxSegments)}
	}
	b := m.data[start:end]
	if len(b) < 3 || !segIDChar(b[0]) || !segIDChar(b[1]) || !segIDChar(b[2]) || (len(b) > 3 && b[3] != m.delims.Field) {
		return &ParseError{Segment: n, Code: CodeSegmentSequence, Reason: "segment does not start with a three-character segment id"}
	}
	seg := segment{id: [3]byte{b[0], b[1], b[2]}, start: int32(start), end: int32(end), first: int32(len(m.fields))}
	if n == 1 && string(b[:3]) != "MSH" {
		return &ParseError{Segment: 1, Code: CodeSegmentSequence, Reason: "message does not start with an MSH segment"}
	}
	fs := start
	for i := start; i <= end; i++ {
		if i == end || m.data[i] == m.delims.Field {
			if l.MaxFieldBytes > 0 && i-fs > l.MaxFieldBytes {
				return &ParseError{Segment: n, SegmentID: string(b[:3]), Field: len(m.fields) - int(seg.first), Code: CodeInternal,
					Reason: fmt.Sprintf("field of %d bytes exceeds the limit of %d", i-fs, l.MaxFieldBytes)}
			}
			m.fields = append(m.fields, span{int32(fs), int32(i)})
			fs = i + 1
		}
	}
	seg.last = int32(len(m.fields))
	m.segs = append(m.segs, seg)
	return nil
}

func segIDChar(c byte) bool { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') }

// checkCharset reads MSH-18 and checks the bytes are valid in it.
func (m *Message) checkCharset() error {
	cs := m.fieldBytes(0, 18)
	if i := bytes.IndexByte(cs, m.delims.Repetition); i >= 0 {
		cs = cs[:i]
	}
	m.charset = string(cs)
	switch strings.ToUpper(strings.TrimSpace(m.charset)) {
	case "8859/1", "ISO-8859-1", "ISO_8859-1", "LATIN1":
		// Every byte is a Latin-1 character. A message declared 8859/1 that
		// is in fact valid UTF-8 with multi-byte sequences (senders do this)
		// is read as UTF-8, which is what its author meant.
		m.latin1 = !utf8.Valid(m.data) || isASCII(m.data)
		return nil
	case "", "ASCII", "UNICODE UTF-8", "UTF-8", "UNICODE", "UTF8":
	default:
		return &ParseError{Segment: 1, SegmentID: "MSH", Field: 18, Code: CodeTableValue, Reason: "character set in MSH-18 is not supported (want ASCII, 8859/1 or UNICODE UTF-8)"}
	}
	if utf8.Valid(m.data) {
		return nil
	}
	for si, s := range m.segs {
		for fi := s.first; fi < s.last; fi++ {
			f := m.fields[fi]
			if !utf8.Valid(m.data[f.start:f.end]) {
				field := int(fi - s.first)
				if s.id == [3]byte{'M', 'S', 'H'} {
					field++
				}
				return &ParseError{Segment: si + 1, SegmentID: string(s.id[:]), Field: field, Code: CodeDataType, Reason: "invalid UTF-8 bytes"}
			}
		}
	}
	return &ParseError{Code: CodeDataType, Reason: "invalid UTF-8 bytes"}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// fieldBytes returns the raw bytes of field n of segment si (MSH numbering
// for MSH), or nil when absent.
func (m *Message) fieldBytes(si, n int) []byte {
	if si >= len(m.segs) || n < 1 {
		return nil
	}
	s := m.segs[si]
	if s.id == [3]byte{'M', 'S', 'H'} {
		if n == 1 {
			return m.data[s.start+3 : s.start+4]
		}
		n--
	}
	idx := s.first + int32(n)
	if idx >= s.last {
		return nil
	}
	f := m.fields[idx]
	return m.data[f.start:f.end]
}

// SegmentCount is the number of segments.
func (m *Message) SegmentCount() int { return len(m.segs) }

// SegmentID is the id of segment i (0-based).
func (m *Message) SegmentID(i int) string { return string(m.segs[i].id[:]) }

// Delimiters returns the message's delimiters.
func (m *Message) Delimiters() Delimiters { return m.delims }

// Encode returns the message in canonical ER7: segments ending in CR, no BOM.
func (m *Message) Encode() []byte {
	n := 0
	for _, s := range m.segs {
		n += int(s.end-s.start) + 1
	}
	out := make([]byte, 0, n)
	for _, s := range m.segs {
		out = append(out, m.data[s.start:s.end]...)
		out = append(out, '\r')
	}
	return out
}

// Header returns the MSH fields of m.
func (m *Message) Header() Header {
	return headerFrom(m.delims, func(n int) []byte { return m.fieldBytes(0, n) }, m.latin1)
}
