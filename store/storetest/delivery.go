package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// testDeliveries: deliveries are queued once per recipient, only move
// forward, and unread counts follow them.
func testDeliveries(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	recipients := []string{"Practitioner/b", "CareTeam/icu", "Practitioner/a"}
	for range 2 { // a redelivered event queues nothing new
		if err := st.QueueDeliveries(ctx, "c1", recipients, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.QueueDeliveries(ctx, "c2", []string{"Practitioner/a"}, at); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ recipient, state string }{
		{"Practitioner/a", store.DeliveryDelivered},
		{"Practitioner/a", store.DeliveryRead},
		{"Practitioner/a", store.DeliveryDelivered}, // late: ignored
		{"CareTeam/icu", store.DeliveryFailed},
		{"CareTeam/icu", store.DeliveryQueued}, // back: ignored
	}
	for i, s := range steps {
		if err := st.SetDelivery(ctx, "c1", s.recipient, s.state, at.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.DeliveriesOf(ctx, "c1")
	if err != nil || len(got) != 3 {
		t.Fatalf("DeliveriesOf = %+v, %v", got, err)
	}
	want := map[string]string{"CareTeam/icu": store.DeliveryFailed, "Practitioner/a": store.DeliveryRead, "Practitioner/b": store.DeliveryQueued}
	for _, d := range got {
		if want[d.Recipient] != d.State {
			t.Errorf("%s: %s, want %s", d.Recipient, d.State, want[d.Recipient])
		}
	}
	if got[1].UpdatedAt != at.Add(2*time.Second) {
		t.Errorf("read at %v, want the time of the read", got[1].UpdatedAt)
	}
	if n, err := st.Unread(ctx, "Practitioner/a"); err != nil || n != 1 {
		t.Errorf("unread for a = %d, %v; want 1 (c2)", n, err)
	}
	if err := st.SetDelivery(ctx, "c1", "Practitioner/z", store.DeliveryRead, at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown recipient: %v", err)
	}
	if err := st.SetDelivery(ctx, "c1", "Practitioner/a", "lost", at); err == nil {
		t.Error("an unknown state was accepted")
	}
}
