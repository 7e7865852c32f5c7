package audit

import (
	"slices"
	"strings"
	"testing"
	"time"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

func TestActionLookups(t *testing.T) {
	const (
		dcm  = "http://dicom.nema.org/resources/ontology/DCM"
		evt  = "http://terminology.hl7.org/CodeSystem/audit-event-type"
		rest = "http://hl7.org/fhir/restful-interaction"
	)
	tests := []struct {
		name string
		got  []string
		want string // comma-separated
	}{
		{"type rest", ActionsOfType(evt, "rest"),
			"rest.create,rest.delete,rest.history-instance,rest.operation,rest.patch,rest.read,rest.search-type,rest.update,rest.vread"},
		{"type rest of another system", ActionsOfType(dcm, "rest"), ""},
		{"type login, any system", ActionsOfType("", "110114"), "client.token,user.break-glass,user.login,user.logout"},
		{"type import", ActionsOfType(dcm, "110107"), "message.accepted,message.rejected"},
		{"type export", ActionsOfType(dcm, "110106"), "communication.delivered"},
		{"type activity", ActionsOfType(dcm, "110100"),
			"communication.created,communication.escalated,communication.read,communication.recalled,message.mapped,message.replayed"},
		{"type unknown code", ActionsOfType(dcm, "999"), ""},
		{"type any code of the event-type system", ActionsOfType(evt, ""), strings.Join(ActionsOfType(evt, "rest"), ",")},
		{"subtype read", ActionsOfSubtype(rest, "read"), "rest.read"},
		{"subtype read, any system", ActionsOfSubtype("", "read"), "read,rest.read"},
		{"subtype search-type", ActionsOfSubtype(rest, "search-type"), "rest.search-type"},
		{"subtype carebridge action", ActionsOfSubtype(SystemAction, "message.mapped"), "message.mapped"},
		{"subtype unknown carebridge action", ActionsOfSubtype(SystemAction, "something.new"), "something.new"},
		{"subtype carebridge action, any system", ActionsOfSubtype("", "message.mapped"), "message.mapped"},
		{"subtype action under the restful system", ActionsOfSubtype(rest, "message.mapped"), ""},
		{"subtype other system", ActionsOfSubtype("urn:other", "read"), ""},
		{"action C", ActionsOfAction("C"),
			"communication.created,message.accepted,message.mapped,message.rejected,rest.create"},
		{"action R", ActionsOfAction("R"), "communication.delivered,rest.history-instance,rest.read,rest.vread"},
		{"action U", ActionsOfAction("U"), "communication.read,communication.recalled,rest.patch,rest.update"},
		{"action D", ActionsOfAction("D"), "rest.delete"},
		{"action lower case", ActionsOfAction("c"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(tt.got, ","); got != tt.want {
				t.Errorf("got %s\nwant %s", got, tt.want)
			}
		})
	}
	if got := ActionsOfAction("E"); !slices.Contains(got, "user.login") || !slices.Contains(got, "rest.search-type") || slices.Contains(got, "rest.read") {
		t.Errorf("action E: %v", got)
	}
}

// TestActionLookupsAgreeWithEvent: every known action is found by the
// type, each subtype and the action its AuditEvent carries, and by no
// other type or action.
func TestActionLookupsAgreeWithEvent(t *testing.T) {
	known := KnownActions()
	if len(known) != len(actionKinds)+len(restActions) || !slices.IsSorted(known) {
		t.Fatalf("KnownActions = %v", known)
	}
	for _, a := range known {
		ev := Event(Record{Chain: "c", Seq: 1, At: time.Unix(0, 0), Action: a}, Source{}).Body.(*fhirmodel.AuditEvent)
		if !slices.Contains(ActionsOfType(*ev.Type.System, *ev.Type.Code), a) {
			t.Errorf("%s: not found by its type %s|%s", a, *ev.Type.System, *ev.Type.Code)
		}
		for _, sub := range ev.Subtype {
			if !slices.Contains(ActionsOfSubtype(*sub.System, *sub.Code), a) {
				t.Errorf("%s: not found by its subtype %s|%s", a, *sub.System, *sub.Code)
			}
		}
		if !slices.Contains(ActionsOfAction(ev.Action.Code()), a) {
			t.Errorf("%s: not found by its action %s", a, ev.Action.Code())
		}
		for _, code := range []string{"C", "R", "U", "D", "E"} {
			if code != ev.Action.Code() && slices.Contains(ActionsOfAction(code), a) {
				t.Errorf("%s: found by action %s, its AuditEvent has %s", a, code, ev.Action.Code())
			}
		}
		for _, typ := range []string{"110107", "110106", "110100", "110114", "rest"} {
			if typ != *ev.Type.Code && slices.Contains(ActionsOfType("", typ), a) {
				t.Errorf("%s: found by type %s, its AuditEvent has %s", a, typ, *ev.Type.Code)
			}
		}
	}
}
