package fhir

import (
	"fmt"
	"strings"
	"time"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Token is one coded or identifying value a resource is searched by: a
// system (empty when it has none) and a code or value.
type Token struct {
	System string
	Code   string
}

// CommunicationIndex is what a Communication is searched by: the values
// of the R4 search parameters, references as "Type/id".
type CommunicationIndex struct {
	Status       string
	Priority     string
	Subject      string
	Encounter    string
	Sender       string
	Recipients   []string
	PartOf       []string
	BasedOn      []string
	InResponseTo []string
	Identifiers  []Token
	Categories   []Token
	Sent         time.Time // zero when absent
	Received     time.Time
}

// Limits of what one Communication puts in the index.
const (
	MaxIndexValues = 64  // per parameter
	MaxIndexBytes  = 512 // per value
)

// IndexCommunication reads the search values of c. Only literal
// references are indexed; a reference by identifier or display only is
// not (the parameter is then :missing).
func IndexCommunication(c *Communication) (CommunicationIndex, error) {
	var ix CommunicationIndex
	var err error
	ix.Status = c.Status.Code()
	if c.Priority != nil {
		ix.Priority = c.Priority.Code()
	}
	ix.Subject, ix.Encounter, ix.Sender = literal(c.Subject), literal(c.Encounter), literal(c.Sender)
	refs := func(param string, rs []fhirmodel.Reference) ([]string, error) {
		var out []string
		for i := range rs {
			if r := literal(&rs[i]); r != "" {
				out = append(out, r)
			}
		}
		return out, limit(param, len(out))
	}
	if ix.Recipients, err = refs("recipient", c.Recipient); err != nil {
		return ix, err
	}
	if ix.PartOf, err = refs("part-of", c.PartOf); err != nil {
		return ix, err
	}
	if ix.BasedOn, err = refs("based-on", c.BasedOn); err != nil {
		return ix, err
	}
	if ix.InResponseTo, err = refs("in-response-to", c.InResponseTo); err != nil {
		return ix, err
	}
	for _, id := range c.Identifier {
		if id.Value != nil {
			ix.Identifiers = append(ix.Identifiers, Token{System: deref(id.System), Code: *id.Value})
		}
	}
	for _, cc := range c.Category {
		for _, cd := range cc.Coding {
			if cd.Code != nil {
				ix.Categories = append(ix.Categories, Token{System: deref(cd.System), Code: *cd.Code})
			}
		}
	}
	if err := limit("identifier", len(ix.Identifiers)); err != nil {
		return ix, err
	}
	if err := limit("category", len(ix.Categories)); err != nil {
		return ix, err
	}
	for _, v := range append(append(append(append([]string{ix.Subject, ix.Encounter, ix.Sender}, ix.Recipients...), ix.PartOf...), ix.BasedOn...), ix.InResponseTo...) {
		if len(v) > MaxIndexBytes {
			return ix, fmt.Errorf("a reference of %d bytes (at most %d)", len(v), MaxIndexBytes)
		}
	}
	for _, tk := range append(append([]Token{}, ix.Identifiers...), ix.Categories...) {
		if len(tk.System) > MaxIndexBytes || len(tk.Code) > MaxIndexBytes {
			return ix, fmt.Errorf("an identifier or category longer than %d bytes", MaxIndexBytes)
		}
	}
	if ix.Sent, err = instant("sent", c.Sent); err != nil {
		return ix, err
	}
	if ix.Received, err = instant("received", c.Received); err != nil {
		return ix, err
	}
	return ix, nil
}

func limit(param string, n int) error {
	if n > MaxIndexValues {
		return fmt.Errorf("the Communication's %s has %d values (at most %d are indexed)", param, n, MaxIndexValues)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// literal is a literal reference as "Type/id" (a versioned reference
// loses its version), or "" when r is not one.
func literal(r *fhirmodel.Reference) string {
	if r == nil || r.Reference == nil {
		return ""
	}
	ref := *r.Reference
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	if strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return ""
	}
	if strings.Contains(ref, "://") { // absolute: keep Type/id of its end
		parts := strings.Split(ref, "/")
		if len(parts) < 2 {
			return ""
		}
		ref = parts[len(parts)-2] + "/" + parts[len(parts)-1]
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || typ == "" || id == "" || strings.Contains(id, "/") || typ[0] < 'A' || typ[0] > 'Z' {
		return ""
	}
	return ref
}

// instant reads a FHIR dateTime as the start of the time it names; a
// date without a time is midnight UTC.
func instant(field string, v *string) (time.Time, error) {
	if v == nil || *v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, *v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("the Communication's %s is not a dateTime", field)
}
