package fhir

import (
	"encoding/json"
	"fmt"
)

// bundle is the part of a FHIR Bundle carebridge writes. (samply's Bundle
// would do, but entries need their resource pre-serialised anyway.)
type bundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Entry        []bundleEntry `json:"entry,omitempty"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *bundleRequest  `json:"request,omitempty"`
}

type bundleRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// TransactionBundle writes the resources as a FHIR transaction Bundle in
// which every entry is a PUT to Type/id: sending it twice updates the same
// resources instead of creating copies. Each entry's fullUrl is urn:uuid:id,
// as carebridge ids have the shape of a UUID.
func TransactionBundle(resources []Resource) ([]byte, error) {
	items := make([]Serialized, 0, len(resources))
	for _, r := range resources {
		body, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("serialising %s for a bundle: %w", r.Type, err)
		}
		items = append(items, Serialized{Resource: r, JSON: body})
	}
	return SerializedBundle(items)
}

// SerializedBundle is TransactionBundle for resources already serialised
// (by Validator.Gate, say).
func SerializedBundle(items []Serialized) ([]byte, error) {
	b := bundle{ResourceType: "Bundle", Type: "transaction", Entry: make([]bundleEntry, 0, len(items))}
	for _, it := range items {
		b.Entry = append(b.Entry, bundleEntry{
			FullURL:  "urn:uuid:" + it.ID,
			Resource: it.JSON,
			Request:  &bundleRequest{Method: "PUT", URL: it.Reference()},
		})
	}
	return json.Marshal(b)
}
