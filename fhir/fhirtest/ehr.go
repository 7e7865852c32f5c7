// Package fhirtest is a stand-in EHR FHIR server for tests: it validates
// every resource it is sent with google/fhir (strict R4), keeps each by
// Type/id, counts what was stored twice, and can be taken down or told to
// refuse particular resources.
package fhirtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/carebridge/carebridge/fhir"
)

// EHR is a running test FHIR server.
type EHR struct {
	URL string
	srv *httptest.Server
	v   *fhir.Validator

	mu            sync.Mutex
	held          map[string][]byte // "Type/id" → resource
	rewrites      int               // PUTs of a resource held already
	invalid       int               // resources that failed validation
	requests      int
	down          bool
	noTransaction bool
	refuse        map[string]bool // "Type/id" answered 422
	token         string
	smart         *smartServer // nil: no SMART authorisation
}

// NewEHR starts a server, closed when the test ends.
func NewEHR(t testing.TB) *EHR {
	t.Helper()
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	e := &EHR{v: v, held: map[string][]byte{}, refuse: map[string]bool{}}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	e.URL = e.srv.URL + "/fhir"
	t.Cleanup(e.srv.Close)
	return e
}

// SetDown makes every request fail with 503 (down) or work again.
func (e *EHR) SetDown(down bool) { e.mu.Lock(); e.down = down; e.mu.Unlock() }

// SetNoTransaction makes the base answer 405, as a server without batches.
func (e *EHR) SetNoTransaction(no bool) { e.mu.Lock(); e.noTransaction = no; e.mu.Unlock() }

// Refuse makes the server answer 422 to the resource "Type/id".
func (e *EHR) Refuse(ref string) { e.mu.Lock(); e.refuse[ref] = true; e.mu.Unlock() }

// RequireToken makes the server answer 401 without this bearer token.
func (e *EHR) RequireToken(tok string) { e.mu.Lock(); e.token = tok; e.mu.Unlock() }

// Held returns the resources held of a type, by id.
func (e *EHR) Held(typ string) map[string][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string][]byte{}
	for ref, b := range e.held {
		if t, id, _ := strings.Cut(ref, "/"); t == typ {
			out[id] = b
		}
	}
	return out
}

// Stats are counts since the start: resources written again (a PUT of an
// id held already), resources that failed validation, and requests.
func (e *EHR) Stats() (rewrites, invalid, requests int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rewrites, e.invalid, e.requests
}

func (e *EHR) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if e.down {
		outcome(w, http.StatusServiceUnavailable, "transient")
		return
	}
	if e.smart != nil {
		switch r.URL.Path {
		case "/fhir/.well-known/smart-configuration":
			e.smart.configuration(w, e.srv.URL)
			return
		case "/auth/token":
			e.smart.issue(w, r, e.srv.URL)
			return
		}
		if !e.smart.valid(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
			outcome(w, http.StatusUnauthorized, "login")
			return
		}
	}
	if e.token != "" && r.Header.Get("Authorization") != "Bearer "+e.token {
		outcome(w, http.StatusUnauthorized, "login")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		outcome(w, http.StatusBadRequest, "structure")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/fhir")
	switch {
	case r.Method == http.MethodPost && (path == "" || path == "/"):
		if e.noTransaction {
			outcome(w, http.StatusMethodNotAllowed, "not-supported")
			return
		}
		e.transaction(w, body)
	case r.Method == http.MethodPut && strings.Count(path, "/") == 2:
		status, code := e.put(strings.TrimPrefix(path, "/"), body)
		if code != "" {
			outcome(w, status, code)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(status)
		w.Write(body)
	default:
		outcome(w, http.StatusNotFound, "not-found")
	}
}

// transaction applies a Bundle all or nothing, as FHIR asks.
func (e *EHR) transaction(w http.ResponseWriter, body []byte) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Request  struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	if json.Unmarshal(body, &b) != nil || b.ResourceType != "Bundle" || b.Type != "transaction" {
		outcome(w, http.StatusBadRequest, "structure")
		return
	}
	for _, en := range b.Entry {
		if en.Request.Method != http.MethodPut || e.refuse[en.Request.URL] || e.check(en.Request.URL, en.Resource) != nil {
			outcome(w, http.StatusUnprocessableEntity, "processing")
			return
		}
	}
	type response struct {
		Status string `json:"status"`
	}
	type entry struct {
		Response response `json:"response"`
	}
	out := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction-response"}
	for _, en := range b.Entry {
		status, _ := e.put(en.Request.URL, en.Resource)
		out.Entry = append(out.Entry, entry{Response: response{Status: fmt.Sprintf("%d %s", status, http.StatusText(status))}})
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	json.NewEncoder(w).Encode(out)
}

// check validates a resource and that it is the one its URL names.
func (e *EHR) check(ref string, body []byte) error {
	if err := e.v.Validate(body); err != nil {
		e.invalid++
		return err
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if json.Unmarshal(body, &head) != nil || head.ResourceType+"/"+head.ID != ref {
		e.invalid++
		return fmt.Errorf("%s is not the resource at %s", head.ResourceType+"/"+head.ID, ref)
	}
	return nil
}

// put stores a resource: 201 when new, 200 when it was held already; a
// non-empty code means it was refused with that status.
func (e *EHR) put(ref string, body []byte) (int, string) {
	if e.refuse[ref] || e.check(ref, body) != nil {
		return http.StatusUnprocessableEntity, "processing"
	}
	if _, ok := e.held[ref]; ok {
		e.rewrites++
		e.held[ref] = append([]byte(nil), body...)
		return http.StatusOK, ""
	}
	e.held[ref] = append([]byte(nil), body...)
	return http.StatusCreated, ""
}

func outcome(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":%q}]}`, code)
}
