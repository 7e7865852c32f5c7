package hl7

import (
	"bytes"
)

// Header holds the MSH fields a receiver needs before anything else.
// Strings have their escapes resolved.
type Header struct {
	Delimiters                              Delimiters
	SendingApplication, SendingFacility     string // MSH-3, MSH-4
	ReceivingApplication, ReceivingFacility string // MSH-5, MSH-6
	Timestamp                               string // MSH-7
	MessageType                             string // MSH-9.1
	TriggerEvent                            string // MSH-9.2
	MessageStructure                        string // MSH-9.3
	ControlID                               string // MSH-10
	ProcessingID                            string // MSH-11.1
	Version                                 string // MSH-12.1
	AcceptAckType                           string // MSH-15
	AppAckType                              string // MSH-16
	Charsets                                []string
}

// Type is "ADT^A01", or the message type alone when it has no trigger.
func (h Header) Type() string {
	if h.TriggerEvent == "" {
		return h.MessageType
	}
	return h.MessageType + "^" + h.TriggerEvent
}

func headerFrom(d Delimiters, field func(int) []byte, latin1 bool) Header {
	str := func(b []byte) string { return unescape(d, b, latin1) }
	comp := func(n, c int) string {
		f, _ := nth(field(n), d.Repetition, 1)
		part, ok := nth(f, d.Component, c)
		if !ok {
			return ""
		}
		return str(part)
	}
	h := Header{
		Delimiters:           d,
		SendingApplication:   str(field(3)),
		SendingFacility:      str(field(4)),
		ReceivingApplication: str(field(5)),
		ReceivingFacility:    str(field(6)),
		Timestamp:            str(field(7)),
		MessageType:          comp(9, 1),
		TriggerEvent:         comp(9, 2),
		MessageStructure:     comp(9, 3),
		ControlID:            str(field(10)),
		ProcessingID:         comp(11, 1),
		Version:              comp(12, 1),
		AcceptAckType:        str(field(15)),
		AppAckType:           str(field(16)),
	}
	if cs := field(18); len(cs) > 0 {
		for _, r := range bytes.Split(cs, []byte{d.Repetition}) {
			h.Charsets = append(h.Charsets, str(r))
		}
	}
	return h
}

// ParseHeader reads only the MSH segment. It returns what it could read
// even with an error, so that a negative ACK can still echo it.
func ParseHeader(data []byte) (Header, error) {
	data = trimInput(data)
	d, _, err := readDelimiters(data)
	if err != nil {
		return Header{Delimiters: DefaultDelimiters}, err
	}
	end := bytes.IndexAny(data, "\r\n")
	if end < 0 {
		end = len(data)
	}
	parts := bytes.Split(data[:end], []byte{d.Field})
	field := func(n int) []byte {
		switch {
		case n == 1:
			return []byte{d.Field}
		case n-1 < len(parts):
			return parts[n-1]
		}
		return nil
	}
	h := headerFrom(d, field, false)
	if err := checkRequired(d, field); err != nil {
		return h, err
	}
	return h, nil
}

// checkRequired insists on what every message must carry to be
// acknowledged and routed: MSH-9.1, MSH-10 and MSH-12.1, not blank. It
// looks at the raw bytes, so Parse and ParseHeader agree and Parse does not
// allocate for it.
func checkRequired(d Delimiters, field func(int) []byte) error {
	first := func(n int, comp bool) []byte {
		f, _ := nth(field(n), d.Repetition, 1)
		if comp {
			f, _ = nth(f, d.Component, 1)
		}
		return bytes.TrimSpace(f)
	}
	for _, f := range []struct {
		n      int
		comp   bool
		reason string
	}{{9, true, "MSH-9 message type is empty"}, {10, false, "MSH-10 message control id is empty"}, {12, true, "MSH-12 version id is empty"}} {
		if len(first(f.n, f.comp)) == 0 {
			return &ParseError{Segment: 1, SegmentID: "MSH", Field: f.n, Code: CodeRequiredMissing, Reason: f.reason}
		}
	}
	return nil
}

// Split cuts a file or stream into its messages: several MSH messages back
// to back, FHS/BHS batches (whose envelope segments are dropped), a BOM,
// blank lines. Each message comes back with CR segment terminators.
func Split(data []byte) ([][]byte, error) {
	data = bytes.TrimPrefix(data, bom)
	var msgs [][]byte
	var cur []byte
	var stray int
	for len(data) > 0 {
		end := bytes.IndexAny(data, "\r\n")
		line := data
		if end >= 0 {
			line, data = data[:end], data[end+1:]
		} else {
			data = nil
		}
		line = bytes.TrimPrefix(line, bom)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(line) >= 3 {
			switch string(line[:3]) {
			case "FHS", "BHS", "BTS", "FTS":
				if len(line) == 3 || !segIDChar(line[3]) {
					continue
				}
			case "MSH":
				if cur != nil {
					msgs = append(msgs, cur)
				}
				cur = append(append([]byte(nil), line...), '\r')
				continue
			}
		}
		if cur == nil {
			stray++
			continue
		}
		cur = append(append(cur, line...), '\r')
	}
	if cur != nil {
		msgs = append(msgs, cur)
	}
	if len(msgs) == 0 {
		if stray > 0 {
			return nil, &ParseError{Segment: 1, Code: CodeSegmentSequence, Reason: "no MSH segment found"}
		}
		return nil, &ParseError{Code: CodeRequiredMissing, Reason: "empty input"}
	}
	return msgs, nil
}
