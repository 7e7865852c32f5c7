package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/store"
)

func (s *Server) readCommunication(c *gin.Context) {
	id := c.Param("id")
	if !validID(id) {
		s.notFound(c, "Communication", id)
		return
	}
	row, err := s.cfg.Store.GetCommunication(c.Request.Context(), id)
	if isNotFound(err) {
		s.notFound(c, "Communication", id)
		return
	}
	if err != nil {
		s.internal(c, "reading a Communication", err)
		return
	}
	s.answerRow(c, "read", row)
}

// communicationScope is which Communications the request's principal may
// see now (access.Principal.CommunicationScope).
func (s *Server) communicationScope(c *gin.Context) access.CommunicationScope {
	p, _ := c.Get(keyPrincipal)
	pr, _ := p.(access.Principal)
	return pr.CommunicationScope(s.cfg.Now())
}

// breakGlassNeeded says what a user must do to see a Communication
// addressed to none of their recipients.
const breakGlassNeeded = " is addressed to none of your recipients (your Practitioner, your care teams): " +
	"seeing it needs break-glass, POST /auth/break-glass with a reason"

// mayRead says whether the request's principal may see row, the minimum
// necessary: a user sees the Communications addressed to one of their
// recipients and those one of their recipients sent (their own messages,
// which they may recall), or any while their break-glass lasts
// (breakGlass: the audit entry must be flagged). When not, it answers 403
// itself, audited as a refused interaction on the Communication.
func (s *Server) mayRead(c *gin.Context, interaction string, row store.CommunicationRow) (breakGlass, ok bool) {
	scope := s.communicationScope(c)
	if row.Sender != "" && slices.Contains(scope.Recipients, row.Sender) {
		return false, true // their own message
	}
	if ok, breakGlass = scope.Allows(row.Recipients); ok {
		return breakGlass, true
	}
	ref := "Communication/" + row.ID
	s.refuseUnseen(c, interaction, ref, ref+breakGlassNeeded)
	return false, false
}

// refuseUnseen answers 403 for what the minimum necessary keeps from the
// request's principal, audited as a refused interaction on ref.
func (s *Server) refuseUnseen(c *gin.Context, interaction, ref, details string) {
	err := s.cfg.Audit.Record(c.Request.Context(), audit.Entry{At: s.cfg.Now().UTC(), Actor: actorOf(c, c.MustGet(keyPrincipal).(access.Principal)),
		Action: "rest." + interaction, Outcome: audit.OutcomeMinor, Correlation: c.GetString(keyRequestID), Entities: []string{ref}})
	if err != nil {
		s.internal(c, "auditing a refused read", err)
		return
	}
	s.fail(c, http.StatusForbidden, problem{Code: fhirCodeForbidden, Details: details})
}

// limitToSeen keeps a user's search to the Communications addressed to one
// of their recipients (mine) or sent by one of them. A search already
// held to some of mine as recipients or as senders needs nothing more
// (and keeps the inbox index's path); any other is constrained by SeenBy.
func limitToSeen(q *store.CommunicationQuery, mine []string) {
	within := func(vs []string) bool {
		return len(vs) > 0 && !slices.ContainsFunc(vs, func(v string) bool { return !slices.Contains(mine, v) })
	}
	if within(q.Recipient.Any) || within(q.Sender.Any) {
		return
	}
	q.SeenBy = append([]string{}, mine...)
}

// lenient reports whether the client asked that unknown search
// parameters be ignored (Prefer: handling=lenient).
func lenient(r *http.Request) bool { return strings.EqualFold(prefer(r, "handling"), "lenient") }

// searchParams are the query's parameters, and for POST _search those of
// the form body too.
func (s *Server) searchParams(c *gin.Context) (url.Values, bool) {
	params := c.Request.URL.Query()
	if c.Request.Method != http.MethodPost {
		return params, true
	}
	if mt := c.ContentType(); mt != "application/x-www-form-urlencoded" {
		s.fail(c, http.StatusUnsupportedMediaType, problem{Code: "not-supported", Details: "POST _search takes application/x-www-form-urlencoded"})
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxFormBytes+1))
	if err != nil || len(body) > maxFormBytes {
		s.fail(c, http.StatusRequestEntityTooLarge, problem{Code: "too-costly", Details: fmt.Sprintf("the form is larger than %d bytes or cannot be read", maxFormBytes)})
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.fail(c, http.StatusBadRequest, problem{Code: "structure", Details: "the form body is not URL-encoded"})
		return nil, false
	}
	for k, vs := range form {
		params[k] = append(params[k], vs...)
	}
	return params, true
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type bundleSearch struct {
	Mode string `json:"mode"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource"`
	Search   bundleSearch    `json:"search"`
}

type searchBundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Total        *int          `json:"total,omitempty"`
	Link         []bundleLink  `json:"link"`
	Entry        []bundleEntry `json:"entry,omitempty"`
}

func (s *Server) searchCommunications(c *gin.Context) {
	params, ok := s.searchParams(c)
	if !ok {
		return
	}
	sr, probs := parseCommunicationSearch(params, lenient(c.Request), s.base)
	if len(probs) > 0 {
		s.fail(c, http.StatusBadRequest, probs...)
		return
	}
	ctx := c.Request.Context()
	p := c.MustGet(keyPrincipal).(access.Principal)
	// A user limited to their recipients searches among what is addressed
	// to them and what they sent; under break-glass the search is not
	// narrowed, and is flagged.
	scope := s.communicationScope(c)
	if !scope.All {
		limitToSeen(&sr.Query, scope.Recipients)
	}
	out := searchBundle{ResourceType: "Bundle", Type: "searchset"}
	sized := func(n int) store.CommunicationQuery { q := sr.Query; q.Limit = n; return q }
	total, rows, more, err := searchPage(ctx, pageSpec{Count: sr.Count, CountOnly: sr.CountOnly, NoTotal: sr.NoTotal}, sr.Query.Offset, sized,
		s.cfg.Store.CountCommunications, s.cfg.Store.SearchCommunications)
	if err != nil {
		s.internal(c, "searching Communications", err)
		return
	}
	out.Total = total
	entities := make([]string, 0, len(rows))
	for _, row := range rows {
		ref := "Communication/" + row.ID
		body, err := s.view(c, row)
		if err != nil {
			s.internal(c, "opening a Communication", err)
			return
		}
		out.Entry = append(out.Entry, bundleEntry{FullURL: s.base + "/" + ref, Resource: body, Search: bundleSearch{Mode: "match"}})
		entities = append(entities, ref)
	}
	entities = append(entities, locationsShown(c)...) // what a clerk's view showed besides
	var warnings []problem
	if sr.IncludeSubject && len(rows) > 0 {
		if !p.Scopes.Allows(p.Contexts, "Patient", access.Read) {
			warnings = append(warnings, problem{Expression: "_include", Code: fhirCodeForbidden, Details: "the subjects are left out: the token's scopes do not permit reading Patient"})
		} else {
			seen := map[string]bool{}
			for _, row := range rows {
				typ, id, _ := strings.Cut(row.Subject, "/")
				if typ != "Patient" || seen[id] {
					continue
				}
				seen[id] = true
				res, err := s.cfg.Store.GetResource(ctx, "Patient", id)
				if isNotFound(err) {
					continue
				}
				if err != nil {
					s.internal(c, "reading an included Patient", err)
					return
				}
				body, err := s.cfg.Keys.Open(res.Sealed, []byte(row.Subject))
				if err != nil {
					s.internal(c, "opening an included Patient", fmt.Errorf("%s: %w", row.Subject, err))
					return
				}
				out.Entry = append(out.Entry, bundleEntry{FullURL: s.base + "/" + row.Subject, Resource: body, Search: bundleSearch{Mode: "include"}})
				entities = append(entities, row.Subject)
			}
		}
	}
	warnings = append(warnings, sr.Ignored...)
	if len(warnings) > 0 {
		b, _ := json.Marshal(outcome("warning", warnings...))
		out.Entry = append(out.Entry, bundleEntry{Resource: b, Search: bundleSearch{Mode: "outcome"}})
	}
	out.Link = s.pageLinks("Communication", sr.Canonical, pageSpec{Count: sr.Count, CountOnly: sr.CountOnly}, sr.Query.Offset, more)
	if err := s.recordAs(c, "search-type", sr.Patient, entities, scope.BreakGlass); err != nil {
		s.internal(c, "auditing a search", err)
		return
	}
	answer(c, http.StatusOK, out.encode())
}

// encode writes the Bundle. The resources are JSON already (as stored,
// or built here); json.Marshal would parse and compact each again.
func (b *searchBundle) encode() []byte {
	n := 256
	for _, e := range b.Entry {
		n += len(e.FullURL) + len(e.Resource) + 64
	}
	out := make([]byte, 0, n)
	out = append(out, `{"resourceType":"Bundle","type":"searchset"`...)
	if b.Total != nil {
		out = append(out, `,"total":`...)
		out = strconv.AppendInt(out, int64(*b.Total), 10)
	}
	out = append(out, `,"link":`...)
	out = appendJSON(out, b.Link)
	if len(b.Entry) > 0 {
		out = append(out, `,"entry":[`...)
		for i, e := range b.Entry {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, '{')
			if e.FullURL != "" {
				out = append(out, `"fullUrl":`...)
				out = appendJSON(out, e.FullURL)
				out = append(out, ',')
			}
			out = append(out, `"resource":`...)
			out = append(out, e.Resource...)
			out = append(out, `,"search":{"mode":"`...)
			out = append(out, e.Search.Mode...)
			out = append(out, `"}}`...)
		}
		out = append(out, ']')
	}
	return append(out, '}')
}

// pageLinks are the self, previous and next links of a page of a search
// on typ: its canonical parameters, the page size and offset.
func (s *Server) pageLinks(typ string, canonical url.Values, ps pageSpec, offset int, more bool) []bundleLink {
	at := func(offset int) string {
		v := url.Values{}
		for k, vs := range canonical {
			v[k] = vs
		}
		v.Set("_count", strconv.Itoa(ps.Count))
		if offset > 0 {
			v.Set("_offset", strconv.Itoa(offset))
		}
		return s.base + "/" + typ + "?" + v.Encode()
	}
	links := []bundleLink{{Relation: "self", URL: at(offset)}}
	if ps.CountOnly {
		return links
	}
	if offset > 0 {
		links = append(links, bundleLink{Relation: "previous", URL: at(max(offset-ps.Count, 0))})
	}
	if more && offset+ps.Count <= maxOffset {
		links = append(links, bundleLink{Relation: "next", URL: at(offset + ps.Count)})
	}
	return links
}

// appendJSON appends v (strings, links: it cannot fail) without escaping
// & < > as json.Marshal does, so that URLs read as they are.
func appendJSON(b []byte, v any) []byte {
	j, _ := marshalJSON(v)
	return append(b, j...)
}

// marshalJSON is json.Marshal without escaping & < > (in URLs and text).
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// pageSpec is what a search asks of its page.
type pageSpec struct {
	Count     int  // rows a page holds
	CountOnly bool // the total, no rows
	NoTotal   bool // the rows, no total
}

// searchPage runs a search's count and page: the total (unless none is
// asked for), the page's rows, and whether more follow. sized is the
// query with its limit and offset set; it asks for one row more than a
// page, which tells whether a next page exists. The page comes first: a
// last page that holds rows, or a first page that holds all, tells the
// total without counting (an inbox seldom fills a page), and a count
// costs more than the page (every match, not 21 of them).
func searchPage[Q, R any](ctx context.Context, ps pageSpec, offset int, sized func(limit int) Q,
	count func(context.Context, Q) (int, error), search func(context.Context, Q) ([]R, error)) (total *int, rows []R, more bool, err error) {
	if !ps.CountOnly {
		if rows, err = search(ctx, sized(ps.Count+1)); err != nil {
			return nil, nil, false, err
		}
		if more = len(rows) > ps.Count; more {
			rows = rows[:ps.Count]
		}
	}
	switch {
	case ps.NoTotal && !ps.CountOnly:
	case !ps.CountOnly && !more && (offset == 0 || len(rows) > 0):
		n := offset + len(rows)
		total = &n
	default:
		n, err := count(ctx, sized(0))
		if err != nil {
			return nil, nil, false, fmt.Errorf("counting: %w", err)
		}
		total = &n
	}
	return total, rows, more, nil
}
