package mapping

// Event is what routing knows about a mapped message: the facts rules match
// on and the references a Communication points at. It carries only what a
// payload template may need (the minimum necessary), not the whole message.
type Event struct {
	Trigger            string // MSH-9.1^MSH-9.2, e.g. "ADT^A01"
	ControlID          string // MSH-10
	SendingApplication string // MSH-3.1
	SendingFacility    string // MSH-4.1
	MessageTime        string // MSH-7 as a FHIR dateTime; "" when absent
	Mapped             bool   // the trigger is covered

	Patient      *Patient // nil when the message has no usable patient
	PriorPatient string   // A40: reference of the record merged away
	Encounter    string   // reference, "" when none
	PatientClass string   // PV1-2 code (I, E, O, …)
	Location     Location // PV1-3
	Providers    []Provider
	Orders       []Order
	Results      []LabResult
}

// Patient is who the message is about.
type Patient struct {
	Ref  string // "Patient/…"
	Name string // "FAMILY, Given" of the first name
	MRN  string // the identifier the patient's id is derived from
}

// Location is a point of care (PL).
type Location struct {
	Ref      string // "Location/…", "" when none
	Facility string
	Unit     string // point of care: the unit or ward
	Room     string
	Bed      string
}

// Role is how a provider is related to the message.
type Role string

// Provider roles, the recipient sources of the message itself.
const (
	RoleAttending   Role = "attending"    // PV1-7
	RoleReferring   Role = "referring"    // PV1-8
	RoleConsulting  Role = "consulting"   // PV1-9
	RoleAdmitting   Role = "admitting"    // PV1-17
	RoleOrdering    Role = "ordering"     // ORC-12 / OBR-16
	RolePrimaryCare Role = "primary-care" // PD1-4
)

// Provider is a practitioner named in the message.
type Provider struct {
	Role Role
	Ref  string // "Practitioner/…"
	Name string // display name
}

// Priority is a request priority, ordered: routine < urgent < asap < stat.
type Priority int

// Priorities, in FHIR's order of urgency.
const (
	PriorityNone Priority = iota
	PriorityRoutine
	PriorityUrgent
	PriorityAsap
	PriorityStat
)

func (p Priority) String() string {
	switch p {
	case PriorityRoutine:
		return "routine"
	case PriorityUrgent:
		return "urgent"
	case PriorityAsap:
		return "asap"
	case PriorityStat:
		return "stat"
	}
	return ""
}

// ParsePriority reads "routine", "urgent", "asap" or "stat".
func ParsePriority(s string) (Priority, bool) {
	for p := PriorityRoutine; p <= PriorityStat; p++ {
		if p.String() == s {
			return p, true
		}
	}
	return PriorityNone, false
}

// Order is a ServiceRequest made from ORC/OBR.
type Order struct {
	Ref      string // "ServiceRequest/…"
	Code     string // OBR-4.1
	Display  string // OBR-4.2
	Priority Priority
	Control  string // ORC-1 order control (NW, CA, SC, …)
	Status   string // the ServiceRequest status
	Orderer  string // Practitioner reference, "" when none
}

// LabResult is an Observation made from an OBX.
type LabResult struct {
	Ref      string // "Observation/…"
	Code     string // OBX-3.1
	Display  string // OBX-3.2
	Value    string // OBX-5 as text, with its comparator for SN
	Unit     string
	Flags    []string // OBX-8 abnormal flags
	Critical bool     // a flag is HH, LL or AA
	Order    int      // index into Event.Orders, -1 when none
}
