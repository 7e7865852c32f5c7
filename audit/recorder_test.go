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

	active, maxActive int // calls under way, now and at most
}

func (a *slowAppender) AppendEntries(_ context.Context, entries []Entry) (int, error) {
	a.mu.Lock()
	a.active++
	a.maxActive = max(a.maxActive, a.active)
	a.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active--
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

// TestRecorderGroupsConcurrentEntries: concurrent entries share
// transactions, each is committed once before its Record returns, and no
// more transactions run at once than the recorder was given.
func TestRecorderGroupsConcurrentEntries(t *testing.T) {
	for _, parallel := range []int{1, 2} {
		t.Run(fmt.Sprintf("parallel %d", parallel), func(t *testing.T) {
			testRecorderGroups(t, parallel)
		})
	}
}

func testRecorderGroups(t *testing.T, parallel int) {
	log := &slowAppender{entries: map[string]int{}}
	r, err := NewRecorder(log, parallel)
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
	if log.maxActive != parallel {
		t.Fatalf("%d transactions at once at most, want %d", log.maxActive, parallel)
	}
	t.Logf("%d entries in %d transactions", callers, log.calls)
}

func TestRecorderReportsFailure(t *testing.T) {
	r, _ := NewRecorder(&slowAppender{entries: map[string]int{}, fail: errors.New("database down")}, 1)
	err := r.Record(context.Background(), Entry{At: time.Now(), Action: "rest.read"})
	if err == nil {
		t.Fatal("a failed commit was reported as recorded")
	}
	if err := r.Record(context.Background(), Entry{Action: "rest.read"}); err == nil {
		t.Fatal("an entry without a time was accepted")
	}
	if _, err := NewRecorder(nil, 1); err == nil {
		t.Fatal("a recorder without a log was made")
	}
}

// TestRecorderIsolatesAnInvalidEntry: an entry that can never be appended
// fails its own Record call only; the others batched with it are appended.
func TestRecorderIsolatesAnInvalidEntry(t *testing.T) {
	log := &slowAppender{entries: map[string]int{}}
	r, _ := NewRecorder(log, 1)
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
