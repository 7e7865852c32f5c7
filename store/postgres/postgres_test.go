package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

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

// TestReserve: a reserve's pool is its own (with every connection of the
// store taken, its reserve still writes), and a commit on either wakes
// the other's subscribers at once, not at their next poll.
func TestReserve(t *testing.T) {
	storetest.PostgresURL(t)
	url := storetest.PostgresSchema(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, postgres.Config{URL: url, Topics: storetest.Topics(), MaxConns: 1, QueuePoll: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.Reserve(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	row := func(id string) store.CommunicationRow {
		return store.CommunicationRow{ID: id, Identifier: "urn:uuid:" + id, Status: "in-progress", Sent: time.Now(),
			Sealed: []byte("sealed"), Recipients: []string{"Practitioner/a"}}
	}

	sub, err := r.Subscriber("reserve")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	msgs, err := sub.Subscribe(subCtx, storetest.TopicOther)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // its first read finds nothing; it waits a minute, or for a wake
	ev := store.Event{Topic: storetest.TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("created"))}
	if err := st.CreateCommunication(ctx, row("woken"), ev); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		m.Ack()
	case <-time.After(10 * time.Second):
		t.Fatal("the reserve's subscriber was not woken by the store's commit")
	}

	held, err := st.Pool().Acquire(ctx) // the store's only connection
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.CreateCommunication(wctx, row("reserved")); err != nil {
		t.Fatalf("writing through the reserve while the store's pool is taken: %v", err)
	}
}
