package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestPragmas(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "carebridge.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name   string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"writer", "synchronous", "2"}, // FULL
		{"writer", "foreign_keys", "1"},
		{"writer", "busy_timeout", "10000"},
		{"reader", "journal_mode", "wal"},
		{"reader", "query_only", "1"},
		{"reader", "busy_timeout", "10000"},
	} {
		db := s.write
		if tc.name == "reader" {
			db = s.read
		}
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", tc.name, tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("%s PRAGMA %s = %s, want %s", tc.name, tc.pragma, got, tc.want)
		}
	}
}

func TestRelativePathWithSpace(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("data dir", 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Config{Path: "data dir/carebridge.db"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat("data dir/carebridge.db-wal"); err != nil {
		t.Fatalf("database not where asked: %v", err)
	}
}
