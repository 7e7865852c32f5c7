package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/hl7/mllp"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/sqlite"
	"github.com/carebridge/carebridge/store/storetest"
)

// binary is built once per test run, by the first test that needs it.
var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// TestMain removes the built binary's folder after the tests: 80 MB a
// run, left in the system's temporary folder before.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaryPath != "" {
		os.RemoveAll(filepath.Dir(binaryPath))
	}
	os.Exit(code)
}

func buildBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "carebridge-e2e-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "carebridge")
		out, err := exec.Command("go", "build", "-o", binaryPath, ".").CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// freePort returns a loopback address that was free a moment ago, so that
// a restarted server can listen on the same port as before.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is a carebridge serve process.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

var readyRE = regexp.MustCompile(`(?m)^carebridge ready$`)

func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(buildBinary(t), append([]string{"serve", "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), "CAREBRIDGE_DATABASE_URL=", "CAREBRIDGE_DATA_DIR=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: s.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		closed := false
		for sc.Scan() {
			if !closed && readyRE.MatchString(sc.Text()) {
				close(ready)
				closed = true
			}
		}
		if !closed {
			close(ready)
		}
	}()
	go func() { s.done <- cmd.Wait() }()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("server did not start in 60s; stderr:\n%s", s.stderr)
	}
	select {
	case err := <-s.done:
		t.Fatalf("server exited at start: %v; stderr:\n%s", err, s.stderr)
	default:
	}
	return s
}

func (s *server) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("server exited with %v after SIGTERM; stderr:\n%s", err, s.stderr)
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		s.t.Errorf("server did not stop within 30s of SIGTERM")
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// secretName is a synthetic patient name that must never appear in clear
// in any database file or table.
const secretName = "ZZCRASHTESTNAME"

func e2eMessage(worker, i int) []byte {
	return []byte(fmt.Sprintf("MSH|^~\\&|E2ESENDER|E2EFAC|CAREBRIDGE|CB|20261124093000||ADT^A01^ADT_A01|E2E-%d-%04d|P|2.5.1\r"+
		"EVN|A01|20261124093000\r"+
		"PID|1||MRN%d%04d^^^E2EFAC^MR||%s^PATIENT%d^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701||555-0100\r"+
		"PV1|1|I|4W^401^1^E2EFAC||||1234^ATTENDING^ALICE^^^DR|||MED||||ADM|A0|||||V%d%04d\r"+
		"OBX|1|NM|8867-4^Heart rate^LN||72|/min^beats per minute^UCUM|60-100|N|||F\r",
		worker, i, worker, i, secretName, i, worker, i))
}

type ingestRun struct {
	mu     sync.Mutex
	acked  map[string][]byte // control id -> bytes sent, for every AA received
	ackCnt atomic.Int64
}

// TestCrashLosesNothing is the durability proof: 2,000 messages over 8
// connections, the server SIGKILLed mid-stream and restarted, the senders
// retrying what was not acknowledged. Every acknowledged message must be
// stored exactly once and decrypt to the bytes sent.
func TestCrashLosesNothing(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dataDir := t.TempDir()
		crashRun(t, []string{"--data-dir", dataDir}, func(t *testing.T) (store.Store, *secure.KeyRing) {
			st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dataDir, "carebridge.db"), Topics: queueTopics, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			return st, loadKeys(t, dataDir)
		}, func(t *testing.T) {
			assertNotInFiles(t, dataDir, secretName)
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dataDir := t.TempDir()
		url := storetest.PostgresSchema(t)
		crashRun(t, []string{"--data-dir", dataDir, "--database-url", url}, func(t *testing.T) (store.Store, *secure.KeyRing) {
			st, err := postgres.Open(context.Background(), postgres.Config{URL: url, Topics: queueTopics})
			if err != nil {
				t.Fatal(err)
			}
			return st, loadKeys(t, dataDir)
		}, func(t *testing.T) {
			assertNotInPostgres(t, url, secretName)
		})
	})
}

func loadKeys(t *testing.T, dataDir string) *secure.KeyRing {
	t.Helper()
	kr, err := secure.LoadKeyRing(filepath.Join(dataDir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func crashRun(t *testing.T, args []string, open func(*testing.T) (store.Store, *secure.KeyRing), assertNoPHI func(*testing.T)) {
	const workers, perWorker = 8, 250
	mllpAddr, httpAddr := freePort(t), freePort(t)
	args = append(args, "--mllp-addr", mllpAddr, "--http-addr", httpAddr)
	srv := startServer(t, args...)

	run := &ingestRun{acked: map[string][]byte{}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			c, err := mllp.NewClient(mllp.ClientConfig{
				Addr: mllpAddr, ConnectTimeout: time.Second, AckTimeout: 5 * time.Second,
				MaxRetries: 200, BackoffBase: 20 * time.Millisecond, BackoffMax: 250 * time.Millisecond,
			})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := range perWorker {
				msg := e2eMessage(w, i)
				ack, _, err := c.Send(ctx, msg)
				if err != nil {
					errs <- fmt.Errorf("worker %d message %d: %w", w, i, err)
					return
				}
				if !ack.Accepted() {
					errs <- fmt.Errorf("worker %d message %d: ACK %s %s", w, i, ack.Code, ack.Text)
					return
				}
				run.mu.Lock()
				run.acked[ack.ControlID] = msg
				run.mu.Unlock()
				run.ackCnt.Add(1)
			}
		})
	}

	// Kill the server once a good part of the run is acknowledged, while
	// the senders are mid-stream, then restart it on the same ports.
	deadline := time.Now().Add(time.Minute)
	for run.ackCnt.Load() < workers*perWorker/3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ackedAtKill := run.ackCnt.Load()
	srv.kill()
	t.Logf("SIGKILL after %d of %d messages were acknowledged", ackedAtKill, workers*perWorker)
	if ackedAtKill >= workers*perWorker {
		t.Fatal("the run finished before the kill; nothing was proven")
	}
	time.Sleep(200 * time.Millisecond)
	srv = startServer(t, args...)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	srv.stop()
	if t.Failed() {
		return
	}

	st, keys := open(t)
	defer st.Close()
	rows := listAll(t, st)
	byControl := map[string][]store.InboundMessage{}
	for _, r := range rows {
		byControl[r.ControlID] = append(byControl[r.ControlID], r)
	}
	if len(run.acked) != workers*perWorker {
		t.Fatalf("%d distinct messages acknowledged, want %d", len(run.acked), workers*perWorker)
	}
	for ctl, sent := range run.acked {
		got := byControl[ctl]
		if len(got) != 1 {
			t.Errorf("control id %s stored %d times, want exactly once", ctl, len(got))
			continue
		}
		full, err := st.GetInbound(context.Background(), got[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := keys.Open(full.Sealed, []byte(full.ID))
		if err != nil {
			t.Errorf("control id %s does not decrypt: %v", ctl, err)
			continue
		}
		if !bytes.Equal(plain, sent) {
			t.Errorf("control id %s decrypts to other bytes than were sent", ctl)
		}
		if full.State != store.StateAccepted {
			t.Errorf("control id %s state %s, want accepted", ctl, full.State)
		}
	}
	if len(rows) != workers*perWorker {
		t.Errorf("%d rows stored, want %d", len(rows), workers*perWorker)
	}
	assertNoPHI(t)
}

func listAll(t *testing.T, st store.Store) []store.InboundMessage {
	t.Helper()
	var all []store.InboundMessage
	after := ""
	for {
		page, err := st.ListInbound(context.Background(), store.InboundFilter{Limit: 10000, AfterID: after})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 10000 {
			return all
		}
		after = page[len(page)-1].ID
	}
}

// assertNotInFiles greps every file in dir (the SQLite database, its WAL,
// the key ring) for needle.
func assertNotInFiles(t *testing.T, dir, needle string) {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if bytes.Contains(data, []byte(needle)) || bytes.Contains(bytes.ToLower(data), bytes.ToLower([]byte(needle))) {
			t.Errorf("%s contains the patient name in clear", path)
		}
		return nil
	})
	if n == 0 {
		t.Fatalf("no files in %s to check", dir)
	}
}

// assertNotInPostgres dumps every table of the test's schema as text and
// looks for needle.
func assertNotInPostgres(t *testing.T, url, needle string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) == 0 {
		t.Fatal("no tables in the test schema")
	}
	for _, table := range tables {
		var hits int
		q := fmt.Sprintf(`SELECT count(*) FROM %s t WHERE position(lower($1) in lower(t::text)) > 0 OR position(convert_to($1, 'UTF8') in convert_to(t::text, 'UTF8')) > 0`, pgx.Identifier{table}.Sanitize())
		if err := conn.QueryRow(context.Background(), q, needle).Scan(&hits); err != nil {
			t.Fatalf("scanning table %s: %v", table, err)
		}
		if hits > 0 {
			t.Errorf("table %s has %d rows containing the patient name in clear", table, hits)
		}
	}
	// bytea columns render as hex in t::text; look inside them directly too.
	var hits int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM inbound WHERE position(convert_to($1, 'UTF8') in sealed) > 0`, needle).Scan(&hits); err != nil {
		t.Fatal(err)
	}
	if hits > 0 {
		t.Errorf("inbound.sealed holds the patient name in clear in %d rows", hits)
	}
}
