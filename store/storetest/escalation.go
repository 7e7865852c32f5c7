package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// testEscalations: an escalation scheduled with its Communication comes
// due at its time, advances once per step (a second worker loses), and
// is gone when finished.
func testEscalations(t *testing.T, st store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)
	m := mappedOf("in-esc", at, []byte("p"))
	m.Events = nil
	m.Escalations = []store.Escalation{{CommunicationID: "c-in-esc", Unit: "ICU", DueAt: at.Add(5 * time.Minute), Every: 5 * time.Minute}}
	if _, err := st.StoreMapped(ctx, m); err != nil {
		t.Fatal(err)
	}
	if due, err := st.DueEscalations(ctx, at.Add(4*time.Minute), 10); err != nil || len(due) != 0 {
		t.Fatalf("due early: %+v, %v", due, err)
	}
	due, err := st.DueEscalations(ctx, at.Add(5*time.Minute), 10)
	if err != nil || len(due) != 1 || due[0] != (store.Escalation{CommunicationID: "c-in-esc", Unit: "ICU", Step: 0, DueAt: at.Add(5 * time.Minute), Every: 5 * time.Minute}) {
		t.Fatalf("due = %+v, %v", due, err)
	}
	ev := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("escalated"))}
	if ok, err := st.AdvanceEscalation(ctx, "c-in-esc", 0, at.Add(10*time.Minute), ev); err != nil || !ok {
		t.Fatalf("advance: %v, %v", ok, err)
	}
	if ok, err := st.AdvanceEscalation(ctx, "c-in-esc", 0, at.Add(10*time.Minute)); err != nil || ok {
		t.Fatalf("a second worker advanced it too: %v, %v", ok, err)
	}
	if due, _ := st.DueEscalations(ctx, at.Add(9*time.Minute), 10); len(due) != 0 {
		t.Fatalf("due before its next time: %+v", due)
	}
	if due, _ := st.DueEscalations(ctx, at.Add(10*time.Minute), 10); len(due) != 1 || due[0].Step != 1 {
		t.Fatalf("step 1 not due: %+v", due)
	}
	if ok, err := st.AdvanceEscalation(ctx, "c-in-esc", 1, time.Time{}); err != nil || !ok {
		t.Fatalf("finish: %v, %v", ok, err)
	}
	if due, _ := st.DueEscalations(ctx, at.Add(time.Hour), 10); len(due) != 0 {
		t.Fatalf("a finished escalation is due: %+v", due)
	}
	got := received(t, st, "esc-"+watermill.NewShortUUID(), TopicOther, 1, 300*time.Millisecond)
	sameEvent(t, got[0], ev)
}
