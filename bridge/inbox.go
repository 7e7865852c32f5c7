package bridge

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
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

	to       string // the recipient the hub handed it to
	recalled bool   // the sender withdrew it (entered-in-error)
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
	item := InboxItem{ID: c.ID, Priority: c.Priority, Category: c.Category, Sent: c.Sent, Subject: c.Subject, Encounter: c.Encounter,
		recalled: c.Status == store.StatusEnteredInError}
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
	return h.subscribe([]string{recipient})
}

// subscribe is SubscribeSession for a session that stands for several
// recipients: one channel for all, each item telling whom it was for.
func (h *Hub) subscribe(recipients []string) (items <-chan InboxItem, missed <-chan struct{}, cancel func()) {
	sub := &hubSub{items: make(chan InboxItem, 64), missed: make(chan struct{}, 1)}
	h.mu.Lock()
	for _, r := range recipients {
		if h.subs[r] == nil {
			h.subs[r] = map[*hubSub]struct{}{}
		}
		h.subs[r][sub] = struct{}{}
	}
	h.mu.Unlock()
	return sub.items, sub.missed, func() {
		h.mu.Lock()
		for _, r := range recipients {
			delete(h.subs[r], sub)
			if len(h.subs[r]) == 0 {
				delete(h.subs, r)
			}
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
	item.to = recipient
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

// Reader is who reads an inbox: the signed-in user, and the references
// that stand for them as a recipient (Practitioner/…, CareTeam/…).
type Reader struct {
	User       string // the user id; "" for a development token
	Recipients []string
}

// Why a request for an inbox is refused.
var (
	// ErrNotSignedIn: no token, or one that is not (or no longer) valid.
	ErrNotSignedIn = errors.New("not signed in")
	// ErrNoInbox: a valid sign-in whose role does not read messages, or
	// that stands for no recipient.
	ErrNoInbox = errors.New("no inbox for this sign-in")
)

// Readers resolves the bearer tokens of signed-in sessions to readers.
type Readers interface {
	// Reader returns the reader of a session token, counting the request
	// as the session's activity. Errors wrap ErrNotSignedIn or ErrNoInbox
	// for a token that is refused.
	Reader(ctx context.Context, token string) (Reader, error)
	// Recheck is Reader again, without counting as activity (an open
	// stream is not the clinician at work), so that a stream ends when its
	// session does or its reader changes; errors as for Reader.
	Recheck(ctx context.Context, token string) (Reader, error)
}

// InboxAPI serves a clinician's inbox over HTTP:
//
//	GET  /api/inbox               the newest messages, with their state (JSON)
//	GET  /api/inbox/stream        Server-Sent Events: undelivered messages, then each new one as it is stored
//	POST /api/inbox/{id}/read     the read receipt
//
// Identity is the bearer token of a signed-in session (POST /auth/login),
// resolved by Readers to the user's recipients; a stream ends, with an
// event "signed-out", when its session does. Tokens (development token →
// recipient reference) serve trials and benchmarks. Every delivery and
// read is audited.
type InboxAPI struct {
	Store     InboxStore
	Keys      Keys
	Hub       *Hub
	Readers   Readers
	Tokens    map[string]string
	Now       func() time.Time
	Log       *slog.Logger
	Heartbeat time.Duration // default 15 s; the session is checked as often
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

type readerKey struct{}

// signedIn is a request's reader and the token it came with.
type signedIn struct {
	Reader
	token string
	dev   bool
}

// auth resolves the bearer token to its reader: a development token
// (compared in constant time) or a session. The token itself is never
// logged.
func (a *InboxAPI) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		who, err := a.identify(r.Context(), token)
		switch {
		case errors.Is(err, ErrNoInbox):
			a.Log.Warn("inbox request of a sign-in without an inbox", "remote", r.RemoteAddr, "path", r.URL.Path, "user", who.User)
			http.Error(w, "this sign-in has no inbox: its role does not read messages, or it stands for no recipient (carebridge users set-recipients)", http.StatusForbidden)
			return
		case err != nil:
			if !errors.Is(err, ErrNotSignedIn) {
				a.fail(w, "checking an inbox sign-in", err)
				return
			}
			a.Log.Warn("inbox request without a valid token", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="carebridge inbox"`)
			http.Error(w, "a valid bearer token is required: sign in with POST /auth/login", http.StatusUnauthorized)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), readerKey{}, who)))
	}
}

func (a *InboxAPI) identify(ctx context.Context, token string) (signedIn, error) {
	if token == "" {
		return signedIn{}, ErrNotSignedIn
	}
	recipient := ""
	for t, rec := range a.Tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			recipient = rec
		}
	}
	if recipient != "" {
		return signedIn{Reader: Reader{Recipients: []string{recipient}}, token: token, dev: true}, nil
	}
	if a.Readers == nil {
		return signedIn{}, ErrNotSignedIn
	}
	who, err := a.Readers.Reader(ctx, token)
	if err == nil && len(who.Recipients) == 0 {
		err = ErrNoInbox
	}
	return signedIn{Reader: who, token: token}, err
}

func readerOf(r *http.Request) signedIn { return r.Context().Value(readerKey{}).(signedIn) }

// inboxSize is how many messages the list shows.
const inboxSize = 100

func (a *InboxAPI) list(w http.ResponseWriter, r *http.Request) {
	who := readerOf(r)
	// The newest of every recipient the reader stands for; a message to
	// several of them once, in its most advanced state.
	byID := map[string]store.InboxEntry{}
	for _, rec := range who.Recipients {
		entries, err := a.Store.Inbox(r.Context(), rec, inboxSize)
		if err != nil {
			a.fail(w, "reading an inbox", err)
			return
		}
		for _, e := range entries {
			if old, ok := byID[e.Communication.ID]; !ok || store.DeliveryRank(e.State) > store.DeliveryRank(old.State) {
				byID[e.Communication.ID] = e
			}
		}
	}
	entries := make([]store.InboxEntry, 0, len(byID))
	for _, e := range byID {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(x, y store.InboxEntry) int {
		if c := y.Communication.Sent.Compare(x.Communication.Sent); c != 0 {
			return c
		}
		return strings.Compare(y.Communication.ID, x.Communication.ID)
	})
	entries = entries[:min(len(entries), inboxSize)]
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

// streamSession is one open stream: what it has shown, and the
// deliveries it recorded.
type streamSession struct {
	a       *InboxAPI
	w       http.ResponseWriter
	f       http.Flusher
	r       *http.Request
	who     signedIn
	shown   map[string]bool // Communication ids written to the stream
	had     map[string]bool // recipient + " " + id: deliveries recorded
	pending []<-chan error
}

func (a *InboxAPI) stream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ss := &streamSession{a: a, w: w, f: flusher, r: r, who: readerOf(r), shown: map[string]bool{}, had: map[string]bool{}}
	live, missed, cancel := a.Hub.subscribe(ss.who.Recipients) // before the backlog, so nothing falls between
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	fmt.Fprint(w, "retry: 3000\n\n")
	flusher.Flush()
	if !ss.catchUp() {
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
			if !ss.catchUp() {
				return
			}
		case it := <-live:
			if !ss.send(it.to, it) {
				return
			}
			if len(ss.pending) > waitingPage {
				ss.settle() // the outcomes are not needed, only bounded memory
			}
		case <-tick.C:
			if !ss.stillSignedIn() {
				return
			}
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// stillSignedIn ends the stream, telling the client why, once its session
// has ended (idle, expired, logged out, user disabled) or no longer reads
// what it did (the user's role or recipients changed).
func (ss *streamSession) stillSignedIn() bool {
	if ss.who.dev || ss.a.Readers == nil {
		return true
	}
	now, err := ss.a.Readers.Recheck(ss.r.Context(), ss.who.token)
	if err == nil && (now.User != ss.who.User || !slices.Equal(now.Recipients, ss.who.Recipients)) {
		// Another user, other recipients (users set-recipients): what
		// this stream shows is no longer theirs to see; the client
		// reconnects for what is.
		err = fmt.Errorf("%w: the sign-in's recipients changed", ErrNoInbox)
	}
	if err == nil {
		return true
	}
	if !errors.Is(err, ErrNotSignedIn) && !errors.Is(err, ErrNoInbox) {
		ss.a.Log.Error("checking an inbox stream's session", "user", ss.who.User, "error", err)
		return true // a database hiccup does not sign anyone out
	}
	// signed-out: sign in again; changed: reconnect, for what the
	// sign-in reads now (a 403 if nothing).
	event := "signed-out"
	if errors.Is(err, ErrNoInbox) {
		event = "changed"
	}
	fmt.Fprintf(ss.w, "event: %s\ndata: {}\n\n", event)
	ss.f.Flush()
	return false
}

// settle waits for the deliveries this session recorded. They are
// recorded in batches shared by every session while this one goes on
// sending; before reading what still waits, the session lets its own land,
// or it would see them again.
func (ss *streamSession) settle() {
	for _, done := range ss.pending {
		<-done
	}
	ss.pending = ss.pending[:0]
}

// catchUp sends everything not yet delivered to each of the reader's
// recipients, oldest first, however much piled up while the clinician was
// away (or while this session fell behind): page by page, as each sent
// message leaves the waiting list.
func (ss *streamSession) catchUp() bool {
	for _, rec := range ss.who.Recipients {
		for {
			ss.settle()
			entries, err := ss.a.Store.Waiting(ss.r.Context(), rec, waitingPage)
			if err != nil {
				ss.a.Log.Error("reading an inbox", "error", err)
				return false
			}
			fresh := 0
			for _, e := range entries {
				if ss.had[rec+" "+e.Communication.ID] {
					continue
				}
				fresh++
				it, err := inboxItem(e.Communication, ss.a.Keys)
				if err != nil {
					ss.a.Log.Error("opening an inbox message", "communication_id", e.Communication.ID, "error", err)
					ss.had[rec+" "+e.Communication.ID] = true
					continue
				}
				if !ss.send(rec, it) {
					return false
				}
			}
			if len(entries) < waitingPage || fresh == 0 {
				break
			}
		}
	}
	return true
}

// send writes one event, once per message however many of the reader's
// recipients it was for, and records its delivery to recipient; false
// when the client is gone. A recalled message is announced as such, and
// its delivery is not recorded.
func (ss *streamSession) send(recipient string, it InboxItem) bool {
	if it.recalled {
		b, _ := json.Marshal(struct {
			ID string `json:"id"`
		}{it.ID})
		if _, err := fmt.Fprintf(ss.w, "event: recalled\ndata: %s\n\n", b); err != nil {
			return false
		}
		ss.f.Flush()
		delete(ss.shown, it.ID)
		return true
	}
	key := recipient + " " + it.ID
	if ss.had[key] {
		return true
	}
	if !ss.shown[it.ID] {
		it.State = store.DeliveryDelivered
		b, err := json.Marshal(it)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(ss.w, "id: %s\nevent: communication\ndata: %s\n\n", it.ID, b); err != nil {
			return false
		}
		ss.f.Flush()
		ss.shown[it.ID] = true
	}
	ss.had[key] = true
	ss.pending = append(ss.pending, ss.a.recorder().record(ss.who.User, recipient, it.ID, it.Subject, ss.r.RemoteAddr))
	return true
}

func (a *InboxAPI) read(w http.ResponseWriter, r *http.Request) {
	who, id := readerOf(r), r.PathValue("id")
	found := false
	for _, rec := range who.Recipients {
		err := a.setDelivery(r.Context(), r, who.User, rec, id, "", store.DeliveryRead, "communication.read")
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			a.fail(w, "recording a read receipt", err)
			return
		}
		found = true
	}
	if !found {
		http.Error(w, "no such message in this inbox", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// setDelivery records a delivery state with its audit entry, in one
// transaction.
func (a *InboxAPI) setDelivery(ctx context.Context, r *http.Request, user, recipient, id, patient, state, action string) error {
	now := a.Now().UTC()
	ev, err := auditEvent(id, deliveryEntry(now, user, recipient, r.RemoteAddr, id, patient, action))
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
