package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/store"
)

// fakeReaders stands in for the sign-in service: session tokens to
// readers, and a switch that ends every session.
type fakeReaders struct {
	mu      sync.Mutex
	readers map[string]bridge.Reader
	noInbox map[string]bool
	ended   atomic.Bool
	touched atomic.Int64 // Reader calls: what counts as activity
}

func (f *fakeReaders) Reader(_ context.Context, token string) (bridge.Reader, error) {
	f.touched.Add(1)
	if f.ended.Load() {
		return bridge.Reader{}, bridge.ErrNotSignedIn
	}
	if f.noInbox[token] {
		return bridge.Reader{User: "clerk"}, fmt.Errorf("%w: a clerk", bridge.ErrNoInbox)
	}
	f.mu.Lock()
	r, ok := f.readers[token]
	f.mu.Unlock()
	if !ok {
		return bridge.Reader{}, bridge.ErrNotSignedIn
	}
	return r, nil
}

func (f *fakeReaders) Recheck(_ context.Context, token string) (bridge.Reader, error) {
	if f.ended.Load() {
		return bridge.Reader{}, fmt.Errorf("%w: idle", bridge.ErrNotSignedIn)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.readers[token]
	if !ok {
		return bridge.Reader{}, bridge.ErrNotSignedIn
	}
	return r, nil
}

// sseEvent is one Server-Sent Event: its name and data.
type sseEvent struct{ name, data string }

// rawEvents reads a stream's events until it ends (the channel closes).
func rawEvents(t *testing.T, url, token string) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	out := make(chan sseEvent, 16)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return out, cancel
}

func status(t *testing.T, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestInboxOfSignedInUser: a signed-in clinician who stands for two of a
// message's recipients gets it once on the stream, and it is recorded
// delivered (then read) for both, audited as that user; a sign-in whose
// role has no inbox gets 403, an unknown token 401; and when the session
// ends the stream says so and closes, without the stream itself having
// kept the session alive.
func TestInboxOfSignedInUser(t *testing.T) {
	p := newPipeline(t)
	hub := bridge.NewHub()
	deliver := &bridge.DeliverStage{Store: p.st, Inbox: &bridge.LocalInbox{Hub: hub, Store: p.st, Keys: p.kr}, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	comms, err := p.st.CommunicationsOf(context.Background(), id)
	if err != nil || len(comms) != 1 || len(comms[0].Recipients) != 3 {
		t.Fatalf("Communications of %s: %+v, %v", id, comms, err)
	}
	comm := comms[0]
	mine := comm.Recipients[:2] // the orderer and the attending
	readers := &fakeReaders{
		readers: map[string]bridge.Reader{"sess-dr": {User: "user-dr", Recipients: mine}},
		noInbox: map[string]bool{"sess-clerk": true},
	}
	api := &bridge.InboxAPI{Store: p.st, Keys: p.kr, Hub: hub, Readers: readers,
		Now: time.Now, Log: slog.New(slog.DiscardHandler), Heartbeat: 50 * time.Millisecond}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	for token, want := range map[string]int{"": http.StatusUnauthorized, "sess-unknown": http.StatusUnauthorized, "sess-clerk": http.StatusForbidden} {
		if got := status(t, http.MethodGet, srv.URL+"/api/inbox", token); got != want {
			t.Errorf("GET /api/inbox with %q: %d, want %d", token, got, want)
		}
	}

	events, stop := rawEvents(t, srv.URL+"/api/inbox/stream", "sess-dr")
	defer stop()
	first := <-events
	var it bridge.InboxItem
	if first.name != "communication" || json.Unmarshal([]byte(first.data), &it) != nil || it.ID != comm.ID {
		t.Fatalf("first event = %+v, want the waiting message %s", first, comm.ID)
	}
	// Announced live again (as an escalation re-notifies): not shown twice.
	b, _ := json.Marshal(bridge.CommunicationCreated{CommunicationID: comm.ID, InboundID: id, Priority: comm.Priority, Recipients: comm.Recipients})
	if err := deliver.Handle(message.NewMessage(watermill.NewUUID(), b)); err != nil {
		t.Fatal(err)
	}
	touchedWhileStreaming := readers.touched.Load()

	deadline := time.Now().Add(5 * time.Second)
	for {
		ds, err := p.st.DeliveriesOf(context.Background(), comm.ID)
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]string{}
		for _, d := range ds {
			states[d.Recipient] = d.State
		}
		if states[mine[0]] == store.DeliveryDelivered && states[mine[1]] == store.DeliveryDelivered {
			if states[comm.Recipients[2]] != store.DeliveryQueued {
				t.Errorf("the third recipient, not this user, is %q", states[comm.Recipients[2]])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries = %v, want delivered to both of the user's recipients", states)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if got := status(t, http.MethodPost, srv.URL+"/api/inbox/"+comm.ID+"/read", "sess-dr"); got != http.StatusNoContent {
		t.Fatalf("read receipt: %d", got)
	}
	if got := status(t, http.MethodPost, srv.URL+"/api/inbox/not-mine/read", "sess-dr"); got != http.StatusNotFound {
		t.Errorf("read receipt of an unknown message: %d, want 404", got)
	}
	ds, _ := p.st.DeliveriesOf(context.Background(), comm.ID)
	for _, d := range ds {
		if slices.Contains(mine, d.Recipient) && d.State != store.DeliveryRead {
			t.Errorf("after the read receipt %s is %q", d.Recipient, d.State)
		}
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/inbox", nil)
	req.Header.Set("Authorization", "Bearer sess-dr")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var items []bridge.InboxItem
	json.NewDecoder(resp.Body).Decode(&items)
	resp.Body.Close()
	if len(items) != 1 || items[0].ID != comm.ID || items[0].State != store.DeliveryRead {
		t.Errorf("inbox = %+v, want the one message, read", items)
	}

	// The session ends (idle): the stream tells the client and closes.
	time.Sleep(150 * time.Millisecond) // several heartbeats: each checks the session
	if n := readers.touched.Load(); n != touchedWhileStreaming+3 {
		// the read receipts (2) and the list (1) are activity; the
		// stream's own checks are not
		t.Errorf("the session was touched %d times while streaming, want %d", n, touchedWhileStreaming+3)
	}
	readers.ended.Store(true)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream closed without a signed-out event")
			}
			if ev.name == "communication" {
				t.Errorf("the message was streamed twice: %+v", ev)
			}
			if ev.name != "signed-out" {
				continue
			}
			if _, ok := <-events; ok {
				t.Error("the stream went on after signed-out")
			}
		case <-timeout:
			t.Fatal("the stream did not end with its session")
		}
		break
	}

	api.Drain()
	var users, recipients int
	for _, e := range nextEntries(t, p.st, 6) { // 2 map entries, 2 deliveries, 2 reads
		if e.Action != "communication.delivered" && e.Action != "communication.read" {
			continue
		}
		if e.Actor.Kind != audit.ActorUser || e.Actor.ID != "user-dr" {
			t.Errorf("%s audited as %+v, want the user", e.Action, e.Actor)
		}
		users++
		if slices.ContainsFunc(mine, func(r string) bool { return slices.Contains(e.Entities, r) }) {
			recipients++
		}
	}
	if users != 4 || recipients != 4 {
		t.Errorf("%d delivery and read entries by the user, %d naming the recipient; want 4 and 4", users, recipients)
	}
}

// recordingPusher counts the pushes the deliver stage sends.
type recordingPusher struct{ sent atomic.Int64 }

func (p *recordingPusher) Send(context.Context, bridge.PushNotification) error {
	p.sent.Add(1)
	return nil
}

// TestRecallReachesOpenStreams: when a message's sender recalls it, the
// recalled event tells each open session to take it away, with no push
// and no new delivery; the stream goes on with what comes next.
func TestRecallReachesOpenStreams(t *testing.T) {
	p := newPipeline(t)
	hub := bridge.NewHub()
	push := &recordingPusher{}
	deliver := &bridge.DeliverStage{Store: p.st, Inbox: &bridge.LocalInbox{Hub: hub, Store: p.st, Keys: p.kr}, Push: push,
		Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	comms, err := p.st.CommunicationsOf(context.Background(), id)
	if err != nil || len(comms) != 1 {
		t.Fatalf("Communications of %s: %+v, %v", id, comms, err)
	}
	comm := comms[0]
	api := &bridge.InboxAPI{Store: p.st, Keys: p.kr, Hub: hub, Tokens: map[string]string{"dev-token-orderer": comm.Recipients[0]},
		Now: time.Now, Log: slog.New(slog.DiscardHandler), Heartbeat: time.Second}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	events, stop := rawEvents(t, srv.URL+"/api/inbox/stream", "dev-token-orderer")
	defer stop()
	if ev := <-events; ev.name != "communication" || !strings.Contains(ev.data, comm.ID) {
		t.Fatalf("first event = %+v", ev)
	}

	recalled := comm
	recalled.Status = "entered-in-error"
	ev, err := bridge.RecalledEvent(recalled, "corr-recall")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.st.UpdateCommunication(context.Background(), recalled, 0, ev); err != nil {
		t.Fatal(err)
	}
	if err := deliver.Handle(ev.Message); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-events:
		if got.name != "recalled" || got.data != `{"id":"`+comm.ID+`"}` {
			t.Fatalf("after the recall: %+v, want a recalled event naming %s only", got, comm.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no recalled event in 5 s")
	}
	if n := push.sent.Load(); n != 0 {
		t.Errorf("a recall sent %d pushes", n)
	}
	ds, err := p.st.DeliveriesOf(context.Background(), comm.ID)
	if err != nil || len(ds) != len(comm.Recipients) {
		t.Errorf("deliveries after the recall: %+v, %v; want the %d of before", ds, err, len(comm.Recipients))
	}
}

// TestInboxStreamEndsWhenRecipientsChange: when a user's recipients are
// changed (users set-recipients) while their stream is open, the stream
// says so and ends: it shows nothing of the recipients they lost.
func TestInboxStreamEndsWhenRecipientsChange(t *testing.T) {
	p := newPipeline(t)
	readers := &fakeReaders{readers: map[string]bridge.Reader{"sess-dr": {User: "user-dr", Recipients: []string{"Practitioner/a", "CareTeam/icu"}}}}
	api := &bridge.InboxAPI{Store: p.st, Keys: p.kr, Hub: bridge.NewHub(), Readers: readers,
		Now: time.Now, Log: slog.New(slog.DiscardHandler), Heartbeat: 30 * time.Millisecond}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	events, stop := rawEvents(t, srv.URL+"/api/inbox/stream", "sess-dr")
	defer stop()
	time.Sleep(100 * time.Millisecond) // heartbeats with the same recipients go on
	select {
	case ev, ok := <-events:
		t.Fatalf("the stream ended or sent %+v (%v) while nothing changed", ev, ok)
	default:
	}
	readers.mu.Lock()
	readers.readers["sess-dr"] = bridge.Reader{User: "user-dr", Recipients: []string{"Practitioner/a"}}
	readers.mu.Unlock()
	select {
	case ev := <-events:
		if ev.name != "changed" {
			t.Fatalf("after the change: %+v, want a changed event", ev)
		}
		if _, ok := <-events; ok {
			t.Error("the stream went on after changed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the recipients changed")
	}
}
