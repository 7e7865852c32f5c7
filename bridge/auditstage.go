package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/audit"
)

// AuditLog is what the audit stage appends to.
type AuditLog interface {
	AppendEntries(ctx context.Context, entries []audit.Entry) (int, error)
}

// AuditStage is the handler of TopicAuditRecorded: it appends each entry
// to this process's audit chain, once, however often it is delivered. A
// payload may carry a batch of entries (audit.DecodeEntries); they are
// appended in one transaction.
type AuditStage struct {
	Log AuditLog
}

// Handle appends one payload's entries.
func (s *AuditStage) Handle(msg *message.Message) error {
	entries, err := audit.DecodeEntries(msg.Payload)
	if err != nil {
		return fmt.Errorf("%w: %s payload: %v", errPermanent, TopicAuditRecorded, err)
	}
	if len(entries) == 1 && entries[0].ID == "" {
		entries[0].ID = msg.UUID
	}
	_, err = s.Log.AppendEntries(msg.Context(), entries)
	if err == nil {
		return nil
	}
	if !errors.Is(err, audit.ErrInvalid) {
		return fmt.Errorf("appending %d audit entries: %w", len(entries), err)
	}
	// Too long, too many entities: no retry makes that entry fit. Append
	// the others, so that only it is set aside (a replay appends it alone).
	var bad []string
	for _, e := range entries {
		if _, err := s.Log.AppendEntries(msg.Context(), []audit.Entry{e}); errors.Is(err, audit.ErrInvalid) {
			bad = append(bad, e.ID)
		} else if err != nil {
			return fmt.Errorf("appending audit entry %s: %w", e.ID, err)
		}
	}
	return fmt.Errorf("%w: audit entries %v cannot be appended: %v", errPermanent, bad, err)
}
