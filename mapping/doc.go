// Package mapping turns parsed HL7v2 messages into FHIR R4 resources and,
// through routing rules, into secure messages (FHIR Communication) for the
// clinicians who need to know.
//
// The resource maps follow the HL7 V2-to-FHIR implementation guide
// (https://build.fhir.org/ig/HL7/v2-to-fhir/): PID/PD1 → Patient, PV1/PV2 →
// Encounter (+ Location, Practitioner from XCN), ORC/OBR → ServiceRequest,
// OBX → Observation, MRG → Patient.link. Covered triggers are ADT A01, A02,
// A03, A04, A05, A08, A11, A12, A13, A31, A40, ORM O01 and ORU R01; any other
// message maps to nothing, with an outcome saying so.
//
// Resource ids are derived from source identifiers (fhir.ID), so mapping the
// same message twice, or a corrected re-send, gives the same ids. Data that
// cannot be mapped becomes an issue in the Result's outcome; it never fails
// the whole message.
//
// Routing ([Rules], [Rules.Route]) reads the facts of a mapped message
// ([Event]) and writes one Communication per matching rule. Rules come from a
// YAML file; [DefaultRules] is the one carebridge ships.
//
// The package is pure: no I/O, no clock (the time is an argument), no
// globals beyond constant tables. Issues and errors never quote message
// content; where a detail may carry PHI it goes in Issue.Diagnostics.
package mapping
