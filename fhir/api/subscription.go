package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// Subscription (https://hl7.org/fhir/R4/subscription.html): the EHR's
// rest-hook subscriptions to new Communications, the same ones
// "carebridge subscriptions" manages. A subscription is created active
// (status requested or active in the body), read back as stored (its
// header lines never), searched, deleted, and asked for its state with
// $status, a simplified SubscriptionStatus of the R4 Subscriptions
// Backport. Notifications are what the pipeline sends: id-only.

// SubscriptionStore is what Subscription needs of the store.
type SubscriptionStore interface {
	PutSubscription(ctx context.Context, s store.Subscription, events ...store.Event) error
	GetSubscription(ctx context.Context, id string) (store.Subscription, error)
	ListSubscriptions(ctx context.Context) ([]store.Subscription, error)
	DeleteSubscription(ctx context.Context, id string, events ...store.Event) error
	NoticeCounts(ctx context.Context) (map[string]map[string]int, error)
	SubscriptionNotices(ctx context.Context, subscriptionID, state string, limit int) ([]store.SubscriptionNotice, error)
	NewestNotices(ctx context.Context) (map[string]store.SubscriptionNotice, error)
}

// SubscriptionRules are the pipeline's rules for what a subscription may
// ask for (in cmd/carebridge, bridge.ParseCriteria, bridge.CheckEndpoint
// and bridge.ParseHeaderLines), so that the API and the CLI accept the
// same. Errors say what is wrong, without PHI.
type SubscriptionRules interface {
	CheckCriteria(criteria string) error
	CheckEndpoint(endpoint string) error
	CheckHeader(line string) error
}

// Limits of a Subscription body, beyond the validator's.
const (
	maxCriteriaBytes   = 1024
	maxReasonBytes     = 1024
	maxHeaderLines     = 16
	maxHeaderLineBytes = 4096
)

// Subscription codes and references.
const (
	subscriptionStatusOp = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"
	operatorReason       = "added by an operator (carebridge subscriptions add)"
	notificationPayload  = "application/fhir+json"
	maxSubscriptionList  = 10000 // subscriptions a search reads at most
)

// subscriptionParams are the Subscription search parameters served.
var subscriptionParams = []searchParam{
	{"status", r4Params + "Subscription-status", "token", "requested, active, error or off (comma: any of)"},
	{"url", r4Params + "Subscription-url", "uri", "the channel endpoint, exactly"},
}

// subscriptionsServed reports whether the server has all Subscription
// needs: the store, the rules, the validator and the sealer.
func (s *Server) subscriptionsServed() bool {
	return s.cfg.Subscriptions != nil && s.cfg.SubscriptionRules != nil && s.cfg.Validator != nil && s.cfg.Sealer != nil && s.cfg.Events != nil
}

// subscriptionRoutes serves Subscription.
func (s *Server) subscriptionRoutes(f *gin.RouterGroup) {
	if !s.subscriptionsServed() {
		return
	}
	f.POST("/Subscription", s.authorize("Subscription", access.Create, "create"), s.createSubscription)
	f.GET("/Subscription", s.authorize("Subscription", access.Search, "search-type"), s.searchSubscriptions)
	f.GET("/Subscription/:id", s.authorize("Subscription", access.Read, "read"), s.readSubscription)
	f.DELETE("/Subscription/:id", s.authorize("Subscription", access.Delete, "delete"), s.deleteSubscription)
	f.GET("/Subscription/:id/$status", s.authorize("Subscription", access.Read, "operation"), s.subscriptionStatus)
}

// subscriptionCapabilities are the CapabilityStatement entries of
// Subscription.
func (s *Server) subscriptionCapabilities() []map[string]any {
	if !s.subscriptionsServed() {
		return nil
	}
	params := make([]map[string]any, 0, len(subscriptionParams))
	for _, p := range subscriptionParams {
		params = append(params, map[string]any{"name": p.Name, "definition": p.Definition, "type": p.Type, "documentation": p.Doc})
	}
	return []map[string]any{{
		"type": "Subscription",
		"documentation": "R4 rest-hook Subscriptions to new Communications, for system clients: create needs system/Subscription.c, " +
			"read and $status .r, delete .d, search .s. criteria is Communication, optionally with priority= and category= " +
			"(comma lists: any of) and recipient= (one reference). channel.type must be rest-hook; channel.endpoint https " +
			"(http only to a loopback address); channel.payload absent or application/fhir+json; channel.header lines " +
			"(\"Name: value\") are sent with every notification, stored encrypted and never returned. status is requested " +
			"or active, and the subscription is active at once; it reads error (with error, the reason) when its newest " +
			"notification was given up, off when an operator turned it off. Notifications are id-only whatever payload says: " +
			"a history Bundle (R4 Subscriptions Backport) whose Parameters give the subscription, the event number and the " +
			"Communication's reference, never its content, POSTed as application/fhir+json and retried with backoff for a day. " +
			"Only criteria, reason, channel and status are kept; end is not supported. Conditional create is not supported.",
		"interaction": []map[string]any{{"code": "create"}, {"code": "read"}, {"code": "delete"}, {"code": "search-type"}},
		"searchParam": params,
		"operation": []map[string]any{{
			"name":       "$status",
			"definition": subscriptionStatusOp,
			"documentation": "GET Subscription/ID/$status: a Parameters resource after the Backport's SubscriptionStatus, simplified: " +
				"subscription, status, type (query-status), events-since-subscription-start (the newest event number), " +
				"notices-pending, notices-sent and notices-dead (counts), and error (the reason the newest given-up notification failed)",
		}},
	}}
}

// subscriptionBody is what carebridge reads of a Subscription sent to it.
type subscriptionBody struct {
	ResourceType string          `json:"resourceType"`
	Status       string          `json:"status"`
	Reason       string          `json:"reason"`
	Criteria     string          `json:"criteria"`
	End          json.RawMessage `json:"end"`
	Channel      struct {
		Type     string   `json:"type"`
		Endpoint string   `json:"endpoint"`
		Payload  string   `json:"payload"`
		Header   []string `json:"header"`
	} `json:"channel"`
}

// createSubscription is POST /Subscription: a new id, stored active.
func (s *Server) createSubscription(c *gin.Context) {
	body, ok := s.readBody(c, resourceTypes...)
	if !ok {
		return
	}
	if c.GetHeader("If-None-Exist") != "" {
		s.fail(c, http.StatusBadRequest, problem{Expression: "If-None-Exist", Code: fhir.CodeNotSupported,
			Details: "conditional create is not supported for Subscription"})
		return
	}
	sub, probs, status := s.subscriptionFrom(body)
	if status != 0 {
		s.fail(c, status, probs...)
		return
	}
	sub.ID, sub.Created, sub.Active = newID(), s.cfg.Now().UTC().Truncate(time.Microsecond), true
	sub.Owner = owner(c)
	if len(sub.Header) > 0 {
		sealed, err := s.cfg.Sealer.Seal(sub.Header, []byte("Subscription/"+sub.ID))
		if err != nil {
			s.internal(c, "sealing a subscription's headers", err)
			return
		}
		sub.Header = sealed
	}
	ev, err := s.auditedEvent(c, "create", "", []string{"Subscription/" + sub.ID})
	if err != nil {
		s.internal(c, "auditing a create", err)
		return
	}
	if err := s.cfg.Subscriptions.PutSubscription(c.Request.Context(), sub, ev); err != nil {
		s.internal(c, "storing a subscription", err)
		return
	}
	c.Header("Location", s.base+"/Subscription/"+sub.ID)
	c.Header("Last-Modified", sub.Created.Format(http.TimeFormat))
	answer(c, http.StatusCreated, s.subscriptionResource(sub, "active", ""))
}

// subscriptionFrom checks a Subscription body and makes what is stored,
// its header lines plain (Header, to be sealed). A non-zero status is the
// answer to give with the problems: every one found, not only the first.
func (s *Server) subscriptionFrom(body []byte) (store.Subscription, []problem, int) {
	var sb subscriptionBody
	if err := json.Unmarshal(body, &sb); err != nil {
		return store.Subscription{}, []problem{{Code: "structure", Details: "the body is not a JSON object"}}, http.StatusBadRequest
	}
	if sb.ResourceType != "Subscription" {
		return store.Subscription{}, []problem{{Expression: "resourceType", Code: fhir.CodeInvalid, Details: "the body must be a Subscription"}}, http.StatusBadRequest
	}
	if err := s.cfg.Validator.Validate(body); err != nil {
		if errors.Is(err, fhir.ErrTooLarge) {
			return store.Subscription{}, []problem{{Code: "too-costly", Details: err.Error()}}, http.StatusRequestEntityTooLarge
		}
		return store.Subscription{}, validationProblems(err), http.StatusUnprocessableEntity
	}
	var probs []problem
	bad := func(expr string, code fhir.IssueCode, format string, args ...any) {
		probs = append(probs, problem{Expression: expr, Code: code, Details: fmt.Sprintf(format, args...)})
	}
	switch sb.Status {
	case "requested", "active":
	default:
		bad("Subscription.status", fhir.CodeValue, "a new subscription is requested (or active); carebridge makes it active, and sets error and off itself")
	}
	if len(sb.End) > 0 {
		bad("Subscription.end", fhir.CodeNotSupported, "subscriptions do not end by themselves here; delete the subscription instead")
	}
	if len(sb.Reason) > maxReasonBytes {
		bad("Subscription.reason", fhir.CodeValue, "longer than %d bytes", maxReasonBytes)
	}
	switch {
	case len(sb.Criteria) > maxCriteriaBytes:
		bad("Subscription.criteria", fhir.CodeValue, "longer than %d bytes", maxCriteriaBytes)
	default:
		if err := s.cfg.SubscriptionRules.CheckCriteria(sb.Criteria); err != nil {
			bad("Subscription.criteria", fhir.CodeValue, "%s", err)
		}
	}
	if sb.Channel.Type != "rest-hook" {
		bad("Subscription.channel.type", fhir.CodeNotSupported, "only rest-hook is supported")
	}
	if sb.Channel.Endpoint == "" {
		bad("Subscription.channel.endpoint", fhir.CodeRequired, "a rest-hook subscription needs the endpoint notifications are POSTed to")
	} else if err := s.cfg.SubscriptionRules.CheckEndpoint(sb.Channel.Endpoint); err != nil {
		bad("Subscription.channel.endpoint", fhir.CodeValue, "%s", err)
	}
	if p := sb.Channel.Payload; p != "" {
		if mt, _, err := mime.ParseMediaType(p); err != nil || mt != notificationPayload {
			bad("Subscription.channel.payload", fhir.CodeNotSupported, "notifications are id-only "+notificationPayload+" Bundles: leave payload out or give "+notificationPayload)
		}
	}
	if len(sb.Channel.Header) > maxHeaderLines {
		bad("Subscription.channel.header", fhir.CodeValue, "more than %d header lines", maxHeaderLines)
	}
	var lines strings.Builder
	for i, h := range sb.Channel.Header {
		expr := fmt.Sprintf("Subscription.channel.header[%d]", i)
		switch {
		case i >= maxHeaderLines:
		case len(h) > maxHeaderLineBytes:
			bad(expr, fhir.CodeValue, "longer than %d bytes", maxHeaderLineBytes)
		case strings.ContainsFunc(h, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
			bad(expr, fhir.CodeValue, "a header line must be one line of printable text")
		default:
			// The header's content is a secret: the problem says what is
			// wrong with its shape only.
			if err := s.cfg.SubscriptionRules.CheckHeader(h); err != nil {
				bad(expr, fhir.CodeValue, "want \"Name: value\"")
				continue
			}
			lines.WriteString(h)
			lines.WriteByte('\n')
		}
	}
	if len(probs) > 0 {
		return store.Subscription{}, probs, http.StatusUnprocessableEntity
	}
	sub := store.Subscription{Criteria: sb.Criteria, Endpoint: sb.Channel.Endpoint, Reason: sb.Reason}
	if lines.Len() > 0 {
		sub.Header = []byte(lines.String())
	}
	return sub, nil, 0
}

// subscriptionResource is a stored subscription as a Subscription
// resource, in status (with errText for error). Header lines are left out.
func (s *Server) subscriptionResource(sub store.Subscription, status, errText string) []byte {
	reason := sub.Reason
	if reason == "" {
		reason = operatorReason
	}
	type channel struct {
		Type     string `json:"type"`
		Endpoint string `json:"endpoint"`
		Payload  string `json:"payload"`
	}
	type meta struct {
		LastUpdated string `json:"lastUpdated"`
	}
	b, _ := json.Marshal(struct { // strings only: it cannot fail
		ResourceType string  `json:"resourceType"`
		ID           string  `json:"id"`
		Meta         meta    `json:"meta"`
		Status       string  `json:"status"`
		Reason       string  `json:"reason"`
		Criteria     string  `json:"criteria"`
		Error        string  `json:"error,omitempty"`
		Channel      channel `json:"channel"`
	}{"Subscription", sub.ID, meta{sub.Created.UTC().Format(time.RFC3339Nano)}, status, reason, sub.Criteria, errText,
		channel{"rest-hook", sub.Endpoint, notificationPayload}})
	return b
}

// subscriptionState is a subscription's status, and its error when that
// is error: off when turned off, error when its newest notice is dead.
func (s *Server) subscriptionState(ctx context.Context, sub store.Subscription) (status, errText string, err error) {
	newest, err := s.cfg.Subscriptions.SubscriptionNotices(ctx, sub.ID, "", 1)
	if err != nil {
		return "", "", err
	}
	var n *store.SubscriptionNotice
	if len(newest) == 1 {
		n = &newest[0]
	}
	status, errText = stateOf(sub, n)
	return status, errText, nil
}

// stateOf is a subscription's status given its newest notice (nil: none):
// off when inactive, error once its newest notice was given up, else
// active.
func stateOf(sub store.Subscription, newest *store.SubscriptionNotice) (status, errText string) {
	switch {
	case !sub.Active:
		return "off", ""
	case newest != nil && newest.State == store.NoticeDead:
		return "error", deadReason(*newest)
	}
	return "active", ""
}

// deadReason is why a notice was given up (PHI-free, as the pipeline
// keeps it).
func deadReason(n store.SubscriptionNotice) string {
	if n.LastError == "" {
		return "the notification was given up"
	}
	return n.LastError
}

// owner is who the request's subscriptions belong to: the client (or
// user) its token names. A client sees, and deletes, only the
// subscriptions it created; those the operator added are nobody's.
func owner(c *gin.Context) string { return c.MustGet(keyPrincipal).(access.Principal).ID }

// subscription reads the subscription of the request's id; it answers 404
// itself (ok false) when there is none, or it is another's.
func (s *Server) subscription(c *gin.Context) (store.Subscription, bool) {
	id := c.Param("id")
	if !validID(id) {
		s.notFound(c, "Subscription", id)
		return store.Subscription{}, false
	}
	sub, err := s.cfg.Subscriptions.GetSubscription(c.Request.Context(), id)
	if isNotFound(err) || err == nil && (sub.Owner == "" || sub.Owner != owner(c)) {
		s.notFound(c, "Subscription", id)
		return store.Subscription{}, false
	}
	if err != nil {
		s.internal(c, "reading a subscription", err)
		return sub, false
	}
	return sub, true
}

func (s *Server) readSubscription(c *gin.Context) {
	sub, ok := s.subscription(c)
	if !ok {
		return
	}
	status, errText, err := s.subscriptionState(c.Request.Context(), sub)
	if err != nil {
		s.internal(c, "reading a subscription's notices", err)
		return
	}
	if err := s.record(c, "read", "", []string{"Subscription/" + sub.ID}); err != nil {
		s.internal(c, "auditing a read", err)
		return
	}
	c.Header("Last-Modified", sub.Created.UTC().Format(http.TimeFormat))
	answer(c, http.StatusOK, s.subscriptionResource(sub, status, errText))
}

// deleteSubscription is DELETE /Subscription/ID: the subscription and its
// notices go; 204.
func (s *Server) deleteSubscription(c *gin.Context) {
	sub, ok := s.subscription(c) // the client's own, or 404
	if !ok {
		return
	}
	id := sub.ID
	ev, err := s.auditedEvent(c, "delete", "", []string{"Subscription/" + id})
	if err != nil {
		s.internal(c, "auditing a delete", err)
		return
	}
	err = s.cfg.Subscriptions.DeleteSubscription(c.Request.Context(), id, ev)
	if isNotFound(err) {
		s.notFound(c, "Subscription", id)
		return
	}
	if err != nil {
		s.internal(c, "deleting a subscription", err)
		return
	}
	c.Status(http.StatusNoContent)
}

// subscriptionSearch is a parsed Subscription search.
type subscriptionSearch struct {
	Statuses  []string // any of; none: any
	URL       string   // the endpoint; "": any
	Count     int
	Offset    int
	CountOnly bool
	Canonical url.Values
	Ignored   []problem
}

var subscriptionStatuses = []string{"requested", "active", "error", "off"}

// parseSubscriptionSearch reads the parameters of a Subscription search,
// every problem at once; with lenient, unknown parameters are set aside.
func parseSubscriptionSearch(params url.Values, lenient bool) (subscriptionSearch, []problem) {
	sr := subscriptionSearch{Count: defaultCount, Canonical: url.Values{}}
	names, probs := searchNames(params)
	bad := func(param string, code fhir.IssueCode, format string, args ...any) {
		probs = append(probs, problem{Expression: param, Code: code, Details: fmt.Sprintf(format, args...)})
	}
	statusGiven := false
	for _, full := range names {
		values := params[full]
		name, modifier, _ := strings.Cut(full, ":")
		before := len(probs)
		switch name {
		case "_format":
			continue
		case "status":
			if modifier != "" {
				bad(full, fhir.CodeNotSupported, "modifier :%s is not supported on status", modifier)
				break
			}
			for _, v := range values {
				parts, err := splitOr(v)
				if err != nil {
					bad(full, fhir.CodeValue, "%s", err)
					continue
				}
				var these []string
				for _, p := range parts {
					_, code, hasSystem := strings.Cut(p, "|")
					if !hasSystem {
						code = p
					}
					if !slices.Contains(subscriptionStatuses, code) {
						bad(full, fhir.CodeValue, "status is requested, active, error or off")
						continue
					}
					these = append(these, code)
				}
				// Repeated parameters are ANDed.
				if statusGiven {
					these = slices.DeleteFunc(these, func(x string) bool { return !slices.Contains(sr.Statuses, x) })
				}
				sr.Statuses, statusGiven = these, true
			}
		case "url":
			if modifier != "" || len(values) != 1 || values[0] == "" {
				bad(full, fhir.CodeValue, "url takes one endpoint URL, without modifiers")
				break
			}
			sr.URL = values[0]
		case "_count":
			n, ok := countParam(values)
			if modifier != "" || !ok {
				bad(full, fhir.CodeValue, countProblem, maxCount)
				break
			}
			sr.Count, sr.CountOnly = n, n == 0
		case "_offset":
			n, ok := offsetParam(values)
			if modifier != "" || !ok {
				bad(full, fhir.CodeValue, offsetProblem, maxOffset)
				break
			}
			sr.Offset = n
		default:
			if lenient {
				sr.Ignored = append(sr.Ignored, problem{Expression: full, Code: fhir.CodeNotSupported, Details: "unknown search parameter, ignored"})
				continue
			}
			bad(full, fhir.CodeNotSupported, "unknown search parameter for Subscription (see /fhir/metadata)")
		}
		if len(probs) == before && name != "_count" && name != "_offset" {
			sr.Canonical[full] = values
		}
	}
	if statusGiven && len(sr.Statuses) == 0 {
		sr.Statuses = []string{noMatch}
	}
	return sr, probs
}

func (s *Server) searchSubscriptions(c *gin.Context) {
	params, ok := s.searchParams(c)
	if !ok {
		return
	}
	sr, probs := parseSubscriptionSearch(params, lenient(c.Request))
	if len(probs) > 0 {
		s.fail(c, http.StatusBadRequest, probs...)
		return
	}
	ctx := c.Request.Context()
	subs, err := s.cfg.Subscriptions.ListSubscriptions(ctx)
	if err != nil {
		s.internal(c, "listing subscriptions", err)
		return
	}
	type match struct {
		sub             store.Subscription
		status, errText string
	}
	var matches []match
	newest, err := s.cfg.Subscriptions.NewestNotices(ctx)
	if err != nil {
		s.internal(c, "reading the subscriptions' notices", err)
		return
	}
	mine := owner(c)
	for _, sub := range subs[:min(len(subs), maxSubscriptionList)] {
		if sub.Owner == "" || sub.Owner != mine || sr.URL != "" && sub.Endpoint != sr.URL {
			continue
		}
		var n *store.SubscriptionNotice
		if last, ok := newest[sub.ID]; ok {
			n = &last
		}
		status, errText := stateOf(sub, n)
		if len(sr.Statuses) > 0 && !slices.Contains(sr.Statuses, status) {
			continue
		}
		matches = append(matches, match{sub, status, errText})
	}
	total := len(matches)
	out := searchBundle{ResourceType: "Bundle", Type: "searchset", Total: &total}
	page := matches[min(sr.Offset, total):]
	more := false
	if sr.CountOnly {
		page = nil
	} else if len(page) > sr.Count {
		page, more = page[:sr.Count], true
	}
	entities := make([]string, 0, len(page))
	for _, m := range page {
		ref := "Subscription/" + m.sub.ID
		out.Entry = append(out.Entry, bundleEntry{FullURL: s.base + "/" + ref, Resource: s.subscriptionResource(m.sub, m.status, m.errText),
			Search: bundleSearch{Mode: "match"}})
		entities = append(entities, ref)
	}
	if len(sr.Ignored) > 0 {
		b, _ := json.Marshal(outcome("warning", sr.Ignored...))
		out.Entry = append(out.Entry, bundleEntry{Resource: b, Search: bundleSearch{Mode: "outcome"}})
	}
	out.Link = s.pageLinks("Subscription", sr.Canonical, pageSpec{Count: sr.Count, CountOnly: sr.CountOnly}, sr.Offset, more)
	if err := s.record(c, "search-type", "", entities); err != nil {
		s.internal(c, "auditing a search", err)
		return
	}
	answer(c, http.StatusOK, out.encode())
}

// statusParam is one parameter of the $status answer.
type statusParam struct {
	Name                 string         `json:"name"`
	ValueReference       *statusRef     `json:"valueReference,omitempty"`
	ValueCode            string         `json:"valueCode,omitempty"`
	ValueString          string         `json:"valueString,omitempty"`
	ValueInteger         *int           `json:"valueInteger,omitempty"`
	ValueCodeableConcept *statusConcept `json:"valueCodeableConcept,omitempty"`
}

type statusRef struct {
	Reference string `json:"reference"`
}

type statusConcept struct {
	Text string `json:"text"`
}

// subscriptionStatus is GET /Subscription/ID/$status.
func (s *Server) subscriptionStatus(c *gin.Context) {
	sub, ok := s.subscription(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	status, _, err := s.subscriptionState(ctx, sub)
	if err != nil {
		s.internal(c, "reading a subscription's notices", err)
		return
	}
	counts, err := s.cfg.Subscriptions.NoticeCounts(ctx)
	if err != nil {
		s.internal(c, "counting a subscription's notices", err)
		return
	}
	dead, err := s.cfg.Subscriptions.SubscriptionNotices(ctx, sub.ID, store.NoticeDead, 1)
	if err != nil {
		s.internal(c, "reading a subscription's notices", err)
		return
	}
	count := func(state string) *int { n := counts[sub.ID][state]; return &n }
	params := []statusParam{
		{Name: "subscription", ValueReference: &statusRef{"Subscription/" + sub.ID}},
		{Name: "status", ValueCode: status},
		{Name: "type", ValueCode: "query-status"},
		{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(sub.Events, 10)},
		{Name: "notices-pending", ValueInteger: count(store.NoticePending)},
		{Name: "notices-sent", ValueInteger: count(store.NoticeSent)},
		{Name: "notices-dead", ValueInteger: count(store.NoticeDead)},
	}
	if len(dead) == 1 {
		params = append(params, statusParam{Name: "error", ValueCodeableConcept: &statusConcept{deadReason(dead[0])}})
	}
	b, _ := json.Marshal(struct { // plain values: it cannot fail
		ResourceType string        `json:"resourceType"`
		Parameter    []statusParam `json:"parameter"`
	}{"Parameters", params})
	if err := s.record(c, "operation", "", []string{"Subscription/" + sub.ID}); err != nil {
		s.internal(c, "auditing an operation", err)
		return
	}
	answer(c, http.StatusOK, b)
}
