package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// TestFiledAuditEventsAppendOnly: whatever runs SQL against the database,
// a filed AuditEvent and its index rows are neither changed nor deleted.
func TestFiledAuditEventsAppendOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "carebridge.db")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC)
	if err := st.FileAuditEvent(ctx, store.FiledAuditEvent{ID: "ae-1", Recorded: at, Updated: at, Sealed: []byte("sealed"),
		Tokens: []store.IndexToken{{Param: "action", System: "http://hl7.org/fhir/audit-event-action", Code: "E"}}}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE audit_filed SET sealed = x'00'`, `DELETE FROM audit_filed`,
		`UPDATE audit_filed_token SET code = 'R'`, `DELETE FROM audit_filed_token`,
	} {
		if _, err := db.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it refused as append-only", q, err)
		}
	}
	if got, err := st.GetFiledAuditEvent(ctx, "ae-1"); err != nil || string(got.Sealed) != "sealed" {
		t.Errorf("after the attempts: %+v, %v", got, err)
	}
}
