package bridge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// PushNotification is everything a push notification may carry to the
// gateway in front of APNs/FCM: which message (an opaque id), for whom (an
// opaque reference), how urgent, and how many are unread. The fields are
// unexported and NewPushNotification checks each one, so no code path can
// put a name, a result or any other PHI into a push: the device fetches
// the message itself, end to end encrypted, after the user unlocks it.
type PushNotification struct {
	messageID string
	recipient string
	priority  string
	unread    int
}

// opaqueID is a carebridge resource id (a UUID-shaped hash); opaqueRef is
// Type/id with such an id, or one of the configured care team ids.
var (
	opaqueID  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	opaqueRef = regexp.MustCompile(`^(Practitioner|PractitionerRole|CareTeam)/[A-Za-z0-9\-.]{1,64}$`)
)

// NewPushNotification builds a notification, refusing anything that is
// not an opaque id, a recipient reference, a known priority and a count.
func NewPushNotification(messageID, recipient, priority string, unread int) (PushNotification, error) {
	switch {
	case !opaqueID.MatchString(messageID):
		return PushNotification{}, errors.New("push: the message id is not an opaque carebridge id")
	case !opaqueRef.MatchString(recipient):
		return PushNotification{}, errors.New("push: the recipient is not a Practitioner, PractitionerRole or CareTeam reference")
	case priority != "routine" && priority != "urgent" && priority != "asap" && priority != "stat":
		return PushNotification{}, errors.New("push: the priority is not routine, urgent, asap or stat")
	case unread < 0 || unread > 1_000_000:
		return PushNotification{}, errors.New("push: the unread count is out of range")
	}
	return PushNotification{messageID: messageID, recipient: recipient, priority: priority, unread: unread}, nil
}

// MarshalJSON writes {"message_id","recipient","priority","unread"}.
func (p PushNotification) MarshalJSON() ([]byte, error) {
	if p.messageID == "" {
		return nil, errors.New("push: empty notification (build it with NewPushNotification)")
	}
	return json.Marshal(struct {
		MessageID string `json:"message_id"`
		Recipient string `json:"recipient"`
		Priority  string `json:"priority"`
		Unread    int    `json:"unread"`
	}{p.messageID, p.recipient, p.priority, p.unread})
}

// PushWebhook posts notifications to the push gateway. Each body is signed
// with HMAC-SHA256 under the shared secret, in the X-Carebridge-Signature
// header ("sha256=" and the hex digest), with the time in
// X-Carebridge-Timestamp included in what is signed, so the gateway can
// refuse forgeries and replays.
type PushWebhook struct {
	URL    string
	Secret []byte
	Client *http.Client // default: 10 s timeout
	Now    func() time.Time
}

// ErrPushRejected is a 4xx answer: the gateway will not take this
// notification, and sending it again will not help.
var ErrPushRejected = errors.New("push gateway rejected the notification")

// Send posts one notification. A 2xx answer is success; 4xx (but 408 and
// 429) wraps ErrPushRejected; anything else is transient.
func (w *PushWebhook) Send(ctx context.Context, n PushNotification) error {
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	mac := hmac.New(sha256.New, w.Secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("push: building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Carebridge-Timestamp", ts)
	req.Header.Set("X-Carebridge-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("push: posting to the gateway: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: HTTP %d", ErrPushRejected, resp.StatusCode)
	}
	return fmt.Errorf("push: the gateway answered HTTP %d", resp.StatusCode)
}
