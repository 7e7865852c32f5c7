package api

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// searchParam is one search parameter as the CapabilityStatement lists it.
type searchParam struct {
	Name       string `json:"name"`
	Definition string `json:"definition,omitempty"`
	Type       string `json:"type"`
	Doc        string `json:"documentation,omitempty"`
}

const r4Params = "http://hl7.org/fhir/SearchParameter/"

// communicationParams are the Communication search parameters served,
// each backed by an index on both stores.
var communicationParams = []searchParam{
	{"_id", r4Params + "Resource-id", "token", "the logical id"},
	{"identifier", r4Params + "Communication-identifier", "token", "any identifier (system|value, value, system|); :not and :missing accepted"},
	{"subject", r4Params + "Communication-subject", "reference", "the Patient it is about"},
	{"patient", r4Params + "clinical-patient", "reference", "the Patient it is about"},
	{"encounter", r4Params + "clinical-encounter", "reference", "the Encounter it belongs to"},
	{"recipient", r4Params + "Communication-recipient", "reference", "a Practitioner, CareTeam … it is for"},
	{"status", r4Params + "Communication-status", "token", "in-progress, completed …; :not and :missing accepted"},
	{"category", r4Params + "Communication-category", "token", "alert, notification …; :not and :missing accepted"},
	{"sent", r4Params + "Communication-sent", "date", "when it was sent; prefixes eq, gt, lt, ge, le, sa, eb"},
	{"received", r4Params + "Communication-received", "date", "when it was received; prefixes as for sent; :missing accepted"},
	{"sender", r4Params + "Communication-sender", "reference", "who sent it"},
	{"part-of", r4Params + "Communication-part-of", "reference", "the event it is part of (literal references)"},
	{"based-on", r4Params + "Communication-based-on", "reference", "the request it answers (literal references)"},
	{"priority", "", "token", "routine, urgent, asap, stat; :not and :missing accepted"},
}

// priorityParameter is the published custom SearchParameter priority.
func (s *Server) priorityParameter() map[string]any {
	return map[string]any{
		"resourceType": "SearchParameter",
		"id":           "communication-priority",
		"url":          s.base + "/SearchParameter/communication-priority",
		"name":         "priority",
		"status":       "active",
		"description":  "Search Communications by priority (routine | urgent | asap | stat)",
		"code":         "priority",
		"base":         []string{"Communication"},
		"type":         "token",
		"expression":   "Communication.priority",
		"modifier":     []string{"missing", "not"},
	}
}

func (s *Server) capabilityStatement() map[string]any {
	params := make([]map[string]any, 0, len(communicationParams))
	for _, p := range communicationParams {
		m := map[string]any{"name": p.Name, "type": p.Type, "documentation": p.Doc}
		m["definition"] = p.Definition
		if p.Name == "priority" {
			m["definition"] = s.base + "/SearchParameter/communication-priority"
		}
		params = append(params, m)
	}
	resources := []map[string]any{{
		"type":          "Communication",
		"documentation": communicationDocumentation,
		"interaction": []map[string]any{{"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "patch"},
			{"code": "create"}, {"code": "search-type"}, {"code": "history-instance"}},
		"versioning":        "versioned-update",
		"readHistory":       true,
		"updateCreate":      true,
		"conditionalCreate": true,
		"searchParam":       params,
		"searchInclude":     []string{"Communication:subject", "Communication:patient"},
	}}
	resources = append(resources, s.resourceCapabilities()...)
	resources = append(resources, s.subscriptionCapabilities()...)
	if s.cfg.AuditEvents != nil {
		resources = append(resources, s.auditEventCapability())
	}
	version := s.cfg.Version
	if version == "" {
		version = "dev"
	}
	return map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         "2026-12-01",
		"kind":         "instance",
		"software":     map[string]any{"name": "carebridge", "version": version},
		"implementation": map[string]any{
			"description": "carebridge FHIR R4 API",
			"url":         s.base,
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"application/fhir+json", "json"},
		"rest": []map[string]any{{
			"mode": "server",
			"security": map[string]any{
				"service": []map[string]any{{"coding": []map[string]any{{
					"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
				"description": "SMART Backend Services: POST a private_key_jwt client assertion (RS384 or ES384) to the token endpoint for a bearer token",
				"extension": []map[string]any{{
					"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
					"extension": []map[string]any{{"url": "token", "valueUri": s.tokenURL()}},
				}},
			},
			"resource": resources,
		}},
	}
}

func (s *Server) tokenURL() string { return strings.TrimSuffix(s.base, "/fhir") + "/auth/token" }

func (s *Server) metadata(c *gin.Context) {
	s.writeJSON(c, s.capabilityStatement())
}

func (s *Server) searchParameter(c *gin.Context) {
	if c.Param("id") != "communication-priority" {
		s.notFound(c, "SearchParameter", c.Param("id"))
		return
	}
	s.writeJSON(c, s.priorityParameter())
}

// smartConfiguration is the SMART discovery document
// (https://hl7.org/fhir/smart-app-launch/conformance.html).
func (s *Server) smartConfiguration(c *gin.Context) {
	b, err := json.Marshal(map[string]any{
		"token_endpoint":                                   s.tokenURL(),
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported":                                 []string{"system/Communication.rs", "system/Communication.read", "system/Patient.rs", "system/Encounter.rs", "system/ServiceRequest.rs", "system/Observation.rs", "system/AuditEvent.rs", "system/AuditEvent.c", "system/Subscription.crds", "system/MessageHeader.c", "system/*.rs"},
		"capabilities":                                     []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	})
	if err != nil {
		s.internal(c, "writing the SMART configuration", err)
		return
	}
	c.Data(http.StatusOK, "application/json", b)
}

func (s *Server) writeJSON(c *gin.Context, v any) {
	b, err := marshalJSON(v)
	if err != nil {
		s.internal(c, "writing a resource", err)
		return
	}
	answer(c, http.StatusOK, b)
}
