package audit

import (
	"strconv"
	"strings"
	"time"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/carebridge/carebridge/fhir"
)

// Code systems the AuditEvents use (IHE BALP, FHIR R4, DICOM).
const (
	systemDCM           = "http://dicom.nema.org/resources/ontology/DCM"
	systemEventType     = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemRestful       = "http://hl7.org/fhir/restful-interaction"
	systemSourceType    = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemEntityType    = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole    = "http://terminology.hl7.org/CodeSystem/object-role"
	systemParticipation = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemBALPEntity    = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	// SystemAction is the code system of carebridge's action names, given
	// as the AuditEvent subtype where no standard one fits.
	SystemAction = "urn:carebridge:audit-action"
	// SystemActor prefixes the identifier system of an agent by kind.
	SystemActor = "urn:carebridge:actor:"
	// SystemEntity is the identifier system of entities that are not FHIR
	// resources (an inbound message id, say).
	SystemEntity = "urn:carebridge:entity"
)

// kindOf says how an action is classified: the AuditEvent type, an
// optional standard subtype and the CRUDE action.
type kindOf struct {
	typ     fhirmodel.Coding
	subtype *fhirmodel.Coding
	action  fhirmodel.AuditEventAction
}

func coding(system, code, display string) fhirmodel.Coding {
	c := fhirmodel.Coding{System: &system, Code: &code}
	if display != "" {
		c.Display = &display
	}
	return c
}

var (
	typeImport   = coding(systemDCM, "110107", "Import")
	typeExport   = coding(systemDCM, "110106", "Export")
	typeActivity = coding(systemDCM, "110100", "Application Activity")
	typeLogin    = coding(systemDCM, "110114", "User Authentication")
	typeRest     = coding(systemEventType, "rest", "Restful Operation")
)

// actionKinds classifies carebridge's actions; an action not listed is an
// Application Activity that executes (E).
var actionKinds = map[string]kindOf{
	"message.accepted":        {typ: typeImport, action: fhirmodel.AuditEventActionC},
	"message.rejected":        {typ: typeImport, action: fhirmodel.AuditEventActionC},
	"message.mapped":          {typ: typeActivity, action: fhirmodel.AuditEventActionC},
	"message.replayed":        {typ: typeActivity, action: fhirmodel.AuditEventActionE},
	"communication.created":   {typ: typeActivity, action: fhirmodel.AuditEventActionC},
	"communication.delivered": {typ: typeExport, action: fhirmodel.AuditEventActionR},
	"communication.read":      {typ: typeActivity, action: fhirmodel.AuditEventActionU},
	"communication.escalated": {typ: typeActivity, action: fhirmodel.AuditEventActionE},
	"communication.recalled":  {typ: typeActivity, action: fhirmodel.AuditEventActionU},
	"user.login":              {typ: typeLogin, action: fhirmodel.AuditEventActionE},
	"user.logout":             {typ: typeLogin, action: fhirmodel.AuditEventActionE},
	"user.break-glass":        {typ: typeLogin, action: fhirmodel.AuditEventActionE},
	"client.token":            {typ: typeLogin, action: fhirmodel.AuditEventActionE},
}

// restActions are API interactions ("rest.read"): type rest, the
// interaction as subtype.
var restActions = map[string]fhirmodel.AuditEventAction{
	"read": fhirmodel.AuditEventActionR, "vread": fhirmodel.AuditEventActionR,
	"history-instance": fhirmodel.AuditEventActionR, "search-type": fhirmodel.AuditEventActionE,
	"create": fhirmodel.AuditEventActionC, "update": fhirmodel.AuditEventActionU,
	"patch": fhirmodel.AuditEventActionU, "delete": fhirmodel.AuditEventActionD,
	"operation": fhirmodel.AuditEventActionE,
}

// classify says how action is shown in its AuditEvent.
func classify(action string) kindOf {
	if k, ok := actionKinds[action]; ok {
		return k
	}
	interaction, rest := strings.CutPrefix(action, "rest.")
	if !rest {
		return kindOf{typ: typeActivity, action: fhirmodel.AuditEventActionE}
	}
	k := kindOf{typ: typeRest, action: fhirmodel.AuditEventActionE}
	if a, ok := restActions[interaction]; ok {
		k.action = a
		sub := coding(systemRestful, interaction, "")
		k.subtype = &sub
	}
	return k
}

// Source names the system that records: the Device every AuditEvent's
// source.observer points to, and the site (the deployment's name).
type Source struct {
	Device string // Device id, "carebridge" by default
	Site   string
}

// AuditEventID is the id of the AuditEvent of a record: derived from its
// chain and position, so that exporting it twice is the same resource.
func AuditEventID(r Record) string {
	return fhir.ID("AuditEvent", r.Chain, strconv.FormatUint(r.Seq, 10))
}

// Event builds the FHIR R4 AuditEvent of r, after the IHE Basic Audit Log
// Patterns: type (and subtype), action, recorded, outcome, the acting agent
// with its network address, carebridge as a second agent and as source,
// and entities for what was acted on, the patient (role Patient) and the
// correlation id (BALP XrequestId). Like the record, it holds no content.
func Event(r Record, src Source) fhir.Resource {
	if src.Device == "" {
		src.Device = "carebridge"
	}
	id := AuditEventID(r)
	ev := &fhirmodel.AuditEvent{Id: &id, Recorded: r.At.UTC().Format(time.RFC3339Nano)}
	k := classify(r.Action)
	ev.Type = k.typ
	if k.subtype != nil {
		ev.Subtype = append(ev.Subtype, *k.subtype)
	}
	ev.Subtype = append(ev.Subtype, coding(SystemAction, r.Action, ""))
	ev.Action = &k.action
	outcome := outcomeCode(r.Outcome)
	ev.Outcome = &outcome

	device := "Device/" + src.Device
	self := fhirmodel.AuditEventAgent{
		Type:      &fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{coding(systemDCM, "110150", "Application")}},
		Who:       &fhirmodel.Reference{Reference: &device},
		Requestor: r.Actor.Kind == ActorSystem || r.Actor.Kind == "",
	}
	if r.Actor.Kind != ActorSystem && r.Actor.Kind != "" {
		ev.Agent = append(ev.Agent, actorAgent(r.Actor))
	}
	ev.Agent = append(ev.Agent, self)
	ev.Source = fhirmodel.AuditEventSource{
		Observer: fhirmodel.Reference{Reference: &device},
		Type:     []fhirmodel.Coding{coding(systemSourceType, "4", "Application Server")},
	}
	if src.Site != "" {
		ev.Source.Site = &src.Site
	}
	for _, e := range r.Entities {
		ev.Entity = append(ev.Entity, fhirmodel.AuditEventEntity{
			What: entityRef(e),
			Type: ptr(coding(systemEntityType, "2", "System Object")),
			Role: ptr(coding(systemObjectRole, "4", "Domain Resource")),
		})
	}
	if r.Patient != "" {
		ev.Entity = append(ev.Entity, fhirmodel.AuditEventEntity{
			What: entityRef(r.Patient),
			Type: ptr(coding(systemEntityType, "1", "Person")),
			Role: ptr(coding(systemObjectRole, "1", "Patient")),
		})
	}
	if r.Correlation != "" {
		corr := r.Correlation
		ev.Entity = append(ev.Entity, fhirmodel.AuditEventEntity{
			What: &fhirmodel.Reference{Identifier: &fhirmodel.Identifier{Value: &corr}},
			Type: ptr(coding(systemBALPEntity, "XrequestId", "")),
		})
	}
	return fhir.Resource{Type: "AuditEvent", ID: id, Body: ev}
}

// actorAgent is the agent that acted: a peer sending messages is the
// source (DICOM Source Role ID); a user or client reading is the
// information recipient.
func actorAgent(a Actor) fhirmodel.AuditEventAgent {
	typ := coding(systemParticipation, "IRCP", "information recipient")
	if a.Kind == ActorPeer {
		typ = coding(systemDCM, "110153", "Source Role ID")
	}
	agent := fhirmodel.AuditEventAgent{Type: &fhirmodel.CodeableConcept{Coding: []fhirmodel.Coding{typ}}, Requestor: true}
	if a.ID != "" {
		system, value := SystemActor+string(a.Kind), a.ID
		agent.Who = &fhirmodel.Reference{Identifier: &fhirmodel.Identifier{System: &system, Value: &value}}
	}
	if a.Address != "" {
		addr := a.Address
		nt := fhirmodel.AuditEventAgentNetworkType2 // IP address
		agent.Network = &fhirmodel.AuditEventAgentNetwork{Address: &addr, Type: &nt}
	}
	return agent
}

// entityRef is a literal reference for "Type/id", else an identifier.
func entityRef(e string) *fhirmodel.Reference {
	if typ, id, ok := strings.Cut(e, "/"); ok && typ != "" && id != "" && typ[0] >= 'A' && typ[0] <= 'Z' && !strings.Contains(id, "/") {
		return &fhirmodel.Reference{Reference: &e}
	}
	system := SystemEntity
	return &fhirmodel.Reference{Identifier: &fhirmodel.Identifier{System: &system, Value: &e}}
}

func outcomeCode(o Outcome) fhirmodel.AuditEventOutcome {
	switch {
	case o >= OutcomeMajor:
		return fhirmodel.AuditEventOutcome12
	case o >= OutcomeSerious:
		return fhirmodel.AuditEventOutcome8
	case o >= OutcomeMinor:
		return fhirmodel.AuditEventOutcome4
	}
	return fhirmodel.AuditEventOutcome0
}

func ptr[T any](v T) *T { return &v }
