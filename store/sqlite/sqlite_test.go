package sqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
	"github.com/carebridge/carebridge/store/storetest"
)

func openAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path, Topics: storetest.Topics()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSuite(t *testing.T) {
	var paths sync.Map // *sqlite.Store → path
	open := func(t *testing.T) store.Store {
		path := filepath.Join(t.TempDir(), "carebridge.db")
		s := openAt(t, path)
		paths.Store(s, path)
		return s
	}
	reopen := func(t *testing.T, old store.Store) store.Store {
		path, _ := paths.Load(old)
		if err := old.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		return openAt(t, path.(string))
	}
	storetest.Run(t, open, storetest.WithReopen(reopen))
}

func BenchmarkAcceptInbound(b *testing.B) {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db"), Topics: storetest.Topics()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkAcceptInbound(b, s)
}

// TestCommitWakes: with an hour between polls, only the wake of a commit's
// own topics delivers its events in time.
func TestCommitWakes(t *testing.T) {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "carebridge.db"), Topics: storetest.Topics(), QueuePoll: time.Hour})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	storetest.CommitWakes(t, s)
}
