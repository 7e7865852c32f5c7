package store

import (
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

func TestWakeBackoff(t *testing.T) {
	var w Waker
	b := w.Backoff("hl7.received", time.Hour, 3*time.Second)
	log := watermill.NopLogger{}
	if d := b.HandleError(log, false, nil); d != 0 {
		t.Errorf("after a read that found messages: wait %v, want 0", d)
	}
	if d := b.HandleError(log, false, errors.New("connection refused")); d != 3*time.Second {
		t.Errorf("after an error: wait %v, want the retry interval", d)
	}
	if d := b.HandleError(log, false, errors.New("ERROR: deadlock detected")); d != 0 {
		t.Errorf("after a deadlock: wait %v, want 0", d)
	}
	done := make(chan time.Duration)
	go func() { done <- b.HandleError(log, true, nil) }()
	// The poll is an hour: only a wake ends the wait.
	for {
		select {
		case d := <-done:
			if d != 0 {
				t.Errorf("after a wake: wait %v more, want 0", d)
			}
			return
		case <-time.After(5 * time.Millisecond):
			w.Wake("hl7.received")
		case <-time.After(5 * time.Second):
			t.Fatal("Wake did not end the wait")
		}
	}
}

// TestWakeDuringAReadIsNotLost: a commit that wakes the topic while the
// subscriber's read runs (too early for the read to see it) ends the wait
// after that read at once; the subscriber does not sit out its poll with
// the commit's messages waiting. The next empty read waits again.
func TestWakeDuringAReadIsNotLost(t *testing.T) {
	var w Waker
	log := watermill.NopLogger{}
	for _, b := range []*WakeBackoff{
		w.Backoff("hl7.received", time.Hour, time.Second),
		w.SettlingBackoff("hl7.received", time.Hour, time.Second, time.Millisecond, 20*time.Millisecond),
	} {
		b.HandleError(log, false, nil) // a read found messages; the next begins
		w.Wake("hl7.received")         // a commit, while that read runs
		done := make(chan time.Duration, 1)
		go func() { done <- b.HandleError(log, true, nil) }() // it found nothing
		select {
		case d := <-done:
			if d != 0 {
				t.Errorf("after a wake during the read: wait %v more, want 0", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the wake during the read was lost: the subscriber waits for its poll")
		}
		b.HandleError(log, false, nil) // the next read found the commit's messages
		go func() { done <- b.HandleError(log, true, nil) }()
		select {
		case <-done:
			t.Fatal("with no wake since the read began, an empty read did not wait")
		case <-time.After(50 * time.Millisecond):
		}
		w.Wake("hl7.received")
		<-done
	}
}

func TestWakeBackoffPolls(t *testing.T) {
	var w Waker
	start := time.Now()
	if d := w.Backoff("hl7.received", 20*time.Millisecond, time.Second).HandleError(watermill.NopLogger{}, true, nil); d != 0 {
		t.Errorf("wait %v more, want 0", d)
	}
	if e := time.Since(start); e < 20*time.Millisecond || e > 2*time.Second {
		t.Errorf("waited %v without a wake, want the poll interval", e)
	}
}

// TestSettlingBackoff: after a wake that found nothing, the subscriber
// looks again soon (settle, then twice that), not after a whole poll; a
// read that finds messages ends the sequence.
func TestSettlingBackoff(t *testing.T) {
	var w Waker
	b := w.SettlingBackoff("audit.recorded", time.Hour, time.Second, time.Millisecond, 20*time.Millisecond)
	log := watermill.NopLogger{}
	done := make(chan struct{})
	go func() { b.HandleError(log, true, nil); close(done) }()
	for woke := false; !woke; {
		select {
		case <-done:
			woke = true
		case <-time.After(5 * time.Millisecond):
			w.Wake("audit.recorded")
		}
	}
	for i := range 2 {
		start := time.Now()
		b.HandleError(log, true, nil) // nothing yet: the rows are not visible
		if e := time.Since(start); e > time.Second {
			t.Fatalf("look %d after a wake came after %v, want within a few ms", i+1, e)
		}
	}
	b.HandleError(log, false, nil) // found them
	returned := make(chan struct{})
	go func() { b.HandleError(log, true, nil); close(returned) }()
	select {
	case <-returned:
		t.Fatal("after a read that found messages, an empty one did not wait for a wake or the poll")
	case <-time.After(50 * time.Millisecond):
	}
	w.Wake("audit.recorded")
	<-returned
}

// TestWakeIsPerTopic: a commit on one topic wakes that topic's subscribers
// only; the others keep waiting for their own, or their poll.
func TestWakeIsPerTopic(t *testing.T) {
	var w Waker
	log := watermill.NopLogger{}
	audit := make(chan struct{})
	go func() { w.Backoff("audit.recorded", time.Hour, time.Second).HandleError(log, true, nil); close(audit) }()
	hl7 := make(chan struct{})
	go func() { w.Backoff("hl7.received", time.Hour, time.Second).HandleError(log, true, nil); close(hl7) }()
	deadline := time.After(5 * time.Second)
	for woke := false; !woke; {
		select {
		case <-audit:
			woke = true
		case <-hl7:
			t.Fatal("a wake of audit.recorded woke the hl7.received subscriber")
		case <-time.After(5 * time.Millisecond):
			w.Wake("audit.recorded", "communication.created")
		case <-deadline:
			t.Fatal("Wake did not end the audit.recorded wait")
		}
	}
	select {
	case <-hl7:
		t.Fatal("a wake of audit.recorded woke the hl7.received subscriber")
	case <-time.After(50 * time.Millisecond):
	}
	w.Wake("hl7.received")
	select {
	case <-hl7:
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not end the hl7.received wait")
	}
}

// TestBackoffUntilClosing: a subscriber being closed stops waiting for a
// wake at once, and is told to sleep (its own Close ends the sleep), not
// to query again.
func TestBackoffUntilClosing(t *testing.T) {
	var w Waker
	closing := make(chan struct{})
	b := w.Backoff("hl7.received", time.Hour, time.Second).Until(closing)
	got := make(chan time.Duration)
	go func() { got <- b.HandleError(watermill.NopLogger{}, true, nil) }()
	close(closing)
	select {
	case d := <-got:
		if d != time.Hour {
			t.Errorf("after closing: sleep %v, want the poll interval", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing did not end the wait")
	}
}
