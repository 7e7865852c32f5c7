package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/access/accesstest"
	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/api"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/sqlite"
)

// workflowEnv is the API with writes and people signing in, on an empty
// store: the EHR client writes with system/Communication.cruds, users
// with their role's scopes.
type workflowEnv struct {
	*env
	people   *loginEnv
	st       *sqlite.Store
	client   string // the EHR client's token
	recalled *recallEvents
}

// recallEvents are events that also make the event of a recall
// (api.RecallEvents), and keep what they were made of.
type recallEvents struct {
	*events
	mu   sync.Mutex
	rows []store.CommunicationRow
}

func (r *recallEvents) Recalled(row store.CommunicationRow, corr string) (store.Event, error) {
	r.mu.Lock()
	r.rows = append(r.rows, row)
	r.mu.Unlock()
	return store.Event{Topic: topicCreated, Message: message.NewMessage(watermill.NewUUID(), []byte("recalled "+row.ID))}, nil
}

// told are the recipients each recall so far was told to.
func (r *recallEvents) told() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := [][]string{}
	for _, row := range r.rows {
		out = append(out, row.Recipients)
	}
	return out
}

func newWorkflowEnv(t testing.TB) *workflowEnv {
	t.Helper()
	dir := t.TempDir()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(dir, "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "carebridge.db"), Topics: []string{topicCreated, topicAudit}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{audit: &auditLog{}, comms: map[string][]byte{}, events: &events{}}
	if e.v, err = fhir.NewValidator(); err != nil {
		t.Fatal(err)
	}
	people := &loginEnv{audit: e.audit, clock: accesstest.NewClock(time.Now().UTC().Truncate(time.Second))}
	if people.users, err = access.NewUsers(&accesstest.Users{}, kr, access.UsersConfig{Now: people.clock.Now}); err != nil {
		t.Fatal(err)
	}
	rec := &recallEvents{events: e.events}
	e.srv, e.key = startAPI(t, kr, "system/Communication.cruds", api.Config{Store: st, Keys: kr, Audit: e.audit,
		Writes: st, Sealer: kr, Validator: e.v, Events: rec, Users: people.users, Now: people.clock.Now})
	e.base = e.srv.URL + "/fhir"
	people.srv, people.key = e.srv, e.key
	w := &workflowEnv{env: e, people: people, st: st, recalled: rec}
	w.client = e.token(t, "system/Communication.cruds")
	return w
}

// msg is a Communication a test writes; empty fields are left out.
type msg struct {
	id, status, subject, sender string
	recipients, partOf          []string
	inResponseTo                []string
	sent                        string
}

func (m msg) json() []byte {
	refs := func(rs []string) []map[string]string {
		out := make([]map[string]string, len(rs))
		for i, r := range rs {
			out[i] = map[string]string{"reference": r}
		}
		return out
	}
	c := map[string]any{"resourceType": "Communication", "status": "in-progress",
		"payload": []map[string]string{{"contentString": "synthetic test message"}}}
	if m.id != "" {
		c["id"] = m.id
	}
	if m.status != "" {
		c["status"] = m.status
	}
	if m.subject != "" {
		c["subject"] = map[string]string{"reference": m.subject}
	}
	if m.sender != "" {
		c["sender"] = map[string]string{"reference": m.sender}
	}
	if m.sent != "" {
		c["sent"] = m.sent
	}
	for k, rs := range map[string][]string{"recipient": m.recipients, "partOf": m.partOf, "inResponseTo": m.inResponseTo} {
		if len(rs) > 0 {
			c[k] = refs(rs)
		}
	}
	b, _ := json.Marshal(c)
	return b
}

// written is what the tests read of a Communication the API answers.
type written struct {
	ID        string
	Status    string
	Meta      struct{ VersionID string }
	Subject   struct{ Reference string }
	PartOf    []struct{ Reference string }
	Recipient []struct{ Reference string }
}

func refsOf(rs []struct{ Reference string }) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Reference)
	}
	return out
}

// post creates m as the EHR client and returns the stored resource.
func (w *workflowEnv) post(t *testing.T, m msg) written {
	t.Helper()
	status, _, b := w.send(t, http.MethodPost, w.client, "/fhir/Communication", fhirJSON, m.json())
	if status != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", m.json(), status, b)
	}
	return w.decode(t, b)
}

func (w *workflowEnv) decode(t *testing.T, b []byte) written {
	t.Helper()
	if err := w.v.Validate(b); err != nil {
		t.Fatalf("not valid R4: %v\n%s", err, b)
	}
	var c written
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// refused checks an OperationOutcome answer: status, and an issue naming
// expression.
func refused(t *testing.T, what string, status int, b []byte, wantStatus int, expression string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: %d, want %d: %s", what, status, wantStatus, b)
	}
	o := readOutcome(t, b)
	if expression != "" && !slices.Contains(o.Issue[0].Expression, expression) {
		t.Fatalf("%s: issue at %v, want %s: %s", what, o.Issue[0].Expression, expression, b)
	}
}

// audited is the entries a write published, from the n-th on.
func (w *workflowEnv) audited(from int) []audit.Entry {
	w.events.mu.Lock()
	defer w.events.mu.Unlock()
	return slices.Clone(w.events.audited[from:])
}

func (w *workflowEnv) auditedSoFar() int {
	w.events.mu.Lock()
	defer w.events.mu.Unlock()
	return len(w.events.audited)
}

// actions are the actions of entries, with " break-glass" after those
// flagged so.
func actions(es []audit.Entry) []string {
	out := []string{}
	for _, e := range es {
		a := e.Action
		if slices.Contains(e.Entities, "break-glass") {
			a += " break-glass"
		}
		out = append(out, a)
	}
	return out
}

// TestReplyJoinsThread: a reply joins the thread of the Communication it
// answers (partOf the root, added when missing), goes to its sender when
// it names no recipient, and a thread search lists it in order; replies
// that break the rules are refused, naming the element.
func TestReplyJoinsThread(t *testing.T) {
	w := newWorkflowEnv(t)
	root := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-a", recipients: []string{"Practitioner/nurse-b"}, sent: "2026-11-03T10:00:00Z"})
	rootRef := "Communication/" + root.ID

	first := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/nurse-b", inResponseTo: []string{rootRef}, sent: "2026-11-03T10:05:00Z"})
	if got := refsOf(first.PartOf); !reflect.DeepEqual(got, []string{rootRef}) {
		t.Errorf("a reply to the root: partOf %v, want %v", got, []string{rootRef})
	}
	if got := refsOf(first.Recipient); !reflect.DeepEqual(got, []string{"Practitioner/dr-a"}) {
		t.Errorf("a reply without recipient goes to %v, want the sender Practitioner/dr-a", got)
	}
	// A reply to a reply joins the same thread, by the root.
	second := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-a", inResponseTo: []string{"Communication/" + first.ID}, sent: "2026-11-03T10:10:00Z"})
	if got := refsOf(second.PartOf); !reflect.DeepEqual(got, []string{rootRef}) {
		t.Errorf("a reply to a reply: partOf %v, want the root %v", got, []string{rootRef})
	}
	if got := refsOf(second.Recipient); !reflect.DeepEqual(got, []string{"Practitioner/nurse-b"}) {
		t.Errorf("a reply to a reply goes to %v, want Practitioner/nurse-b", got)
	}
	// Part of something else too, with its own recipient, and no subject:
	// kept, and the root added.
	third := w.post(t, msg{sender: "Practitioner/dr-c", recipients: []string{"CareTeam/icu"}, partOf: []string{"Procedure/pr-1"},
		inResponseTo: []string{w.base + "/Communication/" + first.ID}, sent: "2026-11-03T10:07:00Z"})
	if got := refsOf(third.PartOf); !reflect.DeepEqual(got, []string{"Procedure/pr-1", rootRef}) {
		t.Errorf("a reply part of a Procedure: partOf %v, want it and the root", got)
	}
	if got := refsOf(third.Recipient); !reflect.DeepEqual(got, []string{"CareTeam/icu"}) {
		t.Errorf("a reply with a recipient goes to %v, want CareTeam/icu", got)
	}
	// A reply naming the root itself is as it was sent.
	named := w.post(t, msg{subject: "Patient/p1", recipients: []string{"Practitioner/dr-a"}, partOf: []string{rootRef},
		inResponseTo: []string{"Communication/" + second.ID}, sent: "2026-11-03T10:15:00Z"})
	if got := refsOf(named.PartOf); !reflect.DeepEqual(got, []string{rootRef}) {
		t.Errorf("a reply naming its root: partOf %v", got)
	}
	// Update as create, and an update that drops partOf: the same rules.
	status, _, b := w.send(t, http.MethodPut, w.client, "/fhir/Communication/reply-put", fhirJSON,
		msg{id: "reply-put", subject: "Patient/p1", inResponseTo: []string{rootRef}, sent: "2026-11-03T10:20:00Z"}.json())
	if status != http.StatusCreated {
		t.Fatalf("PUT a reply as create: %d %s", status, b)
	}
	if got := refsOf(w.decode(t, b).PartOf); !reflect.DeepEqual(got, []string{rootRef}) {
		t.Errorf("a reply created by PUT: partOf %v", got)
	}
	status, _, b = w.send(t, http.MethodPut, w.client, "/fhir/Communication/reply-put", fhirJSON,
		msg{id: "reply-put", status: "completed", subject: "Patient/p1", recipients: []string{"Practitioner/dr-a"}, inResponseTo: []string{rootRef}, sent: "2026-11-03T10:20:00Z"}.json())
	if c := w.decode(t, b); status != http.StatusOK || c.Meta.VersionID != "2" || !reflect.DeepEqual(refsOf(c.PartOf), []string{rootRef}) {
		t.Errorf("an update of a reply without partOf: %d %s; want version 2 with partOf the root", status, b)
	}

	bu := w.search(t, w.client, "part-of="+rootRef+"&_sort=sent")
	if got, want := ids(bu, "match"), []string{first.ID, third.ID, second.ID, named.ID, "reply-put"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the thread = %v, want %v", got, want)
	}

	noSender := w.post(t, msg{subject: "Patient/p1", recipients: []string{"Practitioner/dr-a"}})
	for _, tc := range []struct {
		name   string
		m      msg
		status int
		expr   string
	}{
		{"an unknown Communication", msg{subject: "Patient/p1", inResponseTo: []string{"Communication/nobody"}}, 422, "Communication.inResponseTo[0]"},
		{"another thread's root as partOf", msg{subject: "Patient/p1", partOf: []string{"Procedure/x", "Communication/" + noSender.ID}, inResponseTo: []string{rootRef}}, 422, "Communication.partOf[1]"},
		{"a reply in the thread as partOf", msg{subject: "Patient/p1", partOf: []string{"Communication/" + first.ID}, inResponseTo: []string{"Communication/" + first.ID}}, 422, "Communication.partOf[0]"},
		{"another patient", msg{subject: "Patient/p2", inResponseTo: []string{rootRef}}, 422, "Communication.subject"},
		{"no recipient and no sender to answer", msg{subject: "Patient/p1", inResponseTo: []string{"Communication/" + noSender.ID}}, 422, "Communication.recipient"},
		{"two Communications answered", msg{subject: "Patient/p1", inResponseTo: []string{"http://other.example/fhir/Communication/z", rootRef, "Communication/" + first.ID}}, 422, "Communication.inResponseTo[2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, b := w.send(t, http.MethodPost, w.client, "/fhir/Communication", fhirJSON, tc.m.json())
			refused(t, tc.name, status, b, tc.status, tc.expr)
		})
	}
	status, _, b = w.send(t, http.MethodPut, w.client, "/fhir/Communication/self", fhirJSON, msg{id: "self", inResponseTo: []string{"Communication/self"}}.json())
	refused(t, "a Communication answering itself", status, b, 422, "Communication.inResponseTo[0]")
	if status, _, _ := w.get(t, w.client, "/fhir/Communication/self"); status != http.StatusNotFound {
		t.Errorf("the refused Communication was stored: %d", status)
	}
	if n := len(ids(w.search(t, w.client, "part-of="+rootRef), "match")); n != 5 {
		t.Errorf("the refused replies changed the thread: %d in it, want 5", n)
	}
}

// TestReplyNeedsRead: a user answers only what they may read: a message
// not addressed to them is refused (403, audited) until they break the
// glass, and a reply made then is flagged.
func TestReplyNeedsRead(t *testing.T) {
	w := newWorkflowEnv(t)
	mine := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a"}})
	other := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/z"}})
	ann := w.people.add(t, "ann.md", access.RolePhysician, "Practitioner/a")
	tok := w.people.login(t, ann)
	reply := func(id, answers string) (int, []byte) {
		status, _, b := w.send(t, http.MethodPut, tok, "/fhir/Communication/"+id, fhirJSON,
			msg{id: id, subject: "Patient/p1", sender: "Practitioner/a", inResponseTo: []string{"Communication/" + answers}}.json())
		return status, b
	}

	from := w.auditedSoFar()
	if status, b := reply("ann-1", mine.ID); status != http.StatusCreated {
		t.Fatalf("ann answers a message to her: %d %s", status, b)
	}
	if got := actions(w.audited(from)); !reflect.DeepEqual(got, []string{"rest.create"}) {
		t.Errorf("audited %v, want rest.create, not flagged", got)
	}

	status, b := reply("ann-2", other.ID)
	refused(t, "ann answers a message to another", status, b, http.StatusForbidden, "")
	w.people.wantEntry(t, "rest.create", audit.OutcomeMinor, audit.ActorUser, ann.id)
	if got := w.audit.last().Entities; !reflect.DeepEqual(got, []string{"Communication/" + other.ID}) {
		t.Errorf("the refusal names %v, want Communication/%s", got, other.ID)
	}
	if status, _, _ := w.get(t, w.client, "/fhir/Communication/ann-2"); status != http.StatusNotFound {
		t.Errorf("the refused reply was stored: %d", status)
	}

	if status, body := w.people.breakGlass(t, tok, url.Values{"reason": {"covering ward 3 tonight"}}); status != http.StatusOK {
		t.Fatalf("break-glass: %d %v", status, body)
	}
	from = w.auditedSoFar()
	if status, b := reply("ann-2", other.ID); status != http.StatusCreated {
		t.Fatalf("ann answers it under break-glass: %d %s", status, b)
	}
	if got := actions(w.audited(from)); !reflect.DeepEqual(got, []string{"rest.create break-glass"}) {
		t.Errorf("audited %v, want rest.create flagged break-glass", got)
	}
}

// TestRecall: a sender recalls their message (entered-in-error): a system
// client, or the user who sent it; another user is refused (403,
// audited). The recall is audited on its own, the message leaves its
// recipients' inboxes and is not announced to anyone the recall adds,
// reads and searches still find it, and it is final (409).
func TestRecall(t *testing.T) {
	w := newWorkflowEnv(t)
	ann := w.people.add(t, "ann.md", access.RolePhysician, "Practitioner/a")
	tok := w.people.login(t, ann)
	own := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/a", recipients: []string{"Practitioner/b"}, sent: "2026-11-03T10:00:00Z"})
	toAnn := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a", "Practitioner/b"}, sent: "2026-11-03T10:01:00Z"})
	kept := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/b"}, sent: "2026-11-03T10:02:00Z"})
	inbox := func(recipient string) []string {
		es, err := w.st.Inbox(context.Background(), recipient, 10)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, e := range es {
			out = append(out, e.Communication.ID)
		}
		return out
	}
	if got, want := inbox("Practitioner/b"), []string{kept.ID, toAnn.ID, own.ID}; !reflect.DeepEqual(got, want) {
		t.Fatalf("the inbox before = %v, want %v", got, want)
	}
	recall := []byte(`[{"op":"replace","path":"/status","value":"entered-in-error"}]`)
	patch := func(token, id string, ops []byte) (int, []byte) {
		status, _, b := w.send(t, http.MethodPatch, token, "/fhir/Communication/"+id, "application/json-patch+json", ops)
		return status, b
	}

	// ann may read a message she sent that is not addressed to her, and
	// recall it.
	if status, _, b := w.get(t, tok, "/fhir/Communication/"+own.ID); status != http.StatusOK {
		t.Fatalf("ann reads her own message: %d %s", status, b)
	}
	from := w.auditedSoFar()
	status, b := patch(tok, own.ID, recall)
	if c := w.decode(t, b); status != http.StatusOK || c.Status != "entered-in-error" || c.Meta.VersionID != "2" {
		t.Fatalf("ann recalls her message: %d %s", status, b)
	}
	es := w.audited(from)
	if got := actions(es); !reflect.DeepEqual(got, []string{"rest.patch", "communication.recalled"}) {
		t.Fatalf("the recall audited %v, want rest.patch and communication.recalled", got)
	}
	if r := es[1]; r.Patient != "Patient/p1" || r.Actor.Kind != audit.ActorUser || r.Actor.ID != ann.id || r.Outcome != audit.OutcomeSuccess ||
		!reflect.DeepEqual(r.Entities, []string{"Communication/" + own.ID}) || r.Correlation != es[0].Correlation {
		t.Errorf("the recall entry %+v", r)
	}

	if got, want := w.recalled.told(), [][]string{{"Practitioner/b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("the recall told %v, want %v", got, want)
	}

	// Not hers to recall: refused, audited, unchanged.
	status, b = patch(tok, toAnn.ID, recall)
	refused(t, "ann recalls a message she did not send", status, b, http.StatusForbidden, "")
	w.people.wantEntry(t, "rest.patch", audit.OutcomeMinor, audit.ActorUser, ann.id)
	if !strings.Contains(string(b), "sender") {
		t.Errorf("the refusal does not say why: %s", b)
	}
	if status, h, _ := w.get(t, w.client, "/fhir/Communication/"+toAnn.ID); status != http.StatusOK || h.Get("ETag") != `W/"1"` {
		t.Errorf("the refused recall changed it: %d %s", status, h.Get("ETag"))
	}
	// The system client may; recipients it adds are not told.
	created := len(w.events.created)
	from = w.auditedSoFar()
	status, _, b = w.send(t, http.MethodPut, w.client, "/fhir/Communication/"+toAnn.ID, fhirJSON,
		msg{id: toAnn.ID, status: "entered-in-error", subject: "Patient/p1", sender: "Practitioner/dr-x",
			recipients: []string{"Practitioner/a", "Practitioner/b", "Practitioner/late"}, sent: "2026-11-03T10:01:00Z"}.json(), "If-Match", `W/"1"`)
	if status != http.StatusOK {
		t.Fatalf("the client recalls: %d %s", status, b)
	}
	if got := actions(w.audited(from)); !reflect.DeepEqual(got, []string{"rest.update", "communication.recalled"}) {
		t.Errorf("the client's recall audited %v", got)
	}
	if len(w.events.created) != created {
		t.Errorf("the recall announced the message to %+v", w.events.created[created:])
	}
	if got, want := w.recalled.told(), [][]string{{"Practitioner/b"}, {"Practitioner/a", "Practitioner/b", "Practitioner/late"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("the recalls told %v, want %v", got, want)
	}

	for r, want := range map[string][]string{"Practitioner/b": {kept.ID}, "Practitioner/a": {}, "Practitioner/late": {}} {
		if got := inbox(r); !reflect.DeepEqual(got, want) {
			t.Errorf("the inbox of %s after the recalls = %v, want %v", r, got, want)
		}
	}
	if got := ids(w.search(t, w.client, "recipient=Practitioner/b&_sort=sent"), "match"); !reflect.DeepEqual(got, []string{own.ID, toAnn.ID, kept.ID}) {
		t.Errorf("a search finds %v, want all three", got)
	}
	if got := ids(w.search(t, w.client, "recipient=Practitioner/b&status:not=entered-in-error"), "match"); !reflect.DeepEqual(got, []string{kept.ID}) {
		t.Errorf("status:not=entered-in-error finds %v, want only %s", got, kept.ID)
	}

	// Final: no update or patch of a recalled message, by anyone.
	for _, tc := range []struct {
		name   string
		token  string
		method string
		body   []byte
	}{
		{"un-recalling by patch", w.client, http.MethodPatch, []byte(`[{"op":"replace","path":"/status","value":"in-progress"}]`)},
		{"editing by patch", tok, http.MethodPatch, []byte(`[{"op":"add","path":"/priority","value":"stat"}]`)},
		{"recalling again by put", w.client, http.MethodPut, msg{id: own.ID, status: "entered-in-error", subject: "Patient/p1", sender: "Practitioner/a"}.json()},
	} {
		ct := "application/json-patch+json"
		if tc.method == http.MethodPut {
			ct = fhirJSON
		}
		status, _, b := w.send(t, tc.method, tc.token, "/fhir/Communication/"+own.ID, ct, tc.body)
		refused(t, tc.name, status, b, http.StatusConflict, "Communication.status")
		if o := readOutcome(t, b); o.Issue[0].Code != "business-rule" || !strings.Contains(o.Issue[0].Details.Text, "recalled") {
			t.Errorf("%s: %s", tc.name, b)
		}
	}
	status, h, b := w.get(t, tok, "/fhir/Communication/"+own.ID)
	if c := w.decode(t, b); status != http.StatusOK || h.Get("ETag") != `W/"2"` || c.Status != "entered-in-error" {
		t.Errorf("reading the recalled message: %d %s %s", status, h.Get("ETag"), b)
	}
}

// TestBreakGlassWritesFlagged: an update or patch a user could make only
// by breaking the glass carries the break-glass flag in its audit entry;
// one of a message addressed to them does not, break-glass or not.
func TestBreakGlassWritesFlagged(t *testing.T) {
	w := newWorkflowEnv(t)
	zed := w.people.add(t, "zed.md", access.RoleNurse, "Practitioner/z")
	tok := w.people.login(t, zed)
	theirs := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a"}})
	mine := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/z"}})
	complete := []byte(`[{"op":"replace","path":"/status","value":"completed"}]`)
	write := func(method, id string) int {
		t.Helper()
		if method == http.MethodPatch {
			status, _, _ := w.send(t, method, tok, "/fhir/Communication/"+id, "application/json-patch+json", complete)
			return status
		}
		status, _, _ := w.send(t, method, tok, "/fhir/Communication/"+id, fhirJSON,
			msg{id: id, status: "completed", subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a", "Practitioner/z"}}.json())
		return status
	}
	if got := write(http.MethodPatch, theirs.ID); got != http.StatusForbidden {
		t.Fatalf("a patch of another's message: %d, want 403", got)
	}
	w.people.wantEntry(t, "rest.patch", audit.OutcomeMinor, audit.ActorUser, zed.id)
	if status, body := w.people.breakGlass(t, tok, url.Values{"reason": {"covering ward 3 tonight"}}); status != http.StatusOK {
		t.Fatalf("break-glass: %d %v", status, body)
	}
	for _, tc := range []struct {
		method, id string
		want       string
	}{
		{http.MethodPatch, theirs.ID, "rest.patch break-glass"},
		// The PUT adds zed as a recipient: the version it replaces was not
		// addressed to him.
		{http.MethodPut, theirs.ID, "rest.update break-glass"},
		{http.MethodPatch, theirs.ID, "rest.patch"},
		{http.MethodPatch, mine.ID, "rest.patch"},
	} {
		from := w.auditedSoFar()
		if got := write(tc.method, tc.id); got != http.StatusOK {
			t.Fatalf("%s %s under break-glass: %d", tc.method, tc.id, got)
		}
		got := actions(w.audited(from))
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s %s audited %v, want %s", tc.method, tc.id, got, tc.want)
		}
	}
}

// TestHistoryOfPutCreate: the history of a Communication created by PUT
// says PUT to its id for version 1; one created by POST says POST.
func TestHistoryOfPutCreate(t *testing.T) {
	w := newWorkflowEnv(t)
	put := func(id, status string, want int) {
		t.Helper()
		got, _, b := w.send(t, http.MethodPut, w.client, "/fhir/Communication/"+id, fhirJSON, msg{id: id, status: status, subject: "Patient/p1"}.json())
		if got != want {
			t.Fatalf("PUT %s: %d %s", id, got, b)
		}
	}
	put("by-put", "in-progress", http.StatusCreated)
	put("by-put", "completed", http.StatusOK)
	posted := w.post(t, msg{subject: "Patient/p1"})
	for id, want := range map[string][]string{
		"by-put":  {"PUT Communication/by-put 200 OK", "PUT Communication/by-put 201 Created"},
		posted.ID: {"POST Communication 201 Created"},
	} {
		status, _, b := w.get(t, w.client, "/fhir/Communication/"+id+"/_history")
		if status != http.StatusOK || w.v.Validate(b) != nil {
			t.Fatalf("history of %s: %d %v", id, status, w.v.Validate(b))
		}
		var hist struct {
			Entry []struct {
				Request  struct{ Method, URL string }
				Response struct{ Status string }
			}
		}
		json.Unmarshal(b, &hist)
		got := []string{}
		for _, e := range hist.Entry {
			got = append(got, e.Request.Method+" "+e.Request.URL+" "+e.Response.Status)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("history of %s = %q, want %q", id, got, want)
		}
	}
}

// FuzzReplyReferences: whatever a reply's inResponseTo and partOf
// references say, the answer is no server error; what is stored is valid
// R4, and a stored reply to the root is part of its thread.
func FuzzReplyReferences(f *testing.F) {
	w := newWorkflowEnv(f)
	status, _, b := w.send(f, http.MethodPut, w.client, "/fhir/Communication/root", fhirJSON,
		msg{id: "root", subject: "Patient/p1", sender: "Practitioner/dr-a", recipients: []string{"Practitioner/b"}}.json())
	if status != http.StatusCreated {
		f.Fatalf("the root: %d %s", status, b)
	}
	for _, seed := range [][2]string{
		{"Communication/root", ""}, {"Communication/root/_history/1", "Communication/root"}, {w.base + "/Communication/root", "Procedure/p"},
		{"Communication/nobody", ""}, {"Communication/", "Communication/x"}, {"http://other.example/Communication/root", ""}, {"#contained", "urn:uuid:1"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, answers, partOf string) {
		m := msg{subject: "Patient/p1", inResponseTo: []string{answers}}
		if partOf != "" {
			m.partOf = []string{partOf}
		}
		status, _, b := w.send(t, http.MethodPost, w.client, "/fhir/Communication", fhirJSON, m.json())
		if status >= 500 {
			t.Fatalf("%d for inResponseTo %q partOf %q: %s", status, answers, partOf, b)
		}
		if status != http.StatusCreated {
			return
		}
		if err := w.v.Validate(b); err != nil {
			t.Fatalf("stored a resource that is not valid R4: %v\n%s", err, b)
		}
		var c written
		json.Unmarshal(b, &c)
		if (answers == "Communication/root" || answers == w.base+"/Communication/root") && !slices.Contains(refsOf(c.PartOf), "Communication/root") {
			t.Fatalf("a reply to the root is not part of its thread: %s", b)
		}
	})
}

// TestUserSendsAsThemselves: a clinician creates a Communication (a new
// message or a reply) as themselves: without a sender carebridge names
// their Practitioner; naming someone else, or having no Practitioner to
// send as, is 422 at Communication.sender. A recalled message is not
// answered.
func TestUserSendsAsThemselves(t *testing.T) {
	w := newWorkflowEnv(t)
	ann := w.people.add(t, "ann.md", access.RolePhysician, "CareTeam/icu", "Practitioner/a")
	tok := w.people.login(t, ann)
	team := w.people.add(t, "team.rn", access.RoleNurse, "CareTeam/icu")
	teamTok := w.people.login(t, team)
	w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a", "CareTeam/icu"}}) // their patient

	status, _, b := w.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON, msg{subject: "Patient/p1", recipients: []string{"Practitioner/b"}}.json())
	if status != http.StatusCreated {
		t.Fatalf("ann creates a message: %d %s", status, b)
	}
	var sent struct{ Sender struct{ Reference string } }
	json.Unmarshal(b, &sent)
	if sent.Sender.Reference != "Practitioner/a" {
		t.Errorf("the message ann sent names sender %q, want Practitioner/a", sent.Sender.Reference)
	}
	status, _, b = w.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON,
		msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/b"}}.json())
	refused(t, "ann sends in another's name", status, b, http.StatusUnprocessableEntity, "Communication.sender")
	status, _, b = w.send(t, http.MethodPost, teamTok, "/fhir/Communication", fhirJSON, msg{subject: "Patient/p1", recipients: []string{"Practitioner/b"}}.json())
	refused(t, "a user with no Practitioner sends", status, b, http.StatusUnprocessableEntity, "Communication.sender")

	orig := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a"}})
	status, _, b = w.send(t, http.MethodPatch, w.client, "/fhir/Communication/"+orig.ID, "application/json-patch+json",
		[]byte(`[{"op":"replace","path":"/status","value":"entered-in-error"}]`))
	if status != http.StatusOK {
		t.Fatalf("recalling: %d %s", status, b)
	}
	status, _, b = w.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON,
		msg{subject: "Patient/p1", inResponseTo: []string{"Communication/" + orig.ID}}.json())
	refused(t, "ann answers a recalled message", status, b, http.StatusUnprocessableEntity, "Communication.inResponseTo[0]")
}

// TestUserSearchSeesOwnMessages: a clinician's searches find what is
// addressed to them and what they sent (their replies in a thread), and
// nothing else.
func TestUserSearchSeesOwnMessages(t *testing.T) {
	w := newWorkflowEnv(t)
	ann := w.people.add(t, "ann.md", access.RolePhysician, "Practitioner/a")
	tok := w.people.login(t, ann)
	root := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a"}, sent: "2026-11-03T10:00:00Z"})
	w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/z"}, sent: "2026-11-03T10:01:00Z"})
	status, _, b := w.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON,
		msg{subject: "Patient/p1", inResponseTo: []string{"Communication/" + root.ID}, sent: "2026-11-03T10:02:00Z"}.json())
	if status != http.StatusCreated {
		t.Fatalf("ann replies: %d %s", status, b)
	}
	reply := w.decode(t, b)
	for query, want := range map[string][]string{
		"_sort=sent":                                     {root.ID, reply.ID},
		"part-of=Communication/" + root.ID:               {reply.ID},
		"sender=Practitioner/a":                          {reply.ID},
		"recipient=Practitioner/dr-x":                    {reply.ID},
		"recipient=Practitioner/z":                       {},
		"sender=Practitioner/dr-x&_sort=sent":            {root.ID},
		"subject=Patient/p1&_sort=-sent&_total=accurate": {reply.ID, root.ID},
	} {
		status, _, b := w.get(t, tok, "/fhir/Communication?"+query)
		if status != http.StatusOK {
			t.Fatalf("ann searches %s: %d %s", query, status, b)
		}
		var bundle struct {
			Total int
			Entry []struct{ Resource struct{ ID string } }
		}
		json.Unmarshal(b, &bundle)
		got := []string{}
		for _, e := range bundle.Entry {
			got = append(got, e.Resource.ID)
		}
		if !reflect.DeepEqual(got, want) || bundle.Total != len(want) {
			t.Errorf("ann searches %s: %v (total %d), want %v", query, got, bundle.Total, want)
		}
	}
}

// TestUserCannotOpenChartsByWriting: a clinician cannot reach a patient's
// chart by writing a message about them to themselves: a Communication
// (new, or an update that moves one) about a patient none of whose
// messages is addressed to the user is 403, audited, unless under
// break-glass, where it is written and flagged.
func TestUserCannotOpenChartsByWriting(t *testing.T) {
	w := newWorkflowEnv(t)
	ann := w.people.add(t, "ann.md", access.RolePhysician, "Practitioner/a")
	tok := w.people.login(t, ann)
	mine := w.post(t, msg{subject: "Patient/p1", sender: "Practitioner/dr-x", recipients: []string{"Practitioner/a"}})

	status, _, b := w.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON,
		msg{subject: "Patient/p9", recipients: []string{"Practitioner/a"}}.json())
	refused(t, "ann writes to herself about another patient", status, b, http.StatusForbidden, "")
	w.people.wantEntry(t, "rest.create", audit.OutcomeMinor, audit.ActorUser, ann.id)
	if got := w.audit.last().Entities; !reflect.DeepEqual(got, []string{"Patient/p9"}) {
		t.Errorf("the refusal names %v, want Patient/p9", got)
	}
	status, _, b = w.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON,
		msg{subject: "Patient/p1", recipients: []string{"Practitioner/b"}}.json())
	if status != http.StatusCreated {
		t.Fatalf("ann writes about her own patient: %d %s", status, b)
	}
	own := w.decode(t, b)
	status, _, b = w.send(t, http.MethodPatch, tok, "/fhir/Communication/"+own.ID, "application/json-patch+json",
		[]byte(`[{"op":"replace","path":"/subject/reference","value":"Patient/p9"}]`))
	refused(t, "ann moves her message to another patient", status, b, http.StatusForbidden, "")
	status, _, b = w.send(t, http.MethodPatch, tok, "/fhir/Communication/"+mine.ID, "application/json-patch+json",
		[]byte(`[{"op":"replace","path":"/subject/reference","value":"Patient/p9"}]`))
	refused(t, "ann moves a message to her to another patient", status, b, http.StatusForbidden, "")

	if status, body := w.people.breakGlass(t, tok, url.Values{"reason": {"covering ward 3 tonight"}}); status != http.StatusOK {
		t.Fatalf("break-glass: %d %v", status, body)
	}
	from := w.auditedSoFar()
	status, _, b = w.send(t, http.MethodPost, tok, "/fhir/Communication", fhirJSON,
		msg{subject: "Patient/p9", recipients: []string{"Practitioner/a"}}.json())
	if status != http.StatusCreated {
		t.Fatalf("ann writes about p9 under break-glass: %d %s", status, b)
	}
	if got := actions(w.audited(from)); !reflect.DeepEqual(got, []string{"rest.create break-glass"}) {
		t.Errorf("audited %v, want rest.create flagged break-glass", got)
	}
}
