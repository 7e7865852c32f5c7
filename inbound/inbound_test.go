package inbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
)

// fakeStore records batches and dedupes like the real stores do.
type fakeStore struct {
	mu       sync.Mutex
	batches  [][]store.Accept
	rows     []store.InboundMessage
	fail     error
	gate     chan struct{} // when set, each commit waits for a receive
	inCommit chan struct{}
}

func (f *fakeStore) AcceptInbound(ctx context.Context, batch []store.Accept) ([]store.AcceptResult, error) {
	if f.inCommit != nil {
		f.inCommit <- struct{}{}
	}
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.batches = append(f.batches, append([]store.Accept(nil), batch...)) // the service reuses its batch slice
	out := make([]store.AcceptResult, len(batch))
	for i, a := range batch {
		if a.Dedupe {
			found := false
			for _, r := range f.rows {
				if r.State == store.StateAccepted && r.Key() == a.Message.Key() {
					out[i] = store.AcceptResult{ID: r.ID, Duplicate: true, State: r.State, AckCode: r.AckCode}
					found = true
					break
				}
			}
			if found {
				continue
			}
		}
		f.rows = append(f.rows, a.Message)
		out[i] = store.AcceptResult{ID: a.Message.ID, State: a.Message.State, AckCode: a.Message.AckCode}
	}
	return out, nil
}

func (f *fakeStore) all() []store.InboundMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.InboundMessage(nil), f.rows...)
}

func newService(t *testing.T, st Store) (*Service, *secure.KeyRing) {
	t.Helper()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(st, kr, Config{Now: func() time.Time { return time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, kr
}

func adt(controlID string) []byte {
	return []byte("MSH|^~\\&|ADTSYS|GENHOSP|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01|" + controlID + "|P|2.5.1\r" +
		"EVN|A01|20261124093000\r" +
		"PID|1||MRN12345^^^GENHOSP^MR||ZZTESTPATIENT^QUINCY||19800101|F\r" +
		"PV1|1|I|4W^401^1\r")
}

var peer = Peer{Addr: "127.0.0.1:50000", Transport: "mllp"}

func TestAcceptStoresSealedAndQueues(t *testing.T) {
	st := &fakeStore{}
	s, kr := newService(t, st)
	raw := adt("CTRL0001")
	res, err := s.Accept(context.Background(), peer, raw)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := hl7.ParseACK(res.ACK)
	if err != nil {
		t.Fatalf("our ACK does not parse: %v", err)
	}
	if ack.Code != "AA" || ack.ControlID != "CTRL0001" {
		t.Fatalf("ACK = %s for %q, want AA for CTRL0001", ack.Code, ack.ControlID)
	}
	if ack.Header.SendingApplication != "CAREBRIDGE" || ack.Header.ReceivingApplication != "ADTSYS" {
		t.Errorf("ACK MSH-3/MSH-5 = %q/%q, want them swapped from the original", ack.Header.SendingApplication, ack.Header.ReceivingApplication)
	}
	rows := st.all()
	if len(rows) != 1 {
		t.Fatalf("stored %d rows, want 1", len(rows))
	}
	got := rows[0]
	if got.State != store.StateAccepted || got.MessageType != "ADT^A01" || got.ControlID != "CTRL0001" ||
		got.SendingApplication != "ADTSYS" || got.SendingFacility != "GENHOSP" || got.Version != "2.5.1" ||
		got.AckCode != "AA" || got.Size != len(raw) || got.Peer != peer.Addr || got.ID != res.ID {
		t.Errorf("stored metadata = %+v", got)
	}
	if bytes.Contains(got.Sealed, []byte("ZZTESTPATIENT")) {
		t.Fatal("the stored record contains the patient's name in clear")
	}
	plain, err := kr.Open(got.Sealed, []byte(got.ID))
	if err != nil || !bytes.Equal(plain, raw) {
		t.Fatalf("sealed record opens to %q, %v; want the raw message", plain, err)
	}
	batch := st.batches[0]
	if len(batch[0].Events) != 1 || batch[0].Events[0].Topic != TopicReceived {
		t.Fatalf("events = %+v, want one on %s", batch[0].Events, TopicReceived)
	}
	ev := batch[0].Events[0].Message
	var payload Received
	if err := json.Unmarshal(ev.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload.InboundID != res.ID || ev.UUID != res.ID || ev.Metadata.Get(CorrelationIDKey) != res.ID {
		t.Errorf("event = %s %s %v, want ids %s", ev.UUID, ev.Payload, ev.Metadata, res.ID)
	}
	if bytes.Contains(ev.Payload, []byte("ZZTESTPATIENT")) {
		t.Error("the queued event carries PHI")
	}
}

func TestAcceptDuplicateAcknowledgedOnce(t *testing.T) {
	st := &fakeStore{}
	s, _ := newService(t, st)
	first, err := s.Accept(context.Background(), peer, adt("DUP1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Accept(context.Background(), peer, adt("DUP1"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.ID != first.ID || again.AckCode != "AA" {
		t.Fatalf("resend = %+v, want a duplicate of %s acknowledged AA", again, first.ID)
	}
	if n := len(st.all()); n != 1 {
		t.Fatalf("stored %d rows, want 1", n)
	}
	if got := s.Stats().Duplicates; got != 1 {
		t.Errorf("duplicates = %d, want 1", got)
	}
}

func TestAcceptRejectsBadInputButKeepsIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		raw     string
		wantAck []hl7.AckCode
	}{
		{"not HL7", "hello", []hl7.AckCode{"AR"}},
		{"empty", "", []hl7.AckCode{"AR"}},
		{"no control id", "MSH|^~\\&|A|B|C|D|20260101||ADT^A01||P|2.5.1\r", []hl7.AckCode{"AR", "AE"}},
		{"bad segment id", "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5.1\rpid|1\r", []hl7.AckCode{"AE", "AR"}},
		{"enhanced mode", "MSH|^~\\&|A|B|C|D|20260101||ADT^A01||P|2.5.1|||AL|NE\r", []hl7.AckCode{"CR", "CE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeStore{}
			s, _ := newService(t, st)
			res, err := s.Accept(context.Background(), peer, []byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if !contains(tc.wantAck, res.AckCode) {
				t.Errorf("ack code = %s, want one of %v", res.AckCode, tc.wantAck)
			}
			if !bytes.Contains(res.ACK, []byte("\rERR|")) {
				t.Errorf("ACK has no ERR segment: %q", res.ACK)
			}
			rows := st.all()
			if len(rows) != 1 || rows[0].State != store.StateRejected || rows[0].Error == "" {
				t.Fatalf("stored %+v, want one rejected row with its error", rows)
			}
			if len(st.batches[0][0].Events) != 0 || st.batches[0][0].Dedupe {
				t.Error("a rejected message was queued or deduplicated")
			}
		})
	}
}

func contains(list []hl7.AckCode, c hl7.AckCode) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

func TestAcceptStoreFailureSendsNoAck(t *testing.T) {
	st := &fakeStore{fail: errors.New("disk full")}
	s, _ := newService(t, st)
	res, err := s.Accept(context.Background(), peer, adt("F1"))
	if err == nil {
		t.Fatalf("Accept succeeded with a failing store: %+v", res)
	}
	if res.ACK != nil {
		t.Fatal("an ACK was produced for a message that was not stored")
	}
}

func TestGroupCommit(t *testing.T) {
	st := &fakeStore{gate: make(chan struct{}), inCommit: make(chan struct{}, 100)}
	s, _ := newService(t, st)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	// The first message holds the writer in its commit while the others queue.
	wg.Go(func() {
		_, err := s.Accept(context.Background(), peer, adt("G0"))
		errs <- err
	})
	<-st.inCommit
	for i := 1; i < n; i++ {
		wg.Go(func() {
			_, err := s.Accept(context.Background(), peer, adt(fmt.Sprintf("G%d", i)))
			errs <- err
		})
	}
	waitFor(t, func() bool { return len(s.queue) == n-1 })
	close(st.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(st.all()); got != n {
		t.Fatalf("stored %d, want %d", got, n)
	}
	if got := s.Stats().Batches; got != 2 {
		t.Errorf("commits = %d, want 2 (one, then the %d that queued behind it)", got, n-1)
	}
}

func TestShutdownFinishesQueuedMessages(t *testing.T) {
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeStore{gate: make(chan struct{}), inCommit: make(chan struct{}, 100)}
	s, err := New(st, kr, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	results := make(chan error, 2)
	go func() { _, err := s.Accept(context.Background(), peer, adt("S1")); results <- err }()
	<-st.inCommit
	go func() { _, err := s.Accept(context.Background(), peer, adt("S2")); results <- err }()
	waitFor(t, func() bool { return len(s.queue) == 1 })
	cancel() // shutdown begins while S1 commits and S2 waits
	close(st.gate)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("a message in flight at shutdown failed: %v", err)
		}
	}
	<-done
	if _, err := s.Accept(context.Background(), peer, adt("S3")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after shutdown = %v, want ErrClosed", err)
	}
	if got := len(st.all()); got != 2 {
		t.Fatalf("stored %d, want 2", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAckControlIDFitsST20(t *testing.T) {
	s, _ := newService(t, &fakeStore{})
	res, err := s.Accept(context.Background(), peer, adt("L1"))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := hl7.ParseACK(res.ACK)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ack.Header.ControlID); n == 0 || n > 20 {
		t.Fatalf("ACK MSH-10 %q has %d characters, want 1..20", ack.Header.ControlID, n)
	}
	if strings.Contains(string(res.ACK), "ZZTESTPATIENT") {
		t.Fatal("the ACK echoes PHI")
	}
}

// TestAuditEntriesGoWithTheMessage: with an audit topic, every stored
// message carries its audit entry in the same transaction: accepted with
// success, rejected with the failure's weight; never content.
func TestAuditEntriesGoWithTheMessage(t *testing.T) {
	st := &fakeStore{}
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(st, kr, Config{AuditTopic: "audit.recorded"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	good, err := s.Accept(context.Background(), peer, adt("AUD-1"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := s.Accept(context.Background(), peer, []byte("MSH|^~\\&|ADTSYS|GENHOSP|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01||P|2.5.1\rPID|1||X^^^GENHOSP^MR||ZZTESTPATIENT^QUINCY\r"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		action  string
		outcome audit.Outcome
	}{good.ID: {"message.accepted", audit.OutcomeSuccess}, bad.ID: {"message.rejected", audit.OutcomeSerious}}
	for _, b := range st.batches {
		for _, a := range b {
			var entries []audit.Entry
			for _, ev := range a.Events {
				if ev.Topic != "audit.recorded" {
					continue
				}
				if strings.Contains(string(ev.Message.Payload), "ZZTESTPATIENT") {
					t.Errorf("audit entry carries PHI: %s", ev.Message.Payload)
				}
				var e audit.Entry
				if err := json.Unmarshal(ev.Message.Payload, &e); err != nil {
					t.Fatal(err)
				}
				entries = append(entries, e)
			}
			w := want[a.Message.ID]
			if len(entries) != 1 || entries[0].Action != w.action || entries[0].Outcome != w.outcome ||
				entries[0].Actor.Kind != audit.ActorPeer || entries[0].Actor.Address != peer.Addr || entries[0].Actor.ID != "ADTSYS^GENHOSP" ||
				entries[0].Entities[0] != "inbound/"+a.Message.ID || entries[0].ID == "" {
				t.Errorf("message %s (%s): audit entries %+v, want one %s", a.Message.ID, a.Message.State, entries, w.action)
			}
			delete(want, a.Message.ID)
		}
	}
	if len(want) != 0 {
		t.Errorf("messages without a batch: %v", want)
	}
}

// TestOrderKeyFollowsThePatient: one patient's messages from one facility
// share an order key (the map stage keeps them in order), other patients'
// spread over the keys, and the key is small.
func TestOrderKeyFollowsThePatient(t *testing.T) {
	msg := func(facility, mrn, authority, control string) *hl7.Message {
		raw := "MSH|^~\\&|ADT|" + facility + "|CB|CB|20261201063000||ADT^A08|" + control + "|P|2.5.1\rPID|1||" + mrn + "^^^" + authority + "^MR||DOE^JANE\r"
		m, err := hl7.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a1 := orderKey(msg("GH", "100", "GH", "1"), "GH")
	a2 := orderKey(msg("GH", "100", "GH", "2"), "GH")
	if a1 != a2 {
		t.Errorf("one patient's messages got keys %d and %d", a1, a2)
	}
	keys := map[uint32]bool{}
	for i := range 100 {
		k := orderKey(msg("GH", fmt.Sprint(1000+i), "GH", "x"), "GH")
		if k >= OrderKeys {
			t.Fatalf("key %d out of range", k)
		}
		keys[k] = true
	}
	if len(keys) < 80 {
		t.Errorf("100 patients share %d keys, want them spread", len(keys))
	}
}
