package bridge_test

import (
	"context"
	"encoding/json"
	"log/slog"
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
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/mapping"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

var routedAt = time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC) // a Tuesday afternoon: the day intensivist is on call

type pipeline struct {
	st    *sqlite.Store
	kr    *secure.KeyRing
	in    *inbound.Service
	stage *bridge.MapStage
}

func newPipeline(t *testing.T) *pipeline { return newPipelineB(t) }

func newPipelineB(t testing.TB) *pipeline {
	t.Helper()
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db"), Topics: bridge.Topics()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := inbound.New(st, kr, inbound.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	rulesFile, err := os.ReadFile(filepath.Join("..", "mapping", "testdata", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := mapping.ParseRules(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	stage := &bridge.MapStage{
		Store: st, Sealer: kr, Mapper: mapping.New(mapping.Config{}), Rules: rules, Validator: v,
		Limits: hl7.DefaultLimits(), Now: func() time.Time { return routedAt }, Log: slog.New(slog.DiscardHandler),
	}
	return &pipeline{st: st, kr: kr, in: in, stage: stage}
}

func (p *pipeline) accept(t testing.TB, file string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "mapping", "testdata", "hl7", file))
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.in.Accept(context.Background(), inbound.Peer{Addr: "127.0.0.1:50000", Transport: "mllp"}, raw)
	if err != nil || res.State != store.StateAccepted {
		t.Fatalf("accept %s: %+v, %v", file, res, err)
	}
	return res.ID
}

// subscribeFresh subscribes a new consumer group to topic, reading from
// the first event; the subscription ends after timeout (ctx) or with the
// test.
func subscribeFresh(t *testing.T, st store.Store, topic string, timeout time.Duration) (<-chan *message.Message, context.Context) {
	t.Helper()
	sub, err := st.Subscriber("test-" + watermill.NewShortUUID())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(func() { cancel(); sub.Close() })
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return ch, ctx
}

// nextEntries reads audit.recorded events for a fresh consumer group until
// they hold n audit entries (an event may carry a batch), and fails if
// there are more.
func nextEntries(t *testing.T, st store.Store, n int) []audit.Entry {
	t.Helper()
	ch, ctx := subscribeFresh(t, st, bridge.TopicAuditRecorded, 10*time.Second)
	var out []audit.Entry
	for len(out) < n {
		select {
		case m := <-ch:
			m.Ack()
			es, err := audit.DecodeEntries(m.Payload)
			if err != nil {
				t.Fatalf("audit.recorded payload %s: %v", m.Payload, err)
			}
			if strings.Contains(string(m.Payload), "SAMPLE") || strings.Contains(string(m.Payload), "200345") {
				t.Errorf("audit entry carries PHI: %s", m.Payload)
			}
			out = append(out, es...)
		case <-ctx.Done():
			t.Fatalf("audit.recorded: %d of %d entries", len(out), n)
		}
	}
	if len(out) > n {
		t.Fatalf("audit.recorded: %d entries, want %d", len(out), n)
	}
	select {
	case m := <-ch:
		t.Fatalf("audit.recorded: more than %d entries: %s", n, m.Payload)
	case <-time.After(200 * time.Millisecond):
	}
	return out
}

// next reads the next n events of topic for a fresh consumer group.
func next(t *testing.T, st store.Store, topic string, n int) []*message.Message {
	t.Helper()
	ch, ctx := subscribeFresh(t, st, topic, 10*time.Second)
	var out []*message.Message
	for len(out) < n {
		select {
		case m := <-ch:
			m.Ack()
			out = append(out, m)
		case <-ctx.Done():
			t.Fatalf("%s: %d of %d events", topic, len(out), n)
		}
	}
	select {
	case m := <-ch:
		m.Ack()
		t.Fatalf("%s: more events than %d (%s)", topic, n, m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
	return out
}

func received(id string) *message.Message {
	b, _ := json.Marshal(inbound.Received{InboundID: id, MessageType: "ORU^R01"})
	m := message.NewMessage(watermill.NewUUID(), b)
	m.Metadata.Set(inbound.CorrelationIDKey, "corr-"+id)
	return m
}

// TestMapStageStoresSealedAndQueuesOnce: a critical potassium accepted at
// the door becomes sealed resources and one urgent Communication for the
// orderer, the attending and the on-call, with its communication.created
// and audit events; handling the same message again changes nothing.
func TestMapStageStoresSealedAndQueuesOnce(t *testing.T) {
	p := newPipeline(t)
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	ctx := context.Background()
	comms, err := p.st.CommunicationsOf(ctx, id)
	if err != nil || len(comms) != 1 {
		t.Fatalf("Communications = %+v, %v; want one", comms, err)
	}
	c := comms[0]
	if c.Priority != "urgent" || c.Category != "alert" || c.Status != "in-progress" || len(c.Recipients) != 3 ||
		!strings.HasSuffix(c.Identifier, "^ORU251-0001^critical-result") || !strings.HasPrefix(c.Subject, "Patient/") {
		t.Errorf("Communication row = %+v", c)
	}
	body, err := p.kr.Open(c.Sealed, []byte("Communication/"+c.ID))
	if err != nil || !strings.Contains(string(body), "CRITICAL result for SAMPLE, JORDAN") {
		t.Fatalf("sealed Communication opens to %q, %v", body, err)
	}
	if strings.Contains(string(c.Sealed), "SAMPLE") {
		t.Error("the Communication is stored in clear")
	}
	pat, err := p.st.GetResource(ctx, "Patient", strings.TrimPrefix(c.Subject, "Patient/"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := p.kr.Open(pat.Sealed, []byte(c.Subject)); err != nil || !strings.Contains(string(b), `"family":"SAMPLE"`) {
		t.Fatalf("sealed Patient opens to %q, %v", b, err)
	}

	created := next(t, p.st, bridge.TopicCommunicationCreated, 1)
	var cc bridge.CommunicationCreated
	if err := json.Unmarshal(created[0].Payload, &cc); err != nil || cc.CommunicationID != c.ID || cc.Priority != "urgent" || cc.InboundID != id {
		t.Errorf("communication.created = %s, %v", created[0].Payload, err)
	}
	if got := created[0].Metadata.Get(inbound.CorrelationIDKey); got != "corr-"+id {
		t.Errorf("correlation id = %q", got)
	}
	// The stage's entries travel as one event: one append to the chain.
	if evs := next(t, p.st, bridge.TopicAuditRecorded, 1); len(evs) != 1 {
		t.Fatalf("%d audit.recorded events, want one batch", len(evs))
	}
	actions := map[string]audit.Entry{}
	for _, e := range nextEntries(t, p.st, 2) {
		actions[e.Action] = e
	}
	if e, ok := actions["communication.created"]; !ok || e.Patient != c.Subject || e.Correlation != "corr-"+id || len(e.Entities) != 4 {
		t.Errorf("communication.created audit entry = %+v", e)
	}
	if e, ok := actions["message.mapped"]; !ok || e.Entities[0] != "inbound/"+id || e.Outcome != audit.OutcomeSuccess {
		t.Errorf("message.mapped audit entry = %+v", e)
	}
}

func TestMapStageRefusesWhatNoRetryFixes(t *testing.T) {
	p := newPipeline(t)
	bad := message.NewMessage(watermill.NewUUID(), []byte("not json"))
	if err := p.stage.Handle(bad); !bridge.IsPermanent(err) {
		t.Errorf("garbage payload: %v, want a permanent error", err)
	}
	if err := p.stage.Handle(received("no-such-id")); !bridge.IsPermanent(err) {
		t.Errorf("unknown inbound id: %v, want a permanent error", err)
	}
}

// TestMapStageUnmappedTriggerIsMarked: a trigger mapping does not cover is
// marked done with its outcome, and notifies nobody.
func TestMapStageUnmappedTriggerIsMarked(t *testing.T) {
	p := newPipeline(t)
	raw := "MSH|^~\\&|ADTSYS|GOODHEALTH|CAREBRIDGE|CAREBRIDGE|20261103081500||ADT^A06|X-1|P|2.5.1\rPID|1||1^^^GH^MR\r"
	res, err := p.in.Accept(context.Background(), inbound.Peer{Addr: "127.0.0.1:1", Transport: "mllp"}, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.stage.Handle(received(res.ID)); err != nil {
		t.Fatal(err)
	}
	if comms, _ := p.st.CommunicationsOf(context.Background(), res.ID); len(comms) != 0 {
		t.Errorf("an unmapped trigger produced %d Communications", len(comms))
	}
	if e := nextEntries(t, p.st, 1)[0]; e.Action != "message.mapped" || e.Outcome != audit.OutcomeMinor {
		t.Errorf("audit entry = %+v", e)
	}
}

// TestAuditStageAppendsOnce: the audit entries the map stage publishes are
// appended to the chain once each, however often they are delivered, and
// the chain verifies.
func TestAuditStageAppendsOnce(t *testing.T) {
	p := newPipeline(t)
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	log, err := audit.NewLog(p.st, p.kr, audit.LogConfig{Chain: "test"})
	if err != nil {
		t.Fatal(err)
	}
	stage := &bridge.AuditStage{Log: log}
	entries := next(t, p.st, bridge.TopicAuditRecorded, 1) // created and mapped, one batch
	for _, m := range append(entries, entries...) {        // every entry delivered twice
		m.SetContext(context.Background())
		if err := stage.Handle(m); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := audit.Verify(context.Background(), p.st, p.kr.SigningPublicKey)
	if err != nil || rep.Records != 2 {
		t.Fatalf("verify = %+v, %v; want 2 records", rep, err)
	}
	if err := stage.Handle(message.NewMessage("x", []byte(`{"action":""}`))); !bridge.IsPermanent(err) {
		t.Errorf("an empty entry: %v, want a permanent error", err)
	}
	tooMany := audit.Entry{ID: "many", At: routedAt, Action: "communication.created", Entities: make([]string, audit.MaxEntities+1)}
	b, _ := json.Marshal(tooMany)
	m := message.NewMessage("many", b)
	if err := stage.Handle(m); !bridge.IsPermanent(err) {
		t.Errorf("an entry with too many entities: %v, want a permanent error", err)
	}
	// In a batch, the entry that cannot fit is set aside and the others
	// are appended: replaying the batch appends only what is missing.
	fine := audit.Entry{ID: "fine", At: routedAt, Action: "communication.delivered"}
	b, _ = json.Marshal([]audit.Entry{fine, tooMany})
	if err := stage.Handle(message.NewMessage("batch", b)); !bridge.IsPermanent(err) || !strings.Contains(err.Error(), "many") {
		t.Errorf("a batch with an entry that cannot fit: %v, want a permanent error naming it", err)
	}
	if done, err := p.st.AuditEntryStored(context.Background(), "fine"); err != nil || !done {
		t.Errorf("the batch's good entry was not appended: %v, %v", done, err)
	}
	if rep, err := audit.Verify(context.Background(), p.st, p.kr.SigningPublicKey); err != nil || rep.Records != 3 {
		t.Errorf("verify = %+v, %v; want 3 records", rep, err)
	}
}

// TestRouterRunsThePipeline: with the router running on the store's queue,
// an accepted message is mapped and audited without further help; a
// message no retry can fix is set aside with its reason, not lost.
func TestRouterRunsThePipeline(t *testing.T) {
	p := newPipeline(t)
	log, err := audit.NewLog(p.st, p.kr, audit.LogConfig{Chain: "test"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := bridge.NewRouter(bridge.RouterConfig{
		Subscriber: p.st.Subscriber, Poison: p.st, Map: p.stage, Audit: &bridge.AuditStage{Log: log},
		Deliver: &bridge.DeliverStage{Store: p.st, Now: time.Now, Log: slog.New(slog.DiscardHandler)},
		Logger:  slog.New(slog.DiscardHandler), RetryInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	// A garbage hl7.received, published through the poison store's replay.
	bad := store.PoisonMessage{ID: watermill.NewUUID(), Handler: "test", Topic: inbound.TopicReceived, Payload: []byte("garbage"), FailedAt: routedAt}
	if err := p.st.StorePoison(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	if err := p.st.ReplayPoison(context.Background(), bad.ID, "test"); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		comms, _ := p.st.CommunicationsOf(context.Background(), id)
		head, _ := p.st.AuditHead(context.Background(), "test")
		poison, _ := p.st.ListPoison(context.Background())
		var deliveries []store.Delivery
		if len(comms) == 1 {
			deliveries, _ = p.st.DeliveriesOf(context.Background(), comms[0].ID)
		}
		if len(comms) == 1 && head.Seq == 2 && len(poison) == 1 && len(deliveries) == 3 {
			if poison[0].ID != bad.ID || poison[0].Handler != bridge.GroupMap || !strings.Contains(poison[0].Reason, "not an inbound message reference") {
				t.Errorf("poison = %+v", poison[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s: %d Communications, audit head %d, %d poison messages, %d deliveries", len(comms), head.Seq, len(poison), len(deliveries))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rep, err := audit.Verify(context.Background(), p.st, p.kr.SigningPublicKey); err != nil || rep.Records != 2 {
		t.Errorf("verify = %+v, %v", rep, err)
	}
}
