package bridge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/bridge"
)

const commID = "7d9e95fe-caff-830b-9722-d69881d872f6"

// TestPushCarriesNoPHI: the only way to build a push notification refuses
// anything but an opaque id, a recipient reference, a priority and a count,
// and the JSON holds exactly those four fields.
func TestPushCarriesNoPHI(t *testing.T) {
	for name, args := range map[string][3]string{
		"name as message id":      {"SAMPLE, JORDAN", "Practitioner/296d5bdc-2b8a-885f-a547-96530e17fb78", "urgent"},
		"MRN as message id":       {"200345", "Practitioner/296d5bdc-2b8a-885f-a547-96530e17fb78", "urgent"},
		"text as recipient":       {commID, "Dr Welby, K+ 6.9 for SAMPLE", "urgent"},
		"patient as recipient":    {commID, "Patient/752afa8a-ba2f-8bcd-8328-a63c213f9d6c", "urgent"},
		"text as priority":        {commID, "Practitioner/296d5bdc-2b8a-885f-a547-96530e17fb78", "CRITICAL potassium 6.9"},
		"reference as message id": {"Communication/" + commID, "CareTeam/icu-nursing", "stat"},
	} {
		if _, err := bridge.NewPushNotification(args[0], args[1], args[2], 1); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	n, err := bridge.NewPushNotification(commID, "CareTeam/icu-nursing", "stat", 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"message_id": commID, "recipient": "CareTeam/icu-nursing", "priority": "stat", "unread": float64(3)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("push body = %s", b)
	}
	if _, err := json.Marshal(bridge.PushNotification{}); err == nil {
		t.Error("a zero notification was written")
	}
}

// TestPushWebhookSignsAndClassifies: the gateway gets the body signed with
// the shared secret over timestamp and body; 4xx is a rejection, 5xx is
// transient.
func TestPushWebhookSignsAndClassifies(t *testing.T) {
	secret := []byte("shared-secret")
	status := http.StatusAccepted
	var body []byte
	var sig, ts string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		sig, ts = r.Header.Get("X-Carebridge-Signature"), r.Header.Get("X-Carebridge-Timestamp")
		w.WriteHeader(status)
	}))
	defer srv.Close()
	hook := &bridge.PushWebhook{URL: srv.URL, Secret: secret, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
	n, _ := bridge.NewPushNotification(commID, "CareTeam/icu-nursing", "urgent", 1)
	if err := hook.Send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	if ts != "1800000000" || sig != "sha256="+hex.EncodeToString(mac.Sum(nil)) || !strings.Contains(string(body), commID) {
		t.Errorf("signature %q over %q at %s does not verify", sig, body, ts)
	}
	status = http.StatusBadRequest
	if err := hook.Send(context.Background(), n); !errors.Is(err, bridge.ErrPushRejected) {
		t.Errorf("400: %v, want ErrPushRejected", err)
	}
	for _, s := range []int{http.StatusTooManyRequests, http.StatusBadGateway} {
		status = s
		if err := hook.Send(context.Background(), n); err == nil || errors.Is(err, bridge.ErrPushRejected) {
			t.Errorf("%d: %v, want a transient error", s, err)
		}
	}
}

// TestDeliverStageQueuesAndPushes: a new Communication queues one delivery
// per recipient and pushes each an id, the priority and the unread count;
// no push body carries the patient's name or MRN.
func TestDeliverStageQueuesAndPushes(t *testing.T) {
	p := newPipeline(t)
	id := p.accept(t, "oru-r01-critical-k-v251.hl7")
	if err := p.stage.Handle(received(id)); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
	}))
	defer srv.Close()
	stage := &bridge.DeliverStage{Store: p.st, Push: &bridge.PushWebhook{URL: srv.URL, Secret: []byte("s")}, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	events := next(t, p.st, bridge.TopicCommunicationCreated, 1)
	events[0].SetContext(context.Background())
	for range 2 { // redelivered
		if err := stage.Handle(events[0]); err != nil {
			t.Fatal(err)
		}
	}
	comms, _ := p.st.CommunicationsOf(context.Background(), id)
	ds, err := p.st.DeliveriesOf(context.Background(), comms[0].ID)
	if err != nil || len(ds) != 3 {
		t.Fatalf("deliveries = %+v, %v", ds, err)
	}
	if len(bodies) != 6 {
		t.Fatalf("%d pushes, want 3 recipients twice", len(bodies))
	}
	for _, b := range bodies {
		if strings.Contains(b, "SAMPLE") || strings.Contains(b, "200345") || strings.Contains(b, "Potassium") ||
			!strings.Contains(b, comms[0].ID) || !strings.Contains(b, `"priority":"urgent"`) || !strings.Contains(b, `"unread":1`) {
			t.Errorf("push body %s", b)
		}
	}
}
