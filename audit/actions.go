package audit

import (
	"slices"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// The lookups below answer AuditEvent searches
// (https://hl7.org/fhir/R4/auditevent.html#search) by type, subtype and
// action: they turn a coding into the actions whose AuditEvents carry it,
// over the actions carebridge knows (the classified ones and the rest.*
// interactions). An action it does not know shows as an Application
// Activity that executes, and is found only by its own name as subtype.

// KnownActions are the actions carebridge records, sorted.
func KnownActions() []string {
	out := make([]string, 0, len(actionKinds)+len(restActions))
	for a := range actionKinds {
		out = append(out, a)
	}
	for i := range restActions {
		out = append(out, "rest."+i)
	}
	slices.Sort(out)
	return out
}

// matches reports whether c has system and code; an empty system or code
// matches any.
func matches(c fhirmodel.Coding, system, code string) bool {
	return (system == "" || c.System != nil && *c.System == system) && (code == "" || c.Code != nil && *c.Code == code)
}

// ActionsOfType returns, sorted, the known actions whose AuditEvent type
// is system|code (an empty system: any system; an empty code: any code of
// system): "110114" gives the logins, and
// "http://terminology.hl7.org/CodeSystem/audit-event-type|rest" the API
// interactions.
func ActionsOfType(system, code string) []string {
	var out []string
	for _, a := range KnownActions() {
		if matches(classify(a).typ, system, code) {
			out = append(out, a)
		}
	}
	return out
}

// ActionsOfSubtype returns, sorted, the actions whose AuditEvent has a
// subtype system|code (an empty system: any system; an empty code: any
// code of system): the known rest.* actions of a RESTful interaction
// ("read" gives rest.read), and, as every AuditEvent lists its action
// under SystemAction, code itself when the system is SystemAction or
// empty, known or not. With SystemAction and no code every record
// matches, which no list of actions can say: the caller should not
// constrain the action then.
func ActionsOfSubtype(system, code string) []string {
	var out []string
	for _, a := range KnownActions() {
		k := classify(a)
		if k.subtype != nil && matches(*k.subtype, system, code) {
			out = append(out, a)
		}
	}
	if code != "" && (system == "" || system == SystemAction) && !slices.Contains(out, code) {
		out = append(out, code)
		slices.Sort(out)
	}
	return out
}

// ActionsOfAction returns, sorted, the known actions whose AuditEvent
// action is code: C, R, U, D or E.
func ActionsOfAction(code string) []string {
	var out []string
	for _, a := range KnownActions() {
		if classify(a).action.Code() == code {
			out = append(out, a)
		}
	}
	return out
}
