// Package fhir holds carebridge's FHIR R4 working types and the checks every
// resource passes at the door out.
//
// The resource structs are github.com/samply/golang-fhir-models (imported as
// fhirmodel). Where a samply struct serialises a required choice element
// wrongly (every variant at once), this package has its own type with a
// correct marshaller: [Communication] for Communication.payload.content[x].
//
// [Validator] is the strict R4 check, github.com/google/fhir/go/jsonformat:
// everything carebridge emits is serialised and validated before it leaves.
// [Outcome] collects data problems the way an OperationOutcome does, with
// PHI-free details kept apart from diagnostics that may quote content.
//
// Resource ids are deterministic ([ID]): the same source identifiers always
// give the same id, so a re-sent message updates instead of duplicating.
//
// Spec: https://hl7.org/fhir/R4/
package fhir
