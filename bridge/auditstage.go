package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/audit"
)

// AuditLog is what the audit stage appends to.
type AuditLog interface {
	AppendEntry(ctx context.Context, e audit.Entry) (bool, error)
}

// AuditStage is the handler of TopicAuditRecorded: it appends each entry
// to this process's audit chain, once, however often it is delivered.
type AuditStage struct {
	Log AuditLog
}

// Handle appends one entry.
func (s *AuditStage) Handle(msg *message.Message) error {
	var e audit.Entry
	if err := json.Unmarshal(msg.Payload, &e); err != nil || e.Action == "" || e.At.IsZero() {
		return fmt.Errorf("%w: %s payload is not an audit entry", errPermanent, TopicAuditRecorded)
	}
	if e.ID == "" {
		e.ID = msg.UUID
	}
	if _, err := s.Log.AppendEntry(msg.Context(), e); err != nil {
		if errors.Is(err, audit.ErrInvalid) {
			// Too long, too many entities: no retry makes it fit.
			return fmt.Errorf("%w: appending audit entry %s: %v", errPermanent, e.ID, err)
		}
		return fmt.Errorf("appending audit entry %s: %w", e.ID, err)
	}
	return nil
}
