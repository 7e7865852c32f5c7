package bridge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carebridge/carebridge/inbound"
)

// BenchmarkMapStage: one map-stage step on SQLite per operation: load and
// open the stored message, parse, map, route, validate every resource as
// R4, seal, and commit resources, Communication, marker and events. The
// message is the v2.5.1 ADT^A01 of mapping/testdata (one Communication),
// each with its own control id, patient and visit; the providers, unit and
// bed repeat, as in a real feed.
func BenchmarkMapStage(b *testing.B) {
	p := newPipelineB(b)
	raw, err := os.ReadFile(filepath.Join("..", "mapping", "testdata", "hl7", "adt-a01-v251.hl7"))
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	for i := range ids {
		msg := strings.Replace(string(raw), "ADT251-0001", fmt.Sprintf("BENCH-%d", i), 1)
		msg = strings.ReplaceAll(msg, "200345^", fmt.Sprintf("%d^", 300000+i))            // MRN
		msg = strings.ReplaceAll(msg, "SAMPLE^JORDAN", fmt.Sprintf("SAMPLE%d^JORDAN", i)) // name
		msg = strings.ReplaceAll(msg, "V6001^", fmt.Sprintf("V%d^", 600000+i))            // visit
		res, err := p.in.Accept(context.Background(), inbound.Peer{Addr: "127.0.0.1:1", Transport: "mllp"}, []byte(msg))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = res.ID
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, id := range ids {
		if err := p.stage.Handle(received(id)); err != nil {
			b.Fatal(err)
		}
	}
}
