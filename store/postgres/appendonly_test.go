package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/storetest"
)

// TestFiledAuditEventsAppendOnly: whatever runs SQL against the database,
// a filed AuditEvent and its index rows are neither changed, deleted nor
// truncated away.
func TestFiledAuditEventsAppendOnly(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresSchema(t)
	st, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC)
	if err := st.FileAuditEvent(ctx, store.FiledAuditEvent{ID: "ae-1", Recorded: at, Updated: at, Sealed: []byte("sealed"),
		Tokens: []store.IndexToken{{Param: "action", System: "http://hl7.org/fhir/audit-event-action", Code: "E"}}}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`UPDATE audit_filed SET sealed = 'x'`, `DELETE FROM audit_filed`, `TRUNCATE audit_filed CASCADE`,
		`UPDATE audit_filed_token SET code = 'R'`, `DELETE FROM audit_filed_token`, `TRUNCATE audit_filed_token`,
	} {
		if _, err := conn.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it refused as append-only", q, err)
		}
	}
	if got, err := st.GetFiledAuditEvent(ctx, "ae-1"); err != nil || string(got.Sealed) != "sealed" {
		t.Errorf("after the attempts: %+v, %v", got, err)
	}
}
