package hl7

import "bytes"

// Positional access, for code that walks a message segment by segment (the
// mapping does) without building path strings.

// SegmentIs reports whether segment i (0-based) has the given id, without
// allocating.
func (m *Message) SegmentIs(i int, id string) bool {
	return len(id) == 3 && i >= 0 && i < len(m.segs) && string(m.segs[i].id[:]) == id
}

// Field returns field n (1-based, MSH numbering for MSH) of segment i
// (0-based). A field beyond the last one sent is not present.
func (m *Message) Field(i, n int) Value {
	v := Value{d: m.delims, latin1: m.latin1}
	if i < 0 || i >= len(m.segs) {
		return v
	}
	f := m.fieldBytes(i, n)
	if f == nil {
		return v
	}
	v.present, v.raw = true, f
	if m.segs[i].id == [3]byte{'M', 'S', 'H'} && (n == 1 || n == 2) {
		v.level = levelSub // the delimiters themselves: never split
	}
	return v
}

// Value levels: what a Value's bytes are, so that splitting goes down the
// right separator.
const (
	levelField = iota
	levelRep
	levelComp
	levelSub
)

// Repetitions is the number of repetitions of a field value (0 when it is
// not present or empty).
func (v Value) Repetitions() int {
	if !v.present || len(v.raw) == 0 {
		return 0
	}
	if v.level != levelField {
		return 1
	}
	return bytes.Count(v.raw, []byte{v.d.Repetition}) + 1
}

// Repetition returns repetition r (1-based) of a field value.
func (v Value) Repetition(r int) Value {
	if v.level != levelField {
		if r == 1 {
			return v
		}
		return Value{d: v.d, latin1: v.latin1, level: levelRep}
	}
	out := Value{d: v.d, latin1: v.latin1, level: levelRep}
	if !v.present {
		return out
	}
	out.raw, out.present = nth(v.raw, v.d.Repetition, r)
	return out
}

// Component returns component c (1-based). On a field it reads the first
// repetition.
func (v Value) Component(c int) Value {
	if v.level == levelField {
		v = v.Repetition(1)
	}
	out := Value{d: v.d, latin1: v.latin1, level: levelComp}
	if !v.present || v.level > levelRep {
		if c == 1 && v.level == levelComp {
			return v
		}
		return out
	}
	out.raw, out.present = nth(v.raw, v.d.Component, c)
	return out
}

// Subcomponent returns subcomponent s (1-based). On a field or repetition
// it reads the first component.
func (v Value) Subcomponent(s int) Value {
	if v.level < levelComp {
		v = v.Component(1)
	}
	out := Value{d: v.d, latin1: v.latin1, level: levelSub}
	if !v.present || v.level == levelSub {
		if s == 1 && v.level == levelSub {
			return v
		}
		return out
	}
	out.raw, out.present = nth(v.raw, v.d.Subcomponent, s)
	return out
}

// Empty reports whether the value is absent or has no content.
func (v Value) Empty() bool { return len(v.raw) == 0 }
