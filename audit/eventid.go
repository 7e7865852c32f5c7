package audit

import (
	"context"
	"fmt"

	"github.com/carebridge/carebridge/store"
)

// EventIDStore is a store that keeps the id of each record's AuditEvent
// beside it, so that the FHIR API can read an AuditEvent by id. Both
// backends (store/sqlite, store/postgres) are one.
type EventIDStore interface {
	// BackfillAuditEventIDs sets the event id of every record stored
	// without one to id(record) and returns how many it set.
	BackfillAuditEventIDs(ctx context.Context, id func(store.AuditRecord) string) (int, error)
}

// BackfillEventIDs gives the records stored before event ids were (which
// SQL cannot compute: they are SHA-256 based) the id of their AuditEvent,
// and returns how many it gave one. Log sets the id of every record it
// appends; call this once at start, before the FHIR API serves AuditEvent
// reads. Running it again finds nothing to do.
func BackfillEventIDs(ctx context.Context, st EventIDStore) (int, error) {
	n, err := st.BackfillAuditEventIDs(ctx, func(row store.AuditRecord) string {
		return AuditEventID(RecordFromRow(row))
	})
	if err != nil {
		return n, fmt.Errorf("giving audit records their AuditEvent ids: %w", err)
	}
	return n, nil
}
