package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// CommitWakes checks that each write path that publishes wakes this
// process's idle subscribers of its topic as it commits. st must be opened
// with a queue poll far longer than the test (an hour): only a wake then
// delivers in time, so a write path whose commit forgot its topic fails
// here instead of costing every message a poll interval.
func CommitWakes(t *testing.T, st store.Store) {
	ctx := context.Background()
	paths := []struct {
		name, topic string
		write       func(i int) (uuid string, err error)
	}{
		{"PublishEvents", TopicOther, func(i int) (string, error) {
			ev := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("wake"))}
			return ev.Message.UUID, st.PublishEvents(ctx, []store.Event{ev})
		}},
		{"AcceptInbound", TopicReceived, func(i int) (string, error) {
			a := accept(newMessage(t), false, TopicReceived)
			_, err := st.AcceptInbound(ctx, []store.Accept{a})
			return a.Events[0].Message.UUID, err
		}},
		{"CreateCommunication", TopicOther, func(i int) (string, error) {
			ev := store.Event{Topic: TopicOther, Message: message.NewMessage(watermill.NewUUID(), []byte("wake"))}
			row := apiRow(fmt.Sprintf("wake-%d-%s", i, ev.Message.UUID))
			return ev.Message.UUID, st.CreateCommunication(ctx, row, ev)
		}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			sub, err := st.Subscriber("wake-" + p.name)
			if err != nil {
				t.Fatalf("Subscriber: %v", err)
			}
			defer sub.Close()
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := sub.Subscribe(sctx, p.topic)
			if err != nil {
				t.Fatalf("Subscribe(%s): %v", p.topic, err)
			}
			// What earlier tests published comes at once; then the
			// subscriber waits for a wake.
			for quiet := false; !quiet; {
				select {
				case m := <-ch:
					m.Ack()
				case <-time.After(200 * time.Millisecond):
					quiet = true
				}
			}
			mine := map[string]bool{}
			deadline := time.After(5 * time.Second)
			for i := 0; ; i++ {
				// Written again now and then: a wake that came before the
				// subscriber began to wait is not one it could miss.
				id, err := p.write(i)
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				mine[id] = true
				select {
				case m := <-ch:
					m.Ack()
					if !mine[m.UUID] {
						t.Fatalf("got %s, which this test did not write", m.UUID)
					}
					return
				case <-time.After(250 * time.Millisecond):
				case <-deadline:
					t.Fatalf("no message on %s within 5 s of %d commits: the commit did not wake its subscribers", p.topic, i+1)
				}
			}
		})
	}
}
