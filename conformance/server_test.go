package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The carebridge binary is built once per test run, by the first backend
// that needs it, and removed by TestMain.
var (
	binaryOnce sync.Once
	binaryDir  string
	binaryPath string
	binaryErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
	os.Exit(code)
}

func carebridgeBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "carebridge-conformance-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryDir = dir
		binaryPath = filepath.Join(dir, "carebridge")
		out, err := exec.Command("go", "build", "-o", binaryPath, "github.com/carebridge/carebridge/cmd/carebridge").CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build ./cmd/carebridge: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// childEnv is this process's environment without carebridge's own
// variables, so that only the flags the suite gives configure the server.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAREBRIDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// runCLI runs one carebridge command to its end.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(carebridgeBinary(t), args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("carebridge %s: %v\n%s", args[0], err, stderr.String())
	}
	return stdout.String()
}

// storage is where a server keeps its data: a data directory, and a
// PostgreSQL URL or "" for the embedded SQLite database.
type storage struct {
	dataDir     string
	databaseURL string
}

func (s storage) flags() []string {
	f := []string{"--data-dir", s.dataDir}
	if s.databaseURL != "" {
		f = append(f, "--database-url", s.databaseURL)
	}
	return f
}

// server is one "carebridge serve" process on loopback ports.
type server struct {
	cmd      *exec.Cmd
	stderr   *syncBuffer
	done     chan error
	httpAddr string
	mllpAddr string
	stopOnce sync.Once
}

var (
	httpLineRE = regexp.MustCompile(`^\s*HTTP:\s+http://(\S+)`)
	mllpLineRE = regexp.MustCompile(`^\s*MLLP:\s+\S+ (\S+)`)
)

// startServer starts carebridge serve and waits until it says it is
// ready and where it listens; t.Cleanup stops it.
func startServer(t *testing.T, st storage, args ...string) *server {
	t.Helper()
	// The suite's rest-hook endpoint listens on loopback.
	all := append([]string{"serve", "--mllp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn", "--hooks-allow-private"}, st.flags()...)
	cmd := exec.Command(carebridgeBinary(t), append(all, args...)...)
	cmd.Env = childEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type addrs struct{ http, mllp string }
	ready := make(chan addrs, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var a addrs
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if m := httpLineRE.FindStringSubmatch(line); m != nil {
				a.http = m[1]
			}
			if m := mllpLineRE.FindStringSubmatch(line); m != nil {
				a.mllp = m[1]
			}
			if !sent && a.http != "" && a.mllp != "" {
				ready <- a
				sent = true
			}
		}
		if !sent {
			close(ready)
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })
	select {
	case a, ok := <-ready:
		if !ok {
			t.Fatalf("carebridge serve exited before it was ready:\n%s", s.stderr)
		}
		s.httpAddr, s.mllpAddr = a.http, a.mllp
	case <-time.After(60 * time.Second):
		t.Fatalf("carebridge serve not ready in 60 s:\n%s", s.stderr)
	}
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	s.stopOnce.Do(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("carebridge serve exited with %v after SIGTERM:\n%s", err, s.stderr)
			}
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
			t.Errorf("carebridge serve did not stop within 30 s of SIGTERM:\n%s", s.stderr)
		}
	})
}

// syncBuffer is a goroutine-safe buffer for a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
