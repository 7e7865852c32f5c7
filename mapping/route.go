package mapping

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/carebridge/carebridge/fhir"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Message is what a rule's template sees: the minimum needed to say what
// happened, to whom and where. Templates cannot reach the rest of the
// HL7 message.
type Message struct {
	Rule         string
	Trigger      string // "ADT^A01"
	What         string // "admission", "critical result", …
	Priority     string // the Communication's priority
	Patient      Patient
	PatientClass string
	Location     Location
	Orders       []Order     // the orders the rule matched (all, when it has no order condition)
	Results      []LabResult // the results the rule matched (all, when it has no result condition)
}

// Notification is one Communication routing produced, summarised.
type Notification struct {
	Rule       string
	Priority   Priority
	Category   string
	Recipients []string // references
	// Why says, for each recipient, the source that chose it and who that
	// is ("attending WELBY, MARCUS", "on_call Night intensivist"), for an
	// analyst trying a rules file. Names of staff only, never a patient's.
	Why           []string
	Communication string // reference
	// EscalateAfter is the rule's deadline for unread messages: 0 means
	// the priority's default, negative never.
	EscalateAfter time.Duration
}

// CommunicationIdentifierSystem is the system of the identifier that ties a
// Communication to its source message and rule.
const CommunicationIdentifierSystem = fhir.CommunicationSourceSystem

var triggerWhat = map[string]string{
	"ADT^A01": "admission", "ADT^A02": "transfer", "ADT^A03": "discharge",
	"ADT^A04": "registration", "ADT^A05": "pre-admission", "ADT^A08": "patient information update",
	"ADT^A11": "admission cancelled", "ADT^A12": "transfer cancelled", "ADT^A13": "discharge cancelled",
	"ADT^A31": "person information update", "ADT^A40": "patient records merged",
	"ORM^O01": "order", "ORU^R01": "result",
}

// Route applies the rules to a mapped message: every rule that matches
// appends one Communication (and the Device, care teams and on-call
// practitioners it points at) to res.Resources. now is the time the
// Communication is sent and the time on-call schedules are read at. Rules
// that match but find nobody to tell, and templates that fail, become
// outcome issues.
func (r *Rules) Route(res *Result, now time.Time) []Notification {
	ev := &res.Event
	if !ev.Mapped || ev.Patient == nil {
		return nil
	}
	var out []Notification
	seen := map[string]bool{}
	for _, re := range res.Resources {
		seen[re.Reference()] = true
	}
	emit := func(typ, id string, body any) string {
		ref := typ + "/" + id
		if !seen[ref] {
			seen[ref] = true
			res.Resources = append(res.Resources, fhir.Resource{Type: typ, ID: id, Body: body})
		}
		return ref
	}
	local := now.In(r.loc)
	for _, ru := range r.rules {
		orders, results, ok := ru.match(ev)
		if !ok {
			continue
		}
		recipients, why := r.recipients(ru, ev, orders, results, local, emit)
		if len(recipients) == 0 {
			res.Outcome.Add(fhir.SeverityWarning, fhir.CodeProcessing, "rule "+ru.name,
				"the rule matched but found no recipient; nobody is notified")
			continue
		}
		prio := ru.priority
		if prio < PriorityUrgent && urgentByContent(ev) {
			prio = PriorityUrgent
		}
		msg := Message{
			Rule: ru.name, Trigger: ev.Trigger, What: triggerWhat[ev.Trigger], Priority: prio.String(),
			Patient: *ev.Patient, PatientClass: ev.PatientClass, Location: ev.Location,
			Orders: pick(ev.Orders, orders), Results: pick(ev.Results, results),
		}
		text, err := ru.render(&msg)
		if err != nil {
			res.Outcome = append(res.Outcome, fhir.Issue{
				Severity: fhir.SeverityError, Code: fhir.CodeProcessing, Location: "rule " + ru.name,
				Details: "the rule's template failed; no message is sent for it", Diagnostics: err.Error(),
			})
			continue
		}
		if len(text) > MaxPayloadBytes {
			text = truncate(text, MaxPayloadBytes)
			res.Outcome.Add(fhir.SeverityWarning, fhir.CodeProcessing, "rule "+ru.name,
				fmt.Sprintf("the template wrote more than %d bytes; the text is cut", MaxPayloadBytes))
		}
		sender := emit("Device", r.sender, &fhirmodel.Device{
			Id: new(r.sender),
			DeviceName: []fhirmodel.DeviceDeviceName{{
				Name: "carebridge", Type: fhirmodel.DeviceNameTypeUserFriendlyName,
			}},
		})
		idValue := ev.SendingFacility + "^" + ev.ControlID + "^" + ru.name
		id := fhir.ID("Communication", idValue)
		c := &fhir.Communication{}
		c.Id = new(id)
		c.Identifier = []fhirmodel.Identifier{{System: new(CommunicationIdentifierSystem), Value: new(idValue)}}
		c.Status = fhirmodel.EventStatusInProgress
		c.Category = []fhirmodel.CodeableConcept{{Coding: []fhirmodel.Coding{
			coding("http://terminology.hl7.org/CodeSystem/communication-category", ru.category, ""),
		}}}
		c.Priority = new(requestPriorities[prio])
		c.Subject = ref(ev.Patient.Ref)
		if ev.Encounter != "" {
			c.Encounter = ref(ev.Encounter)
		}
		for _, k := range orders {
			c.About = append(c.About, *ref(ev.Orders[k].Ref))
		}
		for _, k := range results {
			c.About = append(c.About, *ref(ev.Results[k].Ref))
		}
		for _, rc := range recipients {
			c.Recipient = append(c.Recipient, *ref(rc))
		}
		c.Sender = ref(sender)
		c.Sent = new(now.UTC().Format(time.RFC3339))
		c.Payload = []fhir.CommunicationPayload{{ContentString: &text}}
		cref := emit("Communication", id, c)
		out = append(out, Notification{Rule: ru.name, Priority: prio, Category: ru.category, Recipients: recipients, Why: why, EscalateAfter: ru.escalateAfter, Communication: cref})
	}
	return out
}

// urgentByContent: a STAT order or a critical result is at least urgent,
// whatever the rule says.
func urgentByContent(ev *Event) bool {
	for _, o := range ev.Orders {
		if o.Priority == PriorityStat {
			return true
		}
	}
	for _, r := range ev.Results {
		if r.Critical {
			return true
		}
	}
	return false
}

func pick[T any](all []T, idx []int) []T {
	out := make([]T, 0, len(idx))
	for _, k := range idx {
		out = append(out, all[k])
	}
	return out
}

func (ru *rule) render(msg *Message) (string, error) {
	var b bytes.Buffer
	w := &limitWriter{b: &b, n: MaxPayloadBytes + 1}
	if err := ru.tmpl.Execute(w, msg); err != nil && err != errLimit {
		return "", err
	}
	return clean(strings.TrimSpace(b.String())), nil
}

var errLimit = fmt.Errorf("template output limit reached")

// limitWriter stops a template once it has written n bytes.
type limitWriter struct {
	b *bytes.Buffer
	n int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.n {
		w.b.Write(p[:w.n-w.b.Len()])
		return 0, errLimit
	}
	return w.b.Write(p)
}

// truncate cuts s to at most n bytes on a rune boundary and marks the cut.
func truncate(s string, n int) string {
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// match reports whether the rule applies to the event, and which orders
// and results it is about.
func (ru *rule) match(ev *Event) (orders, results []int, ok bool) {
	if len(ru.triggers) > 0 && !slices.ContainsFunc(ru.triggers, func(t string) bool { return triggerMatches(t, ev.Trigger) }) {
		return nil, nil, false
	}
	if !inList(ru.classes, ev.PatientClass) || !inList(ru.units, ev.Location.Unit) || !inList(ru.facilities, ev.SendingFacility) {
		return nil, nil, false
	}
	orderCond := len(ru.orderCodes) > 0 || len(ru.orderControls) > 0 || len(ru.orderPriorities) > 0
	for k, o := range ev.Orders {
		if inList(ru.orderCodes, o.Code) && inList(ru.orderControls, o.Control) &&
			(len(ru.orderPriorities) == 0 || slices.Contains(ru.orderPriorities, o.Priority)) {
			orders = append(orders, k)
		}
	}
	if orderCond && len(orders) == 0 {
		return nil, nil, false
	}
	resultCond := len(ru.resultCodes) > 0 || len(ru.interpretations) > 0
	for k, r := range ev.Results {
		if inList(ru.resultCodes, r.Code) && (len(ru.interpretations) == 0 || slices.ContainsFunc(r.Flags, func(f string) bool { return slices.Contains(ru.interpretations, f) })) {
			results = append(results, k)
		}
	}
	if resultCond && len(results) == 0 {
		return nil, nil, false
	}
	return orders, results, true
}

// triggerMatches reads "ADT^A01" or "ADT^*".
func triggerMatches(pattern, trigger string) bool {
	if strings.HasSuffix(pattern, "^*") {
		return strings.HasPrefix(trigger, pattern[:len(pattern)-1])
	}
	return pattern == trigger
}

// inList: an empty list matches anything; otherwise the value must be in it.
func inList(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, v)
}

// recipients resolves the rule's sources, in order, without repeats.
func (r *Rules) recipients(ru *rule, ev *Event, orders, results []int, now time.Time, emit func(string, string, any) string) (out, why []string) {
	add := func(ref, source, who string) {
		if ref != "" && !slices.Contains(out, ref) {
			out = append(out, ref)
			if who == "" {
				who = ref
			}
			why = append(why, source+" "+who)
		}
	}
	staff := func(ref string) string {
		for _, p := range ev.Providers {
			if p.Ref == ref && p.Name != "" {
				return p.Name
			}
		}
		return ""
	}
	for _, s := range ru.notify {
		switch s.kind {
		case sourceRole:
			if s.role == RoleOrdering && (len(orders) < len(ev.Orders) || len(results) < len(ev.Results)) {
				// The rule is about some orders or results: tell who ordered those.
				for _, k := range orders {
					add(ev.Orders[k].Orderer, string(s.role), staff(ev.Orders[k].Orderer))
				}
				for _, k := range results {
					if o := ev.Results[k].Order; o >= 0 {
						add(ev.Orders[o].Orderer, string(s.role), staff(ev.Orders[o].Orderer))
					}
				}
				continue
			}
			for _, p := range ev.Providers {
				if p.Role == s.role {
					add(p.Ref, string(s.role), p.Name)
				}
			}
		case sourceOnCall:
			for _, sh := range r.onCall[ev.Location.Unit] {
				if sh.active(now) {
					add(r.fixedRef(sh, emit), "on_call", sh.name)
				}
			}
		case sourceUnitTeams:
			for _, t := range r.teams {
				if ev.Location.Unit != "" && slices.Contains(t.units, ev.Location.Unit) {
					add(r.teamRef(t, emit), "care_team", t.name)
				}
			}
		case sourceTeam:
			for _, t := range r.teams {
				if t.id == s.team {
					add(r.teamRef(t, emit), "care_team", t.name)
				}
			}
		case sourceFixed:
			add(r.fixedRef(s.fixed, emit), "fixed", s.fixed.name)
		}
	}
	return out, why
}

func (r *Rules) teamRef(t careTeam, emit func(string, string, any) string) string {
	ct := &fhirmodel.CareTeam{Id: new(t.id), Status: new(fhirmodel.CareTeamStatusActive)}
	if t.name != "" {
		ct.Name = new(t.name)
	}
	return emit("CareTeam", t.id, ct)
}

// fixedRef is the reference of a configured practitioner: a literal
// reference, or the Practitioner whose identifier is system|value (the same
// id mapping gives a practitioner named in a message).
func (r *Rules) fixedRef(sh shift, emit func(string, string, any) string) string {
	if sh.ref != "" {
		return sh.ref
	}
	id := fhir.ID("Practitioner", sh.system, sh.value)
	ident := fhirmodel.Identifier{Value: new(sh.value)}
	if sh.system != "" {
		ident.System = new(sh.system)
	}
	p := &fhirmodel.Practitioner{Id: new(id), Identifier: []fhirmodel.Identifier{ident}}
	if sh.name != "" {
		p.Name = []fhirmodel.HumanName{{Text: new(sh.name)}}
	}
	return emit("Practitioner", id, p)
}

// EscalationTier returns whom escalation reaches at tier n for a message
// about unit, at time t: tier 1 is the unit's on-call, tier 2 its care
// teams (the charge nurse or the unit). Empty when the rules name nobody.
func (r *Rules) EscalationTier(unit string, tier int, t time.Time) []string {
	var out []string
	switch tier {
	case 1:
		local := t.In(r.loc)
		for _, sh := range r.onCall[unit] {
			if !sh.active(local) {
				continue
			}
			ref := sh.ref
			if ref == "" {
				ref = "Practitioner/" + fhir.ID("Practitioner", sh.system, sh.value)
			}
			if !slices.Contains(out, ref) {
				out = append(out, ref)
			}
		}
	case 2:
		for _, tm := range r.teams {
			if unit != "" && slices.Contains(tm.units, unit) {
				out = append(out, "CareTeam/"+tm.id)
			}
		}
	}
	return out
}
