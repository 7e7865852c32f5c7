package postgres_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/storetest"
)

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresSchema(t)
	cfg := postgres.Config{URL: url, Topics: storetest.Topics()}
	got, err := postgres.Migrate(ctx, cfg)
	if err != nil || !reflect.DeepEqual(got, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27}) {
		t.Fatalf("first Migrate = %v, %v; want [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26]", got, err)
	}
	got, err = postgres.Migrate(ctx, cfg)
	if err != nil || len(got) != 0 {
		t.Fatalf("second Migrate = %v, %v; want none", got, err)
	}
	s := openAt(t, url)
	if v, err := s.SchemaVersion(ctx); err != nil || v != 27 {
		t.Fatalf("SchemaVersion = %d, %v; want 27", v, err)
	}
}

func TestConcurrentOpen(t *testing.T) {
	url := storetest.PostgresSchema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(context.Background(), postgres.Config{URL: url, Topics: storetest.Topics(), MaxConns: 2})
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestTwoInstancesDedupe: two stores (two carebridge instances) on one
// database receive the same messages at once; each is stored once.
func TestTwoInstancesDedupe(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresSchema(t)
	instances := []*postgres.Store{openAt(t, url), openAt(t, url)}
	const keys = 40
	now := time.Now().UTC()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := map[string]int{}
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := instances[w%2]
			for k := range keys {
				key := (k + w*5) % keys
				m := store.InboundMessage{
					ID: fmt.Sprintf("w%d-k%02d", w, key), ReceivedAt: now, SendingApplication: "A", SendingFacility: "F",
					ControlID: fmt.Sprintf("K%02d", key), State: store.StateAccepted, AckCode: "AA", Sealed: []byte("x"),
				}
				res, err := st.AcceptInbound(ctx, []store.Accept{{Message: m, Dedupe: true, DedupeSince: now.Add(-time.Hour)}})
				if err != nil {
					errs <- err
					return
				}
				if !res[0].Duplicate {
					mu.Lock()
					stored[m.ControlID]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var n int
	if err := instances[0].Pool().QueryRow(ctx, `SELECT count(*) FROM inbound`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != keys || len(stored) != keys {
		t.Fatalf("%d rows, %d keys reported stored; want %d", n, len(stored), keys)
	}
	for k, c := range stored {
		if c != 1 {
			t.Errorf("key %s stored %d times", k, c)
		}
	}
}

// TestMigrateCommunications: a Communication stored before migration 11
// is version 1, updated when sent, and found by its identifier and
// category as tokens.
func TestMigrateCommunications(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresSchema(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version > 10 {
			break
		}
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("migration %s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)
	if _, err := conn.Exec(ctx, `INSERT INTO communication (id, inbound_id, identifier, status, priority, category,
		subject, encounter, recipients, sent, sealed) VALUES ('c1', 'in-1', 'GH^1^admit', 'in-progress', 'urgent', 'alert',
		'Patient/p1', '', '{Practitioner/a}', $1, '\x00')`, sent); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	s := openAt(t, url)
	c, err := s.GetCommunication(ctx, "c1")
	if err != nil || c.Version != 1 || !c.Updated.Equal(sent) || !c.Received.IsZero() || c.Sender != "" {
		t.Fatalf("after migrating: %+v, %v; want version 1, updated when sent, not received", c, err)
	}
	for _, tok := range []store.TokenFilter{
		{Param: store.TokenIdentifier, Any: []store.TokenValue{{System: "urn:carebridge:communication-source", Code: "GH^1^admit"}}},
		{Param: store.TokenCategory, Any: []store.TokenValue{{System: "http://terminology.hl7.org/CodeSystem/communication-category", Code: "alert"}}},
	} {
		n, err := s.CountCommunications(ctx, store.CommunicationQuery{Tokens: []store.TokenFilter{tok}})
		if err != nil || n != 1 {
			t.Errorf("count by %+v = %d, %v; want 1", tok, n, err)
		}
	}
	if h, err := s.CommunicationHistory(ctx, "c1"); err != nil || len(h) != 1 || h[0].Version != 1 {
		t.Errorf("CommunicationHistory = %+v, %v; want version 1", h, err)
	}
}
