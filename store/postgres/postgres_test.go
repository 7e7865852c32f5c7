package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/storetest"
)

func openAt(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{URL: url, Topics: storetest.Topics(), MaxConns: 8})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSuite(t *testing.T) {
	storetest.PostgresURL(t)
	var urls sync.Map // *postgres.Store → URL
	open := func(t *testing.T) store.Store {
		url := storetest.PostgresSchema(t)
		s := openAt(t, url)
		urls.Store(s, url)
		return s
	}
	reopen := func(t *testing.T, old store.Store) store.Store {
		url, _ := urls.Load(old)
		if err := old.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		return openAt(t, url.(string))
	}
	storetest.Run(t, open, storetest.WithReopen(reopen))
}

func BenchmarkAcceptInbound(b *testing.B) {
	s, err := postgres.Open(context.Background(), postgres.Config{URL: storetest.PostgresSchema(b), Topics: storetest.Topics(), MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkAcceptInbound(b, s)
}

// TestCommitWakes: with an hour between polls, only the wake of a commit's
// own topics delivers its events in time.
func TestCommitWakes(t *testing.T) {
	s, err := postgres.Open(context.Background(), postgres.Config{URL: storetest.PostgresSchema(t), Topics: storetest.Topics(), QueuePoll: time.Hour})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	storetest.CommitWakes(t, s)
}
