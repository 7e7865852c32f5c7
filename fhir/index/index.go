// Package index turns FHIR resources into the search fields and index
// tokens the store keeps beside their sealed copies: a Communication's
// (store.CommunicationRow), the same way for the Communications mapping
// makes and those the API is sent, so that a search finds both alike; and
// the PHI-minimal index of the chart resources mapping stores
// (store.ResourceIndex: subject, status, dates, identifiers), with the
// backfill of resources stored before that index existed.
package index

import (
	"fmt"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// Communication returns the search fields of c: everything of a
// store.CommunicationRow but its id, source identifier, seal and version.
func Communication(c *fhir.Communication) (store.CommunicationRow, error) {
	ix, err := fhir.IndexCommunication(c)
	if err != nil {
		return store.CommunicationRow{}, fmt.Errorf("indexing a Communication: %w", err)
	}
	row := store.CommunicationRow{Status: ix.Status, Priority: ix.Priority, Subject: ix.Subject, Encounter: ix.Encounter,
		Sender: ix.Sender, Recipients: ix.Recipients, Sent: ix.Sent, Received: ix.Received}
	for _, cat := range ix.Categories {
		if cat.System == fhir.CommunicationCategorySystem && row.Category == "" {
			row.Category = cat.Code
		}
		row.Tokens = append(row.Tokens, store.IndexToken{Param: store.TokenCategory, System: cat.System, Code: cat.Code})
	}
	for _, id := range ix.Identifiers {
		row.Tokens = append(row.Tokens, store.IndexToken{Param: store.TokenIdentifier, System: id.System, Code: id.Code})
	}
	for _, refs := range []struct {
		param string
		refs  []string
	}{{store.TokenPartOf, ix.PartOf}, {store.TokenBasedOn, ix.BasedOn}, {store.TokenInResponseTo, ix.InResponseTo}} {
		for _, r := range refs.refs {
			row.Tokens = append(row.Tokens, store.IndexToken{Param: refs.param, Code: r})
		}
	}
	return row, nil
}
