package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/carebridge/carebridge/store"
)

// Criteria is a Subscription.criteria for Communications, in the FHIR
// search syntax carebridge supports: "Communication", optionally with
// priority=, category= (comma lists: any of) and recipient= (a reference).
type Criteria struct {
	Priorities []string
	Categories []string
	Recipient  string
}

// ParseCriteria reads a criteria string, naming what it does not support.
func ParseCriteria(s string) (Criteria, error) {
	var c Criteria
	typ, query, _ := strings.Cut(s, "?")
	if typ != "Communication" {
		return c, fmt.Errorf("criteria %q: only Communication can be subscribed to", s)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return c, fmt.Errorf("criteria %q: %v", s, err)
	}
	for name, vals := range q {
		if len(vals) != 1 || vals[0] == "" {
			return c, fmt.Errorf("criteria %q: give %s once, with a value", s, name)
		}
		list := strings.Split(vals[0], ",")
		switch name {
		case "priority":
			for _, p := range list {
				if !slices.Contains([]string{"routine", "urgent", "asap", "stat"}, p) {
					return c, fmt.Errorf("criteria %q: priority %q is not routine, urgent, asap or stat", s, p)
				}
			}
			c.Priorities = list
		case "category":
			c.Categories = list
		case "recipient":
			if len(list) != 1 || !strings.Contains(vals[0], "/") {
				return c, fmt.Errorf("criteria %q: recipient takes one reference (Practitioner/ID)", s)
			}
			c.Recipient = vals[0]
		default:
			return c, fmt.Errorf("criteria %q: search parameter %q is not supported (priority, category, recipient)", s, name)
		}
	}
	return c, nil
}

// MaxEndpointBytes bounds a subscription's endpoint URL.
const MaxEndpointBytes = 2048

// CheckEndpoint checks a subscription's rest-hook endpoint, as both the
// CLI and the FHIR API take it: an absolute https URL, or http to a
// loopback address only (notifications carry the EHR's credentials in
// their headers), with no credentials in the URL itself.
func CheckEndpoint(endpoint string) error {
	if len(endpoint) > MaxEndpointBytes {
		return fmt.Errorf("the endpoint is longer than %d bytes", MaxEndpointBytes)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || u.Opaque != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("the endpoint must be an absolute http(s) URL")
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return errors.New("the endpoint must use https (http is for loopback only): notifications carry the EHR's credentials")
	}
	if u.User != nil {
		return errors.New("the endpoint must not carry credentials in the URL; send them as header lines")
	}
	return nil
}

// CheckPublicEndpoint is CheckEndpoint for a subscription an EHR client
// makes through the FHIR API: the endpoint must also not name a loopback,
// private, link-local or unspecified address (nor localhost), so that a
// client cannot have carebridge post to the services beside it. The
// operator's own (carebridge subscriptions add) may; so may every one
// under serve --hooks-allow-private.
func CheckPublicEndpoint(endpoint string) error {
	if err := CheckEndpoint(endpoint); err != nil {
		return err
	}
	u, _ := url.Parse(endpoint) // CheckEndpoint parsed it
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return errors.New("the endpoint must be a public address, not localhost")
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast()) {
		return errors.New("the endpoint must be a public address, not a loopback, private or link-local one")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Matches reports whether a Communication meets the criteria.
func (c Criteria) Matches(comm store.CommunicationRow) bool {
	if len(c.Priorities) > 0 && !slices.Contains(c.Priorities, comm.Priority) {
		return false
	}
	if len(c.Categories) > 0 && !slices.Contains(c.Categories, comm.Category) {
		return false
	}
	return c.Recipient == "" || slices.Contains(comm.Recipients, c.Recipient)
}

// RestHookStore is what rest-hook notification needs of storage.
type RestHookStore interface {
	ListSubscriptions(ctx context.Context) ([]store.Subscription, error)
	QueueNotices(ctx context.Context, communicationID string, subscriptionIDs []string, at time.Time) error
	DueNotices(ctx context.Context, now time.Time, limit int) ([]store.SubscriptionNotice, error)
	UpdateNotice(ctx context.Context, n store.SubscriptionNotice) error
}

// RestHook notifies the EHR's FHIR R4 rest-hook Subscriptions of new
// Communications: an id-only notification (a history Bundle whose
// Parameters give the subscription, the event number and the
// Communication's reference; never content), POSTed to the endpoint with
// the subscription's headers. A failure is retried with backoff, from
// MinBackoff doubling to MaxBackoff, for GiveUpAfter; then the notice is
// dead, with its last error, and listed by carebridge subscriptions list
// and GET Subscription/ID/$status.
// Due notices are found by the database: no timer per notice.
type RestHook struct {
	Store RestHookStore
	Keys  Opener // opens the sealed headers
	HTTP  *http.Client
	// BaseURL is carebridge's FHIR base, where subscribers read the
	// Communication; empty gives urn:uuid: references.
	BaseURL     string
	MinBackoff  time.Duration // default 30 s
	MaxBackoff  time.Duration // default 1 h
	GiveUpAfter time.Duration // default 24 h
	Now         func() time.Time
	Log         *slog.Logger

	mu      sync.Mutex
	subs    []store.Subscription
	parsed  map[string]Criteria
	fetched time.Time
}

// subscriptionsTTL is how long the subscriptions are cached at most.
const subscriptionsTTL = time.Second

// Changed tells the notifier that the subscriptions changed (the FHIR API
// of this process stored or deleted one), so that the next Communication
// is matched against the list as it is now.
func (h *RestHook) Changed() {
	h.mu.Lock()
	h.parsed = nil
	h.mu.Unlock()
}

// subscriptions returns the subscriptions, read again when the cached
// list is older than subscriptionsTTL or Changed said so: a subscription
// stored through this process's API is seen at once, one stored otherwise
// (the CLI, another instance) within a second.
func (h *RestHook) subscriptions(ctx context.Context) ([]store.Subscription, map[string]Criteria, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.Now()
	if h.parsed != nil && now.Sub(h.fetched) < subscriptionsTTL {
		return h.subs, h.parsed, nil
	}
	subs, err := h.Store.ListSubscriptions(ctx)
	if err != nil {
		return nil, nil, err
	}
	h.subs, h.parsed, h.fetched = subs, map[string]Criteria{}, now
	for _, s := range subs {
		if c, err := ParseCriteria(s.Criteria); err == nil {
			h.parsed[s.ID] = c
		}
	}
	return h.subs, h.parsed, nil
}

// Active reports whether any subscription is active (as of the cached
// list Queue matches against): without one, Queue has nothing to match.
func (h *RestHook) Active(ctx context.Context) (bool, error) {
	subs, parsed, err := h.subscriptions(ctx)
	if err != nil {
		return false, err
	}
	for _, s := range subs {
		if _, ok := parsed[s.ID]; ok && s.Active {
			return true, nil
		}
	}
	return false, nil
}

// Queue queues a notice of c for every active subscription it matches.
func (h *RestHook) Queue(ctx context.Context, c store.CommunicationRow) error {
	subs, parsed, err := h.subscriptions(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, s := range subs {
		if cr, ok := parsed[s.ID]; ok && s.Active && cr.Matches(c) {
			ids = append(ids, s.ID)
		}
	}
	return h.Store.QueueNotices(ctx, c.ID, ids, h.Now().UTC())
}

// Tick sends the notices due now and says how many were sent.
func (h *RestHook) Tick(ctx context.Context) (int, error) {
	now := h.Now().UTC()
	due, err := h.Store.DueNotices(ctx, now, 100)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	byID, err := h.subscriptionsOf(ctx, due)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, n := range due {
		s, ok := byID[n.SubscriptionID]
		var err error
		switch {
		case !ok || !s.Active:
			err = errors.New("the subscription is off")
			n.FirstAt = time.Time{} // no retry
		default:
			err = h.send(ctx, s, n)
		}
		n.Attempts++
		switch {
		case err == nil:
			n.State, n.NextAt, n.LastError = store.NoticeSent, time.Time{}, ""
			sent++
		case now.Sub(n.FirstAt) >= h.giveUpAfter():
			n.State, n.NextAt, n.LastError = store.NoticeDead, time.Time{}, err.Error()
			h.Log.Error("an EHR subscription notice was given up; see carebridge subscriptions list",
				"subscription", n.SubscriptionID, "communication_id", n.CommunicationID, "attempts", n.Attempts, "error", err.Error())
		default:
			n.NextAt, n.LastError = now.Add(h.backoff(n.Attempts)), err.Error()
			h.Log.Warn("an EHR subscription notice failed; retrying", "subscription", n.SubscriptionID,
				"communication_id", n.CommunicationID, "attempts", n.Attempts, "retry_at", n.NextAt, "error", err.Error())
		}
		if err := h.Store.UpdateNotice(ctx, n); err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// subscriptionsOf are the subscriptions by id, for notices due: a notice
// queued after the list was read (by another instance) may be of a
// subscription the list does not have yet, which is then read again,
// rather than the notice given up as of a subscription that is gone.
func (h *RestHook) subscriptionsOf(ctx context.Context, due []store.SubscriptionNotice) (map[string]store.Subscription, error) {
	for attempt := 0; ; attempt++ {
		subs, _, err := h.subscriptions(ctx)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]store.Subscription, len(subs))
		for _, s := range subs {
			byID[s.ID] = s
		}
		missing := slices.ContainsFunc(due, func(n store.SubscriptionNotice) bool { _, ok := byID[n.SubscriptionID]; return !ok })
		if !missing || attempt > 0 {
			return byID, nil
		}
		h.Changed()
	}
}

// Run ticks every interval until ctx ends.
func (h *RestHook) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := h.Tick(ctx); err != nil && ctx.Err() == nil {
			h.Log.Error("sending EHR subscription notices", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *RestHook) giveUpAfter() time.Duration {
	if h.GiveUpAfter > 0 {
		return h.GiveUpAfter
	}
	return 24 * time.Hour
}

func (h *RestHook) backoff(attempts int) time.Duration {
	lo, hi := h.MinBackoff, h.MaxBackoff
	if lo <= 0 {
		lo = 30 * time.Second
	}
	if hi < lo {
		hi = max(time.Hour, lo)
	}
	d := lo
	for i := 1; i < attempts && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// send POSTs one id-only notification.
func (h *RestHook) send(ctx context.Context, s store.Subscription, n store.SubscriptionNotice) error {
	body, err := NotificationBundle(s.ID, n, h.BaseURL, h.Now())
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("the subscription's endpoint: %w", err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	if len(s.Header) > 0 {
		plain, err := h.Keys.Open(s.Header, []byte("Subscription/"+s.ID))
		if err != nil {
			return fmt.Errorf("opening the subscription's headers: %w", err)
		}
		hdr, err := ParseHeaderLines(string(plain))
		if err != nil {
			return err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
	}
	hc := h.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The reason stays in the log: the notice's error is shown to the
		// EHR (Subscription.error, $status), and a refused connection told
		// apart from a timeout would map the network behind carebridge.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known; keep the reason
		}
		h.Log.Warn("posting to an EHR subscription's endpoint failed", "subscription", s.ID, "communication_id", n.CommunicationID, "error", err.Error())
		return errors.New("the endpoint could not be reached (carebridge's log has the reason)")
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the endpoint answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// ParseHeaderLines reads "Name: value" lines (# comments) into a header;
// it refuses anything that is not one.
func ParseHeaderLines(s string) (http.Header, error) {
	h := http.Header{}
	for n, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || value == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("header line %d: want \"Name: value\"", n+1)
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(name), value)
	}
	return h, nil
}

// NotificationBundle builds the id-only event notification of the FHIR
// Subscriptions R5 Backport for R4: a history Bundle whose first entry is
// the subscription status (Parameters) and whose second names the
// Communication by its full URL, without the resource.
func NotificationBundle(subscriptionID string, n store.SubscriptionNotice, baseURL string, now time.Time) ([]byte, error) {
	focus := "urn:uuid:" + n.CommunicationID
	if baseURL != "" {
		focus = strings.TrimRight(baseURL, "/") + "/Communication/" + n.CommunicationID
	}
	type ref struct {
		Reference string `json:"reference"`
	}
	type param struct {
		Name           string  `json:"name"`
		ValueReference *ref    `json:"valueReference,omitempty"`
		ValueCode      string  `json:"valueCode,omitempty"`
		ValueString    string  `json:"valueString,omitempty"`
		Part           []param `json:"part,omitempty"`
	}
	event := strconv.FormatInt(n.EventNumber, 10)
	status := map[string]any{
		"resourceType": "Parameters",
		"id":           uuid.NewString(),
		"parameter": []param{
			{Name: "subscription", ValueReference: &ref{"Subscription/" + subscriptionID}},
			{Name: "status", ValueCode: "active"},
			{Name: "type", ValueCode: "event-notification"},
			{Name: "events-since-subscription-start", ValueString: event},
			{Name: "notification-event", Part: []param{
				{Name: "event-number", ValueString: event},
				{Name: "focus", ValueReference: &ref{focus}},
			}},
		},
	}
	b := map[string]any{
		"resourceType": "Bundle",
		"type":         "history",
		"timestamp":    now.UTC().Format(time.RFC3339),
		"entry": []map[string]any{
			{
				"fullUrl":  "urn:uuid:" + status["id"].(string),
				"resource": status,
				"request":  map[string]string{"method": "GET", "url": "Subscription/" + subscriptionID + "/$status"},
				"response": map[string]string{"status": "200"},
			},
			{
				"fullUrl":  focus,
				"request":  map[string]string{"method": "POST", "url": "Communication"},
				"response": map[string]string{"status": "201"},
			},
		},
	}
	return json.Marshal(b)
}
