package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/carebridge/carebridge/store"
)

// Announcer tells the inbox sessions of recipients, in this process or
// (over NATS) in any instance, that a Communication waits for them.
type Announcer interface {
	Announce(ctx context.Context, communicationID string, recipients []string) error
}

// CommunicationGetter loads one Communication.
type CommunicationGetter interface {
	GetCommunication(ctx context.Context, id string) (store.CommunicationRow, error)
}

// LocalInbox announces to the sessions connected to this process: it
// opens the Communication, only when one of its recipients is connected,
// and hands it to the Hub.
type LocalInbox struct {
	Hub   *Hub
	Store CommunicationGetter
	Keys  Opener
}

// Announce hands the Communication to the recipients' sessions here.
func (l *LocalInbox) Announce(ctx context.Context, communicationID string, recipients []string) error {
	if !l.Hub.Connected(recipients) {
		return nil
	}
	c, err := l.Store.GetCommunication(ctx, communicationID)
	if err != nil {
		return err
	}
	item, err := inboxItem(c, l.Keys)
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	for _, r := range recipients {
		l.Hub.Publish(r, item)
	}
	return nil
}

// announcement is what crosses NATS: ids only, never content. Each
// instance loads the Communication from the shared database.
type announcement struct {
	CommunicationID string   `json:"communication_id"`
	Recipients      []string `json:"recipients"`
}

// NATSInbox announces on a core NATS subject that every instance listens
// to, each handing what it hears to its own LocalInbox, so a clinician's
// session gets the message whichever instance delivered it. Core NATS is
// at most once: a session that misses an announcement (its instance was
// reconnecting) finds the message in its inbox list, which every stream
// sends first when it (re)connects.
type NATSInbox struct {
	nc      *nats.Conn
	subject string
}

// NewNATSInbox connects and starts listening, handing announcements to
// local; Close stops it.
func NewNATSInbox(cfg NATSConfig, local *LocalInbox, log *slog.Logger) (*NATSInbox, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	nc, _, err := connectNATS(cfg, "inbox")
	if err != nil {
		return nil, err
	}
	n := &NATSInbox{nc: nc, subject: cfg.StreamPrefix + ".inbox.announce"}
	_, err = nc.Subscribe(n.subject, func(m *nats.Msg) {
		var a announcement
		if json.Unmarshal(m.Data, &a) != nil || a.CommunicationID == "" {
			log.Warn("an inbox announcement that is not one was ignored", "subject", m.Subject)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := local.Announce(ctx, a.CommunicationID, a.Recipients); err != nil {
			log.Warn("handing a message to inbox sessions failed; they will list it", "communication_id", a.CommunicationID, "error", err.Error())
		}
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("listening for inbox announcements: %w", err)
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("listening for inbox announcements: %w", err)
	}
	return n, nil
}

// Announce publishes the ids to every instance.
func (n *NATSInbox) Announce(ctx context.Context, communicationID string, recipients []string) error {
	b, err := json.Marshal(announcement{CommunicationID: communicationID, Recipients: recipients})
	if err != nil {
		return err
	}
	if err := n.nc.Publish(n.subject, b); err != nil {
		return fmt.Errorf("announcing %s: %w", communicationID, err)
	}
	return nil
}

// Close stops listening and disconnects.
func (n *NATSInbox) Close() error {
	return n.nc.Drain()
}
