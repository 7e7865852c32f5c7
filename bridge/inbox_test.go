package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/store"
)

// sseEvents reads "data:" lines of an event stream into a channel.
func sseEvents(t *testing.T, url, token string) (<-chan bridge.InboxItem, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan bridge.InboxItem, 16)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var it bridge.InboxItem
				if json.Unmarshal([]byte(data), &it) == nil {
					out <- it
				}
			}
		}
	}()
	return out, cancel
}

func nextItem(t *testing.T, ch <-chan bridge.InboxItem) bridge.InboxItem {
	t.Helper()
	select {
	case it := <-ch:
		return it
	case <-time.After(10 * time.Second):
		t.Fatal("no inbox event in 10 s")
	}
	return bridge.InboxItem{}
}

// TestInboxStreamsDeliversAndReads: a recipient's session gets the message
// waiting for it and then each new one live; each is recorded delivered,
// a read receipt records it read, and all three are audited. Without a
// valid token there is nothing.
func TestInboxStreamsDeliversAndReads(t *testing.T) {
	p := newPipeline(t)
	hub := bridge.NewHub()
	deliver := &bridge.DeliverStage{Store: p.st, Inbox: &bridge.LocalInbox{Hub: hub, Store: p.st, Keys: p.kr}, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	mapAndDeliver := func(id string) store.CommunicationRow {
		t.Helper()
		if err := p.stage.Handle(received(id)); err != nil {
			t.Fatal(err)
		}
		comms, err := p.st.CommunicationsOf(context.Background(), id)
		if err != nil || len(comms) != 1 {
			t.Fatalf("Communications of %s: %+v, %v", id, comms, err)
		}
		b, _ := json.Marshal(bridge.CommunicationCreated{CommunicationID: comms[0].ID, InboundID: id, Priority: comms[0].Priority, Recipients: comms[0].Recipients})
		if err := deliver.Handle(message.NewMessage(watermill.NewUUID(), b)); err != nil {
			t.Fatal(err)
		}
		return comms[0]
	}
	first := mapAndDeliver(p.accept(t, "oru-r01-critical-k-v251.hl7"))
	orderer := first.Recipients[0]

	api := &bridge.InboxAPI{Store: p.st, Keys: p.kr, Hub: hub, Tokens: map[string]string{
		"dev-token-orderer": orderer, "dev-token-attending": first.Recipients[1], "dev-token-oncall": first.Recipients[2]},
		Now: time.Now, Log: slog.New(slog.DiscardHandler), Heartbeat: 50 * time.Millisecond}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	for _, token := range []string{"", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/inbox", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: %s, want 401", token, resp.Status)
		}
	}

	events, stop := sseEvents(t, srv.URL+"/api/inbox/stream", "dev-token-orderer")
	defer stop()
	got := nextItem(t, events)
	if got.ID != first.ID || got.Priority != "urgent" || !strings.Contains(got.Text, "CRITICAL result for SAMPLE, JORDAN") {
		t.Fatalf("backlog event = %+v", got)
	}

	raw, _ := os.ReadFile(filepath.Join("..", "mapping", "testdata", "hl7", "oru-r01-critical-k-v251.hl7"))
	res, err := p.in.Accept(context.Background(), inbound.Peer{Addr: "127.0.0.1:1", Transport: "mllp"},
		[]byte(strings.Replace(string(raw), "ORU251-0001", "ORU251-0002", 1)))
	if err != nil {
		t.Fatal(err)
	}
	second := mapAndDeliver(res.ID)
	if live := nextItem(t, events); live.ID != second.ID {
		t.Fatalf("live event = %+v, want %s", live, second.ID)
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/inbox/"+first.ID+"/read", nil)
	req.Header.Set("Authorization", "Bearer dev-token-orderer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("read receipt: %v %v", resp, err)
	}
	resp.Body.Close()

	deadline := time.Now().Add(5 * time.Second)
	for {
		ds, _ := p.st.DeliveriesOf(context.Background(), second.ID)
		state := ""
		for _, d := range ds {
			if d.Recipient == orderer {
				state = d.State
			}
		}
		if state == store.DeliveryDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live message is %q for the orderer, want delivered", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/api/inbox", nil)
	req.Header.Set("Authorization", "Bearer dev-token-orderer")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var items []bridge.InboxItem
	json.NewDecoder(resp.Body).Decode(&items)
	resp.Body.Close()
	states := map[string]string{}
	for _, it := range items {
		states[it.ID] = it.State
	}
	if len(items) != 2 || states[first.ID] != store.DeliveryRead || states[second.ID] != store.DeliveryDelivered {
		t.Errorf("inbox states = %v", states)
	}

	// The other two recipients connect: once all three have the first
	// message, it is completed, with the time it was received.
	for _, token := range []string{"dev-token-attending", "dev-token-oncall"} {
		ch, stop := sseEvents(t, srv.URL+"/api/inbox/stream", token)
		nextItem(t, ch)
		nextItem(t, ch)
		stop()
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		c, err := p.st.GetCommunication(context.Background(), first.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status == "completed" {
			body, err := p.kr.Open(c.Sealed, []byte("Communication/"+c.ID))
			if err != nil || !strings.Contains(string(body), `"status":"completed"`) || !strings.Contains(string(body), `"received":"`) {
				t.Fatalf("completed Communication = %s, %v", body, err)
			}
			v, _ := fhir.NewValidator()
			if err := v.Validate(body); err != nil {
				t.Fatalf("the completed Communication is not valid R4: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Communication %s is %s after every recipient got it", first.ID, c.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}

	actions := map[string]int{}
	for _, e := range nextEntries(t, p.st, 11) { // 2 messages × 2 map entries, 6 deliveries, 1 read
		actions[e.Action]++
		if e.Action == "communication.read" && (e.Actor.Kind != audit.ActorUser || e.Actor.ID != orderer) {
			t.Errorf("read audited as %+v", e.Actor)
		}
	}
	if actions["communication.delivered"] != 6 || actions["communication.read"] != 1 {
		t.Errorf("audited actions = %v", actions)
	}
}

// TestInboxStreamSendsEverythingWaiting: a clinician who comes back to
// more undelivered messages than one page gets every one of them, oldest
// first, each recorded delivered.
func TestInboxStreamSendsEverythingWaiting(t *testing.T) {
	p := newPipeline(t)
	raw, err := os.ReadFile(filepath.Join("..", "mapping", "testdata", "hl7", "oru-r01-critical-k-v251.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 230 // more than a page
	var recipient string
	var want []string
	for i := range n {
		res, err := p.in.Accept(context.Background(), inbound.Peer{Addr: "127.0.0.1:1", Transport: "mllp"},
			[]byte(strings.Replace(string(raw), "ORU251-0001", fmt.Sprintf("ORU251-W%03d", i), 1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.stage.Handle(received(res.ID)); err != nil {
			t.Fatal(err)
		}
		comms, err := p.st.CommunicationsOf(context.Background(), res.ID)
		if err != nil || len(comms) != 1 {
			t.Fatalf("Communications: %+v, %v", comms, err)
		}
		recipient = comms[0].Recipients[0]
		if err := p.st.QueueDeliveries(context.Background(), comms[0].ID, comms[0].Recipients, time.Now()); err != nil {
			t.Fatal(err)
		}
		want = append(want, comms[0].ID)
	}
	api := &bridge.InboxAPI{Store: p.st, Keys: p.kr, Hub: bridge.NewHub(), Tokens: map[string]string{"dev-token-orderer": recipient},
		Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	events, stop := sseEvents(t, srv.URL+"/api/inbox/stream", "dev-token-orderer")
	defer stop()
	seen := map[string]bool{}
	for range n {
		it := nextItem(t, events)
		if seen[it.ID] {
			t.Fatalf("%s streamed twice", it.ID)
		}
		seen[it.ID] = true
	}
	for _, id := range want {
		if !seen[id] {
			t.Fatalf("%s was not streamed", id)
		}
	}
	// Each delivery is recorded just after its event is flushed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		waiting, err := p.st.Waiting(context.Background(), recipient, 10)
		if err == nil && len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after the stream: %d, %v", len(waiting), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	api.Drain()
	// Recorded in batches: every delivery has its audit entry, in far
	// fewer transactions (events) than deliveries.
	evs := next(t, p.st, bridge.TopicAuditRecorded, n+deliveryEvents(t, p.st))
	delivered := 0
	for _, m := range evs[n:] {
		es, err := audit.DecodeEntries(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Action == "communication.delivered" && e.Actor.ID == recipient {
				delivered++
			}
		}
	}
	if delivered != n || len(evs)-n > n/4 {
		t.Errorf("%d deliveries audited in %d events; want all %d, in at most %d", delivered, len(evs)-n, n, n/4)
	}
}

// deliveryEvents counts the audit.recorded events after the map stage's
// first ones that hold deliveries, reading them once for a fresh group.
func deliveryEvents(t *testing.T, st store.Store) int {
	t.Helper()
	ch, _ := subscribeFresh(t, st, bridge.TopicAuditRecorded, 2*time.Second)
	n := 0
	for {
		select {
		case m := <-ch:
			m.Ack()
			if strings.Contains(string(m.Payload), `"communication.delivered"`) {
				n++
			}
		case <-time.After(300 * time.Millisecond):
			return n
		}
	}
}
