package hl7

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// AckCode is MSA-1: AA/AE/AR in original mode, CA/CE/CR in enhanced mode.
type AckCode string

// Outcome is what the receiver decided about a message.
type Outcome int

// Outcomes, in rising order of severity.
const (
	Accept Outcome = iota // AA / CA
	Error                 // AE / CE: content error
	Reject                // AR / CR: cannot take this message at all
)

// ErrorDetail is one ERR segment.
type ErrorDetail struct {
	Location string // ERR-2 in ER7, already encoded, e.g. "PID^3^5^2^1"
	Code     ErrorCode
	Severity string // ERR-4: E (default), W, I
	Text     string // ERR-8: PHI-free
}

// ErrorDetailFrom turns an error into an ERR segment's content. Errors
// other than *ParseError become code 207 with a generic text.
func ErrorDetailFrom(err error) ErrorDetail {
	var pe *ParseError
	if errors.As(err, &pe) {
		return ErrorDetail{Location: pe.Location(), Code: pe.Code, Severity: "E", Text: pe.Reason}
	}
	return ErrorDetail{Code: CodeInternal, Severity: "E", Text: "application internal error"}
}

// AckRequest describes the acknowledgement to build.
type AckRequest struct {
	Original  Header // of the message being acknowledged; may be partial
	Outcome   Outcome
	Errors    []ErrorDetail
	ControlID string // MSH-10 of the ACK itself
	Time      time.Time
	Text      string // MSA-3, PHI-free
}

// Code is the MSA-1 the ACK for r carries: enhanced mode (C*) when the
// original valued MSH-15 or MSH-16.
func (r AckRequest) Code() AckCode {
	prefix := "A"
	if r.Original.AcceptAckType != "" || r.Original.AppAckType != "" {
		prefix = "C"
	}
	switch r.Outcome {
	case Accept:
		return AckCode(prefix + "A")
	case Error:
		return AckCode(prefix + "E")
	}
	return AckCode(prefix + "R")
}

// BuildACK returns the ER7 acknowledgement for r, segments ending in CR.
func BuildACK(r AckRequest) []byte {
	o := r.Original
	d := o.Delimiters
	if d.Field == 0 {
		d = DefaultDelimiters
	}
	esc := func(s string) string { return Escape(d, s) }
	// MSH-3..6 are HD values: keep their components, escape the rest.
	hd := func(s string) string {
		parts := strings.Split(s, string(d.Component))
		for i := range parts {
			parts[i] = esc(parts[i])
		}
		return strings.Join(parts, string(d.Component))
	}
	proc := strings.TrimSpace(o.ProcessingID)
	if proc == "" {
		proc = "P"
	}
	ver := strings.TrimSpace(o.Version)
	if ver == "" {
		ver = "2.5.1"
	}
	msgType := "ACK"
	if o.TriggerEvent != "" {
		msgType = "ACK" + string(d.Component) + esc(o.TriggerEvent) + string(d.Component) + "ACK"
	}
	f := string(d.Field)
	var b strings.Builder
	b.WriteString("MSH" + f + d.encodingChars() + f + hd(o.ReceivingApplication) + f + hd(o.ReceivingFacility) + f +
		hd(o.SendingApplication) + f + hd(o.SendingFacility) + f + r.Time.Format("20060102150405-0700") + f + f +
		msgType + f + esc(r.ControlID) + f + esc(proc) + f + esc(ver) + "\r")
	b.WriteString("MSA" + f + string(r.Code()) + f + esc(o.ControlID))
	if r.Text != "" {
		b.WriteString(f + esc(r.Text))
	}
	b.WriteString("\r")
	for _, e := range r.Errors {
		sev := e.Severity
		if sev == "" {
			sev = "E"
		}
		loc := e.Location
		// ERR-2 is ERL: its parts are components.
		loc = strings.ReplaceAll(loc, "^", string(d.Component))
		b.WriteString("ERR" + f + f + loc + f + strconv.Itoa(int(e.Code)) + string(d.Component) + esc(e.Code.Text()) +
			string(d.Component) + "HL70357" + f + sev + f + f + f + f + esc(e.Text) + "\r")
	}
	return []byte(b.String())
}

// Ack is a parsed acknowledgement.
type Ack struct {
	Code      AckCode
	ControlID string // MSA-2: the control id of the acknowledged message
	Text      string // MSA-3
	Errors    []ErrorDetail
	Header    Header
}

// Accepted reports whether the ACK is AA or CA.
func (a Ack) Accepted() bool { return a.Code == "AA" || a.Code == "CA" }

// ParseACK reads an acknowledgement message.
func ParseACK(data []byte) (Ack, error) {
	m, err := Parse(data)
	if err != nil {
		return Ack{}, err
	}
	get := func(p string) string {
		v, _ := m.Get(p)
		return v.String()
	}
	a := Ack{Header: m.Header(), Code: AckCode(get("MSA-1")), ControlID: get("MSA-2"), Text: get("MSA-3")}
	if a.Code == "" {
		return a, &ParseError{Code: CodeRequiredMissing, SegmentID: "MSA", Field: 1, Reason: "no MSA-1 acknowledgment code"}
	}
	for i := 1; m.hasSegment("ERR", i); i++ {
		loc, _ := m.Get("ERR[" + strconv.Itoa(i) + "]-2")
		e := ErrorDetail{
			Location: strings.ReplaceAll(string(loc.Raw()), string(m.delims.Component), "^"),
			Severity: get("ERR[" + strconv.Itoa(i) + "]-4"),
			Text:     get("ERR[" + strconv.Itoa(i) + "]-8"),
		}
		if c, err := strconv.Atoi(get("ERR[" + strconv.Itoa(i) + "]-3.1")); err == nil {
			e.Code = ErrorCode(c)
		}
		if e.Text == "" {
			e.Text = get("ERR[" + strconv.Itoa(i) + "]-3.2")
		}
		a.Errors = append(a.Errors, e)
	}
	return a, nil
}

func (m *Message) hasSegment(id string, n int) bool {
	seen := 0
	for _, s := range m.segs {
		if string(s.id[:]) == id {
			seen++
			if seen == n {
				return true
			}
		}
	}
	return false
}
