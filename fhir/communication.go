package fhir

import (
	"encoding/json"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Communication is a FHIR R4 Communication. It is samply's struct with the
// payload replaced: samply serialises all three payload.content[x] variants
// at once, which R4 forbids, so the payload here carries exactly one.
type Communication struct {
	fhirmodel.OtherCommunication
	// Payload shadows the embedded samply field.
	Payload []CommunicationPayload `json:"payload,omitempty"`
}

// CommunicationPayload is one payload of a Communication: set exactly one of
// the content fields.
type CommunicationPayload struct {
	ContentString     *string               `json:"contentString,omitempty"`
	ContentAttachment *fhirmodel.Attachment `json:"contentAttachment,omitempty"`
	ContentReference  *fhirmodel.Reference  `json:"contentReference,omitempty"`
}

// MarshalJSON writes the resource with its resourceType.
func (c Communication) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ResourceType string `json:"resourceType"`
		fhirmodel.OtherCommunication
		Payload []CommunicationPayload `json:"payload,omitempty"`
	}{"Communication", c.OtherCommunication, c.Payload})
}

// UnmarshalJSON reads a Communication, payload included.
func (c *Communication) UnmarshalJSON(b []byte) error {
	var v struct {
		fhirmodel.OtherCommunication
		Payload []CommunicationPayload `json:"payload,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	c.OtherCommunication, c.Payload = v.OtherCommunication, v.Payload
	return nil
}

// CommunicationSourceSystem is the system of the identifier that ties a
// Communication to its source message and rule ("facility^MSH-10^rule").
const CommunicationSourceSystem = "urn:carebridge:communication-source"

// CommunicationCategorySystem is the code system of Communication.category.
const CommunicationCategorySystem = "http://terminology.hl7.org/CodeSystem/communication-category"
