package store

import (
	"slices"
	"strings"
	"time"
)

// SQL is the WHERE clause (without the keyword; "TRUE" when q constrains
// nothing) and ORDER BY clause of q over "audit a", with the WHERE
// clause's arguments. Entities and patients are matched against a
// record's entities and its patient, what its AuditEvent lists as
// entity.what, by the dialect's AuditEntityIn. An empty event id matches
// no record. Newest first is by time, then chain and sequence number,
// each descending; oldest first is the reverse. A time bound whose comparator is not one of GE,
// GT, LE, LT is an error.
func (q AuditQuery) SQL(d SQLDialect) (where, order string, args []any, err error) {
	var conds []string
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
	in := func(col string, vs []string) {
		if len(vs) > 0 {
			conds = append(conds, col+" IN ("+list(vs)+")")
		}
	}
	if len(q.EventIDs) > 0 {
		// The term the partial index audit_event_id is defined by, so
		// that the planner may use it.
		conds = append(conds, "a.event_id IN ("+list(q.EventIDs)+") AND a.event_id <> ''")
	}
	in("a.action", q.Actions)
	if len(q.Outcomes) > 0 {
		ps := make([]string, len(q.Outcomes))
		for i, o := range q.Outcomes {
			ps[i] = arg(int64(o))
		}
		conds = append(conds, "a.outcome IN ("+strings.Join(ps, ", ")+")")
	}
	if len(q.Patients) > 0 {
		// The record's patient, or a Patient it acted on (a refused read
		// of one names it as an entity only): AuditEntityIn matches both.
		conds = append(conds, d.AuditEntityIn(list(q.Patients)))
	}
	in("a.actor_id", q.Actors)
	if len(q.Entities) > 0 {
		conds = append(conds, d.AuditEntityIn(list(q.Entities)))
	}
	at, err := timeConds("a.at", q.At, func(t time.Time) string { return arg(d.Time(t)) })
	if err != nil {
		return "", "", nil, err
	}
	where = allOf(append(conds, at...))
	order = "a.at DESC, a.chain DESC, a.seq DESC"
	if q.Oldest {
		order = "a.at, a.chain, a.seq"
	}
	return where, order, args, nil
}

// Page is q's Offset and Limit made safe: offset at least 0, limit
// between 0 and MaxSearchPage.
func (q AuditQuery) Page() (offset, limit int) {
	return max(q.Offset, 0), min(max(q.Limit, 0), MaxSearchPage)
}

// AuditEntities is what a backend indexes r under for AuditQuery.Entities
// and Patients (SQLite's audit_entity rows): r's entities and its
// patient, each once, empty ones left out.
func AuditEntities(r AuditRecord) []string {
	out := make([]string, 0, len(r.Entities)+1)
	for _, e := range append(r.Entities[:len(r.Entities):len(r.Entities)], r.Patient) {
		if e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}
