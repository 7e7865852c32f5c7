package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

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
	ev := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("read"))}
	if err := st.SetDelivery(ctx, "c1", "Practitioner/b", store.DeliveryRead, at, ev); err != nil {
		t.Fatal(err)
	}
	lost := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("lost"))}
	if err := st.SetDelivery(ctx, "c1", "Practitioner/z", store.DeliveryRead, at, lost); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown recipient with an event: %v", err)
	}
	published := received(t, st, "delivery-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	sameEvent(t, published[0], ev)
}

// testDeliveriesInBatches: many deliveries move in one transaction with
// their events, and a batch naming one that does not exist writes nothing.
func testDeliveriesInBatches(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 15, 0, 0, 0, time.UTC)
	for _, c := range []string{"b1", "b2"} {
		if err := st.QueueDeliveries(ctx, c, []string{"Practitioner/a", "Practitioner/b"}, at); err != nil {
			t.Fatal(err)
		}
	}
	batch := []store.DeliveryUpdate{
		{CommunicationID: "b1", Recipient: "Practitioner/a", State: store.DeliveryDelivered, At: at.Add(time.Second)},
		{CommunicationID: "b2", Recipient: "Practitioner/a", State: store.DeliveryDelivered, At: at.Add(time.Second)},
		{CommunicationID: "b1", Recipient: "Practitioner/b", State: store.DeliveryRead, At: at.Add(2 * time.Second)},
		{CommunicationID: "b1", Recipient: "Practitioner/b", State: store.DeliveryDelivered, At: at.Add(3 * time.Second)}, // late: ignored
	}
	ev := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("batch"))}
	if err := st.SetDeliveries(ctx, batch, ev); err != nil {
		t.Fatal(err)
	}
	broken := []store.DeliveryUpdate{
		{CommunicationID: "b2", Recipient: "Practitioner/b", State: store.DeliveryRead, At: at.Add(time.Minute)},
		{CommunicationID: "b2", Recipient: "Practitioner/nobody", State: store.DeliveryRead, At: at.Add(time.Minute)},
	}
	lost := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("lost"))}
	if err := st.SetDeliveries(ctx, broken, lost); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a batch with an unknown delivery: %v, want ErrNotFound", err)
	}
	if err := st.SetDeliveries(ctx, []store.DeliveryUpdate{{CommunicationID: "b1", Recipient: "Practitioner/a", State: "lost", At: at}}); err == nil {
		t.Error("an unknown state was accepted")
	}
	want := map[string]string{
		"b1 Practitioner/a": store.DeliveryDelivered, "b1 Practitioner/b": store.DeliveryRead,
		"b2 Practitioner/a": store.DeliveryDelivered, "b2 Practitioner/b": store.DeliveryQueued, // the broken batch wrote nothing
	}
	for _, c := range []string{"b1", "b2"} {
		ds, err := st.DeliveriesOf(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if k := c + " " + d.Recipient; want[k] != d.State {
				t.Errorf("%s: %s, want %s", k, d.State, want[k])
			}
		}
	}
	published := received(t, st, "deliveries-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	sameEvent(t, published[0], ev)
}

// testInbox: a recipient's inbox lists their Communications, newest first,
// with the delivery state; events can be published on their own.
func testInbox(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	for i, id := range []string{"in-old", "in-new"} {
		m := mappedOf(id, at.Add(time.Duration(i)*time.Hour), []byte("p"))
		m.Events = nil
		if _, err := st.StoreMapped(ctx, m); err != nil {
			t.Fatal(err)
		}
		c := m.Communications[0]
		if err := st.QueueDeliveries(ctx, c.ID, c.Recipients, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetDelivery(ctx, "c-in-old", "Practitioner/a", store.DeliveryRead, at); err != nil {
		t.Fatal(err)
	}
	inbox, err := st.Inbox(ctx, "Practitioner/a", 10)
	if err != nil || len(inbox) != 2 {
		t.Fatalf("Inbox = %+v, %v", inbox, err)
	}
	if inbox[0].Communication.ID != "c-in-new" || inbox[0].State != store.DeliveryQueued || inbox[1].State != store.DeliveryRead {
		t.Errorf("inbox order or states: %s %s, %s %s", inbox[0].Communication.ID, inbox[0].State, inbox[1].Communication.ID, inbox[1].State)
	}
	waiting, err := st.Waiting(ctx, "Practitioner/a", 10)
	if err != nil || len(waiting) != 1 || waiting[0].Communication.ID != "c-in-new" || waiting[0].State != store.DeliveryQueued {
		t.Errorf("Waiting = %+v, %v; want only the queued c-in-new", waiting, err)
	}
	if inbox, _ := st.Inbox(ctx, "Practitioner/a", 1); len(inbox) != 1 {
		t.Errorf("limit not applied: %d", len(inbox))
	}
	c, err := st.GetCommunication(ctx, "c-in-new")
	if err != nil || !reflect.DeepEqual(c, inbox[0].Communication) {
		t.Errorf("GetCommunication = %+v, %v", c, err)
	}
	if done, err := st.CompleteCommunication(ctx, "c-in-new", []byte("completed")); err != nil || !done {
		t.Fatalf("complete: %v, %v", done, err)
	}
	if n, err := st.CompleteCommunications(ctx, []store.Completion{{ID: "c-in-new", Sealed: []byte("again")}, {ID: "c-in-old", Sealed: []byte("old done")}}); err != nil || n != 1 {
		t.Errorf("CompleteCommunications = %d, %v; want 1 (the other was completed already)", n, err)
	}
	if c, err := st.GetCommunication(ctx, "c-in-old"); err != nil || c.Status != "completed" || string(c.Sealed) != "old done" {
		t.Errorf("c-in-old after CompleteCommunications = %+v, %v", c, err)
	}
	if done, err := st.CompleteCommunication(ctx, "c-in-new", []byte("again")); err != nil || done {
		t.Fatalf("complete again: %v, %v; want false", done, err)
	}
	if c, _ := st.GetCommunication(ctx, "c-in-new"); c.Status != "completed" || string(c.Sealed) != "completed" {
		t.Errorf("after completion: %s %q", c.Status, c.Sealed)
	}
	if _, err := st.GetCommunication(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown Communication: %v", err)
	}
	ev := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("alone"))}
	if err := st.PublishEvents(ctx, []store.Event{ev}); err != nil {
		t.Fatal(err)
	}
	got := received(t, st, "inbox-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	sameEvent(t, got[0], ev)
}
