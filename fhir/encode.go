package fhir

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// The samply models are wide structs (an Observation has some fifty
// fields, nearly all nil pointers), and encoding/json walks every field by
// reflection: serialising the resources of one lab result took longer than
// mapping it. This file writes the same bytes as encoding/json for those
// models from a per-type plan of field offsets, built once. Anything the
// plan builder does not know (interfaces, maps, floats, embedded fields,
// ",string" tags) makes the whole type fall back to encoding/json, and a
// test compares both encoders byte for byte on every resource mapping
// emits.

// fastResources are the samply resource types whose MarshalJSON is the
// generated wrapper: the fields of OtherX, then "resourceType".
var fastResources = map[reflect.Type]string{
	reflect.TypeFor[fhirmodel.Patient]():          "Patient",
	reflect.TypeFor[fhirmodel.Practitioner]():     "Practitioner",
	reflect.TypeFor[fhirmodel.PractitionerRole](): "PractitionerRole",
	reflect.TypeFor[fhirmodel.Encounter]():        "Encounter",
	reflect.TypeFor[fhirmodel.Location]():         "Location",
	reflect.TypeFor[fhirmodel.ServiceRequest]():   "ServiceRequest",
	reflect.TypeFor[fhirmodel.Observation]():      "Observation",
	reflect.TypeFor[fhirmodel.CareTeam]():         "CareTeam",
	reflect.TypeFor[fhirmodel.Device]():           "Device",
	reflect.TypeFor[fhirmodel.Organization]():     "Organization",
	reflect.TypeFor[fhirmodel.AuditEvent]():       "AuditEvent",
}

// plans caches one finished encoding plan per type, like encoding/json's
// own cache: derived from types only, never from data. Plans are built
// under planMu and published only when complete.
var (
	plans  sync.Map // reflect.Type → *plan
	planMu sync.Mutex
)

// errNoPlan means a type has a shape the fast path does not handle.
var errNoPlan = errors.New("no fast plan for this type")

// encodeFast serialises body if it is a pointer to one of fastResources;
// ok is false when it is not (or a type inside it has no plan), and the
// caller uses encoding/json.
func encodeFast(body any) (b []byte, ok bool, err error) {
	if c, isComm := body.(*Communication); isComm && c != nil {
		return encodeCommunication(c)
	}
	v := reflect.ValueOf(body)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil, false, nil
	}
	t := v.Type().Elem()
	rt, known := fastResources[t]
	if !known {
		return nil, false, nil
	}
	p, err := planFor(t)
	if err != nil {
		return nil, false, nil
	}
	buf := make([]byte, 0, 512)
	buf = append(buf, '{')
	buf, n, err := p.encode(buf, v.UnsafePointer())
	if errors.Is(err, errNoPlan) {
		return nil, false, nil // a value the fast path does not write
	}
	if err != nil {
		return nil, true, err
	}
	if n > 0 {
		buf = append(buf, ',')
	}
	buf = append(buf, `"resourceType":`...)
	buf = appendString(buf, rt)
	return append(buf, '}'), true, nil
}

// encodeCommunication writes what Communication.MarshalJSON writes:
// resourceType first, the samply fields but payload, then our payload.
func encodeCommunication(c *Communication) ([]byte, bool, error) {
	p, err := planFor(reflect.TypeFor[fhirmodel.OtherCommunication]())
	if err != nil {
		return nil, false, nil
	}
	pp, err := planFor(reflect.TypeFor[CommunicationPayload]())
	if err != nil {
		return nil, false, nil
	}
	buf := make([]byte, 0, 1024)
	buf = append(buf, `{"resourceType":"Communication"`...)
	buf, _, err = p.encodeSkipping(buf, unsafe.Pointer(&c.OtherCommunication), `"payload":`, 1)
	if err == nil && len(c.Payload) > 0 {
		buf = append(buf, `,"payload":[`...)
		for i := range c.Payload {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '{')
			buf, _, err = pp.encode(buf, unsafe.Pointer(&c.Payload[i]))
			if err != nil {
				break
			}
			buf = append(buf, '}')
		}
		buf = append(buf, ']')
	}
	if errors.Is(err, errNoPlan) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return append(buf, '}'), true, nil
}

// encFn appends the JSON of the value at p.
type encFn func(b []byte, p unsafe.Pointer) ([]byte, error)

type plan struct {
	fields []fieldPlan
}

type fieldPlan struct {
	key       string // `"name":`
	off       uintptr
	omitEmpty bool
	empty     func(p unsafe.Pointer) bool
	enc       encFn
}

// encode appends the struct's fields, comma-separated, and says how many.
func (pl *plan) encode(b []byte, p unsafe.Pointer) ([]byte, int, error) {
	return pl.encodeSkipping(b, p, "", 0)
}

// encodeSkipping is encode without the field whose key is skip; n counts
// fields already written before (for the separating comma).
func (pl *plan) encodeSkipping(b []byte, p unsafe.Pointer, skip string, n int) ([]byte, int, error) {
	for i := range pl.fields {
		f := &pl.fields[i]
		if f.key == skip {
			continue
		}
		fp := unsafe.Add(p, f.off)
		if f.omitEmpty && f.empty(fp) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, f.key...)
		var err error
		if b, err = f.enc(b, fp); err != nil {
			return b, n, err
		}
		n++
	}
	return b, n, nil
}

func planFor(t reflect.Type) (*plan, error) {
	if v, ok := plans.Load(t); ok {
		if v == nil {
			return nil, errNoPlan
		}
		return v.(*plan), nil
	}
	planMu.Lock()
	defer planMu.Unlock()
	b := &planBuilder{building: map[reflect.Type]*plan{}}
	pl, err := b.plan(t)
	if err != nil {
		plans.Store(t, nil)
		return nil, err
	}
	for typ, p := range b.building {
		plans.LoadOrStore(typ, p)
	}
	return pl, nil
}

// planBuilder builds the plans of a type and the types inside it; a type
// that refers to itself (Extension.extension) gets the plan being built,
// whose fields are filled before any of it is published.
type planBuilder struct {
	building map[reflect.Type]*plan
}

var (
	marshalerType = reflect.TypeFor[json.Marshaler]()
	numberType    = reflect.TypeFor[json.Number]()
	coderType     = reflect.TypeFor[coder]()
)

type coder interface{ Code() string }

func (pb *planBuilder) plan(t reflect.Type) (*plan, error) {
	if v, ok := plans.Load(t); ok {
		if v == nil {
			return nil, errNoPlan
		}
		return v.(*plan), nil
	}
	if pl, ok := pb.building[t]; ok {
		return pl, nil
	}
	pl := &plan{}
	pb.building[t] = pl
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous || !sf.IsExported() {
			return nil, errNoPlan
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := cut(tag, ',')
		if name == "" {
			name = sf.Name
		}
		omit := false
		for opts != "" {
			var o string
			o, opts, _ = cut(opts, ',')
			switch o {
			case "omitempty":
				omit = true
			default:
				return nil, errNoPlan
			}
		}
		enc, err := pb.encoder(sf.Type)
		if err != nil {
			return nil, err
		}
		pl.fields = append(pl.fields, fieldPlan{
			key: string(appendString(nil, name)) + ":", off: sf.Offset,
			omitEmpty: omit, empty: emptyFor(sf.Type), enc: enc,
		})
	}
	return pl, nil
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// encoder returns how to write a value of type t.
func (pb *planBuilder) encoder(t reflect.Type) (encFn, error) {
	switch {
	case t.Kind() == reflect.Pointer:
		// nil is null; otherwise the element, whose MarshalJSON (if any)
		// is the value receiver's, as encoding/json would call it.
		elem, err := pb.encoder(t.Elem())
		if err != nil {
			return nil, err
		}
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			ep := *(*unsafe.Pointer)(p)
			if ep == nil {
				return append(b, "null"...), nil
			}
			return elem(b, ep)
		}, nil
	case t.Kind() == reflect.Interface:
		return nil, errNoPlan
	case t.Implements(marshalerType) && t.Kind() == reflect.Int && t.Implements(coderType):
		// The models' code types: MarshalJSON is json.Marshal(code.Code()).
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendString(b, reflect.NewAt(t, p).Interface().(coder).Code()), nil
		}, nil
	case t.Implements(marshalerType):
		return marshalerEnc(t), nil
	case reflect.PointerTo(t).Implements(marshalerType):
		// encoding/json calls a pointer-receiver MarshalJSON only for
		// addressable values; keep that subtlety out of the fast path.
		return nil, errNoPlan
	}
	switch t.Kind() {
	case reflect.String:
		if t == numberType {
			return numberEnc, nil
		}
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			return appendString(b, *(*string)(p)), nil
		}, nil
	case reflect.Bool:
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			return strconv.AppendBool(b, *(*bool)(p)), nil
		}, nil
	case reflect.Int:
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			return strconv.AppendInt(b, int64(*(*int)(p)), 10), nil
		}, nil
	case reflect.Int64:
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			return strconv.AppendInt(b, *(*int64)(p), 10), nil
		}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil, errNoPlan // base64 bytes: not in the models we list
		}
		elem, err := pb.encoder(t.Elem())
		if err != nil {
			return nil, err
		}
		size := t.Elem().Size()
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			h := (*sliceHeader)(p)
			if h.data == nil {
				return append(b, "null"...), nil
			}
			b = append(b, '[')
			for i := 0; i < h.len; i++ {
				if i > 0 {
					b = append(b, ',')
				}
				var err error
				if b, err = elem(b, unsafe.Add(h.data, uintptr(i)*size)); err != nil {
					return b, err
				}
			}
			return append(b, ']'), nil
		}, nil
	case reflect.Struct:
		pl, err := pb.plan(t)
		if err != nil {
			return nil, err
		}
		return func(b []byte, p unsafe.Pointer) ([]byte, error) {
			b = append(b, '{')
			b, _, err := pl.encode(b, p)
			if err != nil {
				return b, err
			}
			return append(b, '}'), nil
		}, nil
	}
	return nil, errNoPlan
}

type sliceHeader struct {
	data unsafe.Pointer
	len  int
	cap  int
}

// emptyFor mirrors encoding/json's isEmptyValue for the kinds handled here.
func emptyFor(t reflect.Type) func(unsafe.Pointer) bool {
	switch t.Kind() {
	case reflect.String:
		return func(p unsafe.Pointer) bool { return len(*(*string)(p)) == 0 }
	case reflect.Bool:
		return func(p unsafe.Pointer) bool { return !*(*bool)(p) }
	case reflect.Int:
		return func(p unsafe.Pointer) bool { return *(*int)(p) == 0 }
	case reflect.Int64:
		return func(p unsafe.Pointer) bool { return *(*int64)(p) == 0 }
	case reflect.Pointer:
		return func(p unsafe.Pointer) bool { return *(*unsafe.Pointer)(p) == nil }
	case reflect.Slice:
		return func(p unsafe.Pointer) bool { return (*sliceHeader)(p).len == 0 }
	}
	return func(unsafe.Pointer) bool { return false }
}

// marshalerEnc calls a value-receiver MarshalJSON (the models' code
// types). encoding/json would re-compact its output; theirs is compact
// already (it comes from json.Marshal of a string), so it is checked, not
// rewritten.
func marshalerEnc(t reflect.Type) encFn {
	return func(b []byte, p unsafe.Pointer) ([]byte, error) {
		m := reflect.NewAt(t, p).Interface().(json.Marshaler) // *T: no copy
		out, err := m.MarshalJSON()
		if err != nil {
			return b, &json.MarshalerError{Type: t, Err: err}
		}
		if !compactJSON(out) {
			return b, errNoPlan
		}
		return append(b, out...), nil
	}
}

// compactJSON reports whether b is a JSON string or number with nothing
// around it, which is all the models' code types produce.
func compactJSON(b []byte) bool {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		for _, c := range b {
			if c < 0x20 || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
		return true
	}
	return false
}

func numberEnc(b []byte, p unsafe.Pointer) ([]byte, error) {
	s := *(*string)(p)
	if s == "" {
		s = "0"
	}
	if !validNumber(s) {
		return b, errors.New("json: invalid number literal " + strconv.Quote(s))
	}
	return append(b, s...), nil
}

// validNumber is JSON's number grammar.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

const hexDigits = "0123456789abcdef"

// plainByte marks the ASCII bytes a JSON string carries as they are.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString writes s as a JSON string the way encoding/json does:
// HTML-sensitive characters, control characters, U+2028 and U+2029
// escaped; invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
