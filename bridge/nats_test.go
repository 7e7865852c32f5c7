package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsTestTopic has dots, like every carebridge topic.
const natsTestTopic = "hl7.received"

func TestNATSNaming(t *testing.T) {
	tests := []struct {
		prefix, topic         string
		wantSubject, wantName string
	}{
		{"carebridge", "hl7.received", "carebridge.hl7.received", "carebridge_hl7_received"},
		{"carebridge", "audit", "carebridge.audit", "carebridge_audit"},
		{"test.run-1", "communication.created", "test.run-1.communication.created", "test_run-1_communication_created"},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			if got := natsSubject(tt.prefix, tt.topic); got != tt.wantSubject {
				t.Errorf("natsSubject(%q, %q) = %q, want %q", tt.prefix, tt.topic, got, tt.wantSubject)
			}
			if got := natsStreamName(tt.prefix, tt.topic); got != tt.wantName {
				t.Errorf("natsStreamName(%q, %q) = %q, want %q", tt.prefix, tt.topic, got, tt.wantName)
			}
		})
	}
}

func TestValidateNATSSubject(t *testing.T) {
	tests := []struct {
		name    string
		wantErr bool
	}{
		{"hl7.received", false},
		{"audit_recorded", false},
		{"dead-letter.v2", false},
		{"", true},
		{".hl7", true},
		{"hl7.", true},
		{"hl7..received", true},
		{"hl7.*", true},
		{"hl7.>", true},
		{"hl7 received", true},
		{"hl7/received", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateNATSSubject(tt.name)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("validateNATSSubject(%q) = %v, want error %v", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestNATSConfigRejects(t *testing.T) {
	good := NATSConfig{URL: "nats://127.0.0.1:1"}
	tests := []struct {
		name  string
		cfg   NATSConfig
		group string
	}{
		{"no URL", NATSConfig{}, "map"},
		{"bad prefix", NATSConfig{URL: good.URL, StreamPrefix: "a b"}, "map"},
		{"negative AckWait", NATSConfig{URL: good.URL, AckWait: -time.Second}, "map"},
		{"no group", good, ""},
		{"dotted group", good, "bridge.map"},
		{"wildcard group", good, "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if sub, err := NewNATSSubscriber(tt.cfg, tt.group); err == nil {
				sub.Close()
				t.Errorf("NewNATSSubscriber(%+v, %q) succeeded, want error", tt.cfg, tt.group)
			}
		})
	}
	cfg, err := good.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StreamPrefix != DefaultNATSStreamPrefix || cfg.AckWait != DefaultNATSAckWait || cfg.Logger == nil {
		t.Errorf("defaults = %+v", cfg)
	}
}

// natsTestConfig returns a config for the server in CAREBRIDGE_TEST_NATS with
// a stream prefix of its own, whose streams are deleted when the test ends.
func natsTestConfig(t *testing.T, ackWait time.Duration) NATSConfig {
	t.Helper()
	url := os.Getenv("CAREBRIDGE_TEST_NATS")
	if url == "" {
		if os.Getenv("CAREBRIDGE_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatal("CAREBRIDGE_TEST_NATS not set and CAREBRIDGE_TEST_REQUIRE_SERVICES=1")
		}
		t.Skip("CAREBRIDGE_TEST_NATS not set")
	}
	prefix := fmt.Sprintf("cbtest%d", time.Now().UnixNano())
	t.Cleanup(func() { deleteNATSTestStreams(t, url, prefix) })
	return NATSConfig{
		URL:          url,
		StreamPrefix: prefix,
		AckWait:      ackWait,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

func deleteNATSTestStreams(t *testing.T, url, prefix string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Errorf("cleanup: connecting: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var mine []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix+"_") {
			mine = append(mine, name)
		}
	}
	if err := names.Err(); err != nil {
		t.Errorf("cleanup: listing streams: %v", err)
	}
	for _, name := range mine {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Errorf("cleanup: deleting stream %s: %v", name, err)
		}
	}
}

func newTestNATSPublisher(t *testing.T, cfg NATSConfig) message.Publisher {
	t.Helper()
	pub, err := NewNATSPublisher(cfg)
	if err != nil {
		t.Fatalf("NewNATSPublisher: %v", err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

// newTestNATSSubscription subscribes to natsTestTopic; close the subscriber to
// end it (it is also closed when the test ends).
func newTestNATSSubscription(t *testing.T, cfg NATSConfig, group string) (message.Subscriber, <-chan *message.Message) {
	t.Helper()
	sub, err := NewNATSSubscriber(cfg, group)
	if err != nil {
		t.Fatalf("NewNATSSubscriber: %v", err)
	}
	t.Cleanup(func() { sub.Close() })
	msgs, err := sub.Subscribe(t.Context(), natsTestTopic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return sub, msgs
}

func publishNATSTestMessages(t *testing.T, pub message.Publisher, n int) []string {
	t.Helper()
	msgs := make([]*message.Message, n)
	ids := make([]string, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "message %d", i))
		ids[i] = msgs[i].UUID
	}
	if err := pub.Publish(natsTestTopic, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return ids
}

func receiveNATS(t *testing.T, msgs <-chan *message.Message, within time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("subscription closed")
		}
		return m
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
		return nil
	}
}

func expectNoNATSMessage(t *testing.T, msgs <-chan *message.Message, during time.Duration) {
	t.Helper()
	select {
	case m := <-msgs:
		t.Fatalf("got unexpected message %s", m.UUID)
	case <-time.After(during):
	}
}

func TestNATSDeliversMessagePublishedBeforeSubscriber(t *testing.T) {
	t.Parallel()
	cfg := natsTestConfig(t, 5*time.Second)
	pub := newTestNATSPublisher(t, cfg)

	want := message.NewMessage(watermill.NewUUID(), []byte("MSH|^~\\&|LAB|HOSP|||20260101||ORU^R01|MSG0001|P|2.5.1\r"))
	want.Metadata.Set("correlation_id", "corr-1")
	want.Metadata.Set("msh10", "MSG0001")
	if err := pub.Publish(natsTestTopic, want); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	_, msgs := newTestNATSSubscription(t, cfg, "map")
	got := receiveNATS(t, msgs, 5*time.Second)
	defer got.Ack()
	if got.UUID != want.UUID {
		t.Errorf("UUID = %q, want %q", got.UUID, want.UUID)
	}
	if string(got.Payload) != string(want.Payload) {
		t.Errorf("payload = %q, want %q", got.Payload, want.Payload)
	}
	if len(got.Metadata) != len(want.Metadata) {
		t.Errorf("metadata = %v, want %v", got.Metadata, want.Metadata)
	}
	for k, v := range want.Metadata {
		if got.Metadata.Get(k) != v {
			t.Errorf("metadata[%q] = %q, want %q", k, got.Metadata.Get(k), v)
		}
	}
}

func TestNATSAckedMessageNotRedelivered(t *testing.T) {
	t.Parallel()
	// A short AckWait: had the ack been lost, the message would come back
	// within the quiet period below.
	cfg := natsTestConfig(t, time.Second)
	pub := newTestNATSPublisher(t, cfg)
	first := publishNATSTestMessages(t, pub, 1)[0]

	sub, msgs := newTestNATSSubscription(t, cfg, "map")
	got := receiveNATS(t, msgs, 5*time.Second)
	if got.UUID != first {
		t.Fatalf("got %s, want %s", got.UUID, first)
	}
	got.Ack()
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, ok := <-msgs; ok {
		t.Fatal("subscription still open after Close")
	}

	// A restarted member of the same group resumes after the acked message.
	_, msgs = newTestNATSSubscription(t, cfg, "map")
	expectNoNATSMessage(t, msgs, 1500*time.Millisecond)
	second := publishNATSTestMessages(t, pub, 1)[0]
	got = receiveNATS(t, msgs, 5*time.Second)
	if got.UUID != second {
		t.Fatalf("after restart got %s, want the new message %s", got.UUID, second)
	}
	got.Ack()
}

func TestNATSNackedMessageRedelivered(t *testing.T) {
	t.Parallel()
	cfg := natsTestConfig(t, 30*time.Second) // redelivery must come from the nack, not AckWait
	pub := newTestNATSPublisher(t, cfg)
	id := publishNATSTestMessages(t, pub, 1)[0]

	_, msgs := newTestNATSSubscription(t, cfg, "map")
	got := receiveNATS(t, msgs, 5*time.Second)
	if got.UUID != id {
		t.Fatalf("got %s, want %s", got.UUID, id)
	}
	got.Nack()

	again := receiveNATS(t, msgs, 5*time.Second)
	if again.UUID != id {
		t.Fatalf("redelivered %s, want %s", again.UUID, id)
	}
	if string(again.Payload) != string(got.Payload) {
		t.Errorf("redelivered payload = %q, want %q", again.Payload, got.Payload)
	}
	again.Ack()
}

// collectNATS acks and counts messages from several subscriptions until want
// distinct messages have arrived, then waits quietly for duplicates.
func collectNATS(t *testing.T, want int, subs ...<-chan *message.Message) (perSub []int, seen map[string]int) {
	t.Helper()
	var (
		mu   sync.Mutex
		once sync.Once
	)
	seen = make(map[string]int)
	perSub = make([]int, len(subs))
	all := make(chan struct{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, msgs := range subs {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case m, ok := <-msgs:
					if !ok {
						return
					}
					m.Ack()
					mu.Lock()
					seen[m.UUID]++
					perSub[i]++
					if len(seen) == want {
						once.Do(func() { close(all) })
					}
					mu.Unlock()
				}
			}
		})
	}
	select {
	case <-all:
	case <-time.After(15 * time.Second):
		t.Errorf("timed out")
	}
	time.Sleep(300 * time.Millisecond) // duplicates, if any, arrive now
	close(stop)
	wg.Wait()
	return perSub, seen
}

func TestNATSConsumerGroupSharesMessages(t *testing.T) {
	t.Parallel()
	cfg := natsTestConfig(t, 10*time.Second)
	pub := newTestNATSPublisher(t, cfg)
	// Two members of one group, each its own connection like two processes.
	_, a := newTestNATSSubscription(t, cfg, "map")
	_, b := newTestNATSSubscription(t, cfg, "map")

	const n = 200
	ids := publishNATSTestMessages(t, pub, n)
	perSub, seen := collectNATS(t, n, a, b)

	total := 0
	for _, c := range seen {
		total += c
	}
	if total != n || len(seen) != n {
		t.Errorf("received %d deliveries of %d distinct messages, want %d of %d", total, len(seen), n, n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("message %s delivered %d times", id, c)
		}
	}
	for _, id := range ids {
		if seen[id] == 0 {
			t.Errorf("message %s never delivered", id)
		}
	}
	t.Logf("shared: %v", perSub)
	if perSub[0] == 0 || perSub[1] == 0 {
		t.Errorf("one member got nothing: %v", perSub)
	}
}

func TestNATSEachConsumerGroupGetsEveryMessage(t *testing.T) {
	t.Parallel()
	cfg := natsTestConfig(t, 10*time.Second)
	pub := newTestNATSPublisher(t, cfg)
	const n = 50
	ids := publishNATSTestMessages(t, pub, n)

	for _, group := range []string{"map", "audit"} {
		_, msgs := newTestNATSSubscription(t, cfg, group)
		_, seen := collectNATS(t, n, msgs)
		if len(seen) != n {
			t.Errorf("group %s received %d distinct messages, want %d", group, len(seen), n)
		}
		for _, id := range ids {
			if seen[id] != 1 {
				t.Errorf("group %s: message %s delivered %d times, want 1", group, id, seen[id])
			}
		}
	}
}

func TestNATSStoppedSubscriptionHandsBackBufferedMessages(t *testing.T) {
	t.Parallel()
	// AckWait far beyond the test: buffered messages must come back because
	// the stopping member nacks them, not because their AckWait ran out.
	cfg := natsTestConfig(t, time.Minute)
	pub := newTestNATSPublisher(t, cfg)
	const n = 20
	publishNATSTestMessages(t, pub, n)

	a, err := NewNATSSubscriber(cfg, "map")
	if err != nil {
		t.Fatalf("NewNATSSubscriber: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	msgsA, err := a.Subscribe(ctx, natsTestTopic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	inHand := receiveNATS(t, msgsA, 5*time.Second)
	time.Sleep(100 * time.Millisecond) // let the pull buffer fill
	cancel()
	inHand.Ack() // a handler finishing while the subscription stops
	for m := range msgsA {
		t.Errorf("message %s sent after cancel", m.UUID)
	}

	_, msgsB := newTestNATSSubscription(t, cfg, "map")
	_, seen := collectNATS(t, n-1, msgsB)
	if len(seen) != n-1 {
		t.Errorf("second member received %d distinct messages, want %d", len(seen), n-1)
	}
	if seen[inHand.UUID] != 0 {
		t.Errorf("acked message %s redelivered", inHand.UUID)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("message %s delivered %d times", id, c)
		}
	}
}
