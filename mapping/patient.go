package mapping

import (
	"strings"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

var genders = map[string]fhirmodel.AdministrativeGender{
	"F": fhirmodel.AdministrativeGenderFemale,
	"M": fhirmodel.AdministrativeGenderMale,
	"O": fhirmodel.AdministrativeGenderOther,
	"A": fhirmodel.AdministrativeGenderOther,
	"N": fhirmodel.AdministrativeGenderOther,
	"U": fhirmodel.AdministrativeGenderUnknown,
}

// identifiers maps a CX list (PID-3, MRG-1) and picks the one the resource
// id derives from: the first of type MR, else the first.
func (m *mapper) identifiers(v hl7.Value) (ids []fhirmodel.Identifier, key int) {
	key = -1
	keyIsMR := false
	for r := 1; r <= v.Repetitions(); r++ {
		rep := v.Repetition(r)
		id, ok := m.identifier(rep)
		if !ok {
			continue
		}
		isMR := text(rep.Component(5)) == "MR"
		if key < 0 || isMR && !keyIsMR {
			key, keyIsMR = len(ids), isMR
		}
		ids = append(ids, id)
	}
	return ids, key
}

func patientID(id fhirmodel.Identifier) string {
	sys, val := identifierKey(id)
	return fhir.ID("Patient", sys, val)
}

// patient maps PID (and PD1) to the Patient; false when there is no
// identifier to derive an id from, in which case nothing else is mapped.
func (m *mapper) patient(pid, pd1 int) bool {
	ids, key := m.identifiers(m.msg.Field(pid, 3))
	if key < 0 {
		m.issue(fhir.SeverityError, fhir.CodeRequired, m.loc(pid, 3),
			"the patient has no identifier; nothing about them is mapped")
		return false
	}
	p := &fhirmodel.Patient{Identifier: ids, Active: new(true)}
	id := patientID(ids[key])
	p.Id = new(id)

	names := m.msg.Field(pid, 5)
	for r := 1; r <= names.Repetitions(); r++ {
		if n, ok := personName(names.Repetition(r)); ok {
			p.Name = append(p.Name, n)
		}
	}
	if len(p.Name) == 0 {
		m.issue(fhir.SeverityWarning, fhir.CodeRequired, m.loc(pid, 5), "the patient has no name")
	}
	if s := text(m.msg.Field(pid, 7).Component(1)); s != "" {
		if d, ok := date(s); ok {
			p.BirthDate = new(d)
		} else {
			m.issue(fhir.SeverityWarning, fhir.CodeValue, m.loc(pid, 7), "birth date is not an HL7 date; left out")
		}
	}
	if s := text(m.msg.Field(pid, 8).Component(1)); s != "" {
		if g, ok := genders[s]; ok {
			p.Gender = &g
		} else {
			m.issueValue(fhir.SeverityWarning, fhir.CodeCodeInvalid, m.loc(pid, 8), "the administrative sex is not in table 0001; left out", s)
		}
	}
	addrs := m.msg.Field(pid, 11)
	for r := 1; r <= addrs.Repetitions(); r++ {
		if a, ok := address(addrs.Repetition(r)); ok {
			p.Address = append(p.Address, a)
		}
	}
	for _, f := range [2]int{13, 14} {
		tel := m.msg.Field(pid, f)
		for r := 1; r <= tel.Repetitions(); r++ {
			if cp, ok := contactPoint(tel.Repetition(r), f == 14); ok {
				p.Telecom = append(p.Telecom, cp)
			}
		}
	}
	switch text(m.msg.Field(pid, 30)) {
	case "Y":
		if t, ok := m.dateTime(text(m.msg.Field(pid, 29).Component(1))); ok {
			p.DeceasedDateTime = new(t)
		} else {
			p.DeceasedBoolean = new(true)
		}
	case "N":
		p.DeceasedBoolean = new(false)
	}
	if pd1 >= 0 {
		pcp := m.msg.Field(pd1, 4)
		for r := 1; r <= pcp.Repetitions(); r++ {
			if ref, name, ok := m.practitioner(pcp.Repetition(r), m.loc(pd1, 4)); ok {
				p.GeneralPractitioner = append(p.GeneralPractitioner, fhirmodel.Reference{Reference: new(ref)})
				m.res.Event.Providers = append(m.res.Event.Providers, Provider{Role: RolePrimaryCare, Ref: ref, Name: name})
			}
		}
	}
	// The patient goes first in the bundle, before the practitioners.
	m.res.Resources = append([]fhir.Resource{{Type: "Patient", ID: id, Body: p}}, m.res.Resources...)
	m.seen["Patient/"+id] = true
	ev := &m.res.Event
	ev.Patient = &Patient{Ref: "Patient/" + id, MRN: *ids[key].Value}
	if len(p.Name) > 0 {
		ev.Patient.Name = displayName(p.Name[0], true)
	}
	return true
}

// displayName is "FAMILY, Given" (familyFirst) or "Prefix Given Family".
func displayName(n fhirmodel.HumanName, familyFirst bool) string {
	fam := ""
	if n.Family != nil {
		fam = *n.Family
	}
	given := ""
	if len(n.Given) > 0 {
		given = n.Given[0]
	}
	if familyFirst {
		switch {
		case fam == "":
			return given
		case given == "":
			return fam
		}
		return fam + ", " + given
	}
	s := ""
	for _, p := range n.Prefix {
		s += p + " "
	}
	if given != "" {
		s += given + " "
	}
	return s + fam
}

// practitioner maps an XCN to a Practitioner resource and returns its
// reference and display name.
func (m *mapper) practitioner(v hl7.Value, loc string) (ref, name string, ok bool) {
	n, hasName := humanName(v, 2)
	idv := text(v.Component(1))
	if idv == "" && !hasName {
		return "", "", false
	}
	pr := &fhirmodel.Practitioner{}
	var id string
	if idv != "" {
		ident := fhirmodel.Identifier{Value: new(idv)}
		if s := m.hdSystem(v.Component(9)); s != "" {
			ident.System = new(s)
		}
		pr.Identifier = []fhirmodel.Identifier{ident}
		sys, val := identifierKey(ident)
		id = fhir.ID("Practitioner", sys, val)
	} else {
		m.issue(fhir.SeverityWarning, fhir.CodeRequired, loc, "the practitioner has no identifier; their id is derived from their name")
		fam := ""
		if n.Family != nil {
			fam = *n.Family
		}
		id = fhir.ID("Practitioner", "name", fam, strings.Join(n.Given, " "))
	}
	if hasName {
		pr.Name = []fhirmodel.HumanName{n}
		name = displayName(n, false)
	}
	pr.Id = new(id)
	return m.emit("Practitioner", id, pr), name, true
}
