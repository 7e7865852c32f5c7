package mapping

import (
	"strconv"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Config is what a deployment may set about mapping.
type Config struct {
	// Location is the time zone of HL7 times sent without an offset.
	// Default: UTC.
	Location *time.Location
	// IdentifierSystemBase prefixes the namespace of an assigning
	// authority that has no OID or URI, to make an Identifier.system.
	// Default: "urn:carebridge:id:".
	IdentifierSystemBase string
}

func (c *Config) setDefaults() {
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.IdentifierSystemBase == "" {
		c.IdentifierSystemBase = "urn:carebridge:id:"
	}
}

// Mapper maps messages. It holds only configuration and is safe for
// concurrent use.
type Mapper struct {
	cfg Config
}

// New returns a Mapper.
func New(cfg Config) *Mapper {
	cfg.setDefaults()
	return &Mapper{cfg: cfg}
}

// Result is what one message maps to.
type Result struct {
	// Event holds the facts routing matches on.
	Event Event
	// Resources in dependency order: Patients, Practitioners, Locations,
	// the Encounter, ServiceRequests, Observations; Route appends
	// Communications.
	Resources []fhir.Resource
	// Outcome holds data problems found while mapping and routing.
	Outcome fhir.Outcome
}

// Covered reports whether a trigger ("ADT^A01") is one this package maps.
func Covered(trigger string) bool {
	_, ok := triggers[trigger]
	return ok
}

// triggerKind groups the covered triggers by what they map.
type triggerKind int

const (
	kindVisit  triggerKind = iota // patient + encounter
	kindPerson                    // patient only (A31)
	kindMerge                     // patient merge (A40)
	kindOrder                     // ORM
	kindResult                    // ORU
)

var triggers = map[string]triggerKind{
	"ADT^A01": kindVisit, "ADT^A02": kindVisit, "ADT^A03": kindVisit,
	"ADT^A04": kindVisit, "ADT^A05": kindVisit, "ADT^A08": kindVisit,
	"ADT^A11": kindVisit, "ADT^A12": kindVisit, "ADT^A13": kindVisit,
	"ADT^A31": kindPerson, "ADT^A40": kindMerge,
	"ORM^O01": kindOrder, "ORU^R01": kindResult,
}

// CoveredTriggers lists the triggers this package maps, in order.
func CoveredTriggers() []string {
	return []string{"ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A05", "ADT^A08",
		"ADT^A11", "ADT^A12", "ADT^A13", "ADT^A31", "ADT^A40", "ORM^O01", "ORU^R01"}
}

// mapper is the state of mapping one message.
type mapper struct {
	cfg  Config
	msg  *hl7.Message
	res  *Result
	kind triggerKind
	seen map[string]bool // resource references already emitted
	// last remembers the last HL7 time converted: the OBX of one panel
	// mostly carry the same observation time.
	last struct{ in, out string }
}

// dateTime is dateTime in the configured zone, remembering the last one.
func (m *mapper) dateTime(s string) (string, bool) {
	if s != "" && s == m.last.in {
		return m.last.out, true
	}
	out, ok := dateTime(s, m.cfg.Location)
	if ok {
		m.last.in, m.last.out = s, out
	}
	return out, ok
}

// Map maps one parsed message. It never fails: what cannot be mapped is
// reported in the Result's outcome.
func (mp *Mapper) Map(msg *hl7.Message) *Result {
	// About one resource per segment, plus Practitioners and Locations.
	n := msg.SegmentCount() + 8
	res := &Result{Resources: make([]fhir.Resource, 0, n)}
	m := &mapper{cfg: mp.cfg, msg: msg, res: res, seen: make(map[string]bool, n)}
	m.header()
	kind, ok := triggers[res.Event.Trigger]
	if !ok {
		res.Outcome.Add(fhir.SeverityInformation, fhir.CodeNotSupported, "MSH-9",
			"message type "+safeTrigger(res.Event.Trigger)+" is stored but not mapped")
		return res
	}
	m.kind = kind
	res.Event.Mapped = true
	m.walk()
	return res
}

// safeTrigger returns a trigger if it has the shape of one ("ADT^A07"),
// so that an issue never carries free text from a malformed MSH-9.
func safeTrigger(s string) string {
	if triggerPattern.MatchString(s) {
		return s
	}
	return "(not a message type)"
}

func (m *mapper) issue(sev fhir.Severity, code fhir.IssueCode, loc, details string) {
	m.res.Outcome.Add(sev, code, loc, details)
}

// issueValue reports a problem with a value: the details never quote it;
// the value goes in Diagnostics, which only an authorised reader sees.
func (m *mapper) issueValue(sev fhir.Severity, code fhir.IssueCode, loc, details, value string) {
	m.res.Outcome = append(m.res.Outcome, fhir.Issue{
		Severity: sev, Code: code, Location: loc, Details: details, Diagnostics: "value: " + strconv.Quote(value),
	})
}

// loc names segment i (0-based) and field n as an HL7 location, "PV1-2", or
// "OBX[3]-5" for the third OBX.
func (m *mapper) loc(i, n int) string {
	id := m.msg.SegmentID(i)
	k := 0
	for j := 0; j <= i; j++ {
		if m.msg.SegmentIs(j, id) {
			k++
		}
	}
	if k > 1 {
		id += "[" + strconv.Itoa(k) + "]"
	}
	return id + "-" + strconv.Itoa(n)
}

func (m *mapper) header() {
	ev := &m.res.Event
	msh := 0
	typ := text(m.msg.Field(msh, 9).Component(1))
	trig := text(m.msg.Field(msh, 9).Component(2))
	ev.Trigger = typ + "^" + trig
	ev.ControlID = text(m.msg.Field(msh, 10))
	ev.SendingApplication = text(m.msg.Field(msh, 3).Component(1))
	ev.SendingFacility = text(m.msg.Field(msh, 4).Component(1))
	if t, ok := m.dateTime(text(m.msg.Field(msh, 7).Component(1))); ok {
		ev.MessageTime = t
	}
}

// emit adds a resource once; a second resource with the same reference
// (the same practitioner named twice) is dropped.
func (m *mapper) emit(typ, id string, body any) string {
	r := fhir.Resource{Type: typ, ID: id, Body: body}
	ref := r.Reference()
	if !m.seen[ref] {
		m.seen[ref] = true
		m.res.Resources = append(m.res.Resources, r)
	}
	return ref
}

// walk reads the segments in order.
func (m *mapper) walk() {
	var (
		pid, pd1, pv1, pv2 = -1, -1, -1, -1
		mrg                []int
	)
	n := m.msg.SegmentCount()
	for i := 0; i < n; i++ {
		switch {
		case m.msg.SegmentIs(i, "PID"):
			if pid >= 0 {
				if m.kind != kindMerge {
					m.issue(fhir.SeverityWarning, fhir.CodeNotSupported, m.loc(i, 1), "only the first patient of a message is mapped")
				}
				continue
			}
			pid = i
		case m.msg.SegmentIs(i, "PD1"):
			if pd1 < 0 {
				pd1 = i
			}
		case m.msg.SegmentIs(i, "MRG"):
			mrg = append(mrg, i)
		case m.msg.SegmentIs(i, "PV1"):
			if pv1 < 0 {
				pv1 = i
			}
		case m.msg.SegmentIs(i, "PV2"):
			if pv2 < 0 {
				pv2 = i
			}
		}
	}
	if pid < 0 {
		m.issue(fhir.SeverityError, fhir.CodeRequired, "PID", "the message has no PID segment; nothing is mapped")
		return
	}
	if !m.patient(pid, pd1) {
		return
	}
	switch m.kind {
	case kindPerson:
		return
	case kindMerge:
		if len(mrg) == 0 {
			m.issue(fhir.SeverityError, fhir.CodeRequired, "MRG", "a merge message has no MRG segment; no link is mapped")
		}
		for _, i := range mrg {
			m.merge(i)
		}
		return
	}
	if pv1 >= 0 {
		m.encounter(pv1, pv2)
	} else if m.kind == kindVisit {
		m.issue(fhir.SeverityError, fhir.CodeRequired, "PV1", "the message has no PV1 segment; no encounter is mapped")
	}
	if m.kind == kindOrder || m.kind == kindResult {
		m.orders()
	}
}

// ref builds a Reference to type/id.
func ref(r string) *fhirmodel.Reference {
	// One allocation for the Reference and its string.
	x := &struct {
		ref fhirmodel.Reference
		s   string
	}{s: r}
	x.ref.Reference = &x.s
	return &x.ref
}
