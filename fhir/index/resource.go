package index

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// Resource returns the search fields of a resource mapping stored (a
// Patient, Encounter, ServiceRequest or Observation; any other type gets
// its identifiers, subject and status), read from its JSON:
//
//   - Subject: a Patient's own reference; the others' subject reference;
//   - Status: status;
//   - the date: Encounter.period, ServiceRequest.authoredOn,
//     Observation.effective[x] (dateTime, Period or instant), each as the
//     range its precision stands for (2026-11-03 is the whole day; a time
//     without seconds' fraction is that second), a Period without start or
//     end open on that side;
//   - Tokens: its identifiers (system and value), at most
//     fhir.MaxIndexValues.
//
// Nothing else of it (names, values, notes) is kept. Only JSON that does
// not read is an error.
func Resource(typ string, body []byte) (store.ResourceIndex, error) {
	var r struct {
		ID         string `json:"id"`
		Status     string `json:"status"`
		Identifier []struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
		Subject *struct {
			Reference string `json:"reference"`
		} `json:"subject"`
		Period            *period `json:"period"`
		AuthoredOn        string  `json:"authoredOn"`
		EffectiveDateTime string  `json:"effectiveDateTime"`
		EffectivePeriod   *period `json:"effectivePeriod"`
		EffectiveInstant  string  `json:"effectiveInstant"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return store.ResourceIndex{}, fmt.Errorf("indexing a %s: %w", typ, err)
	}
	ix := store.ResourceIndex{Status: r.Status}
	switch {
	case typ == "Patient" && r.ID != "":
		ix.Subject = "Patient/" + r.ID
	case r.Subject != nil:
		ix.Subject = reference(r.Subject.Reference)
	}
	for _, id := range r.Identifier {
		if id.Value == "" || len(ix.Tokens) == fhir.MaxIndexValues {
			continue
		}
		ix.Tokens = append(ix.Tokens, store.IndexToken{Param: store.TokenIdentifier, System: id.System, Code: id.Value})
	}
	// A date that does not read (which the validator at the door keeps
	// out) leaves the resource undated rather than unstored: it is then
	// found by every search but a date's.
	switch typ {
	case "Encounter":
		_ = periodDate(&ix, r.Period)
	case "ServiceRequest":
		_ = valueDate(&ix, r.AuthoredOn)
	case "Observation":
		switch {
		case r.EffectiveDateTime != "":
			_ = valueDate(&ix, r.EffectiveDateTime)
		case r.EffectiveInstant != "":
			_ = valueDate(&ix, r.EffectiveInstant)
		default:
			_ = periodDate(&ix, r.EffectivePeriod)
		}
	}
	return ix, nil
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// reference is a literal reference as "Type/id": an absolute one keeps
// its last two segments; a contained, urn: or malformed one is "".
func reference(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	if strings.Contains(ref, "://") {
		parts := strings.Split(ref, "/")
		ref = parts[len(parts)-2] + "/" + parts[len(parts)-1]
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || typ == "" || id == "" || strings.Contains(id, "/") || typ[0] < 'A' || typ[0] > 'Z' {
		return ""
	}
	return ref
}

// valueDate dates ix by one date, dateTime or instant; "" leaves it
// undated.
func valueDate(ix *store.ResourceIndex, v string) error {
	if v == "" {
		return nil
	}
	from, to, err := valueRange(v)
	if err != nil {
		return err
	}
	ix.Dated, ix.From, ix.To = true, from, to
	return nil
}

// periodDate dates ix by a Period: from its start's range's start (or
// store.DateOpenStart) to its end's range's end (or store.DateOpenEnd,
// ongoing). No Period, or one with neither, leaves it undated.
func periodDate(ix *store.ResourceIndex, p *period) error {
	if p == nil || (p.Start == "" && p.End == "") {
		return nil
	}
	from, to := store.DateOpenStart, store.DateOpenEnd
	if p.Start != "" {
		f, _, err := valueRange(p.Start)
		if err != nil {
			return fmt.Errorf("period.start: %w", err)
		}
		from = f
	}
	if p.End != "" {
		_, t, err := valueRange(p.End)
		if err != nil {
			return fmt.Errorf("period.end: %w", err)
		}
		to = t
	}
	if !to.After(from) {
		return fmt.Errorf("the period ends before it starts")
	}
	ix.Dated, ix.From, ix.To = true, from, to
	return nil
}

// valueRange is the range [from, to) a FHIR date, dateTime or instant
// stands for at its precision; one without a zone is read as UTC.
func valueRange(v string) (from, to time.Time, err error) {
	for _, l := range []struct {
		layout string
		next   func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
	} {
		if len(v) == len(l.layout) {
			t, err := time.Parse(l.layout, v)
			if err != nil {
				return from, to, fmt.Errorf("%q is not a date", v)
			}
			return t, l.next(t), nil
		}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return from, to, fmt.Errorf("%q is not a dateTime", v)
	}
	unit := time.Second
	if i := strings.IndexByte(v, '.'); i >= 0 {
		for j := i + 1; j < len(v) && v[j] >= '0' && v[j] <= '9' && unit > time.Nanosecond; j++ {
			unit /= 10
		}
	}
	return t.UTC(), t.UTC().Add(unit), nil
}

// Opener opens sealed records (*secure.KeyRing).
type Opener interface {
	Open(sealed, aad []byte) ([]byte, error)
}

// Backfiller is a store that indexes the resources stored without index
// rows (store.ResourceSearch); both backends are one.
type Backfiller interface {
	BackfillResourceIndex(ctx context.Context, index func(store.SealedResource) (store.ResourceIndex, bool)) (indexed, left int, err error)
}

// Backfill gives the resources stored before the resource index existed
// (and any stored without an index) their index rows: each is opened with
// keys (its associated data "Type/id"), indexed as Resource does and
// written, in batches. One that cannot be opened or read is left for a
// later run and counted in left. Call it once at start; running it again
// finds only those left.
func Backfill(ctx context.Context, st Backfiller, keys Opener) (indexed, left int, err error) {
	indexed, left, err = st.BackfillResourceIndex(ctx, func(r store.SealedResource) (store.ResourceIndex, bool) {
		body, err := keys.Open(r.Sealed, []byte(r.Type+"/"+r.ID))
		if err != nil {
			return store.ResourceIndex{}, false
		}
		ix, err := Resource(r.Type, body)
		return ix, err == nil
	})
	if err != nil {
		return indexed, left, fmt.Errorf("indexing the resources stored before the resource index: %w", err)
	}
	return indexed, left, nil
}
