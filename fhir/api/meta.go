package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// maxDepth bounds how deep a resource body may nest.
const maxDepth = 64

// member is one member of a JSON object, in document order.
type member struct {
	key   string
	value json.RawMessage
}

// members reads a JSON object's members in order.
func members(b []byte) ([]member, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("the body is not a JSON object")
	}
	var out []member
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, errors.New("the body is not valid JSON")
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, errors.New("the body is not valid JSON")
		}
		out = append(out, member{key, v})
	}
	if _, err := d.Token(); err != nil {
		return nil, errors.New("the body is not valid JSON")
	}
	if d.More() {
		return nil, errors.New("the body holds more than one JSON value")
	}
	return out, nil
}

func encodeMembers(ms []member) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// checkDepth refuses JSON nested deeper than maxDepth, before anything
// else reads it.
func checkDepth(b []byte) error {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > maxDepth {
				return fmt.Errorf("the body nests deeper than %d levels", maxDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// withMeta is a resource body with its id and meta.versionId and
// meta.lastUpdated set (other meta members kept), members in order with
// resourceType, id and meta first.
func withMeta(body []byte, id string, version int, updated time.Time) ([]byte, error) {
	ms, err := members(body)
	if err != nil {
		return nil, err
	}
	var rt json.RawMessage
	var meta []member
	rest := make([]member, 0, len(ms))
	for _, m := range ms {
		switch m.key {
		case "resourceType":
			rt = m.value
		case "id":
		case "meta":
			if meta, err = members(m.value); err != nil {
				return nil, errors.New("meta is not a JSON object")
			}
		default:
			rest = append(rest, m)
		}
	}
	if rt == nil {
		return nil, errors.New("the body has no resourceType")
	}
	keep := meta[:0]
	for _, m := range meta {
		if m.key != "versionId" && m.key != "lastUpdated" {
			keep = append(keep, m)
		}
	}
	vid, _ := json.Marshal(strconv.Itoa(version))
	lu, _ := json.Marshal(updated.UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	meta = append([]member{{"versionId", vid}, {"lastUpdated", lu}}, keep...)
	idj, _ := json.Marshal(id)
	out := append([]member{{"resourceType", rt}, {"id", idj}, {"meta", encodeMembers(meta)}}, rest...)
	return encodeMembers(out), nil
}

// withoutVersionMeta drops meta.versionId and meta.lastUpdated from a body
// a client sent (the server sets them) and an empty meta with them.
func withoutVersionMeta(body []byte) ([]byte, error) {
	ms, err := members(body)
	if err != nil {
		return nil, err
	}
	out := ms[:0]
	for _, m := range ms {
		if m.key == "meta" {
			meta, err := members(m.value)
			if err != nil {
				return nil, errors.New("meta is not a JSON object")
			}
			keep := meta[:0]
			for _, mm := range meta {
				if mm.key != "versionId" && mm.key != "lastUpdated" {
					keep = append(keep, mm)
				}
			}
			if len(keep) == 0 {
				continue
			}
			m.value = encodeMembers(keep)
		}
		out = append(out, m)
	}
	return encodeMembers(out), nil
}

// etag is the weak ETag of a version.
func etag(version int) string { return `W/"` + strconv.Itoa(version) + `"` }

// parseETag reads W/"n" (or "n") as version n.
func parseETag(s string) (int, bool) {
	s = trimPrefix(s, "W/")
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	n, err := strconv.Atoi(s[1 : len(s)-1])
	return n, err == nil && n > 0
}

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
