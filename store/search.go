package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// TokenMatch constrains one searchable field of a record: it must equal
// one of Any (when Any is not empty), none of Not, and be empty or not as
// Missing says (when Missing is set).
type TokenMatch struct {
	Any     []string
	Not     []string
	Missing *bool
}

// Empty reports whether m constrains nothing.
func (m TokenMatch) Empty() bool { return len(m.Any) == 0 && len(m.Not) == 0 && m.Missing == nil }

// Comparator is how a time bound compares.
type Comparator string

// Comparators of a TimeBound.
const (
	GE Comparator = ">="
	GT Comparator = ">"
	LE Comparator = "<="
	LT Comparator = "<"
)

// TimeBound is one bound on a time: the field Op At.
type TimeBound struct {
	Op Comparator
	At time.Time
}

// CommunicationSort orders search results; every order ends with the id,
// so that pages are stable.
type CommunicationSort int

// Orders of a Communication search.
const (
	SortByID CommunicationSort = iota
	SortBySent
	SortBySentDesc
	SortByPriority     // routine, urgent, asap, stat
	SortByPriorityDesc // stat first
)

// MaxSearchPage is the most rows one search returns: a page of 1,000 and
// one more, which tells the caller whether a next page exists.
const MaxSearchPage = 1001

// CommunicationQuery is a search over the PHI-free fields of
// Communications. Every constraint given must hold.
type CommunicationQuery struct {
	ID        TokenMatch
	Status    TokenMatch
	Priority  TokenMatch
	Subject   TokenMatch
	Encounter TokenMatch
	Sender    TokenMatch
	Recipient TokenMatch // any of the recipients
	// SeenBy, when not nil, keeps the Communications addressed to one of
	// these references or sent by one of them (a user's, the minimum
	// necessary); empty and not nil, none.
	SeenBy   []string
	Tokens   []TokenFilter
	Sent     []TimeBound
	Received []TimeBound // a Communication not received matches no bound
	// ReceivedMissing, when set, asks for those not received (true) or
	// received (false); SentMissing likewise for sent (a Communication
	// written without sent is stored with the zero time, which no bound
	// on Sent matches).
	ReceivedMissing *bool
	SentMissing     *bool
	// PatientMissing, when set, asks for those whose subject is not a
	// Patient, or none (true), or is one (false).
	PatientMissing *bool
	Sort           CommunicationSort
	Offset         int
	Limit          int // 0 or less: none are returned (a count only); capped at MaxSearchPage
}

// TokenFilter constrains the index tokens of one Param (TokenIdentifier,
// TokenCategory …): one of them matches one of Any (when Any is not
// empty), none matches one of Not, and there are some or none as Missing
// says (when set).
type TokenFilter struct {
	Param   string
	Any     []TokenValue
	Not     []TokenValue
	Missing *bool
}

// TokenValue is what a token must be: System and Code, either of which may
// be left open (any system, as for a FHIR token "code"; any code, as for
// "system|").
type TokenValue struct {
	System    string
	Code      string
	AnySystem bool
	AnyCode   bool
}

// CommunicationSearch finds Communications.
type CommunicationSearch interface {
	// SearchCommunications returns the page of matching Communications
	// that q's Offset and Limit select, in q's order.
	SearchCommunications(ctx context.Context, q CommunicationQuery) ([]CommunicationRow, error)
	// CountCommunications counts every Communication that matches q
	// (Sort, Offset and Limit are ignored).
	CountCommunications(ctx context.Context, q CommunicationQuery) (int, error)
}

// SQLDialect is what differs between the backends' SQL for a search.
type SQLDialect struct {
	Placeholder func(n int) string  // the n-th (1-based) parameter
	Time        func(time.Time) any // a time as the database keeps it
	// AuditEntityIn is the condition that the audit record "a" has one
	// of the values whose placeholders are listed (comma separated)
	// among its entities or as its patient.
	AuditEntityIn func(placeholders string) string
}

// priorityRank orders priorities for SortByPriority, and priorityRankDesc
// for SortByPriorityDesc, those without one last in both: the
// expressions of the indexes communication_rank and
// communication_rank_desc (migration 27), which a search's ORDER BY must
// repeat to be read off them.
const (
	priorityRank     = `CASE c.priority WHEN 'routine' THEN 0 WHEN 'urgent' THEN 1 WHEN 'asap' THEN 2 WHEN 'stat' THEN 3 ELSE 4 END`
	priorityRankDesc = `CASE c.priority WHEN 'stat' THEN 0 WHEN 'asap' THEN 1 WHEN 'urgent' THEN 2 WHEN 'routine' THEN 3 ELSE 4 END`
)

// SQL is the WHERE clause (without the keyword; "TRUE" when q constrains
// nothing) and ORDER BY clause of q over "communication c", with the
// WHERE clause's arguments. Recipients are matched through the delivery
// rows, one per recipient, and Tokens through the rows of
// communication_token (communication_id, param, system, code).
func (q CommunicationQuery) SQL(d SQLDialect) (where, order string, args []any) {
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
	column := func(col string, m TokenMatch) { conds = append(conds, columnConds(col, m, list)...) }
	// One recipient: the rows are that recipient's deliveries, joined to
	// their Communications (see From); status and sent are read from the
	// delivery's copies, which its inbox index orders.
	inbox := q.Inbox()
	status, sentCol := "c.status", "c.sent"
	if inbox {
		status, sentCol = "d.status", "d.sent"
		conds = append(conds, "d.recipient = "+arg(q.Recipient.Any[0]))
	}
	column("c.id", q.ID)
	column(status, q.Status)
	column("c.priority", q.Priority)
	column("c.subject", q.Subject)
	column("c.encounter", q.Encounter)
	column("c.sender", q.Sender)
	conds = append(conds, tokenConds("SELECT 1 FROM communication_token t WHERE t.communication_id = c.id AND t.param = ", q.Tokens, arg)...)
	const delivery = "SELECT 1 FROM delivery e WHERE e.communication_id = c.id"
	if r := q.Recipient; len(r.Any) > 0 && !inbox {
		conds = append(conds, "EXISTS ("+delivery+" AND e.recipient IN ("+list(r.Any)+"))")
	}
	if r := q.Recipient; len(r.Not) > 0 {
		conds = append(conds, "NOT EXISTS ("+delivery+" AND e.recipient IN ("+list(r.Not)+"))")
	}
	if m := q.Recipient.Missing; m != nil {
		if *m {
			conds = append(conds, "NOT EXISTS ("+delivery+")")
		} else {
			conds = append(conds, "EXISTS ("+delivery+")")
		}
	}
	if q.SeenBy != nil {
		if len(q.SeenBy) == 0 {
			conds = append(conds, "1 = 0")
		} else {
			// A union the planner can start from (the recipients'
			// deliveries, the senders' index), not an OR over every row.
			conds = append(conds, "c.id IN (SELECT e.communication_id FROM delivery e WHERE e.recipient IN ("+list(q.SeenBy)+
				") UNION SELECT s.id FROM communication s WHERE s.sender IN ("+list(q.SeenBy)+"))")
		}
	}
	bounds := func(col string, bs []TimeBound) {
		for _, b := range bs {
			switch b.Op {
			case GE, GT, LE, LT:
			default:
				panic(fmt.Sprintf("store: time comparator %q", b.Op))
			}
			conds = append(conds, col+" "+string(b.Op)+" "+arg(d.Time(b.At)))
		}
	}
	bounds(sentCol, q.Sent)
	zero := d.Time(time.Time{})
	if len(q.Sent) > 0 {
		conds = append(conds, sentCol+" <> "+arg(zero)) // written without sent
	}
	if m := q.SentMissing; m != nil {
		op := " <> "
		if *m {
			op = " = "
		}
		conds = append(conds, sentCol+op+arg(zero))
	}
	if m := q.PatientMissing; m != nil {
		if *m {
			conds = append(conds, "c.subject NOT LIKE 'Patient/%'")
		} else {
			conds = append(conds, "c.subject LIKE 'Patient/%'")
		}
	}
	bounds("c.received", q.Received) // NULL compares to nothing: never received matches no bound
	if m := q.ReceivedMissing; m != nil {
		if *m {
			conds = append(conds, "c.received IS NULL")
		} else {
			conds = append(conds, "c.received IS NOT NULL")
		}
	}
	where = allOf(conds)
	id := "c.id"
	if inbox {
		id = "d.communication_id"
	}
	switch q.Sort {
	case SortBySent:
		order = sentCol + ", " + id
	case SortBySentDesc:
		order = sentCol + " DESC, " + id + " DESC"
	case SortByPriority:
		order = priorityRank + ", c.sent DESC, c.id DESC"
	case SortByPriorityDesc:
		order = priorityRankDesc + ", c.sent DESC, c.id DESC"
	default:
		order = id
	}
	return where, order, args
}

// Inbox reports whether q asks for one recipient's Communications: the
// search is then driven by that recipient's deliveries.
func (q CommunicationQuery) Inbox() bool { return len(q.Recipient.Any) == 1 }

// From is the FROM clause SQL's clauses are written over: "communication
// c", or for one recipient its deliveries "d" joined to them. For a
// count (count true) of one recipient's Communications constrained by
// status and sent only, the deliveries alone, which their index holds.
func (q CommunicationQuery) From(count bool) string {
	if !q.Inbox() {
		return "communication c"
	}
	if count && q.ID.Empty() && q.Priority.Empty() && q.Subject.Empty() && q.Encounter.Empty() && q.Sender.Empty() &&
		len(q.Recipient.Not) == 0 && q.Recipient.Missing == nil && q.SeenBy == nil && len(q.Tokens) == 0 && len(q.Received) == 0 &&
		q.ReceivedMissing == nil && q.PatientMissing == nil {
		return "delivery d"
	}
	return "delivery d JOIN communication c ON c.id = d.communication_id"
}

// Page is q's Offset and Limit made safe: offset at least 0, limit
// between 0 and MaxSearchPage.
func (q CommunicationQuery) Page() (offset, limit int) {
	offset, limit = max(q.Offset, 0), min(max(q.Limit, 0), MaxSearchPage)
	return offset, limit
}

// Validate reports a time bound (of Sent or Received) whose comparator is
// unknown, which SQL would panic on.
func (q CommunicationQuery) Validate() error {
	for _, b := range append(append([]TimeBound{}, q.Sent...), q.Received...) {
		switch b.Op {
		case GE, GT, LE, LT:
		default:
			return fmt.Errorf("unknown time comparator %q", b.Op)
		}
	}
	return nil
}
