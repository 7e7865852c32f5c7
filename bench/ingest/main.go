// Command ingest measures durable MLLP ingest: it sends synthetic ADT^A01
// messages over N connections, each connection in order (send, wait for the
// ACK, send the next), and reports throughput and ACK latency percentiles.
//
//	go run ./bench/ingest --addr 127.0.0.1:2575 --connections 16 --messages 40000
//
// Messages carry a run-unique control id, so repeated runs are not
// deduplicated against each other. Only loopback or the project's own test
// hosts are valid targets.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"time"

	"github.com/carebridge/carebridge/hl7/mllp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:2575", "MLLP address of a running carebridge serve")
	conns := fs.Int("connections", 1, "concurrent connections, each sending in order")
	total := fs.Int("messages", 10000, "messages to send in all")
	warmup := fs.Int("warmup", 500, "messages sent first and not measured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conns < 1 || *total < *conns {
		return fmt.Errorf("need --connections >= 1 and --messages >= --connections")
	}
	runID := time.Now().UTC().Format("150405.000")
	if *warmup > 0 {
		if _, _, err := blast(ctx, *addr, min(*conns, *warmup), *warmup, "W"+runID); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lat, elapsed, err := blast(ctx, *addr, *conns, *total, "R"+runID)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("connections=%d messages=%d elapsed=%s throughput=%.0f msg/s ack p50=%s p90=%s p99=%s max=%s\n",
		*conns, len(lat), elapsed.Round(time.Millisecond), float64(len(lat))/elapsed.Seconds(),
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	return nil
}

// blast sends total messages over conns connections and returns each
// message's ACK latency.
func blast(ctx context.Context, addr string, conns, total int, prefix string) ([]time.Duration, time.Duration, error) {
	per := total / conns
	lat := make([][]time.Duration, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range conns {
		wg.Go(func() {
			cl, err := mllp.NewClient(mllp.ClientConfig{Addr: addr, MaxRetries: 3})
			if err != nil {
				errs[c] = err
				return
			}
			defer cl.Close()
			lat[c] = make([]time.Duration, 0, per)
			for i := range per {
				msg := adt(prefix, c, i)
				t0 := time.Now()
				ack, _, err := cl.Send(ctx, msg)
				if err != nil {
					errs[c] = err
					return
				}
				if !ack.Accepted() {
					errs[c] = fmt.Errorf("message %d: ACK %s %s", i, ack.Code, ack.Text)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for c := range conns {
		if errs[c] != nil {
			return nil, 0, fmt.Errorf("connection %d: %w", c, errs[c])
		}
		all = append(all, lat[c]...)
	}
	return all, elapsed, nil
}

// adt is a synthetic ~1.3 KB ADT^A01; every name in it is made up.
func adt(prefix string, conn, i int) []byte {
	return fmt.Appendf(nil, "MSH|^~\\&|BENCHADT|BENCHHOSP|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01|%s-%02d-%07d|P|2.5.1|||AL|NE\r"+
		"EVN|A01|20261124093000|||OPER01^OPERATOR^OLIVE\r"+
		"PID|1||MRN%02d%07d^^^BENCHHOSP^MR~SSN000000000^^^SSA^SS||BENCHPATIENT^TESTY^Q^^^^L||19800101|F||2106-3^White^HL70005|1 MAIN ST^^SPRINGFIELD^IL^62701^USA^H||555-0100^PRN^PH|||M|NON|ACCT%07d\r"+
		"PD1|||BENCH CLINIC^^12345|1234^PRIMARY^PAT^^^DR\r"+
		"NK1|1|BENCHKIN^KIM|SPO|1 MAIN ST^^SPRINGFIELD^IL^62701|555-0101\r"+
		"PV1|1|I|4W^401^1^BENCHHOSP||||1234^ATTENDING^ALICE^^^DR|5678^REFERRING^ROB^^^DR|9012^CONSULT^CARL^^^DR|MED||||ADM|A0||3456^ADMITTING^ADA^^^DR|IN||||||||||||||||||||||||20261124090000\r"+
		"PV2|||CHEST PAIN\r"+
		"OBX|1|NM|8867-4^Heart rate^LN||72|/min^beats per minute^UCUM|60-100|N|||F\r"+
		"OBX|2|NM|8480-6^Systolic blood pressure^LN||120|mm[Hg]^mmHg^UCUM|90-140|N|||F\r"+
		"AL1|1|DA|70618^Penicillin^RXNORM|SV|HIVES\r"+
		"DG1|1||R07.9^Chest pain, unspecified^I10||20261124|A\r"+
		"IN1|1|PLAN01^BENCH PLAN|INS01|BENCH INSURANCE CO|1 INSURANCE WAY^^SPRINGFIELD^IL^62701||555-0199|GRP001|||||||BENCHPATIENT^TESTY|SEL|19800101\r",
		prefix, conn, i, conn, i, i)
}
