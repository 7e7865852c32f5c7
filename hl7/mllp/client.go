package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/carebridge/carebridge/hl7"
)

// ErrAckMismatch means an ACK acknowledged another message than the one
// sent (MSA-2 is not the message's MSH-10): the stream is out of step, so
// the client reconnects and sends again.
var ErrAckMismatch = errors.New("mllp: ACK is for another message")

// ClientConfig tunes a Client. Zero values take the defaults.
type ClientConfig struct {
	Addr           string
	TLS            *tls.Config
	ConnectTimeout time.Duration // default 5s
	AckTimeout     time.Duration // default 30s
	MaxRetries     int           // attempts after the first; default 5
	BackoffBase    time.Duration // default 200ms, doubled each retry, jittered
	BackoffMax     time.Duration // default 10s
	MaxFrameBytes  int           // default 4 MiB
}

// Client sends messages over one connection, reconnecting when needed.
// Send calls are serialised: MLLP is strictly one message, one ACK.
type Client struct {
	cfg  ClientConfig
	mu   sync.Mutex
	conn net.Conn
	r    *Reader
}

// NewClient returns a client for cfg.Addr; it connects on the first Send.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("mllp: client needs an address")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	} else if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 200 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = 4 << 20
	}
	return &Client{cfg: cfg}, nil
}

// Send sends msg and waits for its ACK, retrying with backoff on connection
// failures, timeouts and mismatched ACKs. An AE or AR is not an error: the
// caller reads the Ack. The server acknowledges a resent message without
// storing it twice, which makes the retries safe.
func (c *Client) Send(ctx context.Context, msg []byte) (hl7.Ack, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := ""
	if h, err := hl7.ParseHeader(msg); err == nil || h.ControlID != "" {
		want = h.ControlID
	}
	var lastErr error
	for attempt := 0; attempt <= c.cfg.MaxRetries; attempt++ {
		if attempt > 0 {
			d := min(c.cfg.BackoffBase<<min(attempt-1, 20), c.cfg.BackoffMax)
			d = d/2 + rand.N(d/2+1)
			select {
			case <-ctx.Done():
				return hl7.Ack{}, nil, fmt.Errorf("sending MLLP message: %w (last error: %v)", ctx.Err(), lastErr)
			case <-time.After(d):
			}
		}
		raw, err := c.exchange(ctx, msg)
		if err != nil {
			lastErr = err
			c.closeConn()
			if ctx.Err() != nil {
				return hl7.Ack{}, nil, fmt.Errorf("sending MLLP message: %w", ctx.Err())
			}
			continue
		}
		ack, err := hl7.ParseACK(raw)
		if err != nil {
			lastErr = fmt.Errorf("reading ACK: %w", err)
			c.closeConn()
			continue
		}
		if want != "" && ack.ControlID != want {
			lastErr = ErrAckMismatch
			c.closeConn()
			continue
		}
		return ack, raw, nil
	}
	return hl7.Ack{}, nil, fmt.Errorf("sending MLLP message after %d attempts: %w", c.cfg.MaxRetries+1, lastErr)
}

func (c *Client) exchange(ctx context.Context, msg []byte) ([]byte, error) {
	if c.conn == nil {
		d := net.Dialer{Timeout: c.cfg.ConnectTimeout}
		var nc net.Conn
		var err error
		if c.cfg.TLS != nil {
			td := tls.Dialer{NetDialer: &d, Config: c.cfg.TLS}
			nc, err = td.DialContext(ctx, "tcp", c.cfg.Addr)
		} else {
			nc, err = d.DialContext(ctx, "tcp", c.cfg.Addr)
		}
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", c.cfg.Addr, err)
		}
		c.conn, c.r = nc, NewReader(nc, c.cfg.MaxFrameBytes)
	}
	deadline := time.Now().Add(c.cfg.AckTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetDeadline(deadline)
	if err := WriteFrame(c.conn, msg); err != nil {
		return nil, err
	}
	ack, err := c.r.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("reading ACK: %w", err)
	}
	return ack, nil
}

func (c *Client) closeConn() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeConn()
	return nil
}
