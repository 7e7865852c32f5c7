// Command latency measures carebridge end to end: synthetic ADT^A01
// admissions sent over MLLP at a fixed rate, each routed (by
// bench/latency/rules.yaml) to five clinicians whose inbox streams are
// open, and the time from a message's scheduled send to each clinician's
// stream announcing its Communication. With --rate 0 it sends as fast as
// the connections allow and reports the sustained end-to-end throughput.
//
//	go run ./bench/latency --print-message | carebridge map --summary --rules bench/latency/rules.yaml -
//	go run ./bench/latency --addr 127.0.0.1:2575 --http 127.0.0.1:8080 --tokens tokens --rate 1000 --messages 20000
//
// Latency runs from when a message was due, not when it was sent, so a
// sender that falls behind shows as latency (no coordinated omission).
// Only loopback or the project's own test hosts are valid targets.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7/mllp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:2575", "MLLP address of a running carebridge serve")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP address of the same server (inbox streams)")
	tokens := fs.String("tokens", "", "the --inbox-dev-tokens file the server was started with: one stream per line")
	rate := fs.Int("rate", 1000, "messages per second; 0 sends as fast as the connections allow")
	total := fs.Int("messages", 10000, "messages to send")
	conns := fs.Int("connections", 16, "MLLP connections")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the last announcements")
	print := fs.Bool("print-message", false, "print one message (to find its recipients with carebridge map) and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *print {
		os.Stdout.Write(admission("PRINT", 0))
		return nil
	}
	streams, err := readTokens(*tokens)
	if err != nil {
		return err
	}
	runID := time.Now().UTC().Format("150405.000")
	due := make([]time.Time, *total)
	ids := make(map[string]int, *total) // Communication id → message
	for i := range *total {
		ids[fhir.ID("Communication", "BENCHHOSP^"+controlID(runID, i)+"^bench")] = i
	}

	// One stream per clinician, open before the first message.
	arrivals := make([][]time.Time, len(streams))
	var got atomic.Int64
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ready sync.WaitGroup
	for s, tok := range streams {
		arrivals[s] = make([]time.Time, *total)
		ready.Add(1)
		go func() {
			err := follow(sctx, *httpAddr, tok, &ready, func(id string, at time.Time) {
				if i, ok := ids[id]; ok && arrivals[s][i].IsZero() {
					arrivals[s][i] = at
					got.Add(1)
				}
			})
			if err != nil && sctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "latency: stream:", err)
			}
		}()
	}
	ready.Wait()

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *conns)
	for range *conns {
		wg.Go(func() {
			cl, err := mllp.NewClient(mllp.ClientConfig{Addr: *addr, MaxRetries: 3})
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			for {
				i := int(next.Add(1) - 1)
				if i >= *total || ctx.Err() != nil {
					return
				}
				at := time.Now()
				if *rate > 0 {
					at = start.Add(time.Duration(i) * time.Second / time.Duration(*rate))
					time.Sleep(time.Until(at))
				}
				due[i] = at
				ack, _, err := cl.Send(ctx, admission(runID, i))
				if err != nil {
					errs <- err
					return
				}
				if !ack.Accepted() {
					errs <- fmt.Errorf("message %d: ACK %s", i, ack.Code)
					return
				}
			}
		})
	}
	wg.Wait()
	sent := time.Since(start)
	close(errs)
	for err := range errs {
		return err
	}
	want := int64(*total * len(streams))
	deadline := time.Now().Add(*wait)
	for got.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()

	var lat, lastOf []time.Duration
	var lastArrival time.Time
	missing := 0
	for i := range *total {
		var last time.Duration
		complete := true
		for s := range streams {
			a := arrivals[s][i]
			if a.IsZero() {
				missing++
				complete = false
				continue
			}
			d := a.Sub(due[i])
			lat = append(lat, d)
			last = max(last, d)
			if a.After(lastArrival) {
				lastArrival = a
			}
		}
		if complete {
			lastOf = append(lastOf, last)
		}
	}
	if len(lat) == 0 {
		return errors.New("no stream announced any message")
	}
	slices.Sort(lat)
	slices.Sort(lastOf)
	pct := func(d []time.Duration, p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(p*float64(len(d))))].Round(10 * time.Microsecond)
	}
	fmt.Printf("messages=%d recipients=%d rate=%d/s sent in %s (%.0f msg/s); end to end %.0f msg/s\n",
		*total, len(streams), *rate, sent.Round(time.Millisecond), float64(*total)/sent.Seconds(),
		float64(len(lastOf))/lastArrival.Sub(start).Seconds())
	fmt.Printf("  HL7 in -> stream: p50=%s p90=%s p99=%s max=%s; all five notified: p50=%s p99=%s; missing %d of %d\n",
		pct(lat, .5), pct(lat, .9), pct(lat, .99), lat[len(lat)-1].Round(10*time.Microsecond),
		pct(lastOf, .5), pct(lastOf, .99), missing, want)
	return nil
}

// follow reads one clinician's inbox stream, calling fn for each event.
func follow(ctx context.Context, httpAddr, token string, ready *sync.WaitGroup, fn func(id string, at time.Time)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/inbox/stream", nil)
	if err != nil {
		ready.Done()
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	ready.Done()
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			fn(id, time.Now())
		}
	}
	return sc.Err()
}

func readTokens(path string) ([]string, error) {
	if path == "" {
		return nil, errors.New("--tokens is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			out = append(out, f[0])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	return out, nil
}

func controlID(runID string, i int) string { return fmt.Sprintf("L%s-%07d", runID, i) }

// admission is a synthetic ADT^A01 naming five clinicians: attending,
// referring, consulting, admitting and primary care. Every name is made up.
func admission(runID string, i int) []byte {
	return fmt.Appendf(nil, "MSH|^~\\&|BENCHADT|BENCHHOSP|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01|%s|P|2.5.1|||AL|NE\r"+
		"EVN|A01|20261124093000\r"+
		"PID|1||MRN%07d^^^BENCHHOSP^MR||BENCHPATIENT^TESTY^Q^^^^L||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA^H||555-0100\r"+
		"PD1|||BENCH CLINIC^^12345|1111^PRIMARY^PAT^^^DR\r"+
		"PV1|1|I|4W^401^1^BENCHHOSP||||2222^ATTENDING^ALICE^^^DR|3333^REFERRING^ROB^^^DR|4444^CONSULT^CARL^^^DR|MED||||ADM|A0||5555^ADMITTING^ADA^^^DR|IN|V%07d|||||||||||||||||||||||||20261124090000\r"+
		"OBX|1|NM|8867-4^Heart rate^LN||72|/min^beats per minute^UCUM|60-100|N|||F\r",
		controlID(runID, i), i, i)
}
