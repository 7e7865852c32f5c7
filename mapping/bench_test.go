package mapping_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/mapping"
)

// benchPipeline is the per-message work of the map stage without storage:
// parse, map, route, and serialise every resource to JSON.
func benchPipeline(b *testing.B, file string) {
	raw, err := os.ReadFile(filepath.Join("testdata", "hl7", file))
	if err != nil {
		b.Fatal(err)
	}
	mp := mapping.New(mapping.Config{})
	rules := testRules(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	var resources, notes int
	for b.Loop() {
		msg, err := hl7.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		res := mp.Map(msg)
		notes += len(rules.Route(res, testNow))
		for _, r := range res.Resources {
			if _, err := r.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
		resources += len(res.Resources)
	}
	if resources == 0 {
		b.Fatal("nothing mapped")
	}
	b.ReportMetric(float64(resources)/float64(b.N), "resources/msg")
	b.ReportMetric(float64(notes)/float64(b.N), "communications/msg")
}

// BenchmarkADTA01: an admission with attending, consultant, admitting
// provider and PD1 primary care; one Communication.
func BenchmarkADTA01(b *testing.B) { benchPipeline(b, "adt-a01-v251.hl7") }

// BenchmarkORUR01TenOBX: a ten-result panel; no rule matches it.
func BenchmarkORUR01TenOBX(b *testing.B) { benchPipeline(b, "oru-r01-10obx-v251.hl7") }

// BenchmarkORUR01Critical: a critical potassium, routed to three
// recipients through the on-call schedule.
func BenchmarkORUR01Critical(b *testing.B) { benchPipeline(b, "oru-r01-critical-k-v251.hl7") }

// BenchmarkStages splits the ten-result ORU into its stages, to show where
// the time goes.
func BenchmarkStages(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "hl7", "oru-r01-10obx-v251.hl7"))
	if err != nil {
		b.Fatal(err)
	}
	mp := mapping.New(mapping.Config{})
	rules := testRules(b)
	msg, err := hl7.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hl7.Parse(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mp.Map(msg)
		}
	})
	b.Run("route", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			res := mp.Map(msg)
			b.StartTimer()
			rules.Route(res, testNow)
		}
	})
	res := mp.Map(msg)
	b.Run("serialise", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, r := range res.Resources {
				if _, err := r.MarshalJSON(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
