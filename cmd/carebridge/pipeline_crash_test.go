package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir/fhirtest"
	"github.com/carebridge/carebridge/hl7/mllp"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/sqlite"
	"github.com/carebridge/carebridge/store/storetest"
)

const pipelineRunSize = 2000 // messages, 8 senders of 250

// pipelineRun is a 2,000-message run through separate carebridge
// processes: senders retrying over MLLP until acknowledged, the attending's
// inbox stream connected to each process (reconnecting after a crash), and
// a validating EHR receiving the audit trail.
type pipelineRun struct {
	t         *testing.T
	storage   []string // --data-dir …, --database-url …: what the CLI needs too
	serve     []string // the rest of serve's flags, shared by every process
	open      func(t *testing.T) store.Store
	ehr       *fhirtest.EHR
	recipient string
	streams   []*sseClient
	acked     sync.Map // control id → true
	ackCnt    atomic.Int64
}

func newPipelineRun(t *testing.T, storage, extra []string, open func(t *testing.T) store.Store) *pipelineRun {
	dir := t.TempDir()
	// Every e2eMessage is an admission for the same attending.
	summary, _, err := runCLI(t, string(e2eMessage(0, 0)), "map", "--summary", "-")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`attending [^<]*<(Practitioner/[^>]+)>`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("no attending in %s", summary)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("crash-token-0123456789 "+m[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ehr := fhirtest.NewEHR(t)
	serve := append(slices2(storage, extra), "--inbox-dev-tokens", tokens, "--ehr-fhir-url", ehr.URL)
	return &pipelineRun{t: t, storage: storage, serve: serve, open: open, ehr: ehr, recipient: m[1]}
}

func slices2(a, b []string) []string { return append(append([]string{}, a...), b...) }

// follow keeps an inbox stream open to httpAddr until ctx ends,
// reconnecting whenever the process goes away.
func (r *pipelineRun) follow(ctx context.Context, httpAddr string) {
	c := &sseClient{ids: map[string]int{}}
	r.streams = append(r.streams, c)
	go func() {
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/inbox/stream", nil)
			req.Header.Set("Authorization", "Bearer crash-token-0123456789")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				readStream(resp, c)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

// send runs the senders against the MLLP addresses, round robin, each
// retrying a message until it is acknowledged.
func (r *pipelineRun) send(ctx context.Context, addrs []string) <-chan error {
	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c, err := mllp.NewClient(mllp.ClientConfig{
				Addr: addrs[w%len(addrs)], ConnectTimeout: time.Second, AckTimeout: 5 * time.Second,
				MaxRetries: 400, BackoffBase: 20 * time.Millisecond, BackoffMax: 250 * time.Millisecond,
			})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := range pipelineRunSize / workers {
				ack, _, err := c.Send(ctx, e2eMessage(w, i))
				if err != nil {
					errs <- fmt.Errorf("sender %d message %d: %w", w, i, err)
					return
				}
				if !ack.Accepted() {
					errs <- fmt.Errorf("sender %d message %d: ACK %s", w, i, ack.Code)
					return
				}
				r.acked.Store(ack.ControlID, true)
				r.ackCnt.Add(1)
			}
		})
	}
	go func() { wg.Wait(); close(errs) }()
	return errs
}

// settle waits until the inbox streams have every Communication and the
// EHR holds the whole audit trail, and returns the number of records. It
// reads chain heads, not the whole trail, so that polling stays cheap;
// check verifies the trail once at the end.
func (r *pipelineRun) settle(deadline time.Duration) int {
	t := r.t
	st := r.open(t)
	defer st.Close()
	end := time.Now().Add(deadline)
	records := func() (n int, waiting bool) {
		heads, err := st.AuditChains(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		bl, err := audit.Pending(context.Background(), st, 0, r.ehr.URL)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range heads {
			n += int(h.Seq)
		}
		return n, len(bl) != 1 || bl[0].Pending > 0
	}
	for {
		n, waiting := records()
		if r.distinct() == pipelineRunSize && !waiting && len(r.ehr.Held("AuditEvent")) == n {
			// Each delivery is audited just after it is streamed: look
			// again once the last of those has had time to land.
			time.Sleep(time.Second)
			if again, waiting := records(); again == n && !waiting {
				return n
			}
			continue
		}
		if time.Now().After(end) {
			t.Fatalf("the pipeline did not settle in %v: streams have %d of %d, %d records, the EHR holds %d",
				deadline, r.distinct(), pipelineRunSize, n, len(r.ehr.Held("AuditEvent")))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// distinct counts the Communications the streams got, however often.
func (r *pipelineRun) distinct() int {
	seen := map[string]bool{}
	for _, c := range r.streams {
		c.mu.Lock()
		for id := range c.ids {
			seen[id] = true
		}
		c.mu.Unlock()
	}
	return len(seen)
}

// check asserts the end state: every acknowledged message stored once
// with its one Communication, one delivery row for the attending, marked
// delivered; every audit record held by the EHR once under its id, valid;
// the trail verifies; nothing set aside.
func (r *pipelineRun) check(records int) {
	t := r.t
	st := r.open(t)
	defer st.Close()
	rows := listAll(t, st)
	n := 0
	r.acked.Range(func(any, any) bool { n++; return true })
	if n != pipelineRunSize || len(rows) != pipelineRunSize {
		t.Fatalf("%d messages acknowledged and %d stored, want %d each", n, len(rows), pipelineRunSize)
	}
	seen := map[string]bool{}
	for _, m := range rows {
		if seen[m.ControlID] {
			t.Fatalf("control id %s stored twice", m.ControlID)
		}
		seen[m.ControlID] = true
		if _, ok := r.acked.Load(m.ControlID); !ok {
			t.Fatalf("control id %s stored but never acknowledged", m.ControlID)
		}
		comms, err := st.CommunicationsOf(context.Background(), m.ID)
		if err != nil || len(comms) != 1 || len(comms[0].Recipients) != 1 || comms[0].Recipients[0] != r.recipient {
			t.Fatalf("Communications of %s: %+v, %v; want one to %s", m.ControlID, comms, err, r.recipient)
		}
		ds, err := st.DeliveriesOf(context.Background(), comms[0].ID)
		if err != nil || len(ds) != 1 || ds[0].State != store.DeliveryDelivered {
			t.Fatalf("deliveries of %s: %+v, %v; want one, delivered", comms[0].ID, ds, err)
		}
	}
	held := r.ehr.Held("AuditEvent")
	actions := map[string]int{}
	deliveredTo := map[string]bool{}
	err := st.WalkAudit(context.Background(), func(rec store.AuditRecord) error {
		actions[rec.Action]++
		if rec.Action == "communication.delivered" {
			for _, e := range rec.Entities {
				if strings.HasPrefix(e, "Communication/") {
					deliveredTo[e] = true
				}
			}
		}
		if held[audit.AuditEventID(audit.Record{Chain: rec.Chain, Seq: rec.Seq})] == nil {
			return fmt.Errorf("the EHR lacks the AuditEvent of %s/%d", rec.Chain, rec.Seq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rewrites, invalid, _ := r.ehr.Stats()
	if len(held) != records || invalid != 0 {
		t.Fatalf("the EHR holds %d AuditEvents for %d records, %d invalid", len(held), records, invalid)
	}
	for _, a := range []string{"message.accepted", "message.mapped", "communication.created"} {
		if actions[a] != pipelineRunSize {
			t.Errorf("%d %s records, want %d (one per message): %v", actions[a], a, pipelineRunSize, actions)
		}
	}
	// Every Communication was streamed, and each time it was (to each
	// signed-in device, and again to a device that reconnected before the
	// first delivery was recorded) the trail says so.
	if len(deliveredTo) != pipelineRunSize || actions["communication.delivered"] < pipelineRunSize {
		t.Errorf("%d Communications have a communication.delivered record (%d records), want all %d",
			len(deliveredTo), actions["communication.delivered"], pipelineRunSize)
	}
	dups := 0
	for _, c := range r.streams {
		c.mu.Lock()
		for _, k := range c.ids {
			dups += k - 1
		}
		c.mu.Unlock()
	}
	t.Logf("%d records (%d communication.delivered); the EHR was sent %d AuditEvents again (same ids, held once); the streams saw %d repeats (clients dedupe by id)",
		records, actions["communication.delivered"], rewrites, dups)
	if out, _, err := runCLI(t, "", append([]string{"audit", "verify"}, r.storage...)...); err != nil || !strings.Contains(out, fmt.Sprintf("verified: %d records", records)) {
		t.Errorf("audit verify: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, "", append([]string{"replay"}, r.storage...)...); err != nil || !strings.Contains(out, "no messages set aside") {
		t.Errorf("messages set aside: %v\n%s", err, out)
	}
}

// TestPipelineSurvivesKills is acceptance point 2 of the pipeline issue:
// a 2,000-message run, the server SIGKILLed at five random points and
// restarted each time; afterwards every acknowledged message has exactly
// its Communication, delivered once (one delivery row), its audit records
// each held once by the EHR.
func TestPipelineSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("a 2,000-message run with five crashes")
	}
	t.Run("sqlite", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		killRun(t, newPipelineRun(t, []string{"--data-dir", data}, nil, func(t *testing.T) store.Store {
			st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(data, "carebridge.db"), Topics: queueTopics, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}))
	})
	t.Run("nats", func(t *testing.T) {
		url := storetest.PostgresSchema(t)
		natsURL, prefix := natsForTest(t)
		killRun(t, newPipelineRun(t, []string{"--data-dir", filepath.Join(t.TempDir(), "data"), "--database-url", url},
			[]string{"--nats-url", natsURL, "--nats-prefix", prefix}, openPostgres(url)))
	})
}

func openPostgres(url string) func(t *testing.T) store.Store {
	return func(t *testing.T) store.Store {
		st, err := postgres.Open(context.Background(), postgres.Config{URL: url, Topics: queueTopics})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
}

func killRun(t *testing.T, r *pipelineRun) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("kill points from seed %d", seed)
	mllpAddr, httpAddr := freePort(t), freePort(t)
	args := append(slices2(r.serve, nil), "--node", "crash-node", "--mllp-addr", mllpAddr, "--http-addr", httpAddr)
	srv := startServer(t, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r.follow(ctx, httpAddr)
	errs := r.send(ctx, []string{mllpAddr})
	const kills = 5
	for k := range kills {
		// Somewhere in the next stretch of acknowledgements, or a moment
		// after the last: the pipeline is behind the door, so a kill
		// catches it mid-work either way.
		target := int64(pipelineRunSize*k/kills) + rng.Int64N(pipelineRunSize/kills)
		for r.ackCnt.Load() < target && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(200 * time.Millisecond))))
		srv.kill()
		t.Logf("SIGKILL %d with %d of %d acknowledged", k+1, r.ackCnt.Load(), pipelineRunSize)
		srv = startServer(t, args...)
	}
	for err := range errs {
		t.Fatal(err)
	}
	records := r.settle(3 * time.Minute)
	srv.stop()
	cancel()
	r.check(records)
}

// TestTwoProcessesShareTheWork is acceptance point 6 of the pipeline
// issue: two carebridge processes on one PostgreSQL database and one NATS
// server share a 2,000-message run (senders split between them); each
// message is mapped by one of them only, and both do part of the work.
func TestTwoProcessesShareTheWork(t *testing.T) {
	if testing.Short() {
		t.Skip("a 2,000-message run on two processes")
	}
	url := storetest.PostgresSchema(t)
	natsURL, prefix := natsForTest(t)
	r := newPipelineRun(t, []string{"--data-dir", filepath.Join(t.TempDir(), "data"), "--database-url", url},
		[]string{"--nats-url", natsURL, "--nats-prefix", prefix, "--log-level", "info"}, openPostgres(url))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var servers []*server
	var mllpAddrs []string
	for i := range 2 {
		mllpAddr, httpAddr := freePort(t), freePort(t)
		servers = append(servers, startServer(t, append(slices2(r.serve, nil), "--node", fmt.Sprintf("node-%d", i+1),
			"--mllp-addr", mllpAddr, "--http-addr", httpAddr)...))
		mllpAddrs = append(mllpAddrs, mllpAddr)
		r.follow(ctx, httpAddr) // the attending is signed in on both
	}
	for err := range r.send(ctx, mllpAddrs) {
		t.Fatal(err)
	}
	records := r.settle(3 * time.Minute)
	for _, s := range servers {
		s.stop()
	}
	cancel()
	r.check(records)

	st := r.open(t)
	defer st.Close()
	mappedBy := map[string]int{}
	mappedOnce := map[string]int{}
	err := st.WalkAudit(context.Background(), func(rec store.AuditRecord) error {
		if rec.Action == "message.mapped" {
			mappedBy[rec.Chain]++
			for _, e := range rec.Entities {
				mappedOnce[e]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if mappedBy["node-1"] == 0 || mappedBy["node-2"] == 0 || mappedBy["node-1"]+mappedBy["node-2"] != pipelineRunSize {
		t.Errorf("messages mapped per process: %v, want both sharing %d", mappedBy, pipelineRunSize)
	}
	for e, n := range mappedOnce {
		if n != 1 {
			t.Errorf("%s is in %d message.mapped records", e, n)
		}
	}
	for i, s := range servers {
		logs := s.stderr.String() // the process has exited
		if n := strings.Count(logs, "message mapped before"); n != 0 {
			t.Errorf("process %d was handed %d messages already mapped", i+1, n)
		}
	}
	t.Logf("messages mapped per process: %v", mappedBy)
}
