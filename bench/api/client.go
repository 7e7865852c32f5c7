package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// target is where the requests go: a plain-HTTP FHIR base URL.
type target struct {
	host string // host:port, to dial and to name in Host
	path string // the base path, without a trailing slash
}

func parseTarget(base string) (target, error) {
	u, err := url.Parse(base)
	if err != nil {
		return target{}, fmt.Errorf("reading --fhir-url: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return target{}, fmt.Errorf("--fhir-url %q: the load generator speaks plain HTTP (a loopback server), not %q", base, u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	path := u.EscapedPath()
	for len(path) > 0 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	return target{host: host, path: path}, nil
}

// request appends an HTTP/1.1 request to b: method, the path under the
// base (with its query), the bearer token, and body as FHIR JSON when
// there is one.
func (t target) request(b []byte, method, path, token string, body []byte) []byte {
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, t.path...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\nAuthorization: Bearer "...)
	b = append(b, token...)
	b = append(b, "\r\nAccept: application/fhir+json\r\n"...)
	if body != nil {
		b = append(b, "Content-Type: application/fhir+json\r\nPrefer: return=minimal\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// conn is one worker's keep-alive connection. It writes each request's
// bytes itself and reads the answer with net/http's own parser, but
// without net/http's client: its transport hands every request and
// response between two goroutines of the connection and the caller, and
// on a machine whose cores the load generator shares with the server and
// its database, each microsecond it spends is taken from them.
type conn struct {
	addr    string
	timeout time.Duration
	nc      net.Conn
	br      *bufio.Reader
}

// do sends req and reads the whole answer, returning its status code. A
// connection that fails or that the server closes is dialled again for
// the next request; the request that failed is not retried (a create
// may have been made).
func (c *conn) do(req []byte) (int, error) {
	if c.nc == nil {
		nc, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return 0, fmt.Errorf("connecting: %w", err)
		}
		c.nc = nc
		if c.br == nil {
			c.br = bufio.NewReaderSize(nc, 32<<10)
		} else {
			c.br.Reset(nc)
		}
	}
	code, err := c.exchange(req)
	if err != nil {
		c.close()
	}
	return code, err
}

func (c *conn) exchange(req []byte) (int, error) {
	if err := c.nc.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	if _, err := c.nc.Write(req); err != nil {
		return 0, fmt.Errorf("sending: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, fmt.Errorf("reading the answer: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("reading the answer's body: %w", err)
	}
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, nil
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}
