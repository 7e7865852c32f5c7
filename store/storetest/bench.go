package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"
)

// BenchmarkAcceptInbound measures AcceptInbound with batches of 1 and 16
// messages (1.5 KB sealed payload, dedupe on, one event on TopicReceived
// each) from 16 concurrent callers, and batches of 1 from one caller (the
// latency of a commit without queueing behind other callers). It reports
// messages/s, ns/msg and the p50/p99 latency of one AcceptInbound call.
func BenchmarkAcceptInbound(b *testing.B, st store.Store) {
	for _, size := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			benchAccept(b, st, size, 16)
		})
	}
	b.Run("batch=1/callers=1", func(b *testing.B) {
		benchAccept(b, st, 1, 1)
	})
}

var benchRun atomic.Int64

func benchAccept(b *testing.B, st store.Store, size, callers int) {
	run := benchRun.Add(1)
	sealed := make([]byte, 1500)
	for i := range sealed {
		sealed[i] = byte(i)
	}
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Value
	batches := (b.N + size - 1) / size
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				n := next.Add(1) - 1
				if n >= int64(batches) {
					break
				}
				batch := make([]store.Accept, size)
				now := time.Now().UTC()
				for i := range batch {
					k := n*int64(size) + int64(i)
					m := store.InboundMessage{
						ID:                 fmt.Sprintf("bench-%d-%012d", run, k),
						ReceivedAt:         now,
						Peer:               "10.0.0.7:40000",
						Transport:          "mllp",
						SendingApplication: "EPIC", SendingFacility: "GENHOSP",
						ReceivingApplication: "CAREBRIDGE", ReceivingFacility: "CB",
						ControlID:   fmt.Sprintf("B%d-%012d", run, k),
						MessageType: "ADT^A01", Version: "2.5.1",
						State: store.StateAccepted, AckCode: "AA",
						CorrelationID: fmt.Sprintf("c-%d", k),
						Size:          1400, Sealed: sealed,
					}
					ev := message.NewMessage(watermill.NewUUID(), []byte(`{"inbound_id":"`+m.ID+`"}`))
					ev.Metadata.Set("inbound_id", m.ID)
					batch[i] = store.Accept{Message: m, Dedupe: true, DedupeSince: now.Add(-24 * time.Hour),
						Events: []store.Event{{Topic: TopicReceived, Message: ev}}}
				}
				t0 := time.Now()
				if _, err := st.AcceptInbound(context.Background(), batch); err != nil {
					failed.Store(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatalf("AcceptInbound: %v", err)
	}
	msgs := float64(batches * size)
	b.ReportMetric(msgs/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/msgs, "ns/msg")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
