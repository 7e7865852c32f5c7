package bridge_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/mapping"
	"github.com/carebridge/carebridge/store"
)

// TestUrgentUnreadIsEscalatedOnSchedule is acceptance point 5 of the
// pipeline issue, with a controllable clock: an urgent critical result left
// unread is re-notified after 5 minutes, reaches the unit's on-call tier
// after 10 and its care team after 15, each step audited, then stops; a
// message everyone has read is not escalated.
func TestUrgentUnreadIsEscalatedOnSchedule(t *testing.T) {
	p := newPipeline(t)
	clock := routedAt
	p.stage.Now = func() time.Time { return clock }
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	comms, _ := p.st.CommunicationsOf(context.Background(), id)
	c := comms[0]
	if err := p.st.QueueDeliveries(context.Background(), c.ID, c.Recipients, clock); err != nil {
		t.Fatal(err)
	}
	hub := bridge.NewHub()
	live := map[string]<-chan bridge.InboxItem{}
	for _, r := range append(slices.Clone(c.Recipients), "CareTeam/icu-nursing") {
		ch, cancel := hub.Subscribe(r)
		defer cancel()
		live[r] = ch
	}
	esc := &bridge.Escalator{Store: p.st, Rules: p.stage.Rules, Inbox: &bridge.LocalInbox{Hub: hub, Store: p.st, Keys: p.kr},
		Now: func() time.Time { return clock }, Log: slog.New(slog.DiscardHandler)}
	tick := func(at time.Duration, want int) {
		t.Helper()
		clock = routedAt.Add(at)
		n, err := esc.Tick(context.Background())
		if err != nil || n != want {
			t.Fatalf("at +%v: %d steps, %v; want %d", at, n, err, want)
		}
	}
	got := func(r string) bool {
		select {
		case it := <-live[r]:
			return it.ID == c.ID
		default:
			return false
		}
	}

	// The orderer reads it; the attending and the on-call do not.
	if err := p.st.SetDelivery(context.Background(), c.ID, c.Recipients[0], store.DeliveryRead, clock); err != nil {
		t.Fatal(err)
	}
	tick(4*time.Minute, 0)
	tick(5*time.Minute, 1) // step 1: those who have not read it, again
	if got(c.Recipients[0]) || !got(c.Recipients[1]) || !got(c.Recipients[2]) {
		t.Error("step 1 did not re-notify exactly the unread recipients")
	}
	tick(9*time.Minute, 0)
	tick(10*time.Minute, 1) // step 2: the on-call tier (already a recipient here: nobody new)
	tick(15*time.Minute, 1) // step 3: the unit's care team
	if !got("CareTeam/icu-nursing") {
		t.Error("step 3 did not reach the ICU care team")
	}
	ds, _ := p.st.DeliveriesOf(context.Background(), c.ID)
	if len(ds) != 4 {
		t.Errorf("deliveries after escalation = %+v, want the care team added", ds)
	}
	tick(time.Hour, 0) // finished

	escalated := 0
	for _, e := range nextEntries(t, p.st, 5) { // 2 from mapping, 3 steps
		if e.Action == "communication.escalated" {
			escalated++
			if e.Patient != c.Subject || e.Entities[0] != "Communication/"+c.ID {
				t.Errorf("escalation entry = %+v", e)
			}
		}
	}
	if escalated != 3 {
		t.Errorf("%d escalation records, want 3", escalated)
	}
}

func TestReadMessageIsNotEscalated(t *testing.T) {
	p := newPipeline(t)
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	comms, _ := p.st.CommunicationsOf(context.Background(), id)
	c := comms[0]
	p.st.QueueDeliveries(context.Background(), c.ID, c.Recipients, routedAt)
	for _, r := range c.Recipients {
		p.st.SetDelivery(context.Background(), c.ID, r, store.DeliveryRead, routedAt)
	}
	esc := &bridge.Escalator{Store: p.st, Rules: p.stage.Rules, Now: func() time.Time { return routedAt.Add(time.Hour) }, Log: slog.New(slog.DiscardHandler)}
	if n, err := esc.Tick(context.Background()); err != nil || n != 1 {
		t.Fatalf("tick = %d, %v; want the escalation closed", n, err)
	}
	if n, _ := esc.Tick(context.Background()); n != 0 {
		t.Errorf("a read message keeps escalating")
	}
	nextEntries(t, p.st, 2) // the map stage's two; closing an escalation is not audited
}

// TestRuleDeadlineSchedulesEscalation: a rule's escalate_after, not the
// priority's default, decides when its message first escalates.
func TestRuleDeadlineSchedulesEscalation(t *testing.T) {
	p := newPipeline(t)
	src, err := os.ReadFile(filepath.Join("..", "mapping", "testdata", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	withDeadline := strings.Replace(string(src), "    notify: [ordering, attending, on_call]\n", "    notify: [ordering, attending, on_call]\n    escalate_after: 90s\n", 1)
	if withDeadline == string(src) {
		t.Fatal("the critical-result rule was not found in the test rules")
	}
	if p.stage.Rules, err = mapping.ParseRules([]byte(withDeadline)); err != nil {
		t.Fatal(err)
	}
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	if due, _ := p.st.DueEscalations(context.Background(), routedAt.Add(89*time.Second), 10); len(due) != 0 {
		t.Errorf("due before the rule's 90 s: %+v", due)
	}
	due, err := p.st.DueEscalations(context.Background(), routedAt.Add(90*time.Second), 10)
	if err != nil || len(due) != 1 || due[0].Every != 90*time.Second {
		t.Errorf("due at 90 s = %+v, %v", due, err)
	}
}
