package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// testSubscriptions: subscriptions are stored and replaced by id; each
// Communication is queued once per subscription with the subscription's
// next event number; notices come due, move on, die, and go with their
// subscription.
func testSubscriptions(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	a := store.Subscription{ID: "sub-a", Criteria: "Communication?priority=urgent", Endpoint: "https://ehr.example/hook", Header: []byte("sealed"), Active: true, Created: at}
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
}
