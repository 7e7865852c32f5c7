package mllp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/carebridge/carebridge/hl7"
)

func frame(s string) string { return "\x0b" + s + "\x1c\r" }

func TestReadFrame(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []string
		wantErr error
		skipped int64
	}{
		{"one", frame("MSH|a"), []string{"MSH|a"}, io.EOF, 0},
		{"junk before", "xyz\r\n" + frame("MSH|a"), []string{"MSH|a"}, io.EOF, 5},
		{"back to back", frame("A") + frame("B") + frame("C"), []string{"A", "B", "C"}, io.EOF, 0},
		{"empty frame", frame(""), []string{""}, io.EOF, 0},
		{"1C inside data", frame("A\x1cB"), []string{"A\x1cB"}, io.EOF, 0},
		{"unterminated", "\x0bMSH|a", nil, ErrUnterminatedFrame, 0},
		{"unterminated after 1C", "\x0bMSH|a\x1c", nil, ErrUnterminatedFrame, 0},
		{"too large", frame(strings.Repeat("x", 101)), nil, ErrFrameTooLarge, 0},
		{"exactly max", frame(strings.Repeat("x", 100)), []string{strings.Repeat("x", 100)}, io.EOF, 0},
	} {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/onebyte=%v", tc.name, oneByte), func(t *testing.T) {
				var src io.Reader = strings.NewReader(tc.in)
				if oneByte {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src, 100)
				var got []string
				var err error
				for {
					var f []byte
					f, err = r.ReadFrame()
					if err != nil {
						break
					}
					got = append(got, string(f))
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("frames = %q, want %q", got, tc.want)
				}
				if r.Skipped() != tc.skipped {
					t.Errorf("skipped = %d, want %d", r.Skipped(), tc.skipped)
				}
			})
		}
	}
}

// countingReader fails the test if the reader buffers far past the limit.
func TestTooLargeFrameIsNotBuffered(t *testing.T) {
	var read atomic.Int64
	src := io.MultiReader(strings.NewReader("\x0b"), &endless{n: &read})
	_, err := NewReader(src, 1000).ReadFrame()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if read.Load() > 200<<10 {
		t.Fatalf("read %d bytes for a 1000-byte limit", read.Load())
	}
}

type endless struct{ n *atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n.Add(int64(len(p)))
	return len(p), nil
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte(frame("MSH|^~\\&|A") + frame("B")))
	f.Add([]byte("junk\x0bA\x1c\x1c\rB\x0b"))
	f.Add([]byte("\x0b\x1c\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 64)
		total := 0
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				break
			}
			if len(fr) > 64 {
				t.Fatalf("frame of %d bytes beyond the 64-byte limit", len(fr))
			}
			if bytes.Contains(fr, []byte{0x1c, 0x0d}) {
				t.Fatal("a frame contains the end-block sequence")
			}
			total += len(fr) + 3
		}
		if int64(total)+r.Skipped() > int64(len(data)) {
			t.Fatal("read more than the input")
		}
	})
}

const testMsg = "MSH|^~\\&|SENDER|FAC|CB|CBFAC|20260101120000||ADT^A01|MSG0001|P|2.5.1\rPID|1||123^^^H^MR||DOE^JANE\r"

func ackFor(msg []byte) []byte {
	h, _ := hl7.ParseHeader(msg)
	return hl7.BuildACK(hl7.AckRequest{Original: h, Outcome: hl7.Accept, ControlID: "A1", Time: time.Now()})
}

func echoACK(ctx context.Context, peer net.Addr, msg []byte) ([]byte, error) { return ackFor(msg), nil }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer serves h on a loopback port until the test ends.
func startServer(t *testing.T, cfg Config, h Handler) (addr string, stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	s, err := NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after shutdown")
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func TestServerAnswersFramesInOrder(t *testing.T) {
	addr, _ := startServer(t, Config{}, HandlerFunc(echoACK))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var batch []byte
	for i := range 5 {
		batch = append(batch, frame(strings.Replace(testMsg, "MSG0001", fmt.Sprintf("MSG%04d", i), 1))...)
	}
	if _, err := c.Write(append([]byte("junk"), batch...)); err != nil {
		t.Fatal(err)
	}
	r := NewReader(c, 1<<20)
	for i := range 5 {
		raw, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		a, err := hl7.ParseACK(raw)
		if err != nil || a.ControlID != fmt.Sprintf("MSG%04d", i) {
			t.Fatalf("ACK %d = %+v, %v", i, a, err)
		}
	}
}

func TestServerHandlerErrorClosesWithoutACK(t *testing.T) {
	addr, _ := startServer(t, Config{}, HandlerFunc(func(context.Context, net.Addr, []byte) ([]byte, error) {
		return nil, errors.New("database down")
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	WriteFrame(c, []byte(testMsg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := NewReader(c, 1<<20).ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("read after a handler error = %v, want EOF (closed, no ACK)", err)
	}
}

func TestServerOversizedFrameClosesOnlyThatConnection(t *testing.T) {
	addr, _ := startServer(t, Config{MaxFrameBytes: 1000}, HandlerFunc(echoACK))
	bad, _ := net.Dial("tcp", addr)
	defer bad.Close()
	bad.Write([]byte(frame(strings.Repeat("x", 5000))))
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := NewReader(bad, 1<<20).ReadFrame(); err == nil {
		t.Fatal("oversized frame was answered")
	}
	sendOne(t, addr)
}

func sendOne(t *testing.T, addr string) {
	t.Helper()
	c, err := NewClient(ClientConfig{Addr: addr, MaxRetries: -1, AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if a, _, err := c.Send(context.Background(), []byte(testMsg)); err != nil || !a.Accepted() {
		t.Fatalf("Send = %+v, %v", a, err)
	}
}

func TestServerAllowListAndConnectionLimit(t *testing.T) {
	nets, err := ParseNetworks("10.0.0.0/8, 192.0.2.7")
	if err != nil || len(nets) != 2 || nets[1] != netip.MustParsePrefix("192.0.2.7/32") {
		t.Fatalf("ParseNetworks = %v, %v", nets, err)
	}
	if _, err := ParseNetworks("10.0.0.0/8,bogus"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("bad network: err = %v, want it named", err)
	}
	addr, _ := startServer(t, Config{AllowedNetworks: nets}, HandlerFunc(echoACK))
	c, _ := NewClient(ClientConfig{Addr: addr, MaxRetries: -1, AckTimeout: 2 * time.Second})
	if _, _, err := c.Send(context.Background(), []byte(testMsg)); err == nil {
		t.Error("a peer outside the allow-list was served")
	}
	c.Close()

	addr, _ = startServer(t, Config{MaxConnections: 1}, HandlerFunc(echoACK))
	first, _ := net.Dial("tcp", addr)
	defer first.Close()
	WriteFrame(first, []byte(testMsg))
	if _, err := NewReader(first, 1<<20).ReadFrame(); err != nil {
		t.Fatal(err)
	}
	second, _ := net.Dial("tcp", addr)
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	WriteFrame(second, []byte(testMsg))
	if _, err := NewReader(second, 1<<20).ReadFrame(); err == nil {
		t.Error("a connection over the limit was served")
	}
}

func TestServerIdleTimeout(t *testing.T) {
	addr, _ := startServer(t, Config{IdleTimeout: 100 * time.Millisecond}, HandlerFunc(echoACK))
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil || time.Since(start) > 4*time.Second {
		t.Fatalf("idle connection not closed: %v after %s", err, time.Since(start))
	}
}

func TestGracefulShutdownAcksInFlight(t *testing.T) {
	entered := make(chan struct{})
	addr, stop := startServer(t, Config{}, HandlerFunc(func(ctx context.Context, p net.Addr, msg []byte) ([]byte, error) {
		close(entered)
		time.Sleep(300 * time.Millisecond) // a slow commit
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return ackFor(msg), nil
	}))
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	WriteFrame(c, []byte(testMsg))
	<-entered
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw, err := NewReader(c, 1<<20).ReadFrame()
	if err != nil {
		t.Fatalf("in-flight message not acknowledged at shutdown: %v", err)
	}
	if a, _ := hl7.ParseACK(raw); !a.Accepted() {
		t.Fatalf("ACK = %q", raw)
	}
	<-stopped
}

func TestClientRetriesUntilAcknowledged(t *testing.T) {
	var calls atomic.Int32
	addr, _ := startServer(t, Config{}, HandlerFunc(func(ctx context.Context, p net.Addr, msg []byte) ([]byte, error) {
		switch calls.Add(1) {
		case 1:
			return nil, errors.New("drop the connection") // no ACK
		case 2:
			h, _ := hl7.ParseHeader(msg)
			h.ControlID = "SOMEONE-ELSE" // an ACK for another message
			return hl7.BuildACK(hl7.AckRequest{Original: h, ControlID: "A"}), nil
		}
		return ackFor(msg), nil
	}))
	c, _ := NewClient(ClientConfig{Addr: addr, BackoffBase: time.Millisecond, AckTimeout: 2 * time.Second})
	defer c.Close()
	a, _, err := c.Send(context.Background(), []byte(testMsg))
	if err != nil || !a.Accepted() || a.ControlID != "MSG0001" {
		t.Fatalf("Send = %+v, %v", a, err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("server saw %d attempts, want 3", n)
	}
}

func TestClientAckTimeoutAndCancel(t *testing.T) {
	addr, _ := startServer(t, Config{}, HandlerFunc(func(ctx context.Context, p net.Addr, msg []byte) ([]byte, error) {
		time.Sleep(500 * time.Millisecond)
		return ackFor(msg), nil
	}))
	c, _ := NewClient(ClientConfig{Addr: addr, AckTimeout: 50 * time.Millisecond, MaxRetries: 2, BackoffBase: time.Millisecond})
	defer c.Close()
	if _, _, err := c.Send(context.Background(), []byte(testMsg)); err == nil {
		t.Fatal("Send succeeded although no ACK came in time")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Send(ctx, []byte(testMsg)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context = %v", err)
	}
}

func TestMutualTLS(t *testing.T) {
	ca, caKey := newCA(t)
	serverCert := leaf(t, ca, caKey, "127.0.0.1", false)
	clientCert := leaf(t, ca, caKey, "engine", true)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srvTLS := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	addr, _ := startServer(t, Config{TLS: srvTLS}, HandlerFunc(echoACK))

	good, _ := NewClient(ClientConfig{Addr: addr, MaxRetries: -1, TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, ServerName: "127.0.0.1"}})
	defer good.Close()
	if a, _, err := good.Send(context.Background(), []byte(testMsg)); err != nil || !a.Accepted() {
		t.Fatalf("mTLS client: %+v, %v", a, err)
	}
	anon, _ := NewClient(ClientConfig{Addr: addr, MaxRetries: -1, AckTimeout: 2 * time.Second, TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	defer anon.Close()
	if _, _, err := anon.Send(context.Background(), []byte(testMsg)); err == nil {
		t.Fatal("a client without a certificate was served under mutual TLS")
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, client bool) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP(name)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func BenchmarkReadFrame(b *testing.B) {
	one := []byte(frame(strings.Repeat("x", 1500)))
	data := bytes.Repeat(one, 1000)
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	r := NewReader(bytes.NewReader(data), 1<<20)
	for b.Loop() {
		if _, err := r.ReadFrame(); err != nil {
			r = NewReader(bytes.NewReader(data), 1<<20)
		}
	}
}

func BenchmarkServerRoundTrip(b *testing.B) {
	ack := ackFor([]byte(testMsg))
	s, _ := NewServer(Config{Logger: quiet()}, HandlerFunc(func(context.Context, net.Addr, []byte) ([]byte, error) { return ack, nil }))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, ln)
	c, _ := NewClient(ClientConfig{Addr: ln.Addr().String()})
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Send(ctx, []byte(testMsg)); err != nil {
			b.Fatal(err)
		}
	}
}
