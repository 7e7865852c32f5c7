package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/fhir"
)

// TestEventsAreValidBALPAuditEvents: every kind of record becomes an
// AuditEvent that google/fhir accepts as R4, with the BALP elements.
func TestEventsAreValidBALPAuditEvents(t *testing.T) {
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	base := Record{Chain: "node-a", At: t0, Correlation: "0195f0b2-7c1e-7a3b-9d1e-5f2a0c4e8b11"}
	var records []Record
	for action := range actionKinds {
		r := base
		r.Action = action
		r.Actor = Actor{Kind: ActorSystem, ID: "carebridge"}
		r.Entities = []string{"Communication/7d9e95fe", "inbound/0195f0b2-7c1e"}
		r.Patient = "Patient/752afa8a"
		records = append(records, r)
	}
	records = append(records,
		Record{Chain: "node-a", At: t0, Action: "message.rejected", Outcome: OutcomeSerious,
			Actor: Actor{Kind: ActorPeer, ID: "ENGINE-A", Address: "10.0.0.7"}, Entities: []string{"inbound/1"}},
		Record{Chain: "node-a", At: t0, Action: "rest.read", Actor: Actor{Kind: ActorUser, ID: "dr.welby", Address: "192.0.2.10"},
			Entities: []string{"Communication/1"}, Patient: "Patient/1"},
		Record{Chain: "node-a", At: t0, Action: "rest.frobnicate", Actor: Actor{Kind: ActorClient, ID: "ehr-1"}},
		Record{Chain: "node-a", At: t0, Action: "something.new"},
	)
	for i := range records {
		r, err := Link(nil, records[i])
		if err != nil {
			t.Fatal(err)
		}
		res := Event(r, Source{Site: "Good Health"})
		b, err := v.ValidateResource(res)
		if err != nil {
			var ve *fhir.ValidationError
			errors.As(err, &ve)
			t.Fatalf("%s: not valid R4: %v %s\n%s", r.Action, err, ve.Diagnostics, b)
		}
		if std, _ := json.Marshal(res.Body); !bytes.Equal(b, std) {
			t.Errorf("%s: the fast encoder differs from encoding/json:\n%s\n%s", r.Action, b, std)
		}
		if res.ID != AuditEventID(r) || res.ID != fhir.ID("AuditEvent", "node-a", "1") {
			t.Errorf("%s: id %s is not derived from chain and sequence", r.Action, res.ID)
		}
		var got struct {
			Type    struct{ System, Code string }
			Subtype []struct{ System, Code string }
			Action  string
			Outcome string
			Agent   []struct {
				Requestor bool
				Network   *struct{ Address, Type string }
			}
			Source struct{ Observer struct{ Reference string } }
			Entity []struct {
				What struct {
					Reference  string
					Identifier struct{ Value string }
				}
				Type struct{ Code string }
				Role struct{ Code string }
			}
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		requestors := 0
		for _, a := range got.Agent {
			if a.Requestor {
				requestors++
			}
		}
		if requestors != 1 || got.Source.Observer.Reference != "Device/carebridge" || got.Action == "" {
			t.Errorf("%s: %d requestors, observer %q, action %q", r.Action, requestors, got.Source.Observer.Reference, got.Action)
		}
		last := got.Subtype[len(got.Subtype)-1]
		if last.System != SystemAction || last.Code != r.Action {
			t.Errorf("%s: subtype %+v does not name the action", r.Action, got.Subtype)
		}
		for _, e := range got.Entity {
			if e.Role.Code == "1" && e.What.Reference != r.Patient {
				t.Errorf("%s: patient entity %q", r.Action, e.What.Reference)
			}
			if e.Type.Code == "XrequestId" && e.What.Identifier.Value != r.Correlation {
				t.Errorf("%s: correlation entity %q", r.Action, e.What.Identifier.Value)
			}
		}
		switch {
		case r.Action == "message.accepted":
			if got.Type.Code != "110107" || got.Action != "C" || len(got.Entity) != 4 {
				t.Errorf("import: %+v", got)
			}
		case r.Action == "message.rejected" && r.Actor.Kind == ActorPeer:
			if got.Outcome != "8" || len(got.Agent) != 2 || got.Agent[0].Network == nil || got.Agent[0].Network.Address != "10.0.0.7" || got.Agent[0].Network.Type != "2" {
				t.Errorf("rejected message from a peer: %+v", got)
			}
		case r.Action == "rest.read":
			if got.Type.Code != "rest" || got.Subtype[0].Code != "read" || got.Action != "R" {
				t.Errorf("REST read: %+v", got)
			}
		}
		if strings.Contains(string(b), "payload") {
			t.Errorf("%s: the AuditEvent carries content", r.Action)
		}
	}
}
