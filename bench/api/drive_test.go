package main

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An open loop offered more than the server answers sends every request
// of its schedule, late, and times each from when it was due: the run
// lasts longer than asked, and its rate is what was answered over the
// time it took, not the rate offered.
func TestOpenLoopBehindScheduleCountsTheWholeRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	tgt, err := parseTarget(srv.URL + "/fhir")
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{addr: tgt.host, timeout: 5 * time.Second}
	defer c.close()
	next := func(*rand.Rand) (string, string, []byte) { return http.MethodGet, "/Communication/x", nil }
	// 200 a second for 100 ms: 20 requests, of 20 ms each on one connection
	lat, ok, failed, firstErr, ran := drive([]*conn{c}, tgt, "t", next, 200, 100*time.Millisecond)
	if ok != 20 || failed != 0 {
		t.Fatalf("%d ok, %d failed (%s); want the schedule's 20", ok, failed, firstErr)
	}
	if ran < 400*time.Millisecond {
		t.Errorf("ran %v; 20 requests of 20 ms one at a time take 400 ms at least", ran)
	}
	last := lat[0][len(lat[0])-1]
	if last.due >= 100*time.Millisecond || last.latency < 300*time.Millisecond {
		t.Errorf("last request due at %v took %v: want it due within the 100 ms and timed from then (over 300 ms)", last.due, last.latency)
	}

	path := filepath.Join(t.TempDir(), "timeline")
	start := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	if err := writeTimeline(path, start, [][]timed{{{due: 2 * time.Millisecond, latency: 1500 * time.Microsecond}}, {{due: time.Millisecond, latency: 30 * time.Millisecond}}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# start 2026-12-02T06:00:00Z\n1.000 30.000\n2.000 1.500\n"; string(b) != want {
		t.Errorf("timeline:\n%s\nwant, in the order due:\n%s", b, want)
	}
}
