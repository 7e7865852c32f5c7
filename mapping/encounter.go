package mapping

import (
	"strings"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// merge maps an MRG (A40): the record merged away (MRG-1) becomes an
// inactive Patient replaced by the surviving one, which links back to it.
func (m *mapper) merge(mrg int) {
	ids, key := m.identifiers(m.msg.Field(mrg, 1))
	if key < 0 {
		m.issue(fhir.SeverityError, fhir.CodeRequired, m.loc(mrg, 1), "the merged record has no identifier; no link is mapped")
		return
	}
	ev := &m.res.Event
	priorID := patientID(ids[key])
	if ev.Patient.Ref == "Patient/"+priorID {
		m.issue(fhir.SeverityError, fhir.CodeValue, m.loc(mrg, 1), "the merged record is the surviving record; no link is mapped")
		return
	}
	surviving := m.res.Resources[0].Body.(*fhirmodel.Patient)
	surviving.Link = append(surviving.Link, fhirmodel.PatientLink{
		Other: fhirmodel.Reference{Reference: new("Patient/" + priorID)},
		Type:  fhirmodel.LinkTypeReplaces,
	})
	prior := &fhirmodel.Patient{
		Id:         new(priorID),
		Identifier: ids,
		Active:     new(false),
		Link: []fhirmodel.PatientLink{{
			Other: fhirmodel.Reference{Reference: new(ev.Patient.Ref)},
			Type:  fhirmodel.LinkTypeReplacedBy,
		}},
	}
	if ev.PriorPatient == "" {
		ev.PriorPatient = "Patient/" + priorID
	}
	m.emit("Patient", priorID, prior)
}

// encounterClasses maps table 0004 (patient class) to v3 ActCode.
var encounterClasses = map[string][2]string{
	"E": {"EMER", "emergency"},
	"I": {"IMP", "inpatient encounter"},
	"O": {"AMB", "ambulatory"},
	"P": {"PRENC", "pre-admission"},
	"R": {"IMP", "inpatient encounter"}, // recurring patient
	"B": {"IMP", "inpatient encounter"}, // obstetrics
	"C": {"AMB", "ambulatory"},          // commercial account
}

var participantTypes = map[Role][2]string{
	RoleAttending:  {"ATND", "attender"},
	RoleReferring:  {"REF", "referrer"},
	RoleConsulting: {"CON", "consultant"},
	RoleAdmitting:  {"ADM", "admitter"},
}

// encounterStatus is the status a trigger sets; for messages that do not
// move the visit (A08, orders, results) it follows the admit and discharge
// times.
func (m *mapper) encounterStatus(admit, discharge bool) fhirmodel.EncounterStatus {
	switch m.res.Event.Trigger {
	case "ADT^A01", "ADT^A02", "ADT^A04", "ADT^A12", "ADT^A13":
		return fhirmodel.EncounterStatusInProgress
	case "ADT^A03":
		return fhirmodel.EncounterStatusFinished
	case "ADT^A05":
		return fhirmodel.EncounterStatusPlanned
	case "ADT^A11":
		return fhirmodel.EncounterStatusCancelled
	}
	switch {
	case discharge:
		return fhirmodel.EncounterStatusFinished
	case admit:
		return fhirmodel.EncounterStatusInProgress
	}
	return fhirmodel.EncounterStatusUnknown
}

// encounter maps PV1 (and PV2) to the Encounter, its Location and the
// Practitioners it names.
func (m *mapper) encounter(pv1, pv2 int) {
	ev := &m.res.Event
	enc := &fhirmodel.Encounter{Subject: ref(ev.Patient.Ref)}

	// The id: the visit number, else the patient and admit time.
	admitRaw := text(m.msg.Field(pv1, 44).Component(1))
	var id string
	if vn, ok := m.identifier(m.msg.Field(pv1, 19)); ok {
		vn.Type = &fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{coding("http://terminology.hl7.org/CodeSystem/v2-0203", "VN", "")}}
		enc.Identifier = []fhirmodel.Identifier{vn}
		sys, val := identifierKey(vn)
		id = fhir.ID("Encounter", sys, val)
	} else if admitRaw != "" {
		m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(pv1, 19), "no visit number; the encounter id is derived from the patient and admit time")
		id = fhir.ID("Encounter", ev.Patient.Ref, admitRaw)
	} else {
		m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(pv1, 19), "no visit number and no admit time; no encounter is mapped")
	}

	class := text(m.msg.Field(pv1, 2).Component(1))
	ev.PatientClass = class
	if c, ok := encounterClasses[class]; ok {
		enc.Class = coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", c[0], c[1])
	} else {
		if class == "" {
			m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(pv1, 2), "no patient class; the encounter class is unknown")
		} else {
			m.issueValue(fhir.SeverityWarning, fhir.CodeCodeInvalid, m.loc(pv1, 2), "the patient class is not in table 0004; the encounter class is unknown", class)
		}
		enc.Class = coding("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK", "unknown")
	}

	period := &fhirmodel.Period{}
	if admitRaw != "" {
		if t, ok := m.dateTime(admitRaw); ok {
			period.Start = new(t)
		} else {
			m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(pv1, 44), "admit time is not an HL7 timestamp; left out")
		}
	}
	dischargeRaw := text(m.msg.Field(pv1, 45).Component(1))
	if dischargeRaw != "" && m.res.Event.Trigger != "ADT^A13" {
		if t, ok := m.dateTime(dischargeRaw); ok {
			period.End = new(t)
		} else {
			m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(pv1, 45), "discharge time is not an HL7 timestamp; left out")
		}
	}
	if period.Start != nil || period.End != nil {
		enc.Period = period
	}
	enc.Status = m.encounterStatus(period.Start != nil, period.End != nil)

	// Locations: where the patient is; after a transfer, also where they were.
	if lref, l, ok := m.location(m.msg.Field(pv1, 3)); ok {
		ev.Location = l
		status := fhirmodel.EncounterLocationStatusActive
		switch enc.Status {
		case fhirmodel.EncounterStatusFinished:
			status = fhirmodel.EncounterLocationStatusCompleted
		case fhirmodel.EncounterStatusPlanned:
			status = fhirmodel.EncounterLocationStatusPlanned
		}
		enc.Location = append(enc.Location, fhirmodel.EncounterLocation{Location: *ref(lref), Status: &status})
	}
	if ev.Trigger == "ADT^A02" {
		if lref, _, ok := m.location(m.msg.Field(pv1, 6)); ok {
			enc.Location = append(enc.Location, fhirmodel.EncounterLocation{
				Location: *ref(lref), Status: new(fhirmodel.EncounterLocationStatusCompleted),
			})
		}
	}

	for _, p := range []struct {
		field int
		role  Role
	}{{7, RoleAttending}, {8, RoleReferring}, {9, RoleConsulting}, {17, RoleAdmitting}} {
		f := m.msg.Field(pv1, p.field)
		for r := 1; r <= f.Repetitions(); r++ {
			pref, name, ok := m.practitioner(f.Repetition(r), m.loc(pv1, p.field))
			if !ok {
				continue
			}
			t := participantTypes[p.role]
			enc.Participant = append(enc.Participant, fhirmodel.EncounterParticipant{
				Type: []fhirmodel.CodeableConcept{{Coding: []fhirmodel.Coding{
					coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", t[0], t[1]),
				}}},
				Individual: ref(pref),
			})
			ev.Providers = append(ev.Providers, Provider{Role: p.role, Ref: pref, Name: name})
		}
	}
	if pv2 >= 0 {
		if cc, ok := codeableConcept(m.msg.Field(pv2, 3)); ok {
			enc.ReasonCode = []fhirmodel.CodeableConcept{cc}
		}
	}
	if id != "" {
		enc.Id = new(id)
		ev.Encounter = m.emit("Encounter", id, enc)
	}
}

// location maps a PL (point of care, room, bed, facility) to a Location.
func (m *mapper) location(v hl7.Value) (string, Location, bool) {
	l := Location{
		Unit:     text(v.Component(1).Subcomponent(1)),
		Room:     text(v.Component(2).Subcomponent(1)),
		Bed:      text(v.Component(3).Subcomponent(1)),
		Facility: text(v.Component(4).Subcomponent(1)),
	}
	if l.Unit == "" && l.Room == "" && l.Bed == "" {
		return "", l, false
	}
	var name []string
	for _, s := range [...]string{l.Facility, l.Unit, l.Room, l.Bed} {
		if s != "" {
			name = append(name, s)
		}
	}
	typ := [2]string{"wa", "Ward"}
	switch {
	case l.Bed != "":
		typ = [2]string{"bd", "Bed"}
	case l.Room != "":
		typ = [2]string{"ro", "Room"}
	}
	id := fhir.ID("Location", l.Facility, l.Unit, l.Room, l.Bed)
	loc := &fhirmodel.Location{
		Id:   new(id),
		Name: new(strings.Join(name, " ")),
		Mode: new(fhirmodel.LocationModeInstance),
		PhysicalType: &fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{
			coding("http://terminology.hl7.org/CodeSystem/location-physical-type", typ[0], typ[1]),
		}},
	}
	l.Ref = m.emit("Location", id, loc)
	return l.Ref, l, true
}
