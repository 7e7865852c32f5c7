package inbound

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/carebridge/carebridge/hl7"
)

// Rules are what a deployment requires of a message beyond well-formed ER7.
// A message that breaks them is stored as rejected and answered AE or AR.
type Rules struct {
	// RequiredMSH lists MSH field numbers that must be valued.
	RequiredMSH []int
	// Versions lists the HL7 versions (MSH-12.1) accepted; empty accepts any.
	Versions []string
	// CheckDatatypes rejects OBX-5 values that do not match the NM
	// datatype named in OBX-2 (the one datatype error we can name without
	// the message profile).
	CheckDatatypes bool
}

// DefaultRules require the MSH fields HL7 v2.5.1 makes required for every
// message and that carebridge cannot do without (type, control id,
// processing id, version); sender and receiver (MSH-3 to MSH-6) are
// optional in the standard and so here, though a deployment that wants
// them can say so (serve --required-msh). All 2.x versions from 2.3 on are
// accepted.
func DefaultRules() Rules {
	return Rules{
		RequiredMSH:    []int{9, 10, 11, 12},
		Versions:       SupportedVersions(),
		CheckDatatypes: true,
	}
}

// SupportedVersions are the HL7 v2 versions carebridge accepts by default.
func SupportedVersions() []string {
	return []string{"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9"}
}

// ParseVersions reads a comma-separated version list such as "2.5.1,2.6".
func ParseVersions(s string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !strings.HasPrefix(v, "2.") {
			return nil, fmt.Errorf("HL7 version %q: carebridge speaks HL7 v2 (2.x)", v)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no HL7 version in %q", s)
	}
	return out, nil
}

// ParseFieldList reads a comma-separated list of MSH field numbers such as
// "3,4,9,10".
func ParseFieldList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimPrefix(strings.TrimSpace(f), "MSH-")
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 3 || n > 30 {
			return nil, fmt.Errorf("MSH field %q: want a number from 3 to 30", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// check returns the problems of a parsed message, each with its position.
func (r Rules) check(m *hl7.Message) []*hl7.ParseError {
	var errs []*hl7.ParseError
	for _, f := range r.RequiredMSH {
		v, err := m.Get(fmt.Sprintf("MSH-%d", f))
		if err == nil && v.Present() && !v.Null() && v.String() != "" {
			continue
		}
		errs = append(errs, &hl7.ParseError{
			Segment: 1, SegmentID: "MSH", Field: f, Code: hl7.ErrorCode(101),
			Reason: fmt.Sprintf("required field MSH-%d is empty", f),
		})
	}
	if len(r.Versions) > 0 {
		h := m.Header()
		if h.Version != "" && !slices.Contains(r.Versions, h.Version) {
			errs = append(errs, &hl7.ParseError{
				Segment: 1, SegmentID: "MSH", Field: 12, Code: hl7.ErrorCode(203),
				Reason: fmt.Sprintf("HL7 version %s is not accepted here (accepted: %s)", h.Version, strings.Join(r.Versions, ", ")),
			})
		}
	}
	if r.CheckDatatypes {
		errs = append(errs, checkNumericOBX(m)...)
	}
	return errs
}

// checkNumericOBX flags OBX segments typed NM whose value is not a number.
func checkNumericOBX(m *hl7.Message) []*hl7.ParseError {
	var errs []*hl7.ParseError
	for i := 1; ; i++ {
		typ, err := m.Get(fmt.Sprintf("OBX[%d]-2", i))
		if err != nil || !typ.Present() {
			return errs
		}
		if typ.String() != "NM" {
			continue
		}
		for rep := 1; rep <= 100; rep++ {
			v, err := m.Get(fmt.Sprintf("OBX[%d]-5[%d]", i, rep))
			if err != nil || !v.Present() {
				break
			}
			s := v.String()
			if s == "" || v.Null() || isNM(s) {
				continue
			}
			errs = append(errs, &hl7.ParseError{
				Segment: segmentOrdinal(m, "OBX", i), SegmentID: "OBX", Field: 5, Repetition: rep, Code: hl7.ErrorCode(102),
				Reason: fmt.Sprintf("OBX-5 of OBX %d is not a number, but OBX-2 says NM", i),
			})
		}
	}
}

// isNM reports whether s is an HL7 NM value: an optional sign, digits and
// an optional decimal point.
func isNM(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" {
		return false
	}
	if s[0] == '+' || s[0] == '-' {
		s = s[1:]
	}
	if s == "" || s == "." || strings.ContainsAny(s, "eE") {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// segmentOrdinal finds the position in the message of the n-th segment id.
func segmentOrdinal(m *hl7.Message, id string, n int) int {
	seen := 0
	for i := range m.SegmentCount() {
		if m.SegmentID(i) == id {
			seen++
			if seen == n {
				return i + 1
			}
		}
	}
	return 0
}
