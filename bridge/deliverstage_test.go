package bridge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/store"
)

// countingStore counts the deliver stage's reads.
type countingStore struct {
	bridge.DeliveryStore
	deliveriesOf, gets int
}

func (c *countingStore) DeliveriesOf(ctx context.Context, id string) ([]store.Delivery, error) {
	c.deliveriesOf++
	return c.DeliveryStore.DeliveriesOf(ctx, id)
}

func (c *countingStore) GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error) {
	c.gets++
	return c.DeliveryStore.GetCommunication(ctx, id)
}

// TestDeliverStageReadsOnlyWhatItNeeds: the deliver stage is one consumer
// beside every busy request, so it asks the database only what it must.
// An event whose write queued the deliveries is not looked up again (one
// from before writes did is, and its missing deliveries queued); the
// Communication is read for EHR subscriptions only when there is one.
func TestDeliverStageReadsOnlyWhatItNeeds(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	row := store.CommunicationRow{ID: "c1", Identifier: "urn:uuid:c1", Status: "in-progress", Priority: "urgent",
		Subject: "Patient/p1", Recipients: []string{"Practitioner/a"}, Sent: now, Sealed: []byte("sealed"), Updated: now}
	if err := p.st.CreateCommunication(ctx, row); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{DeliveryStore: p.st}
	hooks := &bridge.RestHook{Store: p.st, Keys: p.kr, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	stage := &bridge.DeliverStage{Store: cs, Hooks: hooks, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	ev, err := bridge.CreatedEvent(row, "corr-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.Handle(ev.Message); err != nil {
		t.Fatal(err)
	}
	if cs.deliveriesOf != 0 || cs.gets != 0 {
		t.Errorf("an event whose write queued its deliveries, no subscription: %d lookups, %d reads; want none", cs.deliveriesOf, cs.gets)
	}

	// As published before writes queued deliveries, for a Communication
	// without them (its delivery rows gone).
	legacy := message.NewMessage(watermill.NewUUID(), []byte(`{"communication_id":"c2","priority":"routine","recipients":["Practitioner/b"]}`))
	c2 := row
	c2.ID, c2.Identifier, c2.Recipients = "c2", "urn:uuid:c2", nil
	if err := p.st.CreateCommunication(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if err := stage.Handle(legacy); err != nil {
		t.Fatal(err)
	}
	if ds, err := p.st.DeliveriesOf(ctx, "c2"); err != nil || len(ds) != 1 || cs.deliveriesOf != 1 {
		t.Errorf("an event from before: deliveries %+v, %v after %d lookups; want Practitioner/b's, after 1", ds, err, cs.deliveriesOf)
	}

	sub := store.Subscription{ID: "all", Criteria: "Communication", Endpoint: "https://ehr.example/hook", Active: true, Created: now}
	if err := p.st.PutSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	hooks.Changed()
	if err := stage.Handle(ev.Message.Copy()); err != nil {
		t.Fatal(err)
	}
	due, err := p.st.DueNotices(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 || due[0].CommunicationID != "c1" || cs.gets != 1 {
		t.Errorf("with a subscription: notices %+v, %v after %d reads; want one of c1, after 1", due, err, cs.gets)
	}
}
