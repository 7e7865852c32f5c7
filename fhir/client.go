package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxResponseBytes bounds how much of an EHR's answer the client reads.
const MaxResponseBytes = 8 << 20

// TokenSource gives the bearer token for the next request (a static token,
// or one from SMART backend services).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Client writes resources to an EHR's FHIR R4 server: transaction Bundles
// and single updates, both by PUT to Type/id so that sending again changes
// nothing.
type Client struct {
	base   string // without a trailing slash
	http   *http.Client
	tokens TokenSource
}

// NewClient returns a client of the FHIR server at base (http or https).
// hc nil uses a client with a 30 s timeout; tokens nil sends no
// Authorization header.
func NewClient(base string, hc *http.Client, tokens TokenSource) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the FHIR base URL %q is not an http(s) URL", base)
	}
	if u.User != nil {
		return nil, errors.New("the FHIR base URL must not carry credentials; give a token instead")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(base, "/"), http: hc, tokens: tokens}, nil
}

// StatusError is an answer other than 2xx. Code is the first issue code of
// the OperationOutcome the server sent, if any; the server's text is not
// kept, as it may echo what was sent.
type StatusError struct {
	Op     string // "transaction", "PUT AuditEvent"
	Status int
	Code   string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("the FHIR server answered %s with HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	return s
}

// Rejected reports whether the server refused the content itself (400,
// 422): sending it again cannot succeed. Every other failure, including
// 401/403 (credentials are fixed by an operator), 404/405 and 5xx, may.
func (e *StatusError) Rejected() bool {
	return e.Status == http.StatusBadRequest || e.Status == http.StatusUnprocessableEntity
}

// NotSupported reports whether the server does not offer the operation at
// all (no transactions at the base, say).
func (e *StatusError) NotSupported() bool {
	return e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed || e.Status == http.StatusNotImplemented
}

// Transaction POSTs items as one transaction Bundle of PUTs and returns the
// HTTP status of each entry, in order. A server that answers 2xx without
// entries is taken to have stored them all (every status 200).
func (c *Client) Transaction(ctx context.Context, items []Serialized) ([]int, error) {
	body, err := SerializedBundle(items)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, c.base, body, "transaction")
	if err != nil {
		return nil, err
	}
	return transactionStatuses(resp, len(items))
}

// transactionStatuses reads the HTTP status of each of n entries from a
// transaction-response Bundle.
func transactionStatuses(resp []byte, n int) ([]int, error) {
	var answer struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Response struct {
				Status string `json:"status"`
			} `json:"response"`
		} `json:"entry"`
	}
	statuses := make([]int, n)
	if len(bytes.TrimSpace(resp)) == 0 {
		for i := range statuses {
			statuses[i] = http.StatusOK
		}
		return statuses, nil
	}
	if err := json.Unmarshal(resp, &answer); err != nil || answer.ResourceType != "Bundle" {
		return nil, errors.New("the FHIR server's answer to the transaction is not a Bundle")
	}
	if len(answer.Entry) == 0 {
		for i := range statuses {
			statuses[i] = http.StatusOK
		}
		return statuses, nil
	}
	if len(answer.Entry) != n {
		return nil, fmt.Errorf("the FHIR server answered the transaction of %d entries with %d", n, len(answer.Entry))
	}
	for i, e := range answer.Entry {
		code, _, _ := strings.Cut(strings.TrimSpace(e.Response.Status), " ")
		st, err := strconv.Atoi(code)
		if err != nil || st < 100 || st > 599 {
			return nil, fmt.Errorf("the FHIR server's transaction answer has no HTTP status in entry %d", i)
		}
		statuses[i] = st
	}
	return statuses, nil
}

// Put writes one resource to Type/id.
func (c *Client) Put(ctx context.Context, item Serialized) error {
	_, err := c.do(ctx, http.MethodPut, c.base+"/"+item.Type+"/"+url.PathEscape(item.ID), item.JSON, "PUT "+item.Type)
	return err
}

func (c *Client) do(ctx context.Context, method, target string, body []byte, op string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	var tok string
	if c.tokens != nil {
		if tok, err = c.tokens.Token(ctx); err != nil {
			return nil, fmt.Errorf("getting a token for %s: %w", op, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sending %s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer to %s: %w", op, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		// A token the server no longer takes is not asked for again.
		if inv, ok := c.tokens.(interface{ Invalidate(string) }); ok {
			inv.Invalidate(tok)
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &StatusError{Op: op, Status: resp.StatusCode, Code: firstIssueCode(b)}
	}
	if len(b) > MaxResponseBytes {
		return nil, fmt.Errorf("the answer to %s is larger than %d bytes", op, MaxResponseBytes)
	}
	return b, nil
}

// firstIssueCode reads OperationOutcome.issue[0].code, a code from a fixed
// value set, if it is one.
func firstIssueCode(b []byte) string {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if json.Unmarshal(b, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		return ""
	}
	code := oo.Issue[0].Code
	if len(code) > 32 || strings.IndexFunc(code, func(r rune) bool { return (r < 'a' || r > 'z') && r != '-' }) >= 0 {
		return ""
	}
	return code
}

// StaticToken is a bearer token that does not change.
type StaticToken string

// Token returns the token.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }
