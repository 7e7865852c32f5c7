package storetest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

func mappedOf(inboundID string, at time.Time, patientSealed []byte) store.Mapped {
	return store.Mapped{
		InboundID: inboundID, MappedAt: at, Outcome: []byte("sealed outcome"),
		Resources: []store.SealedResource{
			{Type: "Patient", ID: "p1", Sealed: patientSealed},
			{Type: "Encounter", ID: "e-" + inboundID, Sealed: []byte("enc")},
		},
		Communications: []store.CommunicationRow{{
			ID: "c-" + inboundID, Identifier: "GH^" + inboundID + "^admission", Status: "in-progress", Priority: "urgent",
			Category: "alert", Subject: "Patient/p1", Encounter: "Encounter/e-" + inboundID,
			Recipients: []string{"Practitioner/a", "CareTeam/icu"}, Sent: at, Sealed: []byte("comm"),
			Tokens: []store.IndexToken{
				{Param: store.TokenIdentifier, System: sourceSystem, Code: "GH^" + inboundID + "^admission"},
				{Param: store.TokenCategory, System: categorySystem, Code: "alert"},
			},
		}},
		Events: []store.Event{{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte(inboundID))}},
	}
}

// testMappedOnce: the map stage's output is stored with its event in one
// go; a redelivered message changes and publishes nothing; a later message
// replaces a resource it maps again.
func testMappedOnce(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 123000, time.UTC)
	first := mappedOf("in-1", at, []byte("patient v1"))
	if done, err := st.IsMapped(ctx, "in-1"); err != nil || done {
		t.Fatalf("IsMapped before = %v, %v; want false", done, err)
	}
	if ok, err := st.StoreMapped(ctx, first); err != nil || !ok {
		t.Fatalf("StoreMapped = %v, %v", ok, err)
	}
	if done, err := st.IsMapped(ctx, "in-1"); err != nil || !done {
		t.Fatalf("IsMapped after = %v, %v; want true", done, err)
	}
	// Each recipient's delivery is queued with the Communication.
	ds, err := st.DeliveriesOf(ctx, "c-in-1")
	if err != nil || len(ds) != 2 || ds[0].State != store.DeliveryQueued || ds[1].State != store.DeliveryQueued {
		t.Fatalf("deliveries of a new Communication = %+v, %v; want two queued", ds, err)
	}
	again := mappedOf("in-1", at.Add(time.Minute), []byte("patient v2"))
	if ok, err := st.StoreMapped(ctx, again); err != nil || ok {
		t.Fatalf("redelivered StoreMapped = %v, %v; want false, nil", ok, err)
	}
	if r, err := st.GetResource(ctx, "Patient", "p1"); err != nil || !bytes.Equal(r.Sealed, []byte("patient v1")) {
		t.Fatalf("after a redelivery the Patient is %q, %v; want v1 untouched", r.Sealed, err)
	}
	got := received(t, st, "mapped-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	sameEvent(t, got[0], first.Events[0])

	comms, err := st.CommunicationsOf(ctx, "in-1")
	if want := asRead(first.Communications[0], 1); err != nil || len(comms) != 1 || !reflect.DeepEqual(comms[0], want) {
		t.Fatalf("CommunicationsOf = %+v, %v; want %+v", comms, err, want)
	}

	second := mappedOf("in-2", at.Add(time.Hour), []byte("patient v2"))
	second.Events = nil
	if ok, err := st.StoreMapped(ctx, second); err != nil || !ok {
		t.Fatalf("second message: %v, %v", ok, err)
	}
	if r, err := st.GetResource(ctx, "Patient", "p1"); err != nil || !bytes.Equal(r.Sealed, []byte("patient v2")) {
		t.Fatalf("the later message did not replace the Patient: %q, %v", r.Sealed, err)
	}
	if _, err := st.GetResource(ctx, "Patient", "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown resource: %v", err)
	}
}
