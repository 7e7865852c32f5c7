package hl7

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Value is what a path points at.
type Value struct {
	raw     []byte
	present bool
	d       Delimiters
	latin1  bool
	level   uint8 // levelField…levelSub: what raw is, for positional access
}

// Present reports whether the message has the element (a field beyond the
// last one sent, or a segment that is not there, is not present).
func (v Value) Present() bool { return v.present }

// Null reports whether the element is the HL7 explicit null `""`.
func (v Value) Null() bool { return string(v.raw) == `""` }

// Raw returns the element's bytes as sent (escapes not resolved).
func (v Value) Raw() []byte { return v.raw }

// String returns the element with escape sequences resolved, as UTF-8.
func (v Value) String() string { return unescape(v.d, v.raw, v.latin1) }

// Get returns the element at path: "PID-5", "PID-5[2]", "PID-5[2].1",
// "PID-5.1.2", "OBX[3]-5", "MSH-9.2". Repetitions and segment ordinals
// are 1-based and default to 1.
func (m *Message) Get(path string) (Value, error) {
	p, err := parsePath(path)
	if err != nil {
		return Value{}, err
	}
	v := Value{d: m.delims, latin1: m.latin1}
	seen := 0
	si := -1
	for i, s := range m.segs {
		if string(s.id[:]) == p.seg {
			seen++
			if seen == p.segN {
				si = i
				break
			}
		}
	}
	if si < 0 {
		return v, nil
	}
	f := m.fieldBytes(si, p.field)
	if f == nil {
		return v, nil
	}
	isMSHDelim := p.seg == "MSH" && (p.field == 1 || p.field == 2)
	if isMSHDelim {
		if p.rep > 1 || p.comp > 1 || p.sub > 1 {
			return v, nil
		}
		v.present, v.raw, v.level = true, f, levelSub
		return v, nil
	}
	var ok bool
	if f, ok = nth(f, m.delims.Repetition, p.rep); !ok {
		return v, nil
	}
	if p.comp > 0 {
		if f, ok = nth(f, m.delims.Component, p.comp); !ok {
			return v, nil
		}
	}
	if p.sub > 0 {
		if f, ok = nth(f, m.delims.Subcomponent, p.sub); !ok {
			return v, nil
		}
	}
	v.present, v.raw, v.level = true, f, levelRep
	if p.sub > 0 {
		v.level = levelSub
	} else if p.comp > 0 {
		v.level = levelComp
	}
	return v, nil
}

// nth returns the n-th (1-based) part of b split by sep.
func nth(b []byte, sep byte, n int) ([]byte, bool) {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(b, sep)
		if j < 0 {
			return nil, false
		}
		b = b[j+1:]
	}
	if j := bytes.IndexByte(b, sep); j >= 0 {
		b = b[:j]
	}
	return b, true
}

type path struct {
	seg              string
	segN, field, rep int
	comp, sub        int
}

func parsePath(s string) (path, error) {
	bad := func() (path, error) {
		return path{}, fmt.Errorf("hl7: bad path %q (want e.g. PID-5[2].1 or OBX[3]-5)", s)
	}
	p := path{segN: 1, rep: 1}
	if len(s) < 5 {
		return bad()
	}
	p.seg = s[:3]
	rest := s[3:]
	if rest[0] == '[' {
		j := strings.IndexByte(rest, ']')
		n, err := strconv.Atoi(rest[1:max(j, 1)])
		if j < 0 || err != nil || n < 1 {
			return bad()
		}
		p.segN, rest = n, rest[j+1:]
	}
	if len(rest) < 2 || rest[0] != '-' {
		return bad()
	}
	rest = rest[1:]
	end := strings.IndexAny(rest, "[.")
	if end < 0 {
		end = len(rest)
	}
	n, err := strconv.Atoi(rest[:end])
	if err != nil || n < 1 {
		return bad()
	}
	p.field, rest = n, rest[end:]
	if rest != "" && rest[0] == '[' {
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			return bad()
		}
		r, err := strconv.Atoi(rest[1:j])
		if err != nil || r < 1 {
			return bad()
		}
		p.rep, rest = r, rest[j+1:]
	}
	for _, dst := range []*int{&p.comp, &p.sub} {
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return bad()
		}
		rest = rest[1:]
		end := strings.IndexByte(rest, '.')
		if end < 0 {
			end = len(rest)
		}
		c, err := strconv.Atoi(rest[:end])
		if err != nil || c < 1 {
			return bad()
		}
		*dst, rest = c, rest[end:]
	}
	if rest != "" {
		return bad()
	}
	return p, nil
}

// unescape resolves \F\ \S\ \T\ \R\ \E\ and \Xhh..\; formatting escapes
// (\.br\, \H\, \N\, \Zxx\ …) are kept as they are.
func unescape(d Delimiters, raw []byte, latin1 bool) string {
	if bytes.IndexByte(raw, d.Escape) < 0 {
		return decodeText(raw, latin1)
	}
	var out []byte
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != d.Escape {
			out = append(out, c)
			i++
			continue
		}
		j := bytes.IndexByte(raw[i+1:], d.Escape)
		if j < 0 {
			out = append(out, raw[i:]...)
			break
		}
		seq := raw[i+1 : i+1+j]
		whole := raw[i : i+2+j]
		i += 2 + j
		switch {
		case len(seq) == 1 && seq[0] == 'F':
			out = append(out, d.Field)
		case len(seq) == 1 && seq[0] == 'S':
			out = append(out, d.Component)
		case len(seq) == 1 && seq[0] == 'T':
			out = append(out, d.Subcomponent)
		case len(seq) == 1 && seq[0] == 'R':
			out = append(out, d.Repetition)
		case len(seq) == 1 && seq[0] == 'E':
			out = append(out, d.Escape)
		case len(seq) == 1 && seq[0] == 'P' && d.Truncation != 0:
			out = append(out, d.Truncation)
		case len(seq) > 1 && seq[0] == 'X' && len(seq)%2 == 1 && isHex(seq[1:]):
			for k := 1; k < len(seq); k += 2 {
				b, _ := strconv.ParseUint(string(seq[k:k+2]), 16, 8)
				out = append(out, byte(b))
			}
		default:
			out = append(out, whole...)
		}
	}
	return decodeText(out, latin1)
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// decodeText turns bytes into valid UTF-8: Latin-1 is transcoded, and any
// invalid sequence left (from a \X\ escape, say) becomes U+FFFD.
func decodeText(b []byte, latin1 bool) string {
	if latin1 {
		var sb strings.Builder
		for _, c := range b {
			sb.WriteRune(rune(c))
		}
		return sb.String()
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// Escape applies the escape sequences of d to s, so that s can stand in a
// field (or component) of an ER7 message.
func Escape(d Delimiters, s string) string {
	if !strings.ContainsAny(s, string([]byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent, '\r', '\n'})) && (d.Truncation == 0 || strings.IndexByte(s, d.Truncation) < 0) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == d.Field:
			b.WriteString(string(d.Escape) + "F" + string(d.Escape))
		case c == d.Component:
			b.WriteString(string(d.Escape) + "S" + string(d.Escape))
		case c == d.Subcomponent:
			b.WriteString(string(d.Escape) + "T" + string(d.Escape))
		case c == d.Repetition:
			b.WriteString(string(d.Escape) + "R" + string(d.Escape))
		case c == d.Escape:
			b.WriteString(string(d.Escape) + "E" + string(d.Escape))
		case d.Truncation != 0 && c == d.Truncation:
			b.WriteString(string(d.Escape) + "P" + string(d.Escape))
		case c == '\r' || c == '\n':
			b.WriteString(string(d.Escape) + ".br" + string(d.Escape))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
