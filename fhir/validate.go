package fhir

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// MaxResourceBytes bounds what the validator reads: a larger resource is
// refused before it is parsed.
const MaxResourceBytes = 4 << 20

// maxDepth bounds the nesting of a resource: R4 resources carbridge emits
// nest fewer than 10 levels; the official examples fewer than 20.
const maxDepth = 64

// Validator checks serialised resources against FHIR R4 strictly: unknown
// elements, wrong types, bad codes of required bindings, missing required
// elements, choice elements with more than one value, malformed dates and
// references. It is safe for concurrent use.
type Validator struct {
	um    *jsonformat.Unmarshaller
	valid *validCache
}

// validCache remembers the SHA-256 of resources that validated, so that a
// resource sent again unchanged (the same Practitioner, Location or Patient
// in every message about them) is not parsed again: validity depends on
// the bytes alone. It holds at most validCacheSize digests and forgets the
// oldest first.
type validCache struct {
	mu    sync.Mutex
	seen  map[[sha256.Size]byte]struct{}
	order [][sha256.Size]byte
	next  int
}

const validCacheSize = 8192

func (c *validCache) has(h [sha256.Size]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[h]
	return ok
}

func (c *validCache) add(h [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[h]; ok {
		return
	}
	if len(c.order) < validCacheSize {
		c.order = append(c.order, h)
	} else {
		delete(c.seen, c.order[c.next])
		c.order[c.next] = h
		c.next = (c.next + 1) % validCacheSize
	}
	c.seen[h] = struct{}{}
}

// NewValidator returns the strict R4 validator. Dates without a time zone are
// read as UTC.
func NewValidator() (*Validator, error) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("creating the FHIR R4 validator: %w", err)
	}
	um.MaxNestingDepth = maxDepth
	return &Validator{um: um, valid: &validCache{seen: map[[sha256.Size]byte]struct{}{}}}, nil
}

// ValidationError says why a resource is not valid R4. Error() names the
// resource type only; Diagnostics is the validator's own text, which may
// quote the resource's content and so goes only to an authenticated reader,
// never into logs.
type ValidationError struct {
	ResourceType string
	Diagnostics  string
}

func (e *ValidationError) Error() string {
	if e.ResourceType == "" {
		return "resource is not valid FHIR R4"
	}
	return e.ResourceType + " is not valid FHIR R4"
}

// ErrTooLarge is returned for a resource over MaxResourceBytes.
var ErrTooLarge = errors.New("resource is larger than the validator accepts")

// Validate checks one serialised resource. A problem with the resource is a
// *ValidationError; ErrTooLarge refuses oversized input.
func (v *Validator) Validate(resource []byte) error {
	if len(resource) > MaxResourceBytes {
		return ErrTooLarge
	}
	h := sha256.Sum256(resource)
	if v.valid.has(h) {
		return nil
	}
	if _, err := v.um.Unmarshal(resource); err != nil {
		return &ValidationError{ResourceType: resourceType(resource), Diagnostics: describe(err)}
	}
	v.valid.add(h)
	return nil
}

// ValidateResource serialises r and validates it, returning the JSON.
func (v *Validator) ValidateResource(r Resource) ([]byte, error) {
	b, err := r.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("serialising %s: %w", r.Type, err)
	}
	return b, v.Validate(b)
}

// Serialized is a resource with its JSON.
type Serialized struct {
	Resource
	JSON []byte
}

// Gate is the door out: it serialises and validates each resource and
// returns the valid ones, in order. Each resource that fails is left out and
// recorded in out as an error naming the resource; the validator's text,
// which may quote content, goes to the issue's diagnostics only.
func (v *Validator) Gate(resources []Resource, out *Outcome) []Serialized {
	kept := make([]Serialized, 0, len(resources))
	for _, r := range resources {
		b, err := v.ValidateResource(r)
		if err != nil {
			is := Issue{Severity: SeverityError, Code: CodeInvalid, Location: r.Reference(),
				Details: "the mapped " + r.Type + " is not valid FHIR R4; it is not sent on"}
			var ve *ValidationError
			if errors.As(err, &ve) {
				is.Diagnostics = ve.Diagnostics
			} else if errors.Is(err, ErrTooLarge) {
				is.Details = "the mapped " + r.Type + " is larger than the validator accepts; it is not sent on"
			}
			*out = append(*out, is)
			continue
		}
		kept = append(kept, Serialized{Resource: r, JSON: b})
	}
	return kept
}

// resourceType reads the resourceType member, if it is a plain FHIR type name.
func resourceType(b []byte) string {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(b, &head) != nil || len(head.ResourceType) > 64 {
		return ""
	}
	for _, c := range []byte(head.ResourceType) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return ""
		}
	}
	return head.ResourceType
}

// Compact returns b without insignificant whitespace, for golden comparisons.
func Compact(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}
