package postgres

import (
	"context"
	"fmt"
	"slices"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

// inBatch runs a write whose statements need no answer before the next
// one as a single batch: b's statements, then the queue rows of events
// and the audit records of their appender, sent at once and run as one
// implicit transaction that the batch's Sync commits
// (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-PIPELINING).
// inTx needs a round trip for BEGIN, each statement and COMMIT: a create
// took six, each costing both processes a wakeup and its system calls, and
// the audit chain it held waited through three of them. Here it takes one.
//
// Nothing can be decided between the statements, so a write that must not
// happen has to fail in SQL (a unique violation, say), which rolls the
// whole batch back; the caller reads what the error means.
func (s *Store) inBatch(ctx context.Context, b *pgx.Batch, events []store.Event) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquiring a connection: %w", err)
	}
	defer conn.Release()
	pub := &batchPublisher{schema: s.schema, b: b}
	a, err := store.PublishWrite(events, func() (message.Publisher, error) { return pub, nil })
	if err != nil {
		return err
	}
	if a != nil {
		defer func() { // AuditDone is owed from LinkAudit on, even after a panic
			p := recover()
			if p != nil {
				a.AuditDone(fmt.Errorf("batch abandoned: panic: %v", p))
				panic(p)
			}
			a.AuditDone(err)
		}()
		// The head, when the chain does not know it, is read before the
		// batch on the same connection: a write holding a chain never
		// waits for a second one.
		records, checkpoints, err := a.LinkAudit(ctx, func(ctx context.Context, chain string) (store.AuditRecord, error) {
			return auditHead(ctx, conn, chain)
		})
		if err != nil {
			return fmt.Errorf("linking audit records: %w", err)
		}
		queueAudit(b, records, checkpoints)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	s.wake.Wake(pub.topics...)
	return nil
}

// batchPublisher queues the rows of published messages in a batch,
// noting their topics (the batch's commit wakes them).
type batchPublisher struct {
	schema wsql.DefaultPostgreSQLSchema
	b      *pgx.Batch
	topics []string
}

func (p *batchPublisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	q, err := p.schema.InsertQuery(wsql.InsertQueryParams{Topic: topic, Msgs: msgs})
	if err != nil {
		return fmt.Errorf("queuing on %s: %w", topic, err)
	}
	p.b.Queue(q.Query, q.Args...)
	if !slices.Contains(p.topics, topic) {
		p.topics = append(p.topics, topic)
	}
	return nil
}

func (p *batchPublisher) Close() error { return nil }
