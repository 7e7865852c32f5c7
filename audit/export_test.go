package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/fhirtest"
	"github.com/carebridge/carebridge/store"
)

func newExporter(t *testing.T, st store.Store, ehrURL string, tokens fhir.TokenSource, cfg audit.ExporterConfig) *audit.Exporter {
	t.Helper()
	c, err := fhir.NewClient(ehrURL, nil, tokens)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Target = ehrURL
	x, err := audit.NewExporter(st, c, v, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// drain exports until nothing is left, failing on any error.
func drain(t *testing.T, x *audit.Exporter) int {
	t.Helper()
	total := 0
	for {
		n, err := x.ExportOnce(context.Background())
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

func pendingOf(t *testing.T, st store.Store, target string) audit.Backlog {
	t.Helper()
	bl, err := audit.Pending(context.Background(), st, 10, target)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bl {
		if b.Target == target {
			return b
		}
	}
	t.Fatalf("no backlog for %s in %+v", target, bl)
	return audit.Backlog{}
}

// TestExportHoldsEachRecordOnce: every record of every chain reaches the
// EHR as a valid AuditEvent under its derived id, in batches; a restarted
// exporter resumes from the stored position and sends nothing again.
func TestExportHoldsEachRecordOnce(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			kr := keyRing(t)
			fill(t, newLog(t, b.st, kr), 0, 230)
			other, err := audit.NewLog(b.st, kr, audit.LogConfig{Chain: "node-b"})
			if err != nil {
				t.Fatal(err)
			}
			fill(t, other, 0, 20)
			ehr := fhirtest.NewEHR(t)
			if got := pendingOf(t, b.st, ehr.URL); got.Pending != 250 || !got.Oldest.Equal(start) {
				t.Fatalf("before any export: %d pending, oldest %v; want 250 from %v", got.Pending, got.Oldest, start)
			}
			if n := drain(t, newExporter(t, b.st, ehr.URL, nil, audit.ExporterConfig{Batch: 100})); n != 250 {
				t.Fatalf("exported %d records, want 250", n)
			}
			held := ehr.Held("AuditEvent")
			if len(held) != 250 {
				t.Fatalf("the EHR holds %d AuditEvents, want 250", len(held))
			}
			var want []string
			err = b.st.WalkAudit(context.Background(), func(r store.AuditRecord) error {
				want = append(want, audit.AuditEventID(audit.Record{Chain: r.Chain, Seq: r.Seq}))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range want {
				if held[id] == nil {
					t.Fatalf("AuditEvent/%s is not held", id)
				}
			}
			rewrites, invalid, requests := ehr.Stats()
			if rewrites != 0 || invalid != 0 || requests != 3 {
				t.Fatalf("rewrites %d, invalid %d, requests %d; want 0, 0, 3 (batches of 100)", rewrites, invalid, requests)
			}
			if got := pendingOf(t, b.st, ehr.URL); got.Pending != 0 || got.Dead != 0 || !got.Oldest.IsZero() {
				t.Fatalf("after export: %+v", got)
			}
			// A new process: nothing is sent again; new records follow.
			x := newExporter(t, b.st, ehr.URL, nil, audit.ExporterConfig{})
			if n := drain(t, x); n != 0 {
				t.Fatalf("a restarted exporter sent %d records again", n)
			}
			fill(t, other, 20, 5)
			if n := drain(t, x); n != 5 {
				t.Fatalf("exported %d new records, want 5", n)
			}
			if rewrites, _, _ := ehr.Stats(); rewrites != 0 || len(ehr.Held("AuditEvent")) != 255 {
				t.Fatalf("rewrites %d, held %d", rewrites, len(ehr.Held("AuditEvent")))
			}
		})
	}
}

// virtualClock is a clock that sleeping moves forward, so that an outage
// of ten minutes takes no real time.
type virtualClock struct {
	mu     sync.Mutex
	now    time.Time
	waits  []time.Duration
	onWait func(now time.Time)
}

func (c *virtualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *virtualClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.waits = append(c.waits, d)
	now := c.now
	c.mu.Unlock()
	c.onWait(now)
	return ctx.Err()
}

// TestExportWaitsOutAnEHROutage is acceptance point 3 of the pipeline
// issue: the EHR's FHIR server is down for ten minutes while records keep
// coming; nothing is lost or dropped, Pending shows the backlog meanwhile,
// retries never wait more than MaxBackoff, and everything arrives, once,
// when the server is back.
func TestExportWaitsOutAnEHROutage(t *testing.T) {
	b := backends(t)["sqlite"](t)
	log := newLog(t, b.st, keyRing(t))
	fill(t, log, 0, 40)
	ehr := fhirtest.NewEHR(t)
	ehr.SetDown(true)
	clock := &virtualClock{now: start}
	var during []audit.Backlog
	added := 40
	clock.onWait = func(now time.Time) {
		// The pipeline goes on recording while the EHR is away.
		fill(t, log, added, 7)
		added += 7
		during = append(during, pendingOf(t, b.st, ehr.URL))
		if now.Sub(start) >= 10*time.Minute {
			ehr.SetDown(false)
		}
	}
	x := newExporter(t, b.st, ehr.URL, nil, audit.ExporterConfig{
		Batch: 25, Idle: 5 * time.Millisecond, MinBackoff: time.Second, MaxBackoff: 2 * time.Minute,
		Now: clock.Now, Sleep: clock.Sleep,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		clock.mu.Lock()
		up := clock.now.Sub(start) >= 10*time.Minute
		clock.mu.Unlock()
		if up {
			if got := pendingOf(t, b.st, ehr.URL); got.Pending == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backlog did not drain: %+v", pendingOf(t, b.st, ehr.URL))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(during) < 5 {
		t.Fatalf("only %d retries in ten minutes", len(during))
	}
	for i, bl := range during[:len(during)-1] {
		if bl.Pending < 40 || !bl.Oldest.Equal(start) {
			t.Fatalf("backlog %d during the outage: %d pending, oldest %v; want at least 40 from %v", i, bl.Pending, bl.Oldest, start)
		}
	}
	for _, w := range clock.waits {
		if w > 2*time.Minute {
			t.Fatalf("waited %v between tries, more than MaxBackoff", w)
		}
	}
	held := ehr.Held("AuditEvent")
	rewrites, invalid, _ := ehr.Stats()
	if len(held) != added || rewrites != 0 || invalid != 0 {
		t.Fatalf("the EHR holds %d AuditEvents (rewrites %d, invalid %d), want %d", len(held), rewrites, invalid, added)
	}
	if got := pendingOf(t, b.st, ehr.URL); got.Dead != 0 {
		t.Fatalf("dead letters after an outage: %+v", got.DeadLetters)
	}
}

// TestExportDeadLetters: an AuditEvent the EHR refuses for good (422) is
// kept as a dead letter with the reason, and the records around it go on;
// a server that takes no transactions gets one PUT each.
func TestExportDeadLetters(t *testing.T) {
	for _, noTransaction := range []bool{false, true} {
		b := backends(t)["sqlite"](t)
		fill(t, newLog(t, b.st, keyRing(t)), 0, 30)
		ehr := fhirtest.NewEHR(t)
		ehr.SetNoTransaction(noTransaction)
		refused := audit.AuditEventID(audit.Record{Chain: "node-a", Seq: 12})
		ehr.Refuse("AuditEvent/" + refused)
		if n := drain(t, newExporter(t, b.st, ehr.URL, nil, audit.ExporterConfig{Batch: 20})); n != 30 {
			t.Fatalf("settled %d records, want 30", n)
		}
		held := ehr.Held("AuditEvent")
		if len(held) != 29 || held[refused] != nil {
			t.Fatalf("the EHR holds %d AuditEvents (the refused one: %v), want 29 without it", len(held), held[refused] != nil)
		}
		got := pendingOf(t, b.st, ehr.URL)
		if got.Pending != 0 || got.Dead != 1 || got.DeadLetters[0].Seq != 12 ||
			got.DeadLetters[0].Reason != "the EHR refused the AuditEvent with HTTP 422" {
			t.Fatalf("no transactions %v: backlog %+v", noTransaction, got)
		}
	}
}

// TestExportNeverDropsOnBadCredentials: a 401 is an operator's problem,
// not the record's: nothing becomes a dead letter, and a good token sends
// everything.
func TestExportNeverDropsOnBadCredentials(t *testing.T) {
	b := backends(t)["sqlite"](t)
	fill(t, newLog(t, b.st, keyRing(t)), 0, 10)
	ehr := fhirtest.NewEHR(t)
	ehr.RequireToken("right-token-0123456789")
	x := newExporter(t, b.st, ehr.URL, fhir.StaticToken("wrong-token-0123456789"), audit.ExporterConfig{})
	if _, err := x.ExportOnce(context.Background()); err == nil {
		t.Fatal("export with a wrong token succeeded")
	}
	if got := pendingOf(t, b.st, ehr.URL); got.Pending != 10 || got.Dead != 0 {
		t.Fatalf("after a 401: %+v", got)
	}
	if n := drain(t, newExporter(t, b.st, ehr.URL, fhir.StaticToken("right-token-0123456789"), audit.ExporterConfig{})); n != 10 {
		t.Fatalf("exported %d with the right token, want 10", n)
	}
}

// TestExportRefusesAlteredRecords: a record changed in the database is not
// sent to the EHR as if it were genuine; it is a dead letter that says why.
func TestExportRefusesAlteredRecords(t *testing.T) {
	b := backends(t)["sqlite"](t)
	fill(t, newLog(t, b.st, keyRing(t)), 0, 5)
	b.exec(t, `UPDATE audit SET actor_id = 'SOMEONE-ELSE' WHERE seq = 3`)
	ehr := fhirtest.NewEHR(t)
	drain(t, newExporter(t, b.st, ehr.URL, nil, audit.ExporterConfig{}))
	if held := ehr.Held("AuditEvent"); len(held) != 4 || held[audit.AuditEventID(audit.Record{Chain: "node-a", Seq: 3})] != nil {
		t.Fatalf("the EHR holds %d AuditEvents, want 4 without the altered one", len(held))
	}
	if got := pendingOf(t, b.st, ehr.URL); got.Dead != 1 || got.DeadLetters[0].Seq != 3 {
		t.Fatalf("backlog %+v", got)
	}
}

// TestExportOneInstanceAtATime: two instances exporting to the same EHR
// take turns by lease instead of both sending everything.
func TestExportOneInstanceAtATime(t *testing.T) {
	b := backends(t)["sqlite"](t)
	log := newLog(t, b.st, keyRing(t))
	fill(t, log, 0, 300)
	ehr := fhirtest.NewEHR(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, holder := range []string{"node-a", "node-b"} {
		x := newExporter(t, b.st, ehr.URL, nil, audit.ExporterConfig{Holder: holder, Lease: 2 * time.Second, Batch: 20, Idle: 5 * time.Millisecond})
		wg.Go(func() { x.Run(ctx) })
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(ehr.Held("AuditEvent")) < 300 || pendingOf(t, b.st, ehr.URL).Pending > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not exported in 20 s: %+v", pendingOf(t, b.st, ehr.URL))
		}
		time.Sleep(10 * time.Millisecond)
	}
	fill(t, log, 300, 20) // more, while both still run
	for pendingOf(t, b.st, ehr.URL).Pending > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second lot was not exported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if rewrites, _, _ := ehr.Stats(); rewrites != 0 || len(ehr.Held("AuditEvent")) != 320 {
		t.Fatalf("the EHR holds %d AuditEvents and was sent %d twice; want 320 and none", len(ehr.Held("AuditEvent")), rewrites)
	}
}
