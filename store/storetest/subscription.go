package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/carebridge/carebridge/store"
)

// testSubscriptions: subscriptions are stored and replaced by id; each
// Communication is queued once per subscription with the subscription's
// next event number; notices come due, move on, die, and go with their
// subscription.
func testSubscriptions(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	a := store.Subscription{ID: "sub-a", Criteria: "Communication?priority=urgent", Endpoint: "https://ehr.example/hook", Header: []byte("sealed"), Active: true, Created: at, Reason: "urgent results to the EHR", Owner: "ehr-client"}
	b := store.Subscription{ID: "sub-b", Criteria: "Communication", Endpoint: "https://other.example/hook", Active: true, Created: at}
	for _, s := range []store.Subscription{a, b, a} {
		if err := st.PutSubscription(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	subs, err := st.ListSubscriptions(ctx)
	if err != nil || !reflect.DeepEqual(subs, []store.Subscription{a, b}) {
		t.Fatalf("subscriptions = %+v, %v", subs, err)
	}
	for i, c := range []string{"c1", "c2", "c1"} {
		if err := st.QueueNotices(ctx, c, []string{"sub-a", "sub-b", "sub-gone"}, at.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.GetSubscription(ctx, "sub-a")
	if want := a; err != nil || func() bool { want.Events = 2; return !reflect.DeepEqual(got, want) }() {
		t.Fatalf("GetSubscription(sub-a) = %+v, %v; want %+v with 2 events", got, err, a)
	}
	if _, err := st.GetSubscription(ctx, "sub-gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSubscription of an unknown id: %v, want ErrNotFound", err)
	}
	due, err := st.DueNotices(ctx, at.Add(time.Minute), 10)
	if err != nil || len(due) != 4 {
		t.Fatalf("due = %+v, %v; want 4 (a redelivered Communication queues nothing)", due, err)
	}
	events := map[string]int64{}
	for _, n := range due {
		events[n.SubscriptionID+"/"+n.CommunicationID] = n.EventNumber
		if n.State != store.NoticePending || n.Attempts != 0 {
			t.Fatalf("a new notice: %+v", n)
		}
	}
	if want := map[string]int64{"sub-a/c1": 1, "sub-a/c2": 2, "sub-b/c1": 1, "sub-b/c2": 2}; !reflect.DeepEqual(events, want) {
		t.Fatalf("event numbers = %v, want %v", events, want)
	}
	var n store.SubscriptionNotice
	for _, d := range due {
		if d.SubscriptionID == "sub-a" && d.CommunicationID == "c1" {
			n = d
		}
	}
	n.Attempts, n.NextAt, n.LastError = 1, at.Add(time.Hour), "HTTP 503"
	if err := st.UpdateNotice(ctx, n); err != nil {
		t.Fatal(err)
	}
	if due, _ := st.DueNotices(ctx, at.Add(time.Minute), 10); len(due) != 3 {
		t.Fatalf("after a retry was scheduled: %d due, want 3", len(due))
	}
	n.State, n.NextAt, n.LastError = store.NoticeDead, time.Time{}, "gave up after 24h: HTTP 503"
	if err := st.UpdateNotice(ctx, n); err != nil {
		t.Fatal(err)
	}
	dead, err := st.DeadNotices(ctx, 10)
	if err != nil || len(dead) != 1 || dead[0].LastError != "gave up after 24h: HTTP 503" || !dead[0].NextAt.IsZero() || dead[0].Attempts != 1 {
		t.Fatalf("dead = %+v, %v", dead, err)
	}
	ofA, err := st.SubscriptionNotices(ctx, "sub-a", "", 10)
	if err != nil || len(ofA) != 2 || ofA[0].EventNumber != 2 || ofA[0].CommunicationID != "c2" || ofA[1].State != store.NoticeDead {
		t.Fatalf("the notices of sub-a, newest first = %+v, %v", ofA, err)
	}
	if newest, err := st.SubscriptionNotices(ctx, "sub-a", "", 1); err != nil || len(newest) != 1 || newest[0].EventNumber != 2 {
		t.Fatalf("the newest notice of sub-a = %+v, %v", newest, err)
	}
	if deadA, err := st.SubscriptionNotices(ctx, "sub-a", store.NoticeDead, 10); err != nil || len(deadA) != 1 || deadA[0].CommunicationID != "c1" ||
		deadA[0].LastError != "gave up after 24h: HTTP 503" {
		t.Fatalf("the dead notices of sub-a = %+v, %v", deadA, err)
	}
	if deadB, err := st.SubscriptionNotices(ctx, "sub-b", store.NoticeDead, 10); err != nil || len(deadB) != 0 {
		t.Fatalf("the dead notices of sub-b = %+v, %v; want none", deadB, err)
	}
	counts, err := st.NoticeCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, byState := range counts {
		for _, c := range byState {
			total += c
		}
	}
	if total != 4 || counts[n.SubscriptionID][store.NoticeDead] != 1 {
		t.Fatalf("counts = %v", counts)
	}
	if err := st.DeleteSubscription(ctx, "sub-a"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteSubscription(ctx, "sub-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting again: %v", err)
	}
	if due, _ := st.DueNotices(ctx, at.Add(2*time.Hour), 10); len(due) != 2 || due[0].SubscriptionID != "sub-b" {
		t.Fatalf("after deleting sub-a: %+v", due)
	}
	if _, err := st.GetSubscription(ctx, "sub-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetSubscription after deleting it: %v, want ErrNotFound", err)
	}
	if left, err := st.SubscriptionNotices(ctx, "sub-a", "", 10); err != nil || len(left) != 0 {
		t.Fatalf("the notices of a deleted subscription = %+v, %v", left, err)
	}
	// Storing a subscription again keeps its event count.
	b.Active, b.Reason = false, "paused"
	if err := st.PutSubscription(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, err := st.GetSubscription(ctx, "sub-b"); err != nil || got.Active || got.Reason != "paused" || got.Events != 2 {
		t.Fatalf("sub-b stored again = %+v, %v; want off, reason paused, 2 events", got, err)
	}
}

// testSubscriptionWriteEvents: a subscription stored or deleted publishes
// its events (the API's audit entry) in the same transaction, and a
// delete of none publishes nothing.
func testSubscriptionWriteEvents(t *testing.T, st store.Store) {
	ctx := context.Background()
	sub := store.Subscription{ID: "sub-ev", Criteria: "Communication", Endpoint: "https://ehr.example/hook", Active: true,
		Created: time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)}
	put, del, none := textEvent("subscription stored"), textEvent("subscription deleted"), textEvent("nothing deleted")
	if err := st.PutSubscription(ctx, sub, put); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteSubscription(ctx, "sub-ev", del); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteSubscription(ctx, "sub-ev", none); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting it again: %v, want ErrNotFound", err)
	}
	got := received(t, st, "subscription-"+watermill.NewShortUUID(), TopicOther, 2, 300*time.Millisecond)
	sameEvent(t, got[0], put)
	sameEvent(t, got[1], del)
}

// testNewestNotices: the newest notice of each subscription that has
// one, in one call, with its state.
func testNewestNotices(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	for _, id := range []string{"sub-n1", "sub-n2", "sub-n3"} {
		if err := st.PutSubscription(ctx, store.Subscription{ID: id, Criteria: "Communication", Endpoint: "https://ehr.example/" + id, Active: true, Created: at}); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []string{"comm-n1", "comm-n2", "comm-n3"} {
		subs := []string{"sub-n1"}
		if i < 2 {
			subs = append(subs, "sub-n2")
		}
		if err := st.QueueNotices(ctx, c, subs, at.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := st.SubscriptionNotices(ctx, "sub-n2", "", 1)
	if err != nil || len(ns) != 1 {
		t.Fatalf("sub-n2's newest: %+v, %v", ns, err)
	}
	dead := ns[0]
	dead.State, dead.LastError, dead.NextAt = store.NoticeDead, "the endpoint could not be reached", time.Time{}
	if err := st.UpdateNotice(ctx, dead); err != nil {
		t.Fatal(err)
	}
	got, err := st.NewestNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("NewestNotices = %+v, want sub-n1's and sub-n2's (sub-n3 has none)", got)
	}
	if n := got["sub-n1"]; n.CommunicationID != "comm-n3" || n.EventNumber != 3 || n.State != store.NoticePending {
		t.Errorf("sub-n1's newest = %+v, want comm-n3, event 3, pending", n)
	}
	if n := got["sub-n2"]; n.CommunicationID != "comm-n2" || n.EventNumber != 2 || n.State != store.NoticeDead || n.LastError != dead.LastError {
		t.Errorf("sub-n2's newest = %+v, want comm-n2, event 2, dead with its reason", n)
	}
}
