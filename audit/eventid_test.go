package audit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/store"
)

// TestEventIDs, on both stores: the log stores the id of each record's
// AuditEvent; records stored without one get it from BackfillEventIDs,
// once; the AuditEvent is found by it; and the trail still verifies.
func TestEventIDs(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := open(t)
			kr := keyRing(t)
			fill(t, newLog(t, b.st, kr), 0, 10)
			b.exec(t, "UPDATE audit SET event_id = '' WHERE seq > 4")
			st, ok := b.st.(audit.EventIDStore)
			if !ok {
				t.Fatalf("%T is not an audit.EventIDStore", b.st)
			}
			if n, err := audit.BackfillEventIDs(ctx, st); err != nil || n != 6 {
				t.Fatalf("BackfillEventIDs = %d, %v; want 6", n, err)
			}
			if n, err := audit.BackfillEventIDs(ctx, st); err != nil || n != 0 {
				t.Fatalf("BackfillEventIDs again = %d, %v; want 0", n, err)
			}
			seen := 0
			err := b.st.WalkAudit(ctx, func(row store.AuditRecord) error {
				r := audit.RecordFromRow(row)
				if want := audit.AuditEventID(r); row.EventID != want || audit.Event(r, audit.Source{}).ID != want {
					return fmt.Errorf("record %d: event id %q, want %q", row.Seq, row.EventID, want)
				}
				seen++
				return nil
			})
			if err != nil || seen != 10 {
				t.Fatalf("%v (%d records)", err, seen)
			}
			want := audit.AuditEventID(audit.Record{Chain: "node-a", Seq: 7})
			got, err := b.st.SearchAudit(ctx, store.AuditQuery{EventIDs: []string{want}, Limit: 2})
			if err != nil || len(got) != 1 || got[0].Seq != 7 {
				t.Fatalf("search by event id = %+v, %v", got, err)
			}
			if _, err := audit.Verify(ctx, b.st, kr.SigningPublicKey); err != nil {
				t.Fatalf("the ids are outside the hash, yet: %v", err)
			}
		})
	}
}
