package index

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// Code systems of AuditEvent.action and AuditEvent.outcome, which are
// codes without a system in the resource but tokens with one in search.
const (
	systemAuditAction  = "http://hl7.org/fhir/audit-event-action"
	systemAuditOutcome = "http://hl7.org/fhir/audit-event-outcome"
)

// ErrTooManyValues is returned when a resource has more values of one
// search parameter than fhir.MaxIndexValues.
var ErrTooManyValues = errors.New("too many values of one search parameter")

// AuditEvent returns the search fields of an AuditEvent another system
// filed, read from its JSON (https://hl7.org/fhir/R4/auditevent.html#search):
// Recorded (AuditEvent.recorded, to the microsecond, UTC) and Tokens,
// PHI-minimal:
//
//   - store.FiledType and store.FiledSubtype: the codings of type and
//     subtype, system and code;
//   - store.FiledAction and store.FiledOutcome: action and outcome, with
//     their code systems;
//   - store.FiledAgent and store.FiledEntity: the literal references of
//     agent.who and entity.what (a version-specific one without its
//     version, an absolute one by its last two segments), as the type
//     (System) and id (Code); contained and urn: references are left out;
//   - store.FiledAgentIdentifier and store.FiledEntityIdentifier: the
//     identifiers of agent.who and entity.what, system and value;
//   - store.FiledPatient: the entity.what references that are Patients.
//
// Names, descriptions, network addresses, queries and details are not
// kept. JSON that does not read, a recorded that is not an instant, and
// more than fhir.MaxIndexValues values of one parameter are errors.
func AuditEvent(body []byte) (store.FiledAuditEvent, error) {
	type coding struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
	type who struct {
		Reference  string `json:"reference"`
		Identifier *struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	}
	var ev struct {
		Type     *coding  `json:"type"`
		Subtype  []coding `json:"subtype"`
		Action   string   `json:"action"`
		Recorded string   `json:"recorded"`
		Outcome  string   `json:"outcome"`
		Agent    []struct {
			Who *who `json:"who"`
		} `json:"agent"`
		Entity []struct {
			What *who `json:"what"`
		} `json:"entity"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return store.FiledAuditEvent{}, fmt.Errorf("indexing an AuditEvent: %w", err)
	}
	recorded, err := time.Parse(time.RFC3339Nano, ev.Recorded)
	if err != nil {
		return store.FiledAuditEvent{}, errors.New("indexing an AuditEvent: recorded is not an instant")
	}
	row := store.FiledAuditEvent{Recorded: recorded.UTC().Truncate(time.Microsecond)}
	counts := map[string]int{}
	seen := map[store.IndexToken]bool{}
	add := func(param, system, code string) {
		t := store.IndexToken{Param: param, System: system, Code: code}
		if code == "" || seen[t] {
			return
		}
		seen[t] = true
		counts[param]++
		row.Tokens = append(row.Tokens, t)
	}
	ref := func(param, r string) {
		if r = reference(r); r != "" {
			typ, id, _ := strings.Cut(r, "/")
			add(param, typ, id)
			if param == store.FiledEntity && typ == "Patient" {
				add(store.FiledPatient, typ, id)
			}
		}
	}
	if ev.Type != nil && ev.Type.Code != "" {
		add(store.FiledType, ev.Type.System, ev.Type.Code)
	}
	for _, c := range ev.Subtype {
		if c.Code != "" {
			add(store.FiledSubtype, c.System, c.Code)
		}
	}
	if ev.Action != "" {
		add(store.FiledAction, systemAuditAction, ev.Action)
	}
	if ev.Outcome != "" {
		add(store.FiledOutcome, systemAuditOutcome, ev.Outcome)
	}
	for _, a := range ev.Agent {
		if a.Who == nil {
			continue
		}
		ref(store.FiledAgent, a.Who.Reference)
		if id := a.Who.Identifier; id != nil && id.Value != "" {
			add(store.FiledAgentIdentifier, id.System, id.Value)
		}
	}
	for _, e := range ev.Entity {
		if e.What == nil {
			continue
		}
		ref(store.FiledEntity, e.What.Reference)
		if id := e.What.Identifier; id != nil && id.Value != "" {
			add(store.FiledEntityIdentifier, id.System, id.Value)
		}
	}
	for param, n := range counts {
		if n > fhir.MaxIndexValues {
			return store.FiledAuditEvent{}, fmt.Errorf("indexing an AuditEvent: %d values of %s, more than %d: %w", n, param, fhir.MaxIndexValues, ErrTooManyValues)
		}
	}
	return row, nil
}

// AuditEventPatient is the first Patient a filed AuditEvent's tokens
// name ("Patient/id"), or "".
func AuditEventPatient(row store.FiledAuditEvent) string {
	for _, t := range row.Tokens {
		if t.Param == store.FiledPatient {
			return t.System + "/" + t.Code
		}
	}
	return ""
}
