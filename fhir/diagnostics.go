package fhir

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// r4Package is the protobuf package of google/fhir's R4 resources.
const r4Package = "google.fhir.r4.core."

// finding is one of the validator's findings: where, what, and its
// detail (which may quote the resource's content).
type finding struct{ path, details, diagnostics string }

// describe is the validator's error as findings, a line each, in the form
// `error at "path": what`, naming what its own text leaves out: the
// element an "unknown field" is (its text names only the element that
// holds it, once for each, so that two unknown members of one element
// read as the same problem twice), and, for a code that is not one of a
// required binding's, the codes allowed. The member's name is the
// client's own key; no value sent is quoted.
//
// google/fhir reports its findings as a list of an internal type whose
// fields are exported; they are read by reflection, and an error of any
// other shape is described by its own text.
func describe(err error) string {
	found, ok := findings(err)
	if !ok {
		return err.Error()
	}
	lines := make([]string, 0, len(found))
	for _, f := range found {
		path, what := f.path, f.details
		switch f.details {
		case "unknown field":
			if k, err := strconv.Unquote(f.diagnostics); err == nil && k != "" {
				path, what = joinPath(f.path, k), "unknown element (not in FHIR R4 here)"
			}
		case "code type mismatch":
			// not the code sent: the answer names the element, and what
			// it allows, never the content
			what = "not a code this element allows"
			if codes := codesAt(f.path); len(codes) > 0 {
				what += " (one of " + strings.Join(codes, ", ") + ")"
			}
		}
		if path == "" {
			lines = append(lines, what)
			continue
		}
		lines = append(lines, fmt.Sprintf("error at %q: %s", path, what))
	}
	return strings.Join(lines, "\n")
}

func joinPath(path, member string) string {
	if path == "" {
		return member
	}
	return path + "." + member
}

// findings reads err as google/fhir's list of unmarshalling errors (or one
// of them): each a pointer to a struct with string fields Path, Details
// and Diagnostics.
func findings(err error) ([]finding, bool) {
	one := func(p reflect.Value) (finding, bool) {
		if p.Kind() != reflect.Pointer || p.IsNil() || p.Elem().Kind() != reflect.Struct {
			return finding{}, false
		}
		s := p.Elem()
		var f finding
		for _, fld := range []struct {
			name string
			to   *string
		}{{"Path", &f.path}, {"Details", &f.details}, {"Diagnostics", &f.diagnostics}} {
			v := s.FieldByName(fld.name)
			if !v.IsValid() || v.Kind() != reflect.String {
				return finding{}, false
			}
			*fld.to = v.String()
		}
		return f, true
	}
	v := reflect.ValueOf(err)
	switch v.Kind() {
	case reflect.Slice:
		out := make([]finding, 0, v.Len())
		for i := 0; i < v.Len(); i++ {
			f, ok := one(v.Index(i))
			if !ok {
				return nil, false
			}
			out = append(out, f)
		}
		return out, len(out) > 0
	case reflect.Pointer:
		f, ok := one(v)
		return []finding{f}, ok
	}
	return nil, false
}

// codesAt is the codes the coded element at path ("Communication.status",
// "Communication.payload[0].…") allows, from google/fhir's R4 protos: nil
// when path leads to no such element.
func codesAt(path string) []string {
	segs := strings.Split(path, ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(r4Package + segs[0]))
	if err != nil {
		return nil
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil
	}
	for _, seg := range segs[1:] {
		if i := strings.IndexByte(seg, '['); i >= 0 {
			seg = seg[:i]
		}
		fd := md.Fields().ByJSONName(seg)
		if fd == nil || fd.Message() == nil {
			return nil
		}
		md = fd.Message()
	}
	value := md.Fields().ByName("value")
	if value == nil || value.Enum() == nil {
		return nil
	}
	var codes []string
	values := value.Enum().Values()
	for i := 0; i < values.Len(); i++ {
		ev := values.Get(i)
		if ev.Number() == 0 { // INVALID_UNINITIALIZED
			continue
		}
		code, _ := proto.GetExtension(ev.Options(), apb.E_FhirOriginalCode).(string)
		if code == "" {
			code = strings.ReplaceAll(strings.ToLower(string(ev.Name())), "_", "-")
		}
		codes = append(codes, code)
	}
	return codes
}
