package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// IndexedType reports whether resources of typ are searchable, and so
// have index rows: the Patient, Encounter, ServiceRequest and
// Observation mapping stores. The others (Practitioner, Location,
// Device …) are read by id only, and writing them costs no index rows.
func IndexedType(typ string) bool {
	switch typ {
	case "Patient", "Encounter", "ServiceRequest", "Observation":
		return true
	}
	return false
}

// The open ends of a resource's date range: a Period without a start
// begins at DateOpenStart, one without an end (ongoing) ends at
// DateOpenEnd. Both backends keep them as they keep any time.
var (
	DateOpenStart = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	DateOpenEnd   = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// ResourceIndex is what a mapped resource (Patient, Encounter,
// ServiceRequest, Observation) is searched by, PHI-minimal: references,
// codes, a date range and its identifiers, never names or values.
type ResourceIndex struct {
	// Subject is the Patient it is about, "Patient/id" (a Patient's own
	// reference), or another reference, or "".
	Subject string
	// Status is its status code, or "".
	Status string
	// Dated says whether it has a date (Encounter.period,
	// ServiceRequest.authoredOn, Observation.effective[x]); the date is
	// the range [From, To) its precision stands for, with DateOpenStart
	// and DateOpenEnd for a missing start or end.
	Dated    bool
	From, To time.Time
	// Tokens are its identifiers (Param TokenIdentifier).
	Tokens []IndexToken
}

// DatePrefix is how a date search compares (https://hl7.org/fhir/R4/search.html#prefix).
type DatePrefix string

// Prefixes of a DateMatch. A resource's date is a range [From, To); the
// value searched for is the range [Start, End) its precision stands for.
const (
	DateEq DatePrefix = "eq" // the resource's range lies within the value's
	DateNe DatePrefix = "ne" // it does not
	DateGt DatePrefix = "gt" // it reaches after the value: To > End
	DateLt DatePrefix = "lt" // it reaches before the value: From < Start
	DateGe DatePrefix = "ge" // it reaches into the value or after: To > Start
	DateLe DatePrefix = "le" // it reaches into the value or before: From < End
	DateSa DatePrefix = "sa" // it starts after the value: From >= End
	DateEb DatePrefix = "eb" // it ends before the value: To <= Start
)

// DateMatch constrains a resource's date; one without a date matches
// none.
type DateMatch struct {
	Prefix     DatePrefix
	Start, End time.Time
}

// ResourceSort orders a resource search; every order ends with the id.
type ResourceSort int

// Orders of a resource search.
const (
	ResourceSortByID ResourceSort = iota
	ResourceSortByDate
	ResourceSortByDateDesc
)

// ResourceQuery is a search over the index of one type of mapped
// resource. Every constraint given must hold.
type ResourceQuery struct {
	Type    string
	ID      TokenMatch
	Subject TokenMatch // references; Missing: no subject
	Status  TokenMatch
	Tokens  []TokenFilter // TokenIdentifier
	Dates   []DateMatch
	// Limited keeps to the resources whose Subject is the subject of a
	// Communication addressed to one of SeenBy (none: nothing), the
	// minimum necessary of a user limited to their recipients.
	Limited bool
	SeenBy  []string
	Sort    ResourceSort
	Offset  int
	Limit   int // 0 or less: none are returned (a count only); capped at MaxSearchPage
}

// ResourceSearch finds the resources mapping stored by their index, and
// gives those stored before it its rows.
type ResourceSearch interface {
	// SearchResources returns the page of matching resources that q's
	// Offset and Limit select, in q's order (Index left nil).
	SearchResources(ctx context.Context, q ResourceQuery) ([]SealedResource, error)
	// CountResources counts every resource that matches q (Sort, Offset
	// and Limit are ignored).
	CountResources(ctx context.Context, q ResourceQuery) (int, error)
	// BackfillResourceIndex indexes, in batches, the resources that have
	// no index rows: those stored before the index existed and those
	// stored without one (SealedResource.Index nil). index opens and
	// indexes one; false leaves it for a later run (it cannot be opened
	// now). It returns how many it indexed and how many it left; running
	// it again finds only those left.
	BackfillResourceIndex(ctx context.Context, index func(SealedResource) (ResourceIndex, bool)) (indexed, left int, err error)
}

// Validate reports what SQL cannot build: no type, or an unknown date
// prefix.
func (q ResourceQuery) Validate() error {
	if q.Type == "" {
		return fmt.Errorf("a resource search needs a type")
	}
	for _, d := range q.Dates {
		switch d.Prefix {
		case DateEq, DateNe, DateGt, DateLt, DateGe, DateLe, DateSa, DateEb:
		default:
			return fmt.Errorf("unknown date prefix %q", d.Prefix)
		}
	}
	return nil
}

// Page is q's Offset and Limit made safe: offset at least 0, limit
// between 0 and MaxSearchPage.
func (q ResourceQuery) Page() (offset, limit int) {
	return max(q.Offset, 0), min(max(q.Limit, 0), MaxSearchPage)
}

// SQL is the WHERE clause (without the keyword) and ORDER BY clause of q
// over "resource_index i" (type, id, subject, status, date_lo, date_hi;
// the dates NULL when it has none), with the WHERE clause's arguments.
// Tokens are matched through resource_token (type, id, param, system,
// code), SeenBy through communication and delivery. Call Validate first:
// SQL panics on an unknown prefix.
func (q ResourceQuery) SQL(d SQLDialect) (where, order string, args []any) {
	arg := func(v any) string {
		args = append(args, v)
		return d.Placeholder(len(args))
	}
	list := func(vs []string) string {
		ps := make([]string, len(vs))
		for i, v := range vs {
			ps[i] = arg(v)
		}
		return strings.Join(ps, ", ")
	}
	conds := []string{"i.type = " + arg(q.Type)}
	column := func(col string, m TokenMatch) { conds = append(conds, columnConds(col, m, list)...) }
	column("i.id", q.ID)
	column("i.subject", q.Subject)
	column("i.status", q.Status)
	conds = append(conds, tokenConds("SELECT 1 FROM resource_token t WHERE t.type = i.type AND t.id = i.id AND t.param = ", q.Tokens, arg)...)
	// A resource without a date has NULL bounds, which compare to
	// nothing: it matches no date constraint.
	for _, m := range q.Dates {
		// Each argument is taken where it is written: SQLite's ? are
		// positional.
		start := func() string { return arg(d.Time(m.Start)) }
		end := func() string { return arg(d.Time(m.End)) }
		var c string
		switch m.Prefix {
		case DateEq:
			c = "i.date_lo >= " + start()
			c += " AND i.date_hi <= " + end()
		case DateNe:
			c = "(i.date_lo < " + start()
			c += " OR i.date_hi > " + end() + ")"
		case DateGt:
			c = "i.date_hi > " + end()
		case DateLt:
			c = "i.date_lo < " + start()
		case DateGe:
			c = "i.date_hi > " + start()
		case DateLe:
			c = "i.date_lo < " + end()
		case DateSa:
			c = "i.date_lo >= " + end()
		case DateEb:
			c = "i.date_hi <= " + start()
		default:
			panic(fmt.Sprintf("store: date prefix %q", m.Prefix))
		}
		conds = append(conds, c)
	}
	if q.Limited {
		if len(q.SeenBy) == 0 {
			conds = append(conds, "1 = 0")
		} else {
			conds = append(conds, "i.subject <> '' AND EXISTS (SELECT 1 FROM communication c JOIN delivery e ON e.communication_id = c.id "+
				"WHERE c.subject = i.subject AND e.recipient IN ("+list(q.SeenBy)+"))")
		}
	}
	// Undated resources come last either way. Newest first is written
	// as the index resource_index_subject_date orders it (migration 25),
	// so that a patient's newest page is read off the index rather than
	// sorted from all of the patient's resources.
	switch q.Sort {
	case ResourceSortByDate:
		order = "i.date_lo ASC NULLS LAST, i.id"
	case ResourceSortByDateDesc:
		order = "i.date_lo DESC NULLS LAST, i.id DESC"
	default:
		order = "i.id"
	}
	return strings.Join(conds, " AND "), order, args
}
