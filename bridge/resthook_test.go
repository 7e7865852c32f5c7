package bridge_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

func TestParseCriteria(t *testing.T) {
	for s, want := range map[string]string{
		"Communication":                                          "",
		"Communication?priority=urgent,stat":                     "",
		"Communication?category=alert&recipient=Practitioner/p1": "",
		"Patient":                                     "only Communication",
		"Communication?priority=high":                 `priority "high"`,
		"Communication?subject=Patient/1":             `"subject" is not supported`,
		"Communication?priority=urgent&priority=stat": "give priority once",
		"Communication?recipient=p1":                  "one reference",
	} {
		_, err := bridge.ParseCriteria(s)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", s, err, want)
		}
	}
	c, _ := bridge.ParseCriteria("Communication?priority=urgent,stat&recipient=Practitioner/p1")
	for comm, want := range map[*store.CommunicationRow]bool{
		{Priority: "urgent", Recipients: []string{"Practitioner/p1"}}:  true,
		{Priority: "routine", Recipients: []string{"Practitioner/p1"}}: false,
		{Priority: "stat", Recipients: []string{"Practitioner/p2"}}:    false,
	} {
		if c.Matches(*comm) != want {
			t.Errorf("%+v: %v", comm, !want)
		}
	}
}

// hookPipeline maps the critical potassium and hands its
// communication.created to a deliver stage with rest-hooks, returning the
// Communication.
func hookPipeline(t *testing.T, p *pipeline, hooks *bridge.RestHook) store.CommunicationRow {
	t.Helper()
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	comms, err := p.st.CommunicationsOf(context.Background(), id)
	if err != nil || len(comms) != 1 {
		t.Fatalf("Communications: %+v, %v", comms, err)
	}
	c := comms[0]
	deliver := &bridge.DeliverStage{Store: p.st, Hooks: hooks, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	b, _ := json.Marshal(bridge.CommunicationCreated{CommunicationID: c.ID, InboundID: id, Priority: c.Priority, Recipients: c.Recipients})
	for range 2 { // a redelivery queues nothing more
		if err := deliver.Handle(message.NewMessage(watermill.NewUUID(), b)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestRestHookNotifiesIdOnly: an urgent Communication reaches the
// subscription whose criteria it meets, once, as a valid R4 id-only
// notification carrying the subscription's own Authorization header and
// no PHI; a subscription for routine messages hears nothing.
func TestRestHookNotifiesIdOnly(t *testing.T) {
	p := newPipeline(t)
	var mu sync.Mutex
	var bodies []string
	var auths []string
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, auths = append(bodies, string(b)), append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer ehr.Close()
	header, err := p.kr.Seal([]byte("Authorization: Bearer hook-secret-0123456789\n"), []byte("Subscription/urgent"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, s := range []store.Subscription{
		{ID: "urgent", Criteria: "Communication?priority=urgent,stat", Endpoint: ehr.URL + "/hook", Header: header, Active: true, Created: now},
		{ID: "routine", Criteria: "Communication?priority=routine", Endpoint: ehr.URL + "/routine", Active: true, Created: now},
	} {
		if err := p.st.PutSubscription(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	hooks := &bridge.RestHook{Store: p.st, Keys: p.kr, BaseURL: "https://carebridge.example/fhir", Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	c := hookPipeline(t, p, hooks)
	if n, err := hooks.Tick(context.Background()); err != nil || n != 1 {
		t.Fatalf("Tick = %d, %v; want 1 sent", n, err)
	}
	if n, _ := hooks.Tick(context.Background()); n != 0 {
		t.Fatalf("a second Tick sent %d again", n)
	}
	if len(bodies) != 1 || auths[0] != "Bearer hook-secret-0123456789" {
		t.Fatalf("%d notifications, Authorization %q", len(bodies), auths)
	}
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate([]byte(bodies[0])); err != nil {
		t.Fatalf("the notification is not valid R4: %v\n%s", err, bodies[0])
	}
	for _, want := range []string{`"type":"history"`, `"Subscription/urgent"`, `"https://carebridge.example/fhir/Communication/` + c.ID + `"`, `"event-number","valueString":"1"`} {
		if !strings.Contains(bodies[0], want) {
			t.Errorf("notification lacks %s:\n%s", want, bodies[0])
		}
	}
	for _, phi := range []string{"SAMPLE", "JORDAN", "CRITICAL", "Potassium"} {
		if strings.Contains(strings.ToUpper(bodies[0]), strings.ToUpper(phi)) {
			t.Errorf("notification carries %q:\n%s", phi, bodies[0])
		}
	}
}

// TestRestHookRetriesForHoursThenGivesUp: an endpoint that keeps failing
// is retried with backoff growing to an hour, for a day, and then the
// notice is dead with its last error, and left alone.
func TestRestHookRetriesForHoursThenGivesUp(t *testing.T) {
	p := newPipeline(t)
	calls := 0
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ehr.Close()
	start := time.Now().UTC().Truncate(time.Microsecond) // as stored
	clock := start
	if err := p.st.PutSubscription(context.Background(), store.Subscription{ID: "all", Criteria: "Communication", Endpoint: ehr.URL, Active: true, Created: start}); err != nil {
		t.Fatal(err)
	}
	hooks := &bridge.RestHook{Store: p.st, Keys: p.kr, Now: func() time.Time { return clock }, Log: slog.New(slog.DiscardHandler)}
	hookPipeline(t, p, hooks)
	var waits []time.Duration
	for clock.Sub(start) < 30*time.Hour {
		if _, err := hooks.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		due, err := p.st.DueNotices(context.Background(), start.Add(100*time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) == 0 {
			break
		}
		waits = append(waits, due[0].NextAt.Sub(clock))
		clock = due[0].NextAt
	}
	dead, err := p.st.DeadNotices(context.Background(), 10)
	if err != nil || len(dead) != 1 || dead[0].LastError != "the endpoint answered HTTP 503" || dead[0].Attempts != calls {
		t.Fatalf("dead = %+v, %v (calls %d)", dead, err, calls)
	}
	if gaveUp := clock.Sub(start); gaveUp < 24*time.Hour || gaveUp > 25*time.Hour {
		t.Fatalf("gave up after %v, want a day", gaveUp)
	}
	if waits[0] != 30*time.Second || waits[len(waits)-1] != time.Hour {
		t.Fatalf("waits %v: want 30s first, growing to 1h", waits)
	}
	if calls < 20 || calls > 40 {
		t.Fatalf("%d attempts in a day", calls)
	}
	clock = clock.Add(48 * time.Hour)
	if n, _ := hooks.Tick(context.Background()); n != 0 || calls != dead[0].Attempts {
		t.Fatal("a dead notice was sent again")
	}
}

func TestCheckEndpoint(t *testing.T) {
	for endpoint, want := range map[string]string{
		"https://ehr.example.org/hooks/carebridge": "",
		"http://127.0.0.1:8080/hook":               "",
		"http://localhost/hook":                    "",
		"http://[::1]:9/hook":                      "",
		"http://127.0.0.2/hook":                    "",
		"http://ehr.example.org/hook":              "must use https",
		"http://10.0.0.1/hook":                     "must use https",
		"ftp://ehr.example.org/hook":               "http(s) URL",
		"/hook":                                    "http(s) URL",
		"https:opaque":                             "http(s) URL",
		"":                                         "http(s) URL",
		"https://user:pw@ehr.example.org/hook":     "credentials",
		"https://ehr.example.org/" + strings.Repeat("a", bridge.MaxEndpointBytes): "longer than",
	} {
		err := bridge.CheckEndpoint(endpoint)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%.60s: %v, want %q", endpoint, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%s: the error repeats the credentials: %v", endpoint, err)
		}
	}
}

// TestRestHookSeesSubscriptionsAsTheyChange: a subscription the API
// stored (Changed) is matched by the next Communication, however fresh
// the list read before; one stored otherwise is seen within a second; a
// deleted one hears nothing more.
func TestRestHookSeesSubscriptionsAsTheyChange(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	var mu sync.Mutex
	heard := map[string]int{}
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		heard[r.URL.Path]++
		mu.Unlock()
	}))
	defer ehr.Close()
	start := time.Now().UTC().Truncate(time.Microsecond)
	clock := start
	put := func(id string) {
		t.Helper()
		if err := p.st.PutSubscription(ctx, store.Subscription{ID: id, Criteria: "Communication", Endpoint: ehr.URL + "/" + id, Active: true, Created: clock}); err != nil {
			t.Fatal(err)
		}
	}
	hooks := &bridge.RestHook{Store: p.st, Keys: p.kr, Now: func() time.Time { return clock }, Log: slog.New(slog.DiscardHandler)}
	queue := func(id string, updated time.Time) {
		t.Helper()
		if err := hooks.Queue(ctx, store.CommunicationRow{ID: id, Priority: "routine", Updated: updated}); err != nil {
			t.Fatal(err)
		}
	}
	noticed := func(sub string) []string {
		t.Helper()
		ns, err := p.st.SubscriptionNotices(ctx, sub, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range ns {
			out = append(out, n.CommunicationID)
		}
		slices.Sort(out)
		return out
	}

	put("first")
	queue("c1", start.Add(-time.Second)) // reads the list
	put("second")
	hooks.Changed()
	queue("c2", clock) // stored after the list was read
	if got := noticed("second"); !slices.Equal(got, []string{"c2"}) {
		t.Fatalf("second, stored before c2, was noticed of %v", got)
	}
	put("third")
	clock = start.Add(500 * time.Millisecond)
	queue("c3", start.Add(-time.Hour)) // an old message: the list of 0.5 s ago serves
	clock = start.Add(1100 * time.Millisecond)
	queue("c4", start.Add(-time.Hour)) // the list is a second old: read again
	if got := noticed("third"); !slices.Equal(got, []string{"c4"}) {
		t.Fatalf("third was noticed of %v, want c4 (within a second)", got)
	}
	if err := p.st.DeleteSubscription(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	if n, err := hooks.Tick(ctx); err != nil || n != 5 {
		t.Fatalf("Tick = %d, %v; want 5 sent (first: c1-c4, third: c4)", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := map[string]int{"/first": 4, "/third": 1}; !reflect.DeepEqual(heard, want) {
		t.Fatalf("notifications %v, want %v (none for the deleted subscription)", heard, want)
	}
}

// TestCheckPublicEndpoint: an endpoint an EHR client subscribes through
// the API must be public: no loopback, private or link-local address.
func TestCheckPublicEndpoint(t *testing.T) {
	for endpoint, want := range map[string]string{
		"https://ehr.example.org/hooks/carebridge": "",
		"https://203.0.113.7/hook":                 "",
		"http://127.0.0.1:8080/hook":               "not a loopback",
		"https://127.0.0.1:8443/hook":              "not a loopback",
		"https://[::1]/hook":                       "not a loopback",
		"https://10.1.2.3/hook":                    "private",
		"https://192.168.0.9/hook":                 "private",
		"https://172.16.0.1/hook":                  "private",
		"https://[fd00::1]/hook":                   "private",
		"https://169.254.169.254/latest/meta-data": "link-local",
		"https://0.0.0.0/hook":                     "public address",
		"https://localhost/hook":                   "not localhost",
		"https://metadata.localhost./hook":         "not localhost",
		"http://ehr.example.org/hook":              "must use https",
	} {
		err := bridge.CheckPublicEndpoint(endpoint)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", endpoint, err, want)
		}
	}
}
