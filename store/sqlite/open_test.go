package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
	"github.com/carebridge/carebridge/store/storetest"

	_ "modernc.org/sqlite"
)

func message1(id string) store.Accept {
	m := store.InboundMessage{
		ID: id, ReceivedAt: time.Now().UTC(), SendingApplication: "A", SendingFacility: "F",
		ControlID: id, State: store.StateAccepted, AckCode: "AA", Sealed: []byte("ciphertext"),
	}
	ev := message.NewMessage(watermill.NewUUID(), []byte(id))
	return store.Accept{Message: m, Dedupe: true, Events: []store.Event{{Topic: storetest.TopicReceived, Message: ev}}}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "carebridge.db")
	s := openAt(t, path)
	if _, err := s.AcceptInbound(context.Background(), []store.Accept{message1("m1")}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), got)
		}
	}
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "carebridge.db")
	cfg := sqlite.Config{Path: path, Topics: storetest.Topics()}
	got, err := sqlite.Migrate(ctx, cfg)
	if err != nil || !reflect.DeepEqual(got, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 27}) {
		t.Fatalf("first Migrate = %v, %v; want [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 25 26 27]", got, err)
	}
	got, err = sqlite.Migrate(ctx, cfg)
	if err != nil || len(got) != 0 {
		t.Fatalf("second Migrate = %v, %v; want none", got, err)
	}
	s := openAt(t, path)
	if v, err := s.SchemaVersion(ctx); err != nil || v != 27 {
		t.Fatalf("SchemaVersion = %d, %v; want 27", v, err)
	}
}

func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "carebridge.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path, Topics: storetest.Topics()})
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

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	_, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "missing.db"), ReadOnly: true})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open created the file")
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Open(ctx, sqlite.Config{Path: empty, ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "carebridge migrate") {
		t.Errorf("read-only Open of an unmigrated file: %v, want a hint to migrate", err)
	}

	path := filepath.Join(dir, "carebridge.db")
	w := openAt(t, path)
	if _, err := w.AcceptInbound(ctx, []store.Accept{message1("m1")}); err != nil {
		t.Fatal(err)
	}
	r, err := sqlite.Open(ctx, sqlite.Config{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.AcceptInbound(ctx, []store.Accept{message1("m2")}); !errors.Is(err, sqlite.ErrReadOnly) {
		t.Errorf("AcceptInbound on a read-only store: %v, want ErrReadOnly", err)
	}

	// Another process holds the write lock in the middle of a transaction:
	// reads still answer at once, and see only committed data.
	other, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE inbound SET ack_code = 'XX'`); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	list, err := r.ListInbound(rctx, store.InboundFilter{})
	if err != nil || len(list) != 1 || list[0].AckCode != "AA" {
		t.Fatalf("ListInbound while another process writes = %+v, %v", list, err)
	}
	if _, err := r.GetInbound(rctx, "m1"); err != nil {
		t.Fatalf("GetInbound while another process writes: %v", err)
	}
}

// TestUnackedMessageDoesNotBlockWriter: a handler may take its time (or
// write to the store itself) while the subscriber waits for its ack.
func TestUnackedMessageDoesNotBlockWriter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openAt(t, filepath.Join(t.TempDir(), "carebridge.db"))
	if _, err := s.AcceptInbound(ctx, []store.Accept{message1("m1")}); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscriber("handler")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.Subscribe(ctx, storetest.TopicReceived)
	if err != nil {
		t.Fatal(err)
	}
	first := <-ch
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	defer wcancel()
	if _, err := s.AcceptInbound(wctx, []store.Accept{message1("m2")}); err != nil {
		t.Fatalf("AcceptInbound while a message is unacked: %v", err)
	}
	first.Ack()
	select {
	case m := <-ch:
		if string(m.Payload) != "m2" {
			t.Fatalf("second message payload %q, want m2", m.Payload)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("second message not delivered")
	}
}

// TestMigrateCommunications: a Communication stored before migration 11
// is version 1, updated when sent, and found by its identifier and
// category as tokens.
func TestMigrateCommunications(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "carebridge.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL,
		applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version > 10 {
			break
		}
		if _, err := db.ExecContext(ctx, m.SQL); err != nil {
			t.Fatalf("migration %s: %v", m.Name, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Date(2026, 11, 3, 14, 30, 0, 123456000, time.UTC)
	if _, err := db.ExecContext(ctx, `INSERT INTO communication (id, inbound_id, identifier, status, priority, category,
		subject, encounter, recipients, sent, sealed) VALUES ('c1', 'in-1', 'GH^1^admit', 'in-progress', 'urgent', 'alert',
		'Patient/p1', '', '["Practitioner/a"]', ?, x'00')`, sent.UnixMicro()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openAt(t, path)
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
