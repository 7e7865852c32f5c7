package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// TestWatermillAcceptance runs watermill's own Pub/Sub acceptance suite on
// the SQLite schema and offsets adapters and the store's subscriber handle.
// Publishing here is outside a transaction and topics are created on demand,
// unlike in the store, where both happen in AcceptInbound and Open.
func TestWatermillAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "pubsub.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := wsql.NewPublisher(wsql.BeginnerFromStdSQL(s.write), wsql.PublisherConfig{
			SchemaAdapter:        s.schema,
			AutoInitializeSchema: true,
		}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := wsql.NewSubscriber(&subscriberDB{s: s, group: group}, wsql.SubscriberConfig{
			ConsumerGroup:    group,
			PollInterval:     5 * time.Millisecond,
			ResendInterval:   5 * time.Millisecond,
			RetryInterval:    50 * time.Millisecond,
			SchemaAdapter:    s.schema,
			OffsetsAdapter:   s.offsets,
			InitializeSchema: true,
		}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: true,
		GuaranteedOrder:     true,
		Persistent:          true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return constructor(t, "test")
	}, constructor)
}
