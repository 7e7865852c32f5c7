package mapping

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// orderState is one order group: its ORC, OBR and TQ1 (segment indexes, -1
// when absent) and its OBX segments.
type orderState struct {
	orc, obr, tq1 int
	obx           []int
}

// orders groups ORC/OBR/TQ1/OBX in message order and maps each group to a
// ServiceRequest and its Observations.
func (m *mapper) orders() {
	var groups []*orderState
	var cur *orderState
	start := func(orc, obr int) {
		cur = &orderState{orc: orc, obr: obr, tq1: -1}
		groups = append(groups, cur)
	}
	for i := 0; i < m.msg.SegmentCount(); i++ {
		switch {
		case m.msg.SegmentIs(i, "ORC"):
			start(i, -1)
		case m.msg.SegmentIs(i, "OBR"):
			if cur != nil && cur.obr < 0 && len(cur.obx) == 0 {
				cur.obr = i
			} else {
				start(-1, i)
			}
		case m.msg.SegmentIs(i, "TQ1"):
			if cur != nil && cur.tq1 < 0 {
				cur.tq1 = i
			}
		case m.msg.SegmentIs(i, "OBX"):
			if cur == nil {
				start(-1, -1)
			}
			cur.obx = append(cur.obx, i)
		}
	}
	if len(groups) == 0 {
		m.issue(fhir.SeverityError, fhir.CodeRequired, "ORC", "the message has no order (ORC or OBR); no order is mapped")
		return
	}
	for n, g := range groups {
		m.order(n, g)
	}
}

// field reads field n of the first present segment among idx (ORC before
// OBR, say); it returns the segment used.
func (m *mapper) field(n int, idx ...int) (hl7.Value, int) {
	for _, i := range idx {
		if i >= 0 {
			if v := m.msg.Field(i, n); !v.Empty() && !v.Null() {
				return v, i
			}
		}
	}
	return hl7.Value{}, -1
}

var priorities = map[string]Priority{
	"S": PriorityStat, "A": PriorityAsap, "P": PriorityAsap, "T": PriorityUrgent,
	"R": PriorityRoutine, "C": PriorityRoutine,
	"STAT": PriorityStat, "ASAP": PriorityAsap, "ROUTINE": PriorityRoutine, "URGENT": PriorityUrgent,
}

// orderPriority reads TQ1-9 (v2.5+), ORC-7.6 or OBR-27.6 (quantity/timing,
// before v2.5), or OBR-5.
func (m *mapper) orderPriority(g *orderState) (Priority, string, string) {
	var code, loc string
	switch {
	case g.tq1 >= 0 && text(m.msg.Field(g.tq1, 9).Component(1)) != "":
		code, loc = text(m.msg.Field(g.tq1, 9).Component(1)), m.loc(g.tq1, 9)
	case g.orc >= 0 && text(m.msg.Field(g.orc, 7).Component(6)) != "":
		code, loc = text(m.msg.Field(g.orc, 7).Component(6)), m.loc(g.orc, 7)
	case g.obr >= 0 && text(m.msg.Field(g.obr, 27).Component(6)) != "":
		code, loc = text(m.msg.Field(g.obr, 27).Component(6)), m.loc(g.obr, 27)
	case g.obr >= 0 && text(m.msg.Field(g.obr, 5).Component(1)) != "":
		code, loc = text(m.msg.Field(g.obr, 5).Component(1)), m.loc(g.obr, 5)
	}
	return priorities[strings.ToUpper(code)], code, loc
}

var requestPriorities = map[Priority]fhirmodel.RequestPriority{
	PriorityRoutine: fhirmodel.RequestPriorityRoutine,
	PriorityUrgent:  fhirmodel.RequestPriorityUrgent,
	PriorityAsap:    fhirmodel.RequestPriorityAsap,
	PriorityStat:    fhirmodel.RequestPriorityStat,
}

// orderStatus: ORC-5 (order status) if sent, else ORC-1 (order control),
// else OBR-25 (result status).
func orderStatus(control, status, result string) fhirmodel.RequestStatus {
	switch status {
	case "CM":
		return fhirmodel.RequestStatusCompleted
	case "CA", "DC", "RP":
		return fhirmodel.RequestStatusRevoked
	case "HD":
		return fhirmodel.RequestStatusOnHold
	case "IP", "SC", "A":
		return fhirmodel.RequestStatusActive
	}
	switch control {
	case "CA", "OC", "CR", "DC", "OD", "DR":
		return fhirmodel.RequestStatusRevoked
	case "HD", "OH":
		return fhirmodel.RequestStatusOnHold
	case "NW", "XO", "RL", "OK", "SN":
		return fhirmodel.RequestStatusActive
	}
	switch result {
	case "F", "C":
		return fhirmodel.RequestStatusCompleted
	case "X":
		return fhirmodel.RequestStatusRevoked
	}
	return fhirmodel.RequestStatusActive
}

// order maps one group. Groups with no ORC and no OBR (OBX before any
// order) map their Observations without a ServiceRequest.
func (m *mapper) order(n int, g *orderState) {
	orderIdx := -1
	srID := ""
	if g.orc >= 0 || g.obr >= 0 {
		srID, orderIdx = m.serviceRequest(n, g)
	}
	counts := map[string]int{}
	for _, i := range g.obx {
		m.observation(i, g, srID, orderIdx, counts)
	}
}

func (m *mapper) serviceRequest(n int, g *orderState) (string, int) {
	ev := &m.res.Event
	sr := &fhirmodel.ServiceRequest{Subject: *ref(ev.Patient.Ref), Intent: fhirmodel.RequestIntentOrder}
	var key []string
	if v, _ := m.field(2, g.orc, g.obr); v.Present() {
		if id, ok := m.entityIdentifier(v, "PLAC"); ok {
			sr.Identifier = append(sr.Identifier, id)
			sys, val := identifierKey(id)
			key = []string{"placer", sys, val}
		}
	}
	if v, _ := m.field(3, g.orc, g.obr); v.Present() {
		if id, ok := m.entityIdentifier(v, "FILL"); ok {
			sr.Identifier = append(sr.Identifier, id)
			if key == nil {
				sys, val := identifierKey(id)
				key = []string{"filler", sys, val}
			}
		}
	}
	first := g.orc
	if first < 0 {
		first = g.obr
	}
	if key == nil {
		m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(first, 2),
			"the order has no placer or filler number; its id is derived from the message")
		key = []string{"message", ev.SendingFacility, ev.ControlID, strconv.Itoa(n)}
	}
	id := fhir.ID("ServiceRequest", key...)
	sr.Id = new(id)

	o := Order{}
	control, status := "", ""
	if g.orc >= 0 {
		control = text(m.msg.Field(g.orc, 1))
		status = text(m.msg.Field(g.orc, 5))
	}
	result := ""
	if g.obr >= 0 {
		result = text(m.msg.Field(g.obr, 25))
	}
	o.Control = control
	sr.Status = orderStatus(control, status, result)
	o.Status = sr.Status.Code()

	if g.obr >= 0 {
		code := m.msg.Field(g.obr, 4)
		if cc, ok := codeableConcept(code); ok {
			sr.Code = &cc
			o.Code, o.Display = text(code.Component(1)), text(code.Component(2))
		} else {
			m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(g.obr, 4), "the order has no service code")
		}
	} else {
		m.issue(fhir.SeverityInformation, fhir.CodeNotSupported, m.loc(g.orc, 1), "the order has no OBR; its service code is unknown")
	}

	p, code, loc := m.orderPriority(g)
	if p != PriorityNone {
		sr.Priority = new(requestPriorities[p])
		o.Priority = p
	} else if code != "" {
		m.issueValue(fhir.SeverityWarning, fhir.CodeCodeInvalid, loc, "the priority is not in table 0027; the order has no priority", code)
	}

	if v, seg := m.field(12, g.orc); seg >= 0 {
		if r, name, ok := m.practitioner(v.Repetition(1), m.loc(seg, 12)); ok {
			sr.Requester = ref(r)
			o.Orderer = r
			m.addProvider(RoleOrdering, r, name)
		}
	}
	if sr.Requester == nil {
		if v, seg := m.field(16, g.obr); seg >= 0 {
			if r, name, ok := m.practitioner(v.Repetition(1), m.loc(seg, 16)); ok {
				sr.Requester = ref(r)
				o.Orderer = r
				m.addProvider(RoleOrdering, r, name)
			}
		}
	}
	if v, seg := m.field(9, g.orc); seg >= 0 {
		if t, ok := m.dateTime(text(v.Component(1))); ok {
			sr.AuthoredOn = new(t)
		} else {
			m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(seg, 9), "transaction time is not an HL7 timestamp; left out")
		}
	}
	if ev.Encounter != "" {
		sr.Encounter = ref(ev.Encounter)
	}
	o.Ref = m.emit("ServiceRequest", id, sr)
	ev.Orders = append(ev.Orders, o)
	return id, len(ev.Orders) - 1
}

// addProvider records a provider once per role.
func (m *mapper) addProvider(role Role, r, name string) {
	for _, p := range m.res.Event.Providers {
		if p.Role == role && p.Ref == r {
			return
		}
	}
	m.res.Event.Providers = append(m.res.Event.Providers, Provider{Role: role, Ref: r, Name: name})
}

var observationStatuses = map[string]fhirmodel.ObservationStatus{
	"C": fhirmodel.ObservationStatusCorrected,
	"D": fhirmodel.ObservationStatusEnteredInError,
	"F": fhirmodel.ObservationStatusFinal,
	"I": fhirmodel.ObservationStatusRegistered,
	"P": fhirmodel.ObservationStatusPreliminary,
	"R": fhirmodel.ObservationStatusPreliminary,
	"S": fhirmodel.ObservationStatusPreliminary,
	"U": fhirmodel.ObservationStatusFinal,
	"W": fhirmodel.ObservationStatusEnteredInError,
	"X": fhirmodel.ObservationStatusCancelled,
	"O": fhirmodel.ObservationStatusRegistered,
	"N": fhirmodel.ObservationStatusCancelled,
	"A": fhirmodel.ObservationStatusAmended,
	"B": fhirmodel.ObservationStatusAmended,
	"V": fhirmodel.ObservationStatusFinal,
}

// criticalFlags are the abnormal flags (table 0078) that make a result
// critical.
var criticalFlags = map[string]bool{"HH": true, "LL": true, "AA": true}

const interpretationSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

var interpretationCodes = map[string]string{
	"H": "High", "HH": "Critical high", "L": "Low", "LL": "Critical low",
	"A": "Abnormal", "AA": "Critical abnormal", "N": "Normal", "<": "Off scale low",
	">": "Off scale high", "I": "Intermediate", "R": "Resistant", "S": "Susceptible",
	"POS": "Positive", "NEG": "Negative", "U": "Significant change up", "D": "Significant change down",
	"B": "Better", "W": "Worse",
}

func (m *mapper) observation(i int, g *orderState, srID string, orderIdx int, counts map[string]int) {
	ev := &m.res.Event
	obs := &fhirmodel.Observation{Subject: ref(ev.Patient.Ref)}
	codeV := m.msg.Field(i, 3)
	cc, ok := codeableConcept(codeV)
	if !ok {
		m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(i, 3), "the result has no observation code; it is not mapped")
		return
	}
	obs.Code = cc
	code := text(codeV.Component(1))
	sub := text(m.msg.Field(i, 4))
	ck := code + "\x00" + sub
	counts[ck]++
	var id string
	if srID != "" {
		id = fhir.ID("Observation", srID, code, sub, strconv.Itoa(counts[ck]))
		obs.BasedOn = []fhirmodel.Reference{*ref("ServiceRequest/" + srID)}
	} else {
		id = fhir.ID("Observation", ev.SendingFacility, ev.ControlID, code, sub, strconv.Itoa(counts[ck]))
	}
	obs.Id = new(id)
	if ev.Encounter != "" {
		obs.Encounter = ref(ev.Encounter)
	}

	st := text(m.msg.Field(i, 11).Component(1))
	if s, ok := observationStatuses[st]; ok {
		obs.Status = s
	} else {
		obs.Status = fhirmodel.ObservationStatusUnknown
		if st == "" {
			m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(i, 11), "no result status; status unknown")
		} else {
			m.issueValue(fhir.SeverityWarning, fhir.CodeCodeInvalid, m.loc(i, 11), "the result status is not in table 0085; status unknown", st)
		}
	}

	r := LabResult{Code: code, Display: text(codeV.Component(2)), Order: orderIdx}
	m.observationValue(i, obs, &r)

	flags := m.msg.Field(i, 8)
	for k := 1; k <= flags.Repetitions(); k++ {
		f := text(flags.Repetition(k).Component(1))
		if f == "" {
			continue
		}
		r.Flags = append(r.Flags, f)
		if criticalFlags[f] {
			r.Critical = true
		}
		if d, ok := interpretationCodes[f]; ok {
			obs.Interpretation = append(obs.Interpretation, fhirmodel.CodeableConcept{
				Coding: []fhirmodel.Coding{coding(interpretationSystem, f, d)},
			})
		} else {
			m.issueValue(fhir.SeverityInformation, fhir.CodeCodeInvalid, m.loc(i, 8), "an abnormal flag is not in table 0078; no interpretation for it", f)
		}
	}
	if rr, ok := referenceRange(text(m.msg.Field(i, 7)), obs.ValueQuantity); ok {
		obs.ReferenceRange = []fhirmodel.ObservationReferenceRange{rr}
	}
	eff, seg := m.field(14, i, g.obr)
	if seg < 0 && g.obr >= 0 {
		eff, seg = m.field(7, g.obr)
	}
	if seg >= 0 {
		if t, ok := m.dateTime(text(eff.Component(1))); ok {
			obs.EffectiveDateTime = new(t)
		}
	}
	r.Ref = m.emit("Observation", id, obs)
	ev.Results = append(ev.Results, r)
}

// observationValue maps OBX-5 by its type OBX-2.
func (m *mapper) observationValue(i int, obs *fhirmodel.Observation, r *LabResult) {
	typ := text(m.msg.Field(i, 2).Component(1))
	val := m.msg.Field(i, 5)
	if val.Empty() || val.Null() {
		return
	}
	unit := m.msg.Field(i, 6)
	switch typ {
	case "NM":
		num, ok := decimal(text(val.Repetition(1)))
		if !ok {
			m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(i, 5), "NM value is not a number; kept as text")
			s := text(val.Repetition(1))
			obs.ValueString = &s
			r.Value = s
			return
		}
		obs.ValueQuantity = quantity(num, unit)
		r.Value, r.Unit = num, unitText(unit)
	case "SN":
		m.structuredNumeric(i, val.Repetition(1), unit, obs, r)
	case "ST", "TX", "FT":
		var parts []string
		for k := 1; k <= val.Repetitions(); k++ {
			parts = append(parts, clean(strings.ReplaceAll(val.Repetition(k).String(), `\.br\`, "\n")))
		}
		s := strings.TrimSpace(strings.Join(parts, "\n"))
		if s != "" {
			obs.ValueString = &s
			r.Value = s
		}
	case "CE", "CWE", "CNE", "CF":
		if cc, ok := codeableConcept(val.Repetition(1)); ok {
			obs.ValueCodeableConcept = &cc
			r.Value = text(val.Repetition(1).Component(2))
			if r.Value == "" {
				r.Value = text(val.Repetition(1).Component(1))
			}
		}
	case "DT", "TS", "DTM":
		if t, ok := m.dateTime(text(val.Repetition(1).Component(1))); ok {
			obs.ValueDateTime = &t
			r.Value = t
		} else {
			m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(i, 5), typ+" value is not an HL7 date/time; left out")
		}
	case "TM":
		if t, ok := timeOfDay(text(val.Repetition(1))); ok {
			obs.ValueTime = &t
			r.Value = t
		} else {
			m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(i, 5), "TM value is not an HL7 time; left out")
		}
	default:
		if typ == "" {
			m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(i, 2), "the result has a value but no value type; the value is left out")
		} else {
			if valueTypes[typ] {
				m.issue(fhir.SeverityInformation, fhir.CodeNotSupported, m.loc(i, 5), "value type "+typ+" is not mapped; the value is left out")
			} else {
				m.issueValue(fhir.SeverityWarning, fhir.CodeCodeInvalid, m.loc(i, 2), "the value type is not in table 0125; the value is left out", typ)
			}
		}
		obs.DataAbsentReason = &fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{
			coding("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unsupported", "Unsupported"),
		}}
	}
}

// valueTypes is HL7 table 0125, the OBX-2 value types.
var valueTypes = map[string]bool{
	"AD": true, "CE": true, "CF": true, "CK": true, "CN": true, "CNE": true, "CP": true, "CWE": true,
	"CX": true, "DR": true, "DT": true, "DTM": true, "ED": true, "FT": true, "ID": true, "IS": true,
	"MA": true, "MO": true, "NA": true, "NM": true, "PN": true, "RP": true, "SN": true, "ST": true,
	"TM": true, "TN": true, "TS": true, "TX": true, "XAD": true, "XCN": true, "XON": true, "XPN": true, "XTN": true,
}

var comparators = map[string]fhirmodel.QuantityComparator{
	"<": fhirmodel.QuantityComparatorLessThan, "<=": fhirmodel.QuantityComparatorLessOrEquals,
	">": fhirmodel.QuantityComparatorGreaterThan, ">=": fhirmodel.QuantityComparatorGreaterOrEquals,
}

func hasComparator(s string) bool {
	_, ok := comparators[s]
	return ok
}

// structuredNumeric maps an SN: comparator (1), number (2), separator or
// suffix (3), second number (4): a quantity, a range (-) or a ratio (: /).
func (m *mapper) structuredNumeric(i int, v, unit hl7.Value, obs *fhirmodel.Observation, r *LabResult) {
	cmp, sep := text(v.Component(1)), text(v.Component(3))
	n1, ok1 := decimal(text(v.Component(2)))
	n2, ok2 := decimal(text(v.Component(4)))
	switch {
	case ok1 && sep == "" && (cmp == "" || cmp == "="):
		obs.ValueQuantity = quantity(n1, unit)
		r.Value = n1
	case ok1 && sep == "" && hasComparator(cmp):
		q := quantity(n1, unit)
		c := comparators[cmp]
		q.Comparator = &c
		obs.ValueQuantity = q
		r.Value = cmp + n1
	case ok1 && ok2 && sep == "-" && cmp == "":
		obs.ValueRange = &fhirmodel.Range{Low: quantity(n1, unit), High: quantity(n2, unit)}
		r.Value = n1 + "-" + n2
	case ok1 && ok2 && (sep == ":" || sep == "/") && cmp == "":
		obs.ValueRatio = &fhirmodel.Ratio{Numerator: quantity(n1, hl7.Value{}), Denominator: quantity(n2, hl7.Value{})}
		r.Value = n1 + sep + n2
	default:
		m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(i, 5), "SN value is not a comparator, number, range or ratio; left out")
		return
	}
	r.Unit = unitText(unit)
}

// quantity builds a Quantity with the OBX-6 units: code (1), text (2),
// system (3); UCUM units get system and code.
func quantity(num string, unit hl7.Value) *fhirmodel.Quantity {
	// One allocation for the Quantity and the values it points to.
	x := &struct {
		q                  fhirmodel.Quantity
		n                  json.Number
		unit, system, code string
	}{n: jsonNumber(num)}
	q := &x.q
	q.Value = &x.n
	code, txt, sys := text(unit.Component(1)), text(unit.Component(2)), text(unit.Component(3))
	if code == "" && txt == "" {
		return q
	}
	x.unit = txt
	if x.unit == "" {
		x.unit = code
	}
	q.Unit = &x.unit
	if code != "" && codeSystem(sys) == "http://unitsofmeasure.org" {
		x.system, x.code = "http://unitsofmeasure.org", codeText(code)
		q.System, q.Code = &x.system, &x.code
	}
	return q
}

func unitText(unit hl7.Value) string {
	if t := text(unit.Component(1)); t != "" {
		return t
	}
	return text(unit.Component(2))
}

// decimal normalises an HL7 NM to a JSON/FHIR decimal, keeping its
// precision ("1.50" stays "1.50"): an optional sign, digits, an optional
// fraction. Leading zeros and a leading "+" are dropped, ".5" becomes "0.5".
func decimal(s string) (string, bool) {
	s = strings.TrimSpace(s)
	neg := false
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" && frac == "" || intPart != "" && !isDigits(intPart) || frac != "" && !isDigits(frac) || len(s) > 32 {
		return "", false
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if hasDot && frac != "" {
		out += "." + frac
	}
	if neg && strings.Trim(out, "0.") != "" {
		out = "-" + out
	}
	return out, true
}

// timeOfDay converts an HL7 TM (HH[MM[SS[.S]]]) to a FHIR time.
func timeOfDay(s string) (string, bool) {
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		s = s[:i]
	}
	frac := ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s, frac = s[:i], s[i+1:]
	}
	if !isDigits(s) || len(s)%2 != 0 || len(s) > 6 || frac != "" && (!isDigits(frac) || len(s) != 6) {
		return "", false
	}
	for len(s) < 6 {
		s += "00"
	}
	h, _ := strconv.Atoi(s[:2])
	mi, _ := strconv.Atoi(s[2:4])
	sec, _ := strconv.Atoi(s[4:6])
	if h > 23 || mi > 59 || sec > 59 {
		return "", false
	}
	out := s[:2] + ":" + s[2:4] + ":" + s[4:6]
	if frac != "" {
		out += "." + frac
	}
	return out, true
}

// referenceRange reads OBX-7: "low-high", "<high", ">low", or text.
func referenceRange(s string, value *fhirmodel.Quantity) (fhirmodel.ObservationReferenceRange, bool) {
	var rr fhirmodel.ObservationReferenceRange
	if s == "" {
		return rr, false
	}
	bound := func(num string) *fhirmodel.Quantity {
		x := &struct {
			q fhirmodel.Quantity
			n json.Number
		}{n: jsonNumber(num)}
		q := &x.q
		q.Value = &x.n
		if value != nil {
			q.Unit, q.System, q.Code = value.Unit, value.System, value.Code
		}
		return q
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok && lo != "" {
		l, okl := decimal(lo)
		h, okh := decimal(hi)
		if okl && okh {
			rr.Low, rr.High = bound(l), bound(h)
			return rr, true
		}
	}
	if strings.HasPrefix(s, "<") {
		if h, ok := decimal(strings.TrimPrefix(strings.TrimPrefix(s, "<"), "=")); ok {
			rr.High = bound(h)
			return rr, true
		}
	}
	if strings.HasPrefix(s, ">") {
		if l, ok := decimal(strings.TrimPrefix(strings.TrimPrefix(s, ">"), "=")); ok {
			rr.Low = bound(l)
			return rr, true
		}
	}
	rr.Text = new(s)
	return rr, true
}
