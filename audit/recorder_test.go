package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// slowAppender commits after a pause, as a database would, and keeps what
// it committed. An entry with action "bad" makes the whole call fail as a
// record that cannot be linked would.
type slowAppender struct {
	mu      sync.Mutex
	calls   int
	entries map[string]int
	fail    error
}

func (a *slowAppender) AppendEntries(_ context.Context, entries []Entry) (int, error) {
	time.Sleep(2 * time.Millisecond)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.fail != nil {
		return 0, a.fail
	}
	for _, e := range entries {
		if e.Action == "bad" {
			return 0, fmt.Errorf("%w: entry %s", ErrInvalid, e.ID)
		}
	}
	for _, e := range entries {
		a.entries[e.ID]++
	}
	return len(entries), nil
}

func (a *slowAppender) committed() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

func TestRecorderGroupsConcurrentEntries(t *testing.T) {
	log := &slowAppender{entries: map[string]int{}}
	r, err := NewRecorder(log)
	if err != nil {
		t.Fatal(err)
	}
	const callers = 300
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			e := Entry{At: time.Now(), Action: "rest.read", Actor: Actor{Kind: ActorClient, ID: "ehr"}, Correlation: fmt.Sprintf("req-%d", i)}
			if err := r.Record(context.Background(), e); err != nil {
				errs <- err
				return
			}
			if log.committed() == 0 {
				errs <- errors.New("Record returned before its entry was committed")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r.Wait()
	if len(log.entries) != callers {
		t.Fatalf("%d entries committed, want %d", len(log.entries), callers)
	}
	for id, n := range log.entries {
		if n != 1 {
			t.Fatalf("entry %s committed %d times", id, n)
		}
	}
	if log.calls >= callers/2 {
		t.Fatalf("%d transactions for %d concurrent entries: not grouped", log.calls, callers)
	}
	t.Logf("%d entries in %d transactions", callers, log.calls)
}

func TestRecorderReportsFailure(t *testing.T) {
	r, _ := NewRecorder(&slowAppender{entries: map[string]int{}, fail: errors.New("database down")})
	err := r.Record(context.Background(), Entry{At: time.Now(), Action: "rest.read"})
	if err == nil {
		t.Fatal("a failed commit was reported as recorded")
	}
	if err := r.Record(context.Background(), Entry{Action: "rest.read"}); err == nil {
		t.Fatal("an entry without a time was accepted")
	}
	if _, err := NewRecorder(nil); err == nil {
		t.Fatal("a recorder without a log was made")
	}
}

// TestRecorderIsolatesAnInvalidEntry: an entry that can never be appended
// fails its own Record call only; the others batched with it are appended.
func TestRecorderIsolatesAnInvalidEntry(t *testing.T) {
	log := &slowAppender{entries: map[string]int{}}
	r, _ := NewRecorder(log)
	const callers = 40
	var wg sync.WaitGroup
	results := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			action := "rest.read"
			if i == 7 {
				action = "bad"
			}
			results[i] = r.Record(context.Background(), Entry{At: time.Now(), Action: action})
		})
	}
	wg.Wait()
	for i, err := range results {
		if i == 7 && !errors.Is(err, ErrInvalid) {
			t.Errorf("the invalid entry: %v, want ErrInvalid", err)
		}
		if i != 7 && err != nil {
			t.Errorf("entry %d, batched with the invalid one: %v", i, err)
		}
	}
	if n := log.committed(); n != callers-1 {
		t.Errorf("%d entries committed, want %d", n, callers-1)
	}
}
