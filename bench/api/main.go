// Command api is the FHIR API's load harness: "seed" fills a carebridge
// PostgreSQL database with synthetic Communications (sealed with the
// server's key ring, as the pipeline would store them), and "load" drives
// a running server over HTTP with many connections, one operation at a
// time: read by id, create, or the inbox search (recipient and status,
// newest first, 20 a page). bench/api.sh runs the whole measurement.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/secure"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: api seed|load [flags] (see bench/api.sh)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "seed":
		err = seed(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// The seeded set: ids bench-0000000…, recipients Practitioner/bench-0000…
// (each Communication has one), every third completed.
func commID(i int) string    { return fmt.Sprintf("bench-%07d", i) }
func recipient(i int) string { return fmt.Sprintf("Practitioner/bench-%04d", i) }
func status(i int) string    { return []string{"in-progress", "in-progress", "completed"}[i%3] }
func priority(i int) string  { return []string{"routine", "routine", "urgent", "stat"}[i%4] }
func patient(i int) string   { return fmt.Sprintf("Patient/bench-p%05d", i%50000) }
func sentAt(i int) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 10 * time.Second)
}
func recipientOf(i, n int) int { return (i * 7919) % n }

func seed(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	dbURL := fs.String("database-url", "", "the carebridge PostgreSQL database (migrated)")
	dataDir := fs.String("data-dir", "", "the server's data directory (its key ring seals the rows)")
	rows := fs.Int("rows", 1_000_000, "Communications to add")
	recipients := fs.Int("recipients", 1000, "distinct recipients")
	fs.Parse(args)
	if *dbURL == "" || *dataDir == "" {
		return errors.New("seed needs --database-url and --data-dir")
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(*dataDir, "keyring.json"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	start := time.Now()
	progress := "seeded %d of %d Communications (%.0f s)\n"
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		progress = "\rseeded %d of %d Communications (%.0f s)"
	}
	const chunk = 50_000
	for from := 0; from < *rows; from += chunk {
		to := min(from+chunk, *rows)
		var comms, deliveries, tokens [][]any
		for i := from; i < to; i++ {
			id, r, sent := commID(i), recipient(recipientOf(i, *recipients)), sentAt(i)
			body, err := fhir.Resource{Type: "Communication", ID: id, Body: communication(id, r, i, sent)}.MarshalJSON()
			if err != nil {
				return err
			}
			sealed, err := kr.Seal(body, []byte("Communication/"+id))
			if err != nil {
				return err
			}
			ident := "BENCH^" + id + "^rule"
			// each as if mapped from its own HL7 message, as the pipeline's are
			comms = append(comms, []any{id, fmt.Sprintf("bench-in-%07d", i), ident, status(i), priority(i), "alert", patient(i), "", []string{r}, sent, sealed, "Device/carebridge", nil, 1, sent})
			deliveries = append(deliveries, []any{id, r, "queued", 0, sent})
			tokens = append(tokens, []any{id, "identifier", fhir.CommunicationSourceSystem, ident}, []any{id, "category", fhir.CommunicationCategorySystem, "alert"})
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		for _, c := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"communication", []string{"id", "inbound_id", "identifier", "status", "priority", "category", "subject", "encounter", "recipients", "sent", "sealed", "sender", "received", "version", "updated_at"}, comms},
			{"delivery", []string{"communication_id", "recipient", "state", "rank", "updated_at"}, deliveries},
			{"communication_token", []string{"communication_id", "param", "system", "code"}, tokens},
		} {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
				tx.Rollback(ctx)
				return fmt.Errorf("copying into %s: %w", c.table, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		// On a terminal the progress line is rewritten in place; in a
		// log, each is a line of its own.
		fmt.Fprintf(os.Stderr, progress, to, *rows, time.Since(start).Seconds())
	}
	if progress[0] == '\r' {
		fmt.Fprintln(os.Stderr)
	}
	_, err = conn.Exec(ctx, "VACUUM ANALYZE communication, delivery, communication_token") // as autovacuum would, given time
	return err
}

func communication(id, r string, i int, sent time.Time) *fhir.Communication {
	c := &fhir.Communication{}
	b, _ := json.Marshal(map[string]any{
		"resourceType": "Communication", "id": id, "status": status(i), "priority": priority(i),
		"identifier": []map[string]string{{"system": fhir.CommunicationSourceSystem, "value": "BENCH^" + id + "^rule"}},
		"category":   []map[string]any{{"coding": []map[string]string{{"system": fhir.CommunicationCategorySystem, "code": "alert"}}}},
		"subject":    map[string]string{"reference": patient(i)}, "recipient": []map[string]string{{"reference": r}},
		"sender": map[string]string{"reference": "Device/carebridge"}, "sent": sent.Format(time.RFC3339),
		"payload": []map[string]string{{"contentString": "Synthetic benchmark message " + id + ": potassium 6.1 mmol/L, please review."}},
	})
	json.Unmarshal(b, c)
	return c
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	base := fs.String("fhir-url", "http://127.0.0.1:8080/fhir", "the FHIR base URL")
	clientID := fs.String("client-id", "bench", "a registered client with system/Communication.cruds")
	keyFile := fs.String("key", "", "its private key (PEM)")
	op := fs.String("op", "read", "read, create or search")
	conns := fs.Int("conns", 32, "connections (one worker each)")
	duration := fs.Duration("duration", 15*time.Second, "how long to load")
	rows := fs.Int("rows", 1_000_000, "the seeded Communications (read picks among them)")
	recipients := fs.Int("recipients", 1000, "the seeded recipients (search picks among them)")
	dbURL := fs.String("database-url", "", "the server's PostgreSQL database: when given, wait for the audit and deliver stages to catch up and count that time too")
	warmup := fs.Duration("warmup", 2*time.Second, "how long to send the same requests first, uncounted, so that the figures are a warm server's")
	rate := fs.Float64("rate", 0, "requests per second to offer on a fixed schedule (open loop), 0 for as fast as the connections go (closed loop); latency is then measured from when each request was due, so a server that falls behind is not flattered by the requests it delayed")
	timeline := fs.String("timeline", "", "write each measured request to this file, a line each: when it was due (ms since the run began) and its latency (ms), to see when in a run the slow ones came")
	var watch cpuFlags
	fs.Var(&watch, "cpu", "name=PID of a process whose CPU per request to report, name=PID+ with its children (a postmaster's backends); repeatable, Linux only")
	fs.Parse(args)
	pemBytes, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	key, err := fhir.ParsePrivateKey(pemBytes)
	if err != nil {
		return err
	}
	ts, err := fhir.NewBackendServices(fhir.BackendServicesConfig{ClientID: *clientID, Key: key, FHIRBase: *base, Scope: "system/Communication.cruds"})
	if err != nil {
		return err
	}
	ctx := context.Background()
	tok, err := ts.Token(ctx)
	if err != nil {
		return err
	}
	tgt, err := parseTarget(*base)
	if err != nil {
		return err
	}
	workers := make([]*conn, *conns)
	for w := range workers {
		workers[w] = &conn{addr: tgt.host, timeout: 10 * time.Second}
		defer workers[w].close()
	}
	next := func(rng *rand.Rand) (string, string, []byte) { return request(*op, rng, *rows, *recipients) }
	if *warmup > 0 {
		// A server just started answers its first requests slowly (its
		// database connections prepare their statements, their backends
		// fill their caches): in one run, most of the requests over 10 ms
		// at 800 searches/s came in its first 0.3 s. The warm-up is that
		// start, not what a server in service does; it is not counted.
		drive(workers, tgt, tok, next, *rate, *warmup)
	}
	cpu0 := sampleCPU(watch)
	start := time.Now()
	lat, ok, failed, firstErr, ran := drive(workers, tgt, tok, next, *rate, *duration)
	var all []time.Duration
	for _, l := range lat {
		for _, r := range l {
			all = append(all, r.latency)
		}
	}
	slices.Sort(all)
	if *timeline != "" {
		if err := writeTimeline(*timeline, start, lat); err != nil {
			return err
		}
	}
	if len(all) == 0 {
		return fmt.Errorf("no request succeeded: %v", firstErr)
	}
	q := func(p float64) time.Duration {
		return all[min(int(p*float64(len(all))), len(all)-1)].Round(10 * time.Microsecond)
	}
	offered := ""
	if *rate > 0 {
		offered = fmt.Sprintf(" at %.0f req/s offered", *rate)
	}
	fmt.Printf("%-7s %d conns %v%s: %d ok, %d errors, %.0f req/s, p50 %v, p99 %v\n", *op, *conns, *duration, offered, ok, failed,
		float64(ok)/ran.Seconds(), q(0.50), q(0.99))
	if firstErr != "" {
		fmt.Printf("        first error: %v\n", firstErr)
	}
	if *dbURL == "" {
		reportCPU(watch, cpu0, sampleCPU(watch), ok)
		return nil
	}
	// What the server still owes once the load stops moves work to later,
	// not away: reads' audit records reach the chain before the answer,
	// but the pipeline's audit stage and the deliver stage (a create's
	// announcement to its recipients) follow the queue. The sustained rate
	// counts the time until both have caught up.
	lagAt := time.Now()
	conn, err := pgx.Connect(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("connecting to watch the queues: %w", err)
	}
	defer conn.Close(ctx)
	stages := []struct {
		topic, group string
		behind       int64
	}{
		{topic: bridge.TopicAuditRecorded, group: bridge.GroupAudit},
		{topic: bridge.TopicCommunicationCreated, group: bridge.GroupDeliver},
	}
	for i := range stages {
		if stages[i].behind, err = backlog(ctx, conn, stages[i].topic, stages[i].group); err != nil {
			return err
		}
	}
	for _, st := range stages {
		for behind := st.behind; behind > 0; {
			if time.Since(lagAt) > 10*time.Minute {
				return fmt.Errorf("the %s stage is still %d messages behind after 10 minutes", st.group, behind)
			}
			time.Sleep(100 * time.Millisecond)
			if behind, err = backlog(ctx, conn, st.topic, st.group); err != nil {
				return err
			}
		}
		fmt.Printf("        %s stage: %d messages behind at the end, caught up %.1f s later\n", st.group, st.behind, time.Since(lagAt).Seconds())
	}
	fmt.Printf("        sustained %.0f req/s\n", float64(ok)/(ran+time.Since(lagAt)).Seconds())
	// Until the stages caught up: the work a request leaves for later
	// is part of its cost.
	reportCPU(watch, cpu0, sampleCPU(watch), ok)
	return nil
}

// drive sends requests from next over the workers' connections for
// duration, each worker one at a time: as fast as they are answered (a
// closed loop), or at rate a second on a fixed schedule (an open loop).
// It returns each worker's requests, how many succeeded and failed, the
// first failure, and how long it ran: an open loop the server cannot
// keep up with runs past duration, sending its schedule's requests late,
// and its rate is what was answered over that time.
func drive(workers []*conn, tgt target, token string, next func(*rand.Rand) (method, path string, body []byte), rate float64, duration time.Duration) (lat [][]timed, succeeded, failed int64, firstErr string, ran time.Duration) {
	var errs, n atomic.Int64
	var first atomic.Value
	lat = make([][]timed, len(workers))
	start := time.Now()
	deadline := start.Add(duration)
	// due hands out the time each request is due at: now, in a closed
	// loop; on the schedule, in an open one.
	due := func() (time.Time, bool) { t := time.Now(); return t, t.Before(deadline) }
	if rate > 0 {
		schedule := make(chan time.Time, len(workers))
		go func() {
			defer close(schedule)
			for i := 0; ; i++ {
				t := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				if !t.Before(deadline) {
					return
				}
				// A request is due when scheduled, or when this goroutine
				// woke to send it if its timer woke it late: the load
				// generator's lag is not the server's. When the workers
				// were all busy, the schedule has fallen behind and the
				// time waited for them counts.
				if wait := time.Until(t); wait > 0 {
					time.Sleep(wait)
					t = time.Now()
				}
				schedule <- t
			}
		}()
		due = func() (time.Time, bool) { t, ok := <-schedule; return t, ok }
	}
	var wg sync.WaitGroup
	for w, c := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			var req []byte
			for {
				t0, ok := due()
				if !ok {
					break
				}
				method, path, body := next(rng)
				req = tgt.request(req[:0], method, path, token, body)
				code, err := c.do(req)
				if err == nil && code >= 300 {
					err = fmt.Errorf("HTTP %d", code)
				}
				d := time.Since(t0)
				if err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				n.Add(1)
				lat[w] = append(lat[w], timed{due: t0.Sub(start), latency: d})
			}
		}()
	}
	wg.Wait()
	firstErr, _ = first.Load().(string)
	return lat, n.Load(), errs.Load(), firstErr, time.Since(start)
}

// timed is a request that succeeded: when it was due, from the start
// of the run, and how long its answer took from then.
type timed struct{ due, latency time.Duration }

// writeTimeline writes every worker's requests to path in the order they
// were due, "due_ms latency_ms" a line each, after a comment line with
// the run's start (RFC 3339, to match them with a server's log).
func writeTimeline(path string, start time.Time, lat [][]timed) error {
	var all []timed
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.SortFunc(all, func(a, b timed) int { return cmp.Compare(a.due, b.due) })
	b := fmt.Appendf(nil, "# start %s\n", start.UTC().Format(time.RFC3339Nano))
	for _, r := range all {
		b = fmt.Appendf(b, "%.3f %.3f\n", float64(r.due)/1e6, float64(r.latency)/1e6)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing the timeline: %w", err)
	}
	return nil
}

// backlog is how many messages on topic consumer group has yet to consume:
// what its next reads would return (watermill-sql's own condition,
// without its visibility bound), rows after the last one it acked in
// transaction order, which is how the queue is read (offsets alone are no
// measure). Before its first ack it has no offsets row.
func backlog(ctx context.Context, conn *pgx.Conn, topic, group string) (int64, error) {
	queue, offsets := pgx.Identifier{"watermill_" + topic}.Sanitize(), pgx.Identifier{"watermill_offsets_" + topic}.Sanitize()
	where := ` FROM ` + offsets + ` WHERE consumer_group = $1`
	var n int64
	err := conn.QueryRow(ctx, `SELECT count(*) FROM `+queue+` WHERE (transaction_id, "offset") >
		(coalesce((SELECT last_processed_transaction_id`+where+`), '0'::xid8), coalesce((SELECT offset_acked`+where+`), 0))`, group).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading the %s queue: %w", topic, err)
	}
	return n, nil
}

// request is the next request of op: its method, its path under the FHIR
// base and, for a create, its body.
func request(op string, rng *rand.Rand, rows, recipients int) (method, path string, body []byte) {
	switch op {
	case "create":
		i := rng.IntN(1 << 30)
		body := fmt.Sprintf(`{"resourceType":"Communication","status":"in-progress","priority":"urgent","subject":{"reference":"Patient/bench-p%05d"},`+
			`"recipient":[{"reference":"%s"}],"sent":"%s","payload":[{"contentString":"Synthetic load message %d"}]}`,
			i%50000, recipient(i%recipients), time.Now().UTC().Format(time.RFC3339), i)
		return http.MethodPost, "/Communication", []byte(body)
	case "search":
		return http.MethodGet, "/Communication?recipient=" + recipient(rng.IntN(recipients)) + "&status=in-progress&_sort=-sent&_count=20", nil
	default:
		return http.MethodGet, "/Communication/" + commID(rng.IntN(rows)), nil
	}
}
