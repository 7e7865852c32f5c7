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

// testPoisonReplay: a poison message is kept with its reason, listed, and
// replayed onto its topic exactly once.
func testPoisonReplay(t *testing.T, st store.Store) {
	ctx := context.Background()
	m := store.PoisonMessage{
		ID: watermill.NewUUID(), Handler: "map", Topic: TopicOther, Payload: []byte(`{"inbound_id":"x"}`),
		Metadata: map[string]string{"correlation_id": "corr-x"}, Reason: "inbound message x is not stored",
		FailedAt: time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC),
	}
	if err := st.StorePoison(ctx, m); err != nil {
		t.Fatal(err)
	}
	again := m
	again.Reason = "still not stored"
	if err := st.StorePoison(ctx, again); err != nil {
		t.Fatal(err)
	}
	list, err := st.ListPoison(ctx)
	if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], again) {
		t.Fatalf("ListPoison = %+v, %v; want [%+v]", list, err, again)
	}
	if err := st.ReplayPoison(ctx, m.ID, "map"); err != nil {
		t.Fatal(err)
	}
	if err := st.ReplayPoison(ctx, m.ID, "map"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second replay: %v, want ErrNotFound", err)
	}
	got := received(t, st, "poison-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	if got[0].UUID != m.ID || string(got[0].Payload) != string(m.Payload) || got[0].Metadata.Get("correlation_id") != "corr-x" {
		t.Errorf("replayed %s %s %v", got[0].UUID, got[0].Payload, got[0].Metadata)
	}
	if list, _ := st.ListPoison(ctx); len(list) != 0 {
		t.Errorf("the replayed message is still listed")
	}
}
