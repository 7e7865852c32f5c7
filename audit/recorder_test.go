package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

// slowPublisher commits after a pause, as a database would, and keeps
// what it committed.
type slowPublisher struct {
	mu      sync.Mutex
	calls   int
	entries map[string]int
	fail    error
}

func (p *slowPublisher) PublishEvents(_ context.Context, events []store.Event) error {
	time.Sleep(2 * time.Millisecond)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil {
		return p.fail
	}
	for _, ev := range events {
		es, err := DecodeEntries(ev.Message.Payload)
		if err != nil {
			return err
		}
		if ev.Message.Metadata.Get("correlation_id") == "" {
			return errors.New("no correlation id")
		}
		for _, e := range es {
			p.entries[e.ID]++
		}
	}
	return nil
}

func TestRecorderGroupsConcurrentEntries(t *testing.T) {
	pub := &slowPublisher{entries: map[string]int{}}
	r, err := NewRecorder(pub, "audit.recorded", "correlation_id")
	if err != nil {
		t.Fatal(err)
	}
	const callers = 300
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := Entry{At: time.Now(), Action: "rest.read", Actor: Actor{Kind: ActorClient, ID: "ehr"}, Correlation: "req-" + string(rune('a'+i%26))}
			if err := r.Record(context.Background(), e); err != nil {
				errs <- err
				return
			}
			pub.mu.Lock()
			n := len(pub.entries)
			pub.mu.Unlock()
			if n == 0 {
				errs <- errors.New("Record returned before its entry was committed")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r.Wait()
	if len(pub.entries) != callers {
		t.Fatalf("%d entries committed, want %d", len(pub.entries), callers)
	}
	for id, n := range pub.entries {
		if n != 1 {
			t.Fatalf("entry %s committed %d times", id, n)
		}
	}
	if pub.calls >= callers/2 {
		t.Fatalf("%d transactions for %d concurrent entries: not grouped", pub.calls, callers)
	}
	t.Logf("%d entries in %d transactions", callers, pub.calls)
}

func TestRecorderReportsFailure(t *testing.T) {
	pub := &slowPublisher{entries: map[string]int{}, fail: errors.New("database down")}
	r, _ := NewRecorder(pub, "audit.recorded", "correlation_id")
	err := r.Record(context.Background(), Entry{At: time.Now(), Action: "rest.read"})
	if err == nil {
		t.Fatal("a failed commit was reported as recorded")
	}
	if err := r.Record(context.Background(), Entry{Action: "rest.read"}); err == nil {
		t.Fatal("an entry without a time was accepted")
	}
}
