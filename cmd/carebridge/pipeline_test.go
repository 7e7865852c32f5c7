package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store/sqlite"
)

// TestServeMapsAndAudits: a critical result sent to a running server over
// MLLP is acknowledged, mapped to an urgent Communication for the orderer,
// the attending and the on-call, and its steps (accepted, mapped,
// Communication created) land in an audit trail that
// verifies; nothing is set aside.
func TestServeMapsAndAudits(t *testing.T) {
	dir := t.TempDir()
	mllpAddr, _, stop := inProcessServer(t, dir, "--rules", filepath.Join(mapTestdata, "rules.yaml"), "--node", "test-node")
	out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, filepath.Join(mapTestdata, "hl7", "oru-r01-critical-k-v251.hl7"))
	if err != nil || !strings.Contains(out, "1 accepted") {
		t.Fatalf("send = %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, err = runCLI(t, "", "audit", "verify", "--data-dir", dir)
		if err == nil && strings.Contains(out, "verified: 3 records in 1 chains") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline did not audit the message in 20 s: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()

	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db"), Topics: queueTopics, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, _, err := runCLI(t, "", "inbound", "list", "--data-dir", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.SplitN(strings.SplitN(list, `"id":"`, 2)[1], `"`, 2)[0]
	comms, err := st.CommunicationsOf(context.Background(), id)
	if err != nil || len(comms) != 1 || comms[0].Priority != "urgent" || len(comms[0].Recipients) != 3 {
		t.Fatalf("Communications of %s = %+v, %v", id, comms, err)
	}
	out, _, err = runCLI(t, "", "replay", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "no messages set aside") {
		t.Errorf("replay list = %v\n%s", err, out)
	}
}
