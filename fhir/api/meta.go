package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxDepth bounds how deep a resource body may nest.
const maxDepth = 64

// member is one member of a JSON object, in document order.
type member struct {
	key   string
	value json.RawMessage
}

// members reads a JSON object's members in order, each value a slice of
// b (not copied), appended to dst (which may be a caller's array on its
// stack). It only finds where members start and end, so it is cheap: it
// runs for every resource an answer carries.
func members(dst []member, b []byte) ([]member, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errors.New("the body is not a JSON object")
	}
	i = skipSpace(b, i+1)
	out := dst[:0]
	if i < len(b) && b[i] == '}' {
		if skipSpace(b, i+1) != len(b) {
			return nil, errors.New("the body holds more than one JSON value")
		}
		return out, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, errors.New("the body is not valid JSON")
		}
		end, err := endOfString(b, i)
		if err != nil {
			return nil, err
		}
		key := keyString(b[i+1 : end-1])
		// an escape, or bytes that are not UTF-8 (which encoding/json
		// reads as U+FFFD each): the key is what json.Unmarshal makes of it
		if bytes.IndexByte(b[i:end], '\\') >= 0 || !utf8.Valid(b[i+1:end-1]) {
			var unquoted string // its own variable: &key would put every key on the heap
			if err := json.Unmarshal(b[i:end], &unquoted); err != nil {
				return nil, errors.New("the body is not valid JSON")
			}
			key = unquoted
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, errors.New("the body is not valid JSON")
		}
		start := skipSpace(b, i+1)
		stop, err := endOfValue(b, start)
		if err != nil {
			return nil, err
		}
		out = append(out, member{key, json.RawMessage(b[start:stop:stop])})
		i = skipSpace(b, stop)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			if skipSpace(b, i+1) != len(b) {
				return nil, errors.New("the body holds more than one JSON value")
			}
			return out, nil
		}
		return nil, errors.New("the body is not valid JSON")
	}
}

// keyString is k as a string: the keys of a Communication and its meta
// without a copy (a switch on string(k) does not allocate), any other key
// copied.
func keyString(k []byte) string {
	switch string(k) {
	case "resourceType":
		return "resourceType"
	case "id":
		return "id"
	case "meta":
		return "meta"
	case "versionId":
		return "versionId"
	case "lastUpdated":
		return "lastUpdated"
	case "identifier":
		return "identifier"
	case "status":
		return "status"
	case "priority":
		return "priority"
	case "category":
		return "category"
	case "subject":
		return "subject"
	case "encounter":
		return "encounter"
	case "recipient":
		return "recipient"
	case "sender":
		return "sender"
	case "sent":
		return "sent"
	case "received":
		return "received"
	case "payload":
		return "payload"
	case "partOf":
		return "partOf"
	case "inResponseTo":
		return "inResponseTo"
	case "basedOn":
		return "basedOn"
	case "about":
		return "about"
	}
	return string(k)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfString is the index just past the string that starts at b[i].
func endOfString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("the body is not valid JSON: an unterminated string")
}

// endOfValue is the index just past the JSON value that starts at b[i]:
// brackets balanced outside strings; a scalar runs to the next , } or ].
func endOfValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("the body is not valid JSON")
	}
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := endOfString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("the body is not valid JSON: unbalanced brackets")
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
		j++
	}
	if j == i || !json.Valid(b[i:j]) {
		return 0, errors.New("the body is not valid JSON")
	}
	return j, nil
}

func encodeMembers(ms []member) []byte {
	n := 2
	for _, m := range ms {
		n += len(m.key) + len(m.value) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMember(b, m)
	}
	return append(b, '}')
}

// appendMember appends "key":value.
func appendMember(b []byte, m member) []byte {
	if plainKey(m.key) {
		b = append(b, '"')
		b = append(b, m.key...)
		b = append(b, '"')
	} else {
		k, _ := json.Marshal(m.key)
		b = append(b, k...)
	}
	b = append(b, ':')
	return append(b, m.value...)
}

// appendJSONString appends s as json.Marshal writes it.
func appendJSONString(b []byte, s string) []byte {
	if plainKey(s) && !strings.ContainsAny(s, "<>&") {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	k, _ := json.Marshal(s)
	return append(b, k...)
}

// plainKey reports whether a key needs no escaping (FHIR's all do).
func plainKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
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
	var top, inMeta [16]member // a Communication has fewer: no allocation
	ms, err := members(top[:0], body)
	if err != nil {
		return nil, err
	}
	var rt json.RawMessage
	var meta []member
	for _, m := range ms {
		switch m.key {
		case "resourceType":
			rt = m.value
		case "meta":
			if meta, err = members(inMeta[:0], m.value); err != nil {
				return nil, errors.New("meta is not a JSON object")
			}
		}
	}
	if rt == nil {
		return nil, errors.New("the body has no resourceType")
	}
	// Written out directly: a search page opens twenty of these.
	out := make([]byte, 0, len(body)+96)
	out = append(out, `{"resourceType":`...)
	out = append(out, rt...)
	out = append(out, `,"id":`...)
	out = appendJSONString(out, id)
	out = append(out, `,"meta":{"versionId":"`...)
	out = strconv.AppendInt(out, int64(version), 10)
	out = append(out, `","lastUpdated":"`...)
	out = updated.UTC().AppendFormat(out, "2006-01-02T15:04:05.000000Z07:00")
	out = append(out, '"')
	for _, m := range meta {
		if m.key != "versionId" && m.key != "lastUpdated" {
			out = appendMember(append(out, ','), m)
		}
	}
	out = append(out, '}')
	for _, m := range ms {
		switch m.key {
		case "resourceType", "id", "meta":
		default:
			out = appendMember(append(out, ','), m)
		}
	}
	return append(out, '}'), nil
}

// withoutVersionMeta drops meta.versionId and meta.lastUpdated from a body
// a client sent (the server sets them) and an empty meta with them.
func withoutVersionMeta(body []byte) ([]byte, error) {
	ms, err := members(nil, body)
	if err != nil {
		return nil, err
	}
	out := ms[:0]
	for _, m := range ms {
		if m.key == "meta" {
			meta, err := members(nil, m.value)
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
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	n, err := strconv.Atoi(s[1 : len(s)-1])
	return n, err == nil && n > 0
}

// redactedLabel marks a resource some elements were left out of (HL7 v3
// ObservationValue REDACTED), in meta.security.
const redactedLabel = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED"}`

// redact keeps only the top-level elements named in keep and labels what
// is left REDACTED; with keep nil it returns body as it is.
func redact(body []byte, keep []string) ([]byte, error) {
	if keep == nil {
		return body, nil
	}
	ms, err := members(nil, body)
	if err != nil {
		return nil, err
	}
	out := ms[:0]
	for _, m := range ms {
		if !slices.Contains(keep, m.key) {
			continue
		}
		if m.key == "meta" {
			meta, err := members(nil, m.value)
			if err != nil {
				return nil, err
			}
			labelled := false
			for i, mm := range meta {
				if mm.key == "security" && len(mm.value) > 1 && mm.value[0] == '[' {
					v := append([]byte(redactedLabel+","), mm.value[1:]...)
					meta[i].value = append([]byte{'['}, v...)
					labelled = true
				}
			}
			if !labelled {
				meta = append(meta, member{"security", json.RawMessage("[" + redactedLabel + "]")})
			}
			m.value = encodeMembers(meta)
		}
		out = append(out, m)
	}
	return encodeMembers(out), nil
}
