package main

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store/sqlite"
)

func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "carebridge.db")
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: dbPath, Topics: queueTopics})
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.NewLog(st, kr, audit.LogConfig{Chain: "test", CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	for i := range 30 {
		if err := log.Append(context.Background(), audit.Record{At: at.Add(time.Duration(i) * time.Second), Action: "message.accepted"}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	out, stderr, err := runCLI(t, "", "audit", "verify", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "verified: 30 records in 1 chains, 3 signed checkpoints") {
		t.Fatalf("verify = %v\n%s%s", err, out, stderr)
	}

	db, err := sql.Open("sqlite", "file:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("DELETE FROM audit WHERE seq = 17"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out, _, err = runCLI(t, "", "audit", "verify", "--data-dir", dir)
	if !errors.Is(err, errFailed) || !strings.Contains(out, `NOT VERIFIED: audit chain "test" record 17: gap`) {
		t.Fatalf("verify after deleting record 17 = %v\n%s", err, out)
	}
}
