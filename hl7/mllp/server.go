package mllp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Handler processes one message and returns the ACK to send. An error means
// the message could not be handled durably: no ACK is sent and the
// connection is closed, so that the sender retries.
type Handler interface {
	ServeMLLP(ctx context.Context, peer net.Addr, msg []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, peer net.Addr, msg []byte) ([]byte, error)

// ServeMLLP calls f.
func (f HandlerFunc) ServeMLLP(ctx context.Context, peer net.Addr, msg []byte) ([]byte, error) {
	return f(ctx, peer, msg)
}

// Config tunes a Server. Zero values take the defaults.
type Config struct {
	MaxConnections  int            // default 256
	ReadTimeout     time.Duration  // to read one frame once it began; default 30s
	IdleTimeout     time.Duration  // between frames; default 5m
	WriteTimeout    time.Duration  // default 10s
	MaxFrameBytes   int            // default 4 MiB
	AllowedNetworks []netip.Prefix // empty allows every peer
	TLS             *tls.Config    // nil for plain TCP
	ShutdownTimeout time.Duration  // default 30s
	Logger          *slog.Logger   // never given payload bytes
}

func (c *Config) setDefaults() {
	if c.MaxConnections <= 0 {
		c.MaxConnections = 256
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 4 << 20
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stats are the server's counters.
type Stats struct {
	Accepted, Refused, Active, Frames, SkippedBytes int64
}

// Server is an MLLP listener.
type Server struct {
	cfg                                        Config
	h                                          Handler
	log                                        *slog.Logger
	accepted, refused, active, frames, skipped atomic.Int64
}

// NewServer returns a server that hands each message to h.
func NewServer(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("mllp: a handler is required")
	}
	cfg.setDefaults()
	return &Server{cfg: cfg, h: h, log: cfg.Logger}, nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{s.accepted.Load(), s.refused.Load(), s.active.Load(), s.frames.Load(), s.skipped.Load()}
}

// ListenAndServe listens on addr and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for MLLP: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln until ctx is done. Then it stops
// accepting, lets every connection finish the message it is handling (the
// handler runs to completion and its ACK is written, within
// ShutdownTimeout), closes the connections and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	var (
		mu    sync.Mutex
		conns = map[*conn]struct{}{}
		wg    sync.WaitGroup
	)
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.stop()
		}
		mu.Unlock()
		close(stopped)
	}()
	var acceptErr error
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				acceptErr = fmt.Errorf("accepting MLLP connection: %w", err)
			}
			break
		}
		if !s.allowed(nc.RemoteAddr()) {
			s.refused.Add(1)
			s.log.Warn("MLLP peer not in the allow-list; connection closed", "peer", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		if s.active.Load() >= int64(s.cfg.MaxConnections) {
			s.refused.Add(1)
			s.log.Warn("MLLP connection limit reached; connection closed", "peer", nc.RemoteAddr().String(), "limit", s.cfg.MaxConnections)
			nc.Close()
			continue
		}
		s.accepted.Add(1)
		s.active.Add(1)
		c := &conn{s: s, nc: nc, quit: make(chan struct{})}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		if ctx.Err() != nil {
			c.stop()
		}
		wg.Go(func() {
			c.serve()
			s.active.Add(-1)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
	if acceptErr != nil {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.stop()
		}
		mu.Unlock()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		mu.Lock()
		for c := range conns {
			c.nc.Close()
		}
		mu.Unlock()
		<-done
	}
	if acceptErr == nil {
		<-stopped
	}
	return acceptErr
}

func (s *Server) allowed(a net.Addr) bool {
	if len(s.cfg.AllowedNetworks) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range s.cfg.AllowedNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

type conn struct {
	s        *Server
	nc       net.Conn
	quit     chan struct{}
	stopOnce sync.Once
	busy     atomic.Bool
}

// stop asks the connection to end after the message in hand: an idle
// connection is woken from its read at once.
func (c *conn) stop() {
	c.stopOnce.Do(func() {
		close(c.quit)
		if !c.busy.Load() {
			c.nc.SetReadDeadline(time.Now())
		}
	})
}

func (c *conn) stopping() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

func (c *conn) serve() {
	defer c.nc.Close()
	peer := c.nc.RemoteAddr()
	r := NewReader(c.nc, c.s.cfg.MaxFrameBytes)
	for !c.stopping() {
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		before := r.Skipped()
		msg, err := r.ReadFrame()
		if n := r.Skipped() - before; n > 0 {
			c.s.skipped.Add(n)
			c.s.log.Warn("MLLP bytes outside a frame skipped", "peer", peer.String(), "bytes", n)
		}
		if err != nil {
			c.logReadError(peer, err)
			return
		}
		c.busy.Store(true)
		c.s.frames.Add(1)
		// The handler's context is not cancelled by shutdown: a commit in
		// progress completes and is acknowledged.
		hctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.ShutdownTimeout)
		ack, err := c.s.h.ServeMLLP(hctx, peer, msg)
		cancel()
		if err != nil {
			c.s.log.Error("MLLP message not handled; closing the connection without ACK so the sender retries", "peer", peer.String(), "bytes", len(msg), "err", err)
			return
		}
		c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		if err := WriteFrame(c.nc, ack); err != nil {
			c.s.log.Warn("MLLP ACK not written", "peer", peer.String(), "err", err)
			return
		}
		c.busy.Store(false)
	}
}

func (c *conn) logReadError(peer net.Addr, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		c.s.log.Warn("MLLP frame too large; connection closed", "peer", peer.String(), "limit_bytes", c.s.cfg.MaxFrameBytes)
	case errors.Is(err, ErrUnterminatedFrame):
		c.s.log.Warn("MLLP connection ended inside a frame; partial message discarded", "peer", peer.String())
	case errors.As(err, &ne) && ne.Timeout():
		if !c.stopping() {
			c.s.log.Info("MLLP connection idle; closed", "peer", peer.String())
		}
	case errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrClosed), errors.Is(err, io.EOF):
	default:
		if !strings.Contains(err.Error(), "EOF") {
			c.s.log.Info("MLLP connection read failed", "peer", peer.String(), "err", err)
		}
	}
}

// ServerTLSConfig loads a certificate and key for the listener; with a
// client CA bundle it requires and verifies client certificates (mutual
// TLS). TLS 1.2 is the minimum.
func ServerTLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading MLLP certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading client CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading client CA bundle %s: no PEM certificates", clientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// ParseNetworks reads "10.1.0.0/16, 192.0.2.7, ::1" into prefixes.
func ParseNetworks(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("network %q: want an address or CIDR such as 10.0.0.0/8", item)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("network %q: want an address or CIDR such as 10.0.0.0/8", item)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
