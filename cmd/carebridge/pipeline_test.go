package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	var mu sync.Mutex
	var pushes []string
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		pushes = append(pushes, string(b))
		mu.Unlock()
	}))
	defer gateway.Close()
	secret := filepath.Join(dir, "push.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mllpAddr, _, stop := inProcessServer(t, dir, "--rules", filepath.Join(mapTestdata, "rules.yaml"), "--node", "test-node",
		"--push-url", gateway.URL, "--push-secret-file", secret)
	out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, filepath.Join(mapTestdata, "hl7", "oru-r01-critical-k-v251.hl7"))
	if err != nil || !strings.Contains(out, "1 accepted") {
		t.Fatalf("send = %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, err = runCLI(t, "", "audit", "verify", "--data-dir", dir)
		mu.Lock()
		pushed := len(pushes)
		mu.Unlock()
		if err == nil && strings.Contains(out, "verified: 3 records in 1 chains") && pushed >= 3 {
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
	mu.Lock()
	if len(pushes) != 3 {
		t.Errorf("%d pushes, want one per recipient (3)", len(pushes))
	}
	for _, b := range pushes {
		if strings.Contains(b, "SAMPLE") || !strings.Contains(b, comms[0].ID) {
			t.Errorf("push body %s", b)
		}
	}
	mu.Unlock()
	if ds, err := st.DeliveriesOf(context.Background(), comms[0].ID); err != nil || len(ds) != 3 {
		t.Errorf("deliveries = %+v, %v", ds, err)
	}
	out, _, err = runCLI(t, "", "replay", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "no messages set aside") {
		t.Errorf("replay list = %v\n%s", err, out)
	}
}

// TestServeInbox: with development tokens, the orderer's session streams
// the critical result the moment it is stored.
func TestServeInbox(t *testing.T) {
	dir := t.TempDir()
	msg := filepath.Join(mapTestdata, "hl7", "oru-r01-critical-k-v251.hl7")
	summary, _, err := runCLI(t, "", "map", "--summary", "--rules", filepath.Join(mapTestdata, "rules.yaml"), msg)
	if err != nil {
		t.Fatal(err)
	}
	orderer := regexp.MustCompile(`ordering [^<]*<(Practitioner/[^>]+)>`).FindStringSubmatch(summary)
	if orderer == nil {
		t.Fatalf("no orderer in %s", summary)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# trial\ndev-token-0123456789 "+orderer[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mllpAddr, httpAddr, _ := inProcessServer(t, dir, "--rules", filepath.Join(mapTestdata, "rules.yaml"), "--inbox-dev-tokens", tokens)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/inbox/stream", nil)
	req.Header.Set("Authorization", "Bearer dev-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, msg); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if !strings.Contains(data, "CRITICAL result for SAMPLE, JORDAN") || !strings.Contains(data, `"priority":"urgent"`) {
				t.Errorf("event = %s", data)
			}
			return
		}
	}
	t.Fatalf("the stream ended without the message: %v", sc.Err())
}
