package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir/fhirtest"
	"github.com/carebridge/carebridge/hl7/hl7test"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/sqlite"
	"github.com/carebridge/carebridge/store/storetest"
)

// sseClient collects the ids a clinician's inbox stream announces.
type sseClient struct {
	mu  sync.Mutex
	ids map[string]int
}

func (c *sseClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.ids {
		n += k
	}
	return n
}

func openStream(t *testing.T, ctx context.Context, httpAddr, token string) *sseClient {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/inbox/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	c := &sseClient{ids: map[string]int{}}
	go readStream(resp, c)
	return c
}

// readStream counts the ids of the events on resp until it ends.
func readStream(resp *http.Response, c *sseClient) {
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			c.mu.Lock()
			c.ids[id]++
			c.mu.Unlock()
		}
	}
}

// TestServeEndToEnd is acceptance point 1 of the pipeline issue on the
// embedded store: the ADT, ORM and ORU samples of the Microsoft FHIR
// converter go in over MLLP while every recipient has an inbox stream
// open and the EHR's FHIR server starts out down. Every routed
// Communication reaches each of its recipients' streams, once; while the
// EHR is down, carebridge audit pending shows the backlog; when it is
// back, it receives one valid AuditEvent per audit record, and nothing is
// sent twice or dropped.
func TestServeEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		endToEnd(t, []string{"--data-dir", data}, nil, func(t *testing.T) store.Store {
			st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(data, "carebridge.db"), Topics: queueTopics, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := storetest.PostgresSchema(t)
		endToEnd(t, []string{"--data-dir", filepath.Join(t.TempDir(), "data"), "--database-url", url}, nil, func(t *testing.T) store.Store {
			st, err := postgres.Open(context.Background(), postgres.Config{URL: url, Topics: queueTopics})
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
	t.Run("nats", func(t *testing.T) {
		url := storetest.PostgresSchema(t)
		natsURL, prefix := natsForTest(t)
		endToEnd(t, []string{"--data-dir", filepath.Join(t.TempDir(), "data"), "--database-url", url}, []string{"--nats-url", natsURL, "--nats-prefix", prefix}, func(t *testing.T) store.Store {
			st, err := postgres.Open(context.Background(), postgres.Config{URL: url, Topics: queueTopics})
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
		// The stages took their work from JetStream, relayed from the outbox.
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		for _, topic := range queueTopics {
			stream, err := js.Stream(context.Background(), prefix+"_"+strings.ReplaceAll(topic, ".", "_"))
			if err != nil {
				t.Fatalf("stream of %s: %v", topic, err)
			}
			if info, err := stream.Info(context.Background()); err != nil || info.State.Msgs == 0 {
				t.Fatalf("stream of %s: %+v, %v", topic, info, err)
			}
		}
	})
}

func endToEnd(t *testing.T, storage, serveArgs []string, open func(t *testing.T) store.Store) {
	dir := t.TempDir()
	msgs := filepath.Join(dir, "messages")
	if err := os.Mkdir(msgs, 0o700); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(hl7test.CorpusDir(t), "microsoft-fhir-converter", "data", "SampleData", "Hl7v2")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	copied := 0
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "ADT") || strings.HasPrefix(n, "ORM") || strings.HasPrefix(n, "ORU") {
			b, err := os.ReadFile(filepath.Join(src, n))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(msgs, n), b, 0o600); err != nil {
				t.Fatal(err)
			}
			copied++
		}
	}
	if copied < 50 {
		t.Fatalf("only %d ADT/ORM/ORU samples in %s", copied, src)
	}

	// One development token per clinician the default rules reach.
	summary, _, err := runCLI(t, "", "map", "--summary", msgs)
	if err != nil {
		t.Fatalf("map: %v", err)
	}
	refs := map[string]bool{}
	for _, m := range regexp.MustCompile(`<([A-Za-z]+/[^>]+)>`).FindAllStringSubmatch(summary, -1) {
		refs[m[1]] = true
	}
	if len(refs) < 3 {
		t.Fatalf("the samples reach %d recipients:\n%s", len(refs), summary)
	}
	var lines []string
	tokenOf := map[string]string{}
	for ref := range refs {
		tok := fmt.Sprintf("dev-token-%02d-0123456789", len(tokenOf))
		tokenOf[ref] = tok
		lines = append(lines, tok+" "+ref)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ehr := fhirtest.NewEHR(t)
	ehr.RequireToken("ehr-token-0123456789")
	ehr.SetDown(true)
	ehrToken := filepath.Join(dir, "ehr.token")
	if err := os.WriteFile(ehrToken, []byte("ehr-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mllpAddr, httpAddr, stop := inProcessServer(t, storage[1], slices.Concat(storage[2:], serveArgs, []string{"--node", "e2e-node", "--inbox-dev-tokens", tokens,
		"--ehr-fhir-url", ehr.URL, "--ehr-token-file", ehrToken})...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := map[string]*sseClient{}
	for ref, tok := range tokenOf {
		streams[ref] = openStream(t, ctx, httpAddr, tok)
	}
	out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, msgs)
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}

	// The EHR is down: the backlog shows, and grows while the pipeline
	// works through the messages.
	var pending string
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, _, err = runCLI(t, "", append([]string{"audit", "pending"}, storage...)...)
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(\d+) records waiting`).FindStringSubmatch(pending); m != nil && m[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backlog while the EHR is down:\n%s", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(pending, ehr.URL+": ") || !strings.Contains(pending, "chain e2e-node: 0 of ") {
		t.Fatalf("audit pending while the EHR is down:\n%s", pending)
	}
	ehr.SetDown(false)

	// Wait for the pipeline to settle: every delivery streamed, every
	// audit record held by the EHR.
	var records int
	deadline = time.Now().Add(60 * time.Second)
	for {
		out, _, err := runCLI(t, "", append([]string{"audit", "verify"}, storage...)...)
		if err != nil {
			t.Fatalf("verify: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`verified: (\d+) records`).FindStringSubmatch(out)
		records, _ = strconv.Atoi(m[1])
		pending, _, _ = runCLI(t, "", append([]string{"audit", "pending"}, storage...)...)
		streamed := 0
		for _, c := range streams {
			streamed += c.count()
		}
		// Each streamed delivery is audited (communication.delivered),
		// so a trail held whole by the EHR has them all.
		if records > 0 && len(ehr.Held("AuditEvent")) == records && strings.Contains(pending, ": 0 records waiting") && streamed > 0 {
			time.Sleep(300 * time.Millisecond) // anything still moving?
			out, _, _ := runCLI(t, "", append([]string{"audit", "verify"}, storage...)...)
			if strings.Contains(out, fmt.Sprintf("verified: %d records", records)) && len(ehr.Held("AuditEvent")) == records {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline did not settle in 60 s: %d records, the EHR holds %d\n%s", records, len(ehr.Held("AuditEvent")), pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	cancel()

	st := open(t)
	defer st.Close()
	inbound, err := st.ListInbound(context.Background(), store.InboundFilter{Limit: store.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	comms, deliveries := 0, 0
	for _, m := range inbound {
		cs, err := st.CommunicationsOf(context.Background(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			comms++
			for _, r := range c.Recipients {
				deliveries++
				s := streams[r]
				if s == nil {
					t.Fatalf("Communication %s goes to %s, whom map --summary did not name", c.ID, r)
				}
				s.mu.Lock()
				n := s.ids[c.ID]
				s.mu.Unlock()
				if n != 1 {
					t.Errorf("Communication %s reached %s's stream %d times, want once", c.ID, r, n)
				}
			}
		}
	}
	streamed := 0
	for _, c := range streams {
		streamed += c.count()
	}
	if comms < 3 || streamed != deliveries {
		t.Fatalf("%d Communications with %d deliveries; the streams announced %d", comms, deliveries, streamed)
	}

	// One valid AuditEvent per audit record, under the record's id.
	held := ehr.Held("AuditEvent")
	actions := map[string]int{}
	err = st.WalkAudit(context.Background(), func(r store.AuditRecord) error {
		if held[audit.AuditEventID(audit.Record{Chain: r.Chain, Seq: r.Seq})] == nil {
			return fmt.Errorf("the EHR lacks the AuditEvent of %s/%d (%s)", r.Chain, r.Seq, r.Action)
		}
		actions[r.Action]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rewrites, invalid, _ := ehr.Stats()
	if len(held) != records || invalid != 0 || rewrites != 0 {
		t.Fatalf("the EHR holds %d AuditEvents for %d records (invalid %d, sent twice %d)", len(held), records, invalid, rewrites)
	}
	var kinds []string
	for a, n := range actions {
		kinds = append(kinds, fmt.Sprintf("%s %d", a, n))
	}
	sort.Strings(kinds)
	t.Logf("%d messages stored, %d Communications, %d deliveries streamed; %d AuditEvents: %s",
		len(inbound), comms, streamed, len(held), strings.Join(kinds, ", "))
	for _, want := range []string{"message.accepted", "message.mapped", "communication.created", "communication.delivered"} {
		if actions[want] == 0 {
			t.Errorf("no %s among the exported records", want)
		}
	}
}

// natsForTest returns the NATS server of CAREBRIDGE_TEST_NATS and a prefix
// of the test's own, whose streams are deleted when it ends.
func natsForTest(t *testing.T) (url, prefix string) {
	t.Helper()
	url = os.Getenv("CAREBRIDGE_TEST_NATS")
	if url == "" {
		if os.Getenv("CAREBRIDGE_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatal("CAREBRIDGE_TEST_NATS not set and CAREBRIDGE_TEST_REQUIRE_SERVICES=1")
		}
		t.Skip("CAREBRIDGE_TEST_NATS not set")
	}
	prefix = fmt.Sprintf("cbcmd%d", time.Now().UnixNano())
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		names := js.StreamNames(ctx)
		var mine []string
		for name := range names.Name() {
			if strings.HasPrefix(name, prefix+"_") {
				mine = append(mine, name)
			}
		}
		for _, name := range mine {
			if err := js.DeleteStream(ctx, name); err != nil {
				t.Errorf("cleanup: deleting stream %s: %v", name, err)
			}
		}
	})
	return url, prefix
}

// TestSubscriptionsNotifyTheEHR: a subscription added with the CLI (its
// criteria and header file checked) is notified by a running server of an
// urgent message, id only, with its header; the list shows it sent.
func TestSubscriptionsNotifyTheEHR(t *testing.T) {
	dir := t.TempDir()
	got := make(chan *http.Request, 4)
	bodies := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- string(b)
	}))
	defer hook.Close()
	headers := filepath.Join(dir, "hook.headers")
	if err := os.WriteFile(headers, []byte("Authorization: Bearer ehr-hook-0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	_, _, stop := inProcessServer(t, data, "--rules", filepath.Join(mapTestdata, "rules.yaml"), "--public-url", "https://cb.example/fhir")
	stop() // the key ring and database exist now

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--criteria", "Communication?subject=Patient/1"}, `"subject" is not supported`},
		{[]string{"--criteria", "Patient"}, "only Communication"},
		{[]string{"--endpoint", "http://ehr.example.org/hook"}, "must use https"},
		{[]string{"--header-file", headers}, "chmod 600"},
	} {
		args := append([]string{"subscriptions", "add", "--data-dir", data, "--endpoint", hook.URL}, tc.args...)
		_, stderr, err := runCLI(t, "", args...)
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: %v %s; want %q", tc.args, err, stderr, tc.want)
		}
	}
	os.Chmod(headers, 0o600)
	out, stderr, err := runCLI(t, "", "subscriptions", "add", "--data-dir", data, "--id", "ehr-urgent", "--endpoint", hook.URL,
		"--criteria", "Communication?priority=urgent,stat", "--header-file", headers)
	if err != nil || !strings.Contains(out, "Subscription/ehr-urgent") {
		t.Fatalf("add: %v %s %s", err, out, stderr)
	}

	mllpAddr, _, stop := inProcessServer(t, data, "--rules", filepath.Join(mapTestdata, "rules.yaml"), "--public-url", "https://cb.example/fhir")
	defer stop()
	if out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, filepath.Join(mapTestdata, "hl7", "oru-r01-critical-k-v251.hl7"),
		filepath.Join(mapTestdata, "hl7", "adt-a01-v251.hl7")); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	select {
	case r := <-got:
		body := <-bodies
		if r.Header.Get("Authorization") != "Bearer ehr-hook-0123456789" || !strings.Contains(body, `"https://cb.example/fhir/Communication/`) ||
			strings.Contains(body, "SAMPLE") {
			t.Fatalf("notification: %v\n%s", r.Header, body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no notification in 20 s")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, _ = runCLI(t, "", "subscriptions", "list", "--data-dir", data)
		if strings.Contains(out, "Subscription/ehr-urgent active Communication?priority=urgent,stat -> "+hook.URL+" (by the operator): 1 sent, 0 pending, 0 dead") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-got:
		t.Fatal("the routine admission was notified too")
	case <-time.After(2500 * time.Millisecond):
	}
}

// TestServeExportsWithSMARTBackendServices: carebridge registered at the
// EHR with the JWKS "keys --ehr-key" prints exports its audit trail with
// tokens it asks for itself (a signed private_key_jwt assertion), reusing
// one token while it lasts.
func TestServeExportsWithSMARTBackendServices(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ehr-client.pem")
	jwks, stderr, err := runCLI(t, "", "keys", "--ehr-key", keyFile)
	if err != nil || !strings.Contains(stderr, "made a new EC P-384 key") {
		t.Fatalf("keys --ehr-key = %v\n%s", err, stderr)
	}
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", info, err)
	}
	if strings.Contains(jwks, `"d"`) || !strings.Contains(jwks, `"ES384"`) {
		t.Fatalf("JWKS:\n%s", jwks)
	}
	if again, _, err := runCLI(t, "", "keys", "--ehr-key", keyFile); err != nil || again != jwks {
		t.Fatalf("a second keys --ehr-key changed the key or failed: %v\n%s", err, again)
	}

	ehr := fhirtest.NewEHR(t)
	if err := ehr.RequireSMART("carebridge-e2e", []byte(jwks), time.Hour); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCLI(t, "", "serve", "--data-dir", dir, "--ehr-fhir-url", ehr.URL, "--ehr-client-id", "carebridge-e2e")
	if !errors.Is(err, errUsage) {
		t.Errorf("serve with a client id and no key: %v, want a usage error", err)
	}
	mllpAddr, _, stop := inProcessServer(t, dir, "--rules", filepath.Join(mapTestdata, "rules.yaml"), "--node", "smart-node",
		"--ehr-fhir-url", ehr.URL, "--ehr-client-id", "carebridge-e2e", "--ehr-private-key", keyFile)
	for _, f := range []string{"oru-r01-critical-k-v251.hl7", "adt-a01-v251.hl7"} {
		if out, _, err := runCLI(t, "", "send", "--addr", mllpAddr, filepath.Join(mapTestdata, "hl7", f)); err != nil || !strings.Contains(out, "1 accepted") {
			t.Fatalf("send %s = %v\n%s", f, err, out)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, _, _ := runCLI(t, "", "audit", "pending", "--data-dir", dir, "--ehr-fhir-url", ehr.URL)
		verify, _, _ := runCLI(t, "", "audit", "verify", "--data-dir", dir)
		m := regexp.MustCompile(`verified: (\d+) records`).FindStringSubmatch(verify)
		if m != nil && strings.Contains(pending, ": 0 records waiting") && strconv.Itoa(len(ehr.Held("AuditEvent"))) == m[1] && m[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			issued, refused := ehr.TokenStats()
			t.Fatalf("the trail was not exported in 30 s: EHR holds %d, %d tokens issued, %d refused\n%s\n%s",
				len(ehr.Held("AuditEvent")), issued, refused, verify, pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	if issued, refused := ehr.TokenStats(); issued != 1 || refused != 0 {
		t.Errorf("%d tokens issued and %d refused, want one token reused for every batch", issued, refused)
	}
}
