// Package storetest is the acceptance suite every store.Store backend must
// pass, the way watermill's pubsub/tests serves every Pub/Sub: a backend's
// _test.go calls Run with a function that opens a fresh, empty store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// Topics the suite publishes on: open must create their queue tables.
const (
	TopicReceived = "storetest.received"
	TopicOther    = "storetest.other"
)

// Topics lists TopicReceived and TopicOther, for a backend's Config.Topics.
func Topics() []string { return []string{TopicReceived, TopicOther} }

// PostgresURL returns the connection URL of the test PostgreSQL server from
// CAREBRIDGE_TEST_POSTGRES. When it is unset the test is skipped, or fails
// when CAREBRIDGE_TEST_REQUIRE_SERVICES=1.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("CAREBRIDGE_TEST_POSTGRES")
	if u == "" {
		if os.Getenv("CAREBRIDGE_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatal("CAREBRIDGE_TEST_POSTGRES not set and CAREBRIDGE_TEST_REQUIRE_SERVICES=1")
		}
		t.Skip("CAREBRIDGE_TEST_POSTGRES not set")
	}
	return u
}

// Option changes what Run tests.
type Option func(*suite)

// WithReopen enables the persistence test: reopen closes old and opens the
// same database again.
func WithReopen(reopen func(t *testing.T, old store.Store) store.Store) Option {
	return func(s *suite) { s.reopen = reopen }
}

type suite struct {
	open   func(t *testing.T) store.Store
	reopen func(t *testing.T, old store.Store) store.Store
}

// Run runs the suite. open must return a new, empty store whose queue tables
// include Topics(), and close it in t.Cleanup. Subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Option) {
	s := &suite{open: open}
	for _, o := range opts {
		o(s)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"ReceivedAtPrecision", testReceivedAtPrecision},
		{"EmptyBatch", testEmptyBatch},
		{"DedupeAcrossBatches", testDedupeAcrossBatches},
		{"DedupeWindow", testDedupeWindow},
		{"DedupeInBatch", testDedupeInBatch},
		{"RejectedNeverOriginal", testRejectedNeverOriginal},
		{"EventsOfStoredOnly", testEventsOfStoredOnly},
		{"FailedBatchStoresAndPublishesNothing", testFailedBatch},
		{"UnknownTopicFailsBatch", testUnknownTopic},
		{"ListPaging", testListPaging},
		{"GetUnknown", testGetUnknown},
		{"ConcurrentDedupe", testConcurrentDedupe},
		{"AuditRoundTrip", testAuditRoundTrip},
		{"AuditConflict", testAuditConflict},
		{"AuditEntryOnce", testAuditEntryOnce},
		{"AuditInWrites", testAuditInWrites},
		{"MappedOnce", testMappedOnce},
		{"PoisonReplay", testPoisonReplay},
		{"Deliveries", testDeliveries},
		{"DeliveriesInBatches", testDeliveriesInBatches},
		{"Inbox", testInbox},
		{"Escalations", testEscalations},
		{"AuditExport", testAuditExport},
		{"Subscriptions", testSubscriptions},
		{"Clients", testClients},
		{"Assertions", testAssertions},
		{"ConcurrentAssertions", testConcurrentAssertions},
		{"SubscriptionWriteEvents", testSubscriptionWriteEvents},
		{"NewestNotices", testNewestNotices},
		{"Users", testUsers},
		{"LoginFailures", testLoginFailures},
		{"ConcurrentLoginFailures", testConcurrentLoginFailures},
		{"TOTPSteps", testTOTPSteps},
		{"Sessions", testSessions},
		{"BreakGlass", testBreakGlass},
		{"SearchConstraints", testSearchConstraints},
		{"SearchOrder", testSearchOrder},
		{"SearchPaging", testSearchPaging},
		{"AuditSearch", testAuditSearch},
		{"AuditSearchPaging", testAuditSearchPaging},
		{"AuditEventIDs", testAuditEventIDs},
		{"CreateCommunication", testCreateCommunication},
		{"UpdateCommunication", testUpdateCommunication},
		{"SentAndPatientMissing", testSentAndPatientMissing},
		{"InboxSearchFollowsWrites", testInboxSearchFollowsWrites},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"CompletionVersions", testCompletionVersions},
		{"Workflow", testWorkflow},
		{"ResourceSearch", testResourceSearch}, {"ResourceIndexReplaced", testResourceIndexReplaced}, {"ResourceBackfill", testResourceBackfill},
		{"AuditImport", testAuditImport},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s.open(t))
		})
	}
	t.Run("Reopen", func(t *testing.T) {
		if s.reopen == nil {
			t.Skip("no reopen hook")
		}
		t.Parallel()
		testReopen(t, s.open(t), s.reopen)
	})
}

var seq atomic.Int64

// newMessage returns an accepted message with every field set and a unique
// id and control id.
func newMessage(t *testing.T) store.InboundMessage {
	n := seq.Add(1)
	now := time.Now().UTC().Truncate(time.Microsecond)
	sealed := make([]byte, 1500)
	for i := range sealed {
		sealed[i] = byte(i*7 + int(n))
	}
	return store.InboundMessage{
		ID:                   fmt.Sprintf("%s-%s-%06d", now.Format("20060102T150405.000000"), "m", n),
		ReceivedAt:           now,
		Peer:                 "127.0.0.1:53124",
		Transport:            "mllp+tls",
		SendingApplication:   "EPIC",
		SendingFacility:      "GENHOSP",
		ReceivingApplication: "CAREBRIDGE",
		ReceivingFacility:    "CB",
		ControlID:            fmt.Sprintf("CTRL%06d", n),
		MessageType:          "ADT^A01",
		Version:              "2.5.1",
		State:                store.StateAccepted,
		AckCode:              "AA",
		CorrelationID:        fmt.Sprintf("corr-%d", n),
		Size:                 1234,
		Sealed:               sealed,
	}
}

func newEvent(topic string, m store.InboundMessage) store.Event {
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"inbound_id":"`+m.ID+`"}`))
	msg.Metadata.Set("inbound_id", m.ID)
	msg.Metadata.Set("correlation_id", m.CorrelationID)
	return store.Event{Topic: topic, Message: msg}
}

func accept(m store.InboundMessage, dedupe bool, topics ...string) store.Accept {
	a := store.Accept{Message: m, Dedupe: dedupe, DedupeSince: m.ReceivedAt.Add(-time.Hour)}
	for _, tp := range topics {
		a.Events = append(a.Events, newEvent(tp, m))
	}
	return a
}

func mustAccept(t *testing.T, st store.Store, batch ...store.Accept) []store.AcceptResult {
	t.Helper()
	res, err := st.AcceptInbound(context.Background(), batch)
	if err != nil {
		t.Fatalf("AcceptInbound: %v", err)
	}
	if len(res) != len(batch) {
		t.Fatalf("AcceptInbound returned %d results for %d messages", len(res), len(batch))
	}
	return res
}

func mustGet(t *testing.T, st store.Store, id string) store.InboundMessage {
	t.Helper()
	m, err := st.GetInbound(context.Background(), id)
	if err != nil {
		t.Fatalf("GetInbound(%s): %v", id, err)
	}
	return m
}

func wantNotFound(t *testing.T, st store.Store, id string) {
	t.Helper()
	_, err := st.GetInbound(context.Background(), id)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetInbound(%s) error = %v, want ErrNotFound", id, err)
	}
}

func stored(m store.InboundMessage) store.AcceptResult {
	return store.AcceptResult{ID: m.ID, State: m.State, AckCode: m.AckCode}
}

func duplicateOf(m store.InboundMessage) store.AcceptResult {
	return store.AcceptResult{ID: m.ID, Duplicate: true, State: m.State, AckCode: m.AckCode}
}

func wantResults(t *testing.T, got []store.AcceptResult, want ...store.AcceptResult) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results:\n got %+v\nwant %+v", got, want)
	}
}

// sameMessage compares all fields, ReceivedAt in UTC at microsecond precision.
func sameMessage(t *testing.T, got, want store.InboundMessage) {
	t.Helper()
	if !got.ReceivedAt.Equal(want.ReceivedAt.Truncate(time.Microsecond)) {
		t.Errorf("ReceivedAt = %v, want %v", got.ReceivedAt, want.ReceivedAt.Truncate(time.Microsecond))
	}
	if got.ReceivedAt.Location() != time.UTC {
		t.Errorf("ReceivedAt location = %v, want UTC", got.ReceivedAt.Location())
	}
	if !bytes.Equal(got.Sealed, want.Sealed) {
		t.Errorf("Sealed differs: got %d bytes, want %d", len(got.Sealed), len(want.Sealed))
	}
	got.ReceivedAt, want.ReceivedAt = time.Time{}, time.Time{}
	got.Sealed, want.Sealed = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("message:\n got %+v\nwant %+v", got, want)
	}
}

func testRoundTrip(t *testing.T, st store.Store) {
	m := newMessage(t)
	m.Error = "PID.3[1]: required"
	m.State, m.AckCode = store.StateRejected, "AE"
	wantResults(t, mustAccept(t, st, accept(m, false)), stored(m))
	sameMessage(t, mustGet(t, st, m.ID), m)
	if err := st.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testReceivedAtPrecision(t *testing.T, st store.Store) {
	m := newMessage(t)
	loc := time.FixedZone("UTC+5:30", 5*3600+1800)
	m.ReceivedAt = time.Date(2026, 3, 29, 1, 59, 59, 123456789, loc)
	mustAccept(t, st, accept(m, false))
	got := mustGet(t, st, m.ID)
	want := time.Date(2026, 3, 28, 20, 29, 59, 123456000, time.UTC)
	if !got.ReceivedAt.Equal(want) || got.ReceivedAt.Location() != time.UTC {
		t.Fatalf("ReceivedAt = %v, want %v", got.ReceivedAt, want)
	}
}

func testEmptyBatch(t *testing.T, st store.Store) {
	res, err := st.AcceptInbound(context.Background(), nil)
	if err != nil || len(res) != 0 {
		t.Fatalf("AcceptInbound(nil) = %v, %v; want no results, no error", res, err)
	}
}

func testDedupeAcrossBatches(t *testing.T, st store.Store) {
	a := newMessage(t)
	b := newMessage(t)
	b.ControlID = a.ControlID
	b.ReceivedAt = a.ReceivedAt.Add(time.Minute)
	wantResults(t, mustAccept(t, st, accept(a, true)), stored(a))
	wantResults(t, mustAccept(t, st, accept(b, true)), duplicateOf(a))
	wantNotFound(t, st, b.ID)

	// Another facility with the same control id is not a duplicate.
	c := newMessage(t)
	c.ControlID, c.SendingFacility = a.ControlID, "OTHERHOSP"
	wantResults(t, mustAccept(t, st, accept(c, true)), stored(c))
}

func testDedupeWindow(t *testing.T, st store.Store) {
	a := newMessage(t)
	a.ReceivedAt = a.ReceivedAt.Add(-2 * time.Hour)
	b := newMessage(t)
	b.ControlID = a.ControlID
	mustAccept(t, st, accept(a, true))
	ab := accept(b, true)
	ab.DedupeSince = b.ReceivedAt.Add(-time.Hour)
	wantResults(t, mustAccept(t, st, ab), stored(b))

	// At exactly DedupeSince it is a duplicate.
	c := newMessage(t)
	c.ControlID = a.ControlID
	ac := accept(c, true)
	ac.DedupeSince = b.ReceivedAt
	got := mustAccept(t, st, ac)
	if !got[0].Duplicate {
		t.Fatalf("message received at DedupeSince not found as original: %+v", got)
	}
}

func testDedupeInBatch(t *testing.T, st store.Store) {
	a := newMessage(t)
	b := newMessage(t)
	b.ControlID = a.ControlID
	c := newMessage(t)
	wantResults(t, mustAccept(t, st, accept(a, true), accept(c, true), accept(b, true)),
		stored(a), stored(c), duplicateOf(a))
	wantNotFound(t, st, b.ID)
}

func testRejectedNeverOriginal(t *testing.T, st store.Store) {
	r1 := newMessage(t)
	r1.State, r1.AckCode, r1.Error = store.StateRejected, "AR", "MSH.9: unknown"
	r2 := r1
	r2.ID = r1.ID + "-2"
	wantResults(t, mustAccept(t, st, accept(r1, false)), stored(r1))
	wantResults(t, mustAccept(t, st, accept(r2, false)), stored(r2))
	mustGet(t, st, r1.ID)
	mustGet(t, st, r2.ID)

	// The corrected message under the same control id is stored, and in the
	// same batch a rejected message is not an original either.
	r3 := r1
	r3.ID = r1.ID + "-3"
	a := newMessage(t)
	a.ControlID = r1.ControlID
	wantResults(t, mustAccept(t, st, accept(r3, false), accept(a, true)), stored(r3), stored(a))
}

// received collects n messages from topic for group, acking each, and fails
// unless exactly n arrive and nothing more within quiet.
func received(t *testing.T, st store.Store, group, topic string, n int, quiet time.Duration) []*message.Message {
	t.Helper()
	sub, err := st.Subscriber(group)
	if err != nil {
		t.Fatalf("Subscriber: %v", err)
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe(%s): %v", topic, err)
	}
	var got []*message.Message
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case m := <-ch:
			got = append(got, m)
			m.Ack()
		case <-timeout:
			t.Fatalf("received %d of %d messages on %s", len(got), n, topic)
		}
	}
	select {
	case m := <-ch:
		m.Ack()
		t.Fatalf("unexpected message %s (metadata %v) on %s", m.UUID, m.Metadata, topic)
	case <-time.After(quiet):
	}
	return got
}

func sameEvent(t *testing.T, got *message.Message, want store.Event) {
	t.Helper()
	if got.UUID != want.Message.UUID || !bytes.Equal(got.Payload, want.Message.Payload) ||
		!reflect.DeepEqual(got.Metadata, want.Message.Metadata) {
		t.Errorf("event:\n got %s %q %v\nwant %s %q %v", got.UUID, got.Payload, got.Metadata,
			want.Message.UUID, want.Message.Payload, want.Message.Metadata)
	}
}

func testEventsOfStoredOnly(t *testing.T, st store.Store) {
	a := newMessage(t)
	dup := newMessage(t)
	dup.ControlID = a.ControlID
	c := newMessage(t)
	aa := accept(a, true, TopicReceived, TopicOther)
	ac := accept(c, true, TopicReceived)
	mustAccept(t, st, aa, accept(dup, true, TopicReceived, TopicOther))
	mustAccept(t, st, accept(dup, true, TopicReceived), ac)

	got := received(t, st, "group1", TopicReceived, 2, 300*time.Millisecond)
	sameEvent(t, got[0], aa.Events[0])
	sameEvent(t, got[1], ac.Events[0])
	got = received(t, st, "group1", TopicOther, 1, 100*time.Millisecond)
	sameEvent(t, got[0], aa.Events[1])

	// Acked: the same group gets nothing again, a new group gets everything.
	received(t, st, "group1", TopicReceived, 0, 300*time.Millisecond)
	received(t, st, "group2", TopicReceived, 2, 100*time.Millisecond)

	// New events after the ack reach the group.
	d := newMessage(t)
	ad := accept(d, true, TopicReceived)
	mustAccept(t, st, ad)
	got = received(t, st, "group1", TopicReceived, 1, 100*time.Millisecond)
	sameEvent(t, got[0], ad.Events[0])
}

func testFailedBatch(t *testing.T, st store.Store) {
	a := newMessage(t)
	b := newMessage(t)
	b2 := b // same primary key: the batch must fail
	b2.ControlID = "OTHER" + b.ControlID
	_, err := st.AcceptInbound(context.Background(), []store.Accept{
		accept(a, true, TopicReceived), accept(b, true, TopicReceived), accept(b2, false, TopicReceived),
	})
	if err == nil {
		t.Fatal("AcceptInbound with a duplicate primary key succeeded")
	}
	wantNotFound(t, st, a.ID)
	wantNotFound(t, st, b.ID)
	if l, err := st.ListInbound(context.Background(), store.InboundFilter{}); err != nil || len(l) != 0 {
		t.Fatalf("ListInbound after failed batch = %d messages, %v; want none", len(l), err)
	}

	// The first event on the topic is the one of the next good batch.
	c := newMessage(t)
	ac := accept(c, true, TopicReceived)
	mustAccept(t, st, ac)
	got := received(t, st, "group", TopicReceived, 1, 300*time.Millisecond)
	sameEvent(t, got[0], ac.Events[0])
}

func testUnknownTopic(t *testing.T, st store.Store) {
	a := newMessage(t)
	_, err := st.AcceptInbound(context.Background(), []store.Accept{accept(a, true, "storetest.no-such-topic")})
	if err == nil {
		t.Fatal("AcceptInbound publishing on an unknown topic succeeded")
	}
	wantNotFound(t, st, a.ID)
}

func testListPaging(t *testing.T, st store.Store) {
	var all, accepted []store.InboundMessage
	var batch []store.Accept
	for i := range 25 {
		m := newMessage(t)
		if i%3 == 0 {
			m.State, m.AckCode = store.StateRejected, "AE"
		} else {
			accepted = append(accepted, m)
		}
		all = append(all, m)
		batch = append(batch, accept(m, false))
	}
	mustAccept(t, st, batch...)

	list := func(f store.InboundFilter) []store.InboundMessage {
		t.Helper()
		var out []store.InboundMessage
		for {
			page, err := st.ListInbound(context.Background(), f)
			if err != nil {
				t.Fatalf("ListInbound(%+v): %v", f, err)
			}
			if len(page) > f.PageSize() {
				t.Fatalf("ListInbound(%+v) returned %d, more than the limit", f, len(page))
			}
			out = append(out, page...)
			if len(page) < f.PageSize() {
				return out
			}
			f.AfterID = page[len(page)-1].ID
		}
	}
	for _, tc := range []struct {
		name string
		f    store.InboundFilter
		want []store.InboundMessage
	}{
		{"all default limit", store.InboundFilter{}, all},
		{"accepted by 4", store.InboundFilter{State: store.StateAccepted, Limit: 4}, accepted},
		{"all by 7", store.InboundFilter{Limit: 7}, all},
		{"after 10th", store.InboundFilter{AfterID: all[9].ID, Limit: 100000}, all[10:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := list(tc.f)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d messages, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i].Sealed != nil {
					t.Errorf("message %s: Sealed not nil", got[i].ID)
				}
				w := tc.want[i]
				w.Sealed = nil
				sameMessage(t, got[i], w)
			}
		})
	}
}

func testGetUnknown(t *testing.T, st store.Store) {
	wantNotFound(t, st, "no-such-id")
}

func testConcurrentDedupe(t *testing.T, st store.Store) {
	const workers, keys = 8, 24
	base := newMessage(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	originals := map[string]int{} // control id → non-duplicate results
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := 0; start < keys; start += 4 {
				var batch []store.Accept
				for k := start; k < start+4; k++ {
					m := base
					m.ID = fmt.Sprintf("%s-w%d-k%02d", base.ID, w, (k+w)%keys)
					m.ControlID = fmt.Sprintf("%s-%02d", base.ControlID, (k+w)%keys)
					batch = append(batch, accept(m, true, TopicReceived))
				}
				res, err := st.AcceptInbound(context.Background(), batch)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for i, r := range res {
					if !r.Duplicate {
						originals[batch[i].Message.ControlID]++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AcceptInbound: %v", err)
	}
	rows, err := st.ListInbound(context.Background(), store.InboundFilter{Limit: store.MaxListLimit})
	if err != nil {
		t.Fatalf("ListInbound: %v", err)
	}
	perKey := map[string]int{}
	for _, m := range rows {
		perKey[m.ControlID]++
	}
	if len(perKey) != keys || len(originals) != keys {
		t.Fatalf("%d keys stored, %d reported stored, want %d", len(perKey), len(originals), keys)
	}
	for k, n := range perKey {
		if n != 1 || originals[k] != 1 {
			t.Errorf("key %s: %d rows, %d reported stored; want 1", k, n, originals[k])
		}
	}
	received(t, st, "group", TopicReceived, keys, 200*time.Millisecond)
}

func testReopen(t *testing.T, st store.Store, reopen func(*testing.T, store.Store) store.Store) {
	a := newMessage(t)
	aa := accept(a, true, TopicReceived)
	mustAccept(t, st, aa)
	st = reopen(t, st)
	sameMessage(t, mustGet(t, st, a.ID), a)
	got := received(t, st, "group", TopicReceived, 1, 100*time.Millisecond)
	sameEvent(t, got[0], aa.Events[0])
	b := newMessage(t)
	b.ControlID = a.ControlID
	wantResults(t, mustAccept(t, st, accept(b, true)), duplicateOf(a))
}
