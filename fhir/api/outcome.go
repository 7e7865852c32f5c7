package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/fhir"
)

// Issue codes (value set issue-type) the API answers with beyond those of
// package fhir.
const (
	fhirCodeSecurity  fhir.IssueCode = "security"
	fhirCodeForbidden fhir.IssueCode = "forbidden"
)

const contentType = "application/fhir+json; charset=utf-8"

type outcomeIssue struct {
	Severity   string          `json:"severity"`
	Code       fhir.IssueCode  `json:"code"`
	Details    *outcomeDetails `json:"details,omitempty"`
	Expression []string        `json:"expression,omitempty"`
}

type outcomeDetails struct {
	Text string `json:"text"`
}

type operationOutcome struct {
	ResourceType string         `json:"resourceType"`
	Issue        []outcomeIssue `json:"issue"`
}

// outcome is the OperationOutcome of problems, each an issue of severity
// sev naming its parameter or element in expression.
func outcome(sev string, problems ...problem) operationOutcome {
	oo := operationOutcome{ResourceType: "OperationOutcome"}
	for _, p := range problems {
		is := outcomeIssue{Severity: sev, Code: p.Code, Details: &outcomeDetails{Text: p.Details}}
		if p.Expression != "" {
			is.Expression = []string{p.Expression}
		}
		oo.Issue = append(oo.Issue, is)
	}
	return oo
}

// fail answers status with an OperationOutcome of the problems and stops
// the request.
func (s *Server) fail(c *gin.Context, status int, problems ...problem) {
	b, err := json.Marshal(outcome("error", problems...))
	if err != nil { // plain structs of strings: cannot happen
		b = []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	c.Data(status, contentType, b)
	c.Abort()
}

// answer writes a resource (JSON as stored) with status.
func answer(c *gin.Context, status int, body []byte) {
	c.Data(status, contentType, body)
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
