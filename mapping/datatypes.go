package mapping

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/carebridge/carebridge/hl7"
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Datatype maps, after the HL7 V2-to-FHIR IG's datatype ConceptMaps
// (CX→Identifier, XPN→HumanName, XAD→Address, XTN→ContactPoint,
// CWE→CodeableConcept, DTM→dateTime, XCN→Practitioner). Each function takes
// the HL7 value and returns the FHIR element, or ok=false when there is
// nothing to map.

// text is a value's content with escapes resolved; the HL7 null "" and
// surrounding blanks read as empty.
func text(v hl7.Value) string {
	if v.Empty() || v.Null() {
		return ""
	}
	return clean(strings.TrimSpace(v.String()))
}

// codeText fits a string to the FHIR code type: single spaces between
// words, none at the ends.
func codeText(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ' ' && (i == 0 || i == len(s)-1 || s[i+1] == ' ') || c == '\t' || c == '\n' || c == '\r' {
			return strings.Join(strings.Fields(s), " ")
		}
	}
	return s
}

// clean drops the control characters FHIR strings may not hold (all below
// U+0020 but tab, CR and LF); a feed that sends them still maps.
func clean(s string) string {
	for i := 0; i < len(s); i++ {
		if control(rune(s[i])) {
			return strings.Map(func(r rune) rune {
				if control(r) {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}

// control is a control character a FHIR string may not hold (DEL too: no
// text means it, and URIs may not carry it).
func control(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f
}

// codeSystems maps HL7 table 0396 coding-system names to FHIR system URIs.
var codeSystems = map[string]string{
	"LN":     "http://loinc.org",
	"LOINC":  "http://loinc.org",
	"SCT":    "http://snomed.info/sct",
	"SNM":    "http://snomed.info/sct",
	"SNOMED": "http://snomed.info/sct",
	"UCUM":   "http://unitsofmeasure.org",
	"I10":    "http://hl7.org/fhir/sid/icd-10",
	"I10C":   "http://hl7.org/fhir/sid/icd-10-cm",
	"I9C":    "http://hl7.org/fhir/sid/icd-9-cm",
	"CPT":    "http://www.ama-assn.org/go/cpt",
	"C4":     "http://www.ama-assn.org/go/cpt",
	"RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
	"NDC":    "http://hl7.org/fhir/sid/ndc",
	"CVX":    "http://hl7.org/fhir/sid/cvx",
}

// codeSystem returns the FHIR system for a 0396 name: a known name, an HL7
// table (HL70078 → v2-0078), or "" when unknown (the coding keeps its code
// and display, without a system).
func codeSystem(name string) string {
	if s, ok := codeSystems[strings.ToUpper(name)]; ok {
		return s
	}
	if len(name) == 9 && strings.HasPrefix(strings.ToUpper(name), "HL7") && isDigits(name[3:]) {
		return "http://terminology.hl7.org/CodeSystem/v2-" + name[5:]
	}
	return ""
}

// isOID reports whether s is an OID in dotted form (digits and single dots).
func isOID(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// codeableConcept maps CE/CWE/CNE: the primary triplet (1-3), the alternate
// one (4-6) and original text (9, v2.5+) or the primary text.
func codeableConcept(v hl7.Value) (fhirmodel.CodeableConcept, bool) {
	var cc fhirmodel.CodeableConcept
	var strs *[7]string // the strings the concept points to, in one allocation
	str := func(k int, s string) *string {
		if strs == nil {
			strs = new([7]string)
		}
		strs[k] = s
		return &strs[k]
	}
	for k, c := range [2]int{1, 4} {
		code := text(v.Component(c))
		if code == "" {
			continue
		}
		cd := fhirmodel.Coding{Code: str(3*k, codeText(code))}
		if d := text(v.Component(c + 1)); d != "" {
			cd.Display = str(3*k+1, d)
		}
		if s := codeSystem(text(v.Component(c + 2))); s != "" {
			cd.System = str(3*k+2, s)
		}
		if cc.Coding == nil {
			cc.Coding = make([]fhirmodel.Coding, 0, 2)
		}
		cc.Coding = append(cc.Coding, cd)
	}
	t := text(v.Component(9))
	if t == "" {
		t = text(v.Component(2))
	}
	if t != "" {
		cc.Text = str(6, t)
	}
	return cc, len(cc.Coding) > 0 || cc.Text != nil
}

// coding builds a coding of a FHIR or HL7 code system.
func coding(system, code, display string) fhirmodel.Coding {
	x := &[3]string{system, codeText(code), display} // one allocation
	c := fhirmodel.Coding{System: &x[0], Code: &x[1]}
	if display != "" {
		c.Display = &x[2]
	}
	return c
}

// identifierSystem is the system URI of an assigning authority (HD, given as
// namespace, universal id and its type): urn:oid: for ISO, the URI itself
// for URI, else a carebridge URN naming the namespace.
func (m *mapper) identifierSystem(namespace, universal, kind string) string {
	if strings.ContainsAny(universal, " \t\r\n") {
		// Not a URI or OID; name the authority by namespace instead.
		if namespace == "" {
			namespace = universal
		}
		universal = ""
	}
	switch strings.ToUpper(kind) {
	case "ISO":
		if isOID(universal) {
			return "urn:oid:" + universal
		}
	case "URI":
		if universal != "" {
			return universal
		}
	}
	if namespace == "" {
		namespace = universal
	}
	if namespace == "" {
		return ""
	}
	return m.cfg.IdentifierSystemBase + url.PathEscape(namespace)
}

// hd reads an HD that is a component (namespace, universal id and type as
// subcomponents).
func (m *mapper) hdSystem(v hl7.Value) string {
	return m.identifierSystem(text(v.Subcomponent(1)), text(v.Subcomponent(2)), text(v.Subcomponent(3)))
}

// identifier maps a CX: value (1), assigning authority (4), type (5).
func (m *mapper) identifier(v hl7.Value) (fhirmodel.Identifier, bool) {
	value := text(v.Component(1))
	if value == "" {
		return fhirmodel.Identifier{}, false
	}
	id := fhirmodel.Identifier{Value: new(value)}
	if s := m.hdSystem(v.Component(4)); s != "" {
		id.System = new(s)
	}
	if t := text(v.Component(5)); t != "" {
		id.Type = &fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{
			coding("http://terminology.hl7.org/CodeSystem/v2-0203", t, ""),
		}}
	}
	return id, true
}

// entityIdentifier maps an EI (entity id 1, namespace 2, universal id 3,
// type 4), typed as placer (PLAC) or filler (FILL) number.
func (m *mapper) entityIdentifier(v hl7.Value, typ string) (fhirmodel.Identifier, bool) {
	value := text(v.Component(1))
	if value == "" {
		return fhirmodel.Identifier{}, false
	}
	id := fhirmodel.Identifier{Value: new(value)}
	if s := m.identifierSystem(text(v.Component(2)), text(v.Component(3)), text(v.Component(4))); s != "" {
		id.System = new(s)
	}
	if typ != "" {
		id.Type = &fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{
			coding("http://terminology.hl7.org/CodeSystem/v2-0203", typ, ""),
		}}
	}
	return id, true
}

// identifierKey is the stable text an id is derived from.
func identifierKey(id fhirmodel.Identifier) (system, value string) {
	if id.System != nil {
		system = *id.System
	}
	if id.Value != nil {
		value = *id.Value
	}
	return system, value
}

var nameUses = map[string]fhirmodel.NameUse{
	"L": fhirmodel.NameUseOfficial,
	"D": fhirmodel.NameUseUsual,
	"M": fhirmodel.NameUseMaiden,
	"N": fhirmodel.NameUseNickname,
	"S": fhirmodel.NameUseAnonymous,
	"T": fhirmodel.NameUseTemp,
}

// humanName maps the name part shared by XPN and XCN, starting at the family
// name component: family (FN, surname first), given, second given, suffix,
// prefix, degree.
func humanName(v hl7.Value, family int) (fhirmodel.HumanName, bool) {
	var n fhirmodel.HumanName
	if f := text(v.Component(family).Subcomponent(1)); f != "" {
		n.Family = new(f)
	}
	for _, c := range [2]int{family + 1, family + 2} {
		if g := text(v.Component(c)); g != "" {
			n.Given = append(n.Given, g)
		}
	}
	if s := text(v.Component(family + 3)); s != "" {
		n.Suffix = append(n.Suffix, s)
	}
	if p := text(v.Component(family + 4)); p != "" {
		n.Prefix = append(n.Prefix, p)
	}
	if d := text(v.Component(family + 5)); d != "" {
		n.Suffix = append(n.Suffix, d)
	}
	return n, n.Family != nil || len(n.Given) > 0
}

// personName maps an XPN; component 7 is the name type.
func personName(v hl7.Value) (fhirmodel.HumanName, bool) {
	n, ok := humanName(v, 1)
	if u, known := nameUses[text(v.Component(7))]; ok && known {
		n.Use = &u
	}
	return n, ok
}

// address maps an XAD: street (SAD), other designation, city, state, zip,
// country, address type.
func address(v hl7.Value) (fhirmodel.Address, bool) {
	var a fhirmodel.Address
	if l := text(v.Component(1).Subcomponent(1)); l != "" {
		a.Line = append(a.Line, l)
	}
	if l := text(v.Component(2)); l != "" {
		a.Line = append(a.Line, l)
	}
	for c, dst := range [...]**string{3: &a.City, 4: &a.State, 5: &a.PostalCode, 6: &a.Country} {
		if dst == nil {
			continue
		}
		if s := text(v.Component(c)); s != "" {
			*dst = new(s)
		}
	}
	switch text(v.Component(7)) {
	case "H", "P":
		a.Use = new(fhirmodel.AddressUseHome)
	case "B", "O":
		a.Use = new(fhirmodel.AddressUseWork)
	case "C":
		a.Use = new(fhirmodel.AddressUseTemp)
	case "BA":
		a.Use = new(fhirmodel.AddressUseOld)
	case "M":
		a.Type = new(fhirmodel.AddressTypePostal)
	}
	return a, len(a.Line) > 0 || a.City != nil || a.State != nil || a.PostalCode != nil || a.Country != nil
}

// contactPoint maps an XTN: the number as sent (1, before v2.5) or built
// from area code and local number (6, 7, extension 8), or the email (4);
// use (2) and equipment type (3). business marks PID-14.
func contactPoint(v hl7.Value, business bool) (fhirmodel.ContactPoint, bool) {
	var cp fhirmodel.ContactPoint
	equip := text(v.Component(3))
	value := ""
	switch {
	case text(v.Component(4)) != "":
		value = text(v.Component(4))
		cp.System = new(fhirmodel.ContactPointSystemEmail)
	case text(v.Component(7)) != "":
		value = text(v.Component(7))
		if a := text(v.Component(6)); a != "" {
			value = a + " " + value
		}
		if c := text(v.Component(5)); c != "" {
			value = "+" + c + " " + value
		}
		if x := text(v.Component(8)); x != "" {
			value += " x" + x
		}
	default:
		value = text(v.Component(1))
	}
	if value == "" {
		return cp, false
	}
	cp.Value = new(value)
	if cp.System == nil {
		switch equip {
		case "FX":
			cp.System = new(fhirmodel.ContactPointSystemFax)
		case "Internet", "X.400":
			cp.System = new(fhirmodel.ContactPointSystemEmail)
		case "BP":
			cp.System = new(fhirmodel.ContactPointSystemPager)
		default:
			cp.System = new(fhirmodel.ContactPointSystemPhone)
		}
	}
	switch {
	case equip == "CP":
		cp.Use = new(fhirmodel.ContactPointUseMobile)
	case business || text(v.Component(2)) == "WPN":
		cp.Use = new(fhirmodel.ContactPointUseWork)
	case text(v.Component(2)) == "PRN":
		cp.Use = new(fhirmodel.ContactPointUseHome)
	}
	return cp, true
}

// dateTime converts an HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ])
// to a FHIR dateTime. A time without an offset is read in loc. ok is false
// for anything that is not such a timestamp.
func dateTime(s string, loc *time.Location) (string, bool) {
	s = strings.TrimSpace(s)
	digits, offset := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		digits, offset = s[:i], s[i:]
	}
	frac := ""
	if i := strings.IndexByte(digits, '.'); i >= 0 {
		digits, frac = digits[:i], digits[i+1:]
		if !isDigits(frac) || len(digits) != 14 {
			return "", false
		}
	}
	if !isDigits(digits) {
		return "", false
	}
	switch len(digits) {
	case 4, 6, 8:
		if offset != "" && len(digits) < 8 {
			return "", false
		}
		return date(digits)
	case 10, 12, 14:
	default:
		return "", false
	}
	num := func(i, j int) int {
		if j > len(digits) {
			return 0
		}
		n, _ := strconv.Atoi(digits[i:j])
		return n
	}
	y, mo, d, h, mi, sec := num(0, 4), num(4, 6), num(6, 8), num(8, 10), num(10, 12), num(12, 14)
	if offset != "" {
		if len(offset) != 5 || !isDigits(offset[1:]) {
			return "", false
		}
		oh, _ := strconv.Atoi(offset[1:3])
		om, _ := strconv.Atoi(offset[3:5])
		if oh > 14 || om > 59 {
			return "", false
		}
		secs := (oh*60 + om) * 60
		if offset[0] == '-' {
			secs = -secs
		}
		loc = time.FixedZone("", secs)
	}
	if loc == nil {
		loc = time.UTC
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, 0, loc)
	if t.Year() != y || int(t.Month()) != mo || t.Day() != d || t.Hour() != h || t.Minute() != mi || t.Second() != sec {
		return "", false
	}
	out := t.Format("2006-01-02T15:04:05")
	if frac != "" {
		out += "." + frac
	}
	return out + t.Format("Z07:00"), true
}

// date converts the date part of a DT/DTM to a FHIR date (YYYY, YYYY-MM or
// YYYY-MM-DD).
func date(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "+-."); i >= 0 {
		s = s[:i]
	}
	if len(s) > 8 {
		s = s[:8]
	}
	if !isDigits(s) {
		return "", false
	}
	switch len(s) {
	case 4:
		return s, true
	case 6:
		if m, _ := strconv.Atoi(s[4:]); m < 1 || m > 12 {
			return "", false
		}
		return s[:4] + "-" + s[4:], true
	case 8:
		y, _ := strconv.Atoi(s[:4])
		mo, _ := strconv.Atoi(s[4:6])
		d, _ := strconv.Atoi(s[6:])
		t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
		if t.Year() != y || int(t.Month()) != mo || t.Day() != d {
			return "", false
		}
		return s[:4] + "-" + s[4:6] + "-" + s[6:], true
	}
	return "", false
}

func jsonNumber(s string) json.Number { return json.Number(s) }
