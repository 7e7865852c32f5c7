package bridge

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	fhirmodel "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// InboxItem is a message as its recipient's session receives it. It holds
// the message text (PHI), so it goes only to that recipient.
type InboxItem struct {
	ID        string    `json:"id"`
	Priority  string    `json:"priority"`
	Category  string    `json:"category"`
	Sent      time.Time `json:"sent"`
	Subject   string    `json:"subject"`
	Encounter string    `json:"encounter,omitempty"`
	Text      string    `json:"text"`
	State     string    `json:"state,omitempty"`
}

// Opener opens what was sealed at rest (the key ring).
type Opener interface {
	Open(sealed, aad []byte) ([]byte, error)
}

// Keys seal and open records at rest.
type Keys interface {
	Opener
	Seal(plaintext, aad []byte) ([]byte, error)
}

// inboxItem opens a stored Communication into an item.
func inboxItem(c store.CommunicationRow, keys Opener) (InboxItem, error) {
	body, err := keys.Open(c.Sealed, []byte("Communication/"+c.ID))
	if err != nil {
		return InboxItem{}, fmt.Errorf("opening Communication/%s: %w", c.ID, err)
	}
	var comm fhir.Communication
	if err := json.Unmarshal(body, &comm); err != nil {
		return InboxItem{}, fmt.Errorf("reading Communication/%s: %w", c.ID, err)
	}
	item := InboxItem{ID: c.ID, Priority: c.Priority, Category: c.Category, Sent: c.Sent, Subject: c.Subject, Encounter: c.Encounter}
	for _, p := range comm.Payload {
		if p.ContentString != nil {
			item.Text = *p.ContentString
			break
		}
	}
	return item, nil
}

// Hub hands new messages to the recipients' connected sessions in this
// process. A session that falls behind misses live items, never messages:
// it is told it missed some and reads them from the store.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[*hubSub]struct{}
}

type hubSub struct {
	items  chan InboxItem
	missed chan struct{} // signalled when an item did not fit in items
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[*hubSub]struct{}{}} }

// Subscribe returns the items for recipient and a function that ends the
// subscription; items that do not fit its buffer are dropped.
func (h *Hub) Subscribe(recipient string) (<-chan InboxItem, func()) {
	items, _, cancel := h.SubscribeSession(recipient)
	return items, cancel
}

// SubscribeSession is Subscribe for a session that catches up: missed
// receives a signal whenever an item was dropped because the session had
// fallen behind, so that it reads what waits for it from the store.
func (h *Hub) SubscribeSession(recipient string) (items <-chan InboxItem, missed <-chan struct{}, cancel func()) {
	sub := &hubSub{items: make(chan InboxItem, 64), missed: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.subs[recipient] == nil {
		h.subs[recipient] = map[*hubSub]struct{}{}
	}
	h.subs[recipient][sub] = struct{}{}
	h.mu.Unlock()
	return sub.items, sub.missed, func() {
		h.mu.Lock()
		delete(h.subs[recipient], sub)
		if len(h.subs[recipient]) == 0 {
			delete(h.subs, recipient)
		}
		h.mu.Unlock()
	}
}

// Connected reports whether any of recipients has a session here.
func (h *Hub) Connected(recipients []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range recipients {
		if len(h.subs[r]) > 0 {
			return true
		}
	}
	return false
}

// Publish offers item to recipient's sessions without waiting.
func (h *Hub) Publish(recipient string, item InboxItem) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs[recipient] {
		select {
		case sub.items <- item:
		default:
			select {
			case sub.missed <- struct{}{}:
			default:
			}
		}
	}
}

// InboxStore is what the inbox needs of storage.
type InboxStore interface {
	Inbox(ctx context.Context, recipient string, limit int) ([]store.InboxEntry, error)
	Waiting(ctx context.Context, recipient string, limit int) ([]store.InboxEntry, error)
	DeliveriesOf(ctx context.Context, communicationID string) ([]store.Delivery, error)
	GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error)
	CompleteCommunications(ctx context.Context, cs []store.Completion) (int, error)
	SetDelivery(ctx context.Context, communicationID, recipient, state string, at time.Time, events ...store.Event) error
	SetDeliveries(ctx context.Context, updates []store.DeliveryUpdate, events ...store.Event) error
}

// InboxAPI serves a clinician's inbox over HTTP:
//
//	GET  /api/inbox               the newest messages, with their state (JSON)
//	GET  /api/inbox/stream        Server-Sent Events: undelivered messages, then each new one as it is stored
//	POST /api/inbox/{id}/read     the read receipt
//
// Identity is a development bearer token per recipient (Tokens: token →
// Practitioner/PractitionerRole/CareTeam reference) until the access
// issue brings real sessions. Every delivery and read is audited.
type InboxAPI struct {
	Store     InboxStore
	Keys      Keys
	Hub       *Hub
	Tokens    map[string]string
	Now       func() time.Time
	Log       *slog.Logger
	Heartbeat time.Duration // default 15 s
	// Closing ends every open stream when it is closed (the server shuts
	// down: http.Server.Shutdown waits for handlers, and a stream's
	// handler would otherwise run until the client leaves). Clients
	// reconnect and get what they missed from the list.
	Closing <-chan struct{}

	recOnce sync.Once
	rec     *deliveryRecorder
}

func (a *InboxAPI) recorder() *deliveryRecorder {
	a.recOnce.Do(func() { a.rec = newDeliveryRecorder(a) })
	return a.rec
}

// Drain waits until every delivery the streams made is recorded: call it
// after the HTTP server has shut down, before the store closes.
func (a *InboxAPI) Drain() { a.recorder().wait() }

// Handler returns the routes.
func (a *InboxAPI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/inbox", a.auth(a.list))
	mux.HandleFunc("GET /api/inbox/stream", a.auth(a.stream))
	mux.HandleFunc("POST /api/inbox/{id}/read", a.auth(a.read))
	return mux
}

type recipientKey struct{}

// auth resolves the bearer token to its recipient, comparing in constant
// time; the token itself is never logged.
func (a *InboxAPI) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		recipient := ""
		if ok {
			for t, rec := range a.Tokens {
				if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
					recipient = rec
				}
			}
		}
		if recipient == "" {
			a.Log.Warn("inbox request without a valid token", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="carebridge inbox"`)
			http.Error(w, "a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), recipientKey{}, recipient)))
	}
}

func recipientOf(r *http.Request) string { return r.Context().Value(recipientKey{}).(string) }

func (a *InboxAPI) list(w http.ResponseWriter, r *http.Request) {
	recipient := recipientOf(r)
	entries, err := a.Store.Inbox(r.Context(), recipient, 100)
	if err != nil {
		a.fail(w, "reading an inbox", err)
		return
	}
	items := make([]InboxItem, 0, len(entries))
	for _, e := range entries {
		it, err := inboxItem(e.Communication, a.Keys)
		if err != nil {
			a.fail(w, "opening an inbox message", err)
			return
		}
		it.State = e.State
		items = append(items, it)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(items)
}

// waitingPage is how many undelivered messages a stream reads at a time.
const waitingPage = 200

func (a *InboxAPI) stream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	recipient := recipientOf(r)
	live, missed, cancel := a.Hub.SubscribeSession(recipient) // before the backlog, so nothing falls between
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	fmt.Fprint(w, "retry: 3000\n\n")
	flusher.Flush()
	// Everything not yet delivered, oldest first, however much piled up
	// while the clinician was away (or while this session fell behind):
	// page by page, as each sent message leaves the waiting list.
	sent := map[string]bool{}
	// Deliveries are recorded in batches shared by every session, while
	// this one goes on sending. Before reading what still waits, the
	// session lets its own deliveries land, or it would see them again.
	var recorded []<-chan error
	settle := func() {
		for _, done := range recorded {
			<-done
		}
		recorded = recorded[:0]
	}
	catchUp := func() bool {
		for {
			settle()
			entries, err := a.Store.Waiting(r.Context(), recipient, waitingPage)
			if err != nil {
				a.Log.Error("reading an inbox", "error", err)
				return false
			}
			fresh := 0
			for _, e := range entries {
				if sent[e.Communication.ID] {
					continue
				}
				fresh++
				it, err := inboxItem(e.Communication, a.Keys)
				if err != nil {
					a.Log.Error("opening an inbox message", "communication_id", e.Communication.ID, "error", err)
					sent[e.Communication.ID] = true
					continue
				}
				if !a.send(w, flusher, r, recipient, it, &recorded) {
					return false
				}
				sent[it.ID] = true
			}
			if len(entries) < waitingPage || fresh == 0 {
				return true
			}
		}
	}
	if !catchUp() {
		return
	}
	beat := a.Heartbeat
	if beat <= 0 {
		beat = 15 * time.Second
	}
	tick := time.NewTicker(beat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.Closing:
			return
		case <-missed:
			if !catchUp() {
				return
			}
		case it := <-live:
			if sent[it.ID] {
				continue
			}
			if !a.send(w, flusher, r, recipient, it, &recorded) {
				return
			}
			sent[it.ID] = true
			if len(recorded) > waitingPage {
				settle() // the outcomes are not needed, only bounded memory
			}
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// send writes one event and records the delivery; false when the client
// is gone.
func (a *InboxAPI) send(w http.ResponseWriter, f http.Flusher, r *http.Request, recipient string, it InboxItem, recorded *[]<-chan error) bool {
	it.State = store.DeliveryDelivered
	b, err := json.Marshal(it)
	if err != nil {
		return false
	}
	if _, err := fmt.Fprintf(w, "id: %s\nevent: communication\ndata: %s\n\n", it.ID, b); err != nil {
		return false
	}
	f.Flush()
	*recorded = append(*recorded, a.recorder().record(recipient, it.ID, it.Subject, r.RemoteAddr))
	return true
}

func (a *InboxAPI) read(w http.ResponseWriter, r *http.Request) {
	recipient, id := recipientOf(r), r.PathValue("id")
	err := a.setDelivery(r.Context(), r, recipient, id, "", store.DeliveryRead, "communication.read")
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no such message in this inbox", http.StatusNotFound)
		return
	}
	if err != nil {
		a.fail(w, "recording a read receipt", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// setDelivery records a delivery state with its audit entry, in one
// transaction.
func (a *InboxAPI) setDelivery(ctx context.Context, r *http.Request, recipient, id, patient, state, action string) error {
	now := a.Now().UTC()
	ev, err := auditEvent(id, deliveryEntry(now, recipient, r.RemoteAddr, id, patient, action))
	if err != nil {
		return err
	}
	return a.Store.SetDelivery(ctx, id, recipient, state, now, ev)
}

// completion is the Communication re-sealed as completed, with the time
// it was received, if every recipient has it (ok) and it is not completed
// already.
func (a *InboxAPI) completion(ctx context.Context, id string) (_ store.Completion, ok bool, _ error) {
	ds, err := a.Store.DeliveriesOf(ctx, id)
	if err != nil {
		return store.Completion{}, false, err
	}
	for _, d := range ds {
		if store.DeliveryRank(d.State) < store.DeliveryRank(store.DeliveryDelivered) {
			return store.Completion{}, false, nil
		}
	}
	c, err := a.Store.GetCommunication(ctx, id)
	if err != nil || c.Status == "completed" {
		return store.Completion{}, false, err
	}
	aad := []byte("Communication/" + id)
	body, err := a.Keys.Open(c.Sealed, aad)
	if err != nil {
		return store.Completion{}, false, err
	}
	var comm fhir.Communication
	if err := json.Unmarshal(body, &comm); err != nil {
		return store.Completion{}, false, err
	}
	comm.Status = fhirmodel.EventStatusCompleted
	at := a.Now().UTC().Truncate(time.Second)
	received := at.Format(time.RFC3339)
	comm.Received = &received
	body, err = fhir.Resource{Type: "Communication", ID: id, Body: &comm}.MarshalJSON()
	if err != nil {
		return store.Completion{}, false, err
	}
	sealed, err := a.Keys.Seal(body, aad)
	if err != nil {
		return store.Completion{}, false, err
	}
	return store.Completion{ID: id, Sealed: sealed, Received: at}, true, nil
}

func (a *InboxAPI) fail(w http.ResponseWriter, what string, err error) {
	a.Log.Error(what, "error", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
