package fhir

import (
	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Severity of an outcome issue, as in OperationOutcome.issue.severity.
type Severity string

// Issue severities.
const (
	SeverityError       Severity = "error"
	SeverityWarning     Severity = "warning"
	SeverityInformation Severity = "information"
)

// IssueCode is OperationOutcome.issue.code (value set issue-type).
type IssueCode string

// Issue codes carebridge uses.
const (
	CodeRequired     IssueCode = "required"      // a required element is missing
	CodeValue        IssueCode = "value"         // a value is not valid or not mappable
	CodeCodeInvalid  IssueCode = "code-invalid"  // a code is not in the table
	CodeNotSupported IssueCode = "not-supported" // the message or element is not mapped
	CodeInvalid      IssueCode = "invalid"       // the produced resource is not valid R4
	CodeProcessing   IssueCode = "processing"    // a rule or template failed
)

// Issue is one data problem. Location names the place in the source (an HL7
// path such as "PV1-2" or a rule name), Details says what is wrong without
// quoting content; Diagnostics may quote content (so may carry PHI) and is
// never logged.
type Issue struct {
	Severity    Severity  `json:"severity"`
	Code        IssueCode `json:"code"`
	Location    string    `json:"location,omitempty"`
	Details     string    `json:"details"`
	Diagnostics string    `json:"diagnostics,omitempty"`
}

// String is the PHI-free one-line form: severity, location, details.
func (i Issue) String() string {
	s := string(i.Severity)
	if i.Location != "" {
		s += " " + i.Location
	}
	return s + ": " + i.Details
}

// Outcome is a list of issues, collected rather than stopping at the first.
type Outcome []Issue

// Add appends an issue.
func (o *Outcome) Add(sev Severity, code IssueCode, location, details string) {
	*o = append(*o, Issue{Severity: sev, Code: code, Location: location, Details: details})
}

// HasErrors reports whether any issue is an error.
func (o Outcome) HasErrors() bool {
	for _, i := range o {
		if i.Severity == SeverityError {
			return true
		}
	}
	return false
}

// OperationOutcome turns the issues into a FHIR OperationOutcome. With
// diagnostics false, the Diagnostics text is left out (for readers who may
// not see PHI).
func (o Outcome) OperationOutcome(diagnostics bool) fhirmodel.OperationOutcome {
	oo := fhirmodel.OperationOutcome{Issue: make([]fhirmodel.OperationOutcomeIssue, 0, len(o))}
	for _, i := range o {
		is := fhirmodel.OperationOutcomeIssue{
			Severity: severityCode(i.Severity),
			Code:     issueTypeCode(i.Code),
			Details:  &fhirmodel.CodeableConcept{Text: new(i.Details)},
		}
		if i.Location != "" {
			is.Location = []string{i.Location}
		}
		if diagnostics && i.Diagnostics != "" {
			is.Diagnostics = new(i.Diagnostics)
		}
		oo.Issue = append(oo.Issue, is)
	}
	if len(oo.Issue) == 0 {
		oo.Issue = append(oo.Issue, fhirmodel.OperationOutcomeIssue{
			Severity: fhirmodel.IssueSeverityInformation,
			Code:     fhirmodel.IssueTypeInformational,
			Details:  &fhirmodel.CodeableConcept{Text: new("no issues")},
		})
	}
	return oo
}

func severityCode(s Severity) fhirmodel.IssueSeverity {
	switch s {
	case SeverityError:
		return fhirmodel.IssueSeverityError
	case SeverityWarning:
		return fhirmodel.IssueSeverityWarning
	}
	return fhirmodel.IssueSeverityInformation
}

func issueTypeCode(c IssueCode) fhirmodel.IssueType {
	switch c {
	case CodeRequired:
		return fhirmodel.IssueTypeRequired
	case CodeValue:
		return fhirmodel.IssueTypeValue
	case CodeCodeInvalid:
		return fhirmodel.IssueTypeCodeInvalid
	case CodeNotSupported:
		return fhirmodel.IssueTypeNotSupported
	case CodeInvalid:
		return fhirmodel.IssueTypeInvalid
	}
	return fhirmodel.IssueTypeProcessing
}
