package fhir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Resource is one resource ready to leave carebridge: its type, its id and
// the struct that serialises it (a samply model or one of this package's
// types).
type Resource struct {
	Type string
	ID   string
	Body any
}

// Reference is the relative reference "Type/id".
func (r Resource) Reference() string { return r.Type + "/" + r.ID }

// MarshalJSON serialises the body. Call it directly rather than through
// json.Marshal, which would copy and re-check the output: the models write
// compact JSON already.
func (r Resource) MarshalJSON() ([]byte, error) {
	b, fast, err := encodeFast(r.Body)
	if fast {
		if err != nil {
			return nil, fmt.Errorf("serialising %s/%s: %w", r.Type, r.ID, err)
		}
		return b, nil
	}
	if m, ok := r.Body.(json.Marshaler); ok {
		b, err = m.MarshalJSON()
	} else {
		b, err = json.Marshal(r.Body)
	}
	if err != nil {
		return nil, fmt.Errorf("serialising %s/%s: %w", r.Type, r.ID, err)
	}
	return b, nil
}

// ID derives a resource id from the parts that identify a thing in its
// source system (say, a patient identifier's system and value). The same
// parts always give the same id; the parts cannot be read back from it, so an
// id never exposes a medical record number. The id has the shape of a UUID
// (version 8, "custom": the first 122 bits of SHA-256), so it also works in
// urn:uuid: full URLs.
func ID(kind string, parts ...string) string {
	// Hash kind NUL part NUL part …; on the stack when it is small.
	var stack [256]byte
	in := append(stack[:0], kind...)
	for _, p := range parts {
		in = append(in, 0)
		in = append(in, p...)
	}
	sum := sha256.Sum256(in)
	b := sum[:]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
