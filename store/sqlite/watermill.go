package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// topicName is what watermill-sql accepts as a topic; it never needs escaping
// inside a double-quoted SQLite identifier.
var topicName = regexp.MustCompile(`^[A-Za-z0-9\-$:._]+$`)

func validTopic(t string) bool { return topicName.MatchString(t) }

// SchemaAdapter is the watermill-sql schema for SQLite: one table per topic,
// "watermill_<topic>", whose INTEGER PRIMARY KEY AUTOINCREMENT is the offset.
// SQLite has one writer at a time, so offsets become visible in commit order
// and a reader can never skip a row that commits later with a smaller offset
// (the gap PostgreSQL's adapter tracks transaction ids for).
type SchemaAdapter struct {
	// SubscribeBatchSize is how many messages a subscriber reads at once;
	// 0 means 100. Offsets are saved once per batch.
	SubscribeBatchSize int
}

var _ wsql.SchemaAdapter = SchemaAdapter{}

// MessagesTable returns the quoted name of the messages table of topic.
func (SchemaAdapter) MessagesTable(topic string) string {
	return `"watermill_` + topic + `"`
}

// SchemaInitializingQueries creates the messages table of the topic.
func (a SchemaAdapter) SchemaInitializingQueries(p wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	if !validTopic(p.Topic) {
		return nil, fmt.Errorf("invalid topic name %q", p.Topic)
	}
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + a.MessagesTable(p.Topic) + ` (
		"offset"   INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid       TEXT NOT NULL,
		created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
		payload    BLOB,
		metadata   TEXT
	)`}}, nil
}

// InsertQuery inserts all messages in one statement.
func (a SchemaAdapter) InsertQuery(p wsql.InsertQueryParams) (wsql.Query, error) {
	if len(p.Msgs) == 0 {
		return wsql.Query{}, fmt.Errorf("no messages to insert")
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + a.MessagesTable(p.Topic) + ` (uuid, payload, metadata) VALUES `)
	args := make([]any, 0, 3*len(p.Msgs))
	for i, m := range p.Msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?,?,?)`)
		md, err := json.Marshal(m.Metadata)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("marshalling metadata of message %s: %w", m.UUID, err)
		}
		args = append(args, m.UUID, nonNil(m.Payload), string(md))
	}
	return wsql.Query{Query: b.String(), Args: args}, nil
}

// SelectQuery reads the next messages after the consumer group's offset.
func (a SchemaAdapter) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	next, err := p.OffsetsAdapter.NextOffsetQuery(wsql.NextOffsetQueryParams{Topic: p.Topic, ConsumerGroup: p.ConsumerGroup})
	if err != nil {
		return wsql.Query{}, err
	}
	batch := a.SubscribeBatchSize
	if batch <= 0 {
		batch = 100
	}
	return wsql.Query{
		Query: `SELECT "offset", uuid, payload, metadata FROM ` + a.MessagesTable(p.Topic) +
			` WHERE "offset" > (` + next.Query + `) ORDER BY "offset" LIMIT ` + strconv.Itoa(batch),
		Args: next.Args,
	}, nil
}

// UnmarshalMessage turns a row of SelectQuery into a message.
func (SchemaAdapter) UnmarshalMessage(p wsql.UnmarshalMessageParams) (wsql.Row, error) {
	var r wsql.Row
	if err := p.Row.Scan(&r.Offset, &r.UUID, &r.Payload, &r.Metadata); err != nil {
		return wsql.Row{}, fmt.Errorf("scanning message row: %w", err)
	}
	msg := message.NewMessage(string(r.UUID), r.Payload)
	if len(r.Metadata) > 0 {
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			return wsql.Row{}, fmt.Errorf("unmarshalling metadata of message %s: %w", msg.UUID, err)
		}
	}
	r.Msg = msg
	return r, nil
}

// SubscribeIsolationLevel is ignored: the store's subscriber reads outside a
// transaction (see subscriberDB).
func (SchemaAdapter) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelDefault }

// OffsetsAdapter keeps the acknowledged offset of each consumer group in
// "watermill_offsets_<topic>".
//
// SQLite has no SELECT … FOR UPDATE. Instead the store's subscriber (see
// subscriberDB) reads without holding a transaction, gives subscribers of one
// consumer group in one process turns on a topic with an in-process lock, and
// saves the offset in a short write of its own that never moves it backwards.
type OffsetsAdapter struct{}

var _ wsql.OffsetsAdapter = OffsetsAdapter{}

// MessagesOffsetsTable returns the quoted name of the offsets table of topic.
func (OffsetsAdapter) MessagesOffsetsTable(topic string) string {
	return `"watermill_offsets_` + topic + `"`
}

// SchemaInitializingQueries creates the offsets table of the topic.
func (a OffsetsAdapter) SchemaInitializingQueries(p wsql.OffsetsSchemaInitializingQueriesParams) ([]wsql.Query, error) {
	if !validTopic(p.Topic) {
		return nil, fmt.Errorf("invalid topic name %q", p.Topic)
	}
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + a.MessagesOffsetsTable(p.Topic) + ` (
		consumer_group TEXT    NOT NULL PRIMARY KEY,
		offset_acked   INTEGER NOT NULL DEFAULT 0
	)`}}, nil
}

// AckMessageQuery saves the offset of the last acknowledged row.
func (a OffsetsAdapter) AckMessageQuery(p wsql.AckMessageQueryParams) (wsql.Query, error) {
	return wsql.Query{
		Query: `INSERT INTO ` + a.MessagesOffsetsTable(p.Topic) + ` (consumer_group, offset_acked) VALUES (?, ?)
			ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = max(offset_acked, excluded.offset_acked)`,
		Args: []any{p.ConsumerGroup, p.LastRow.Offset},
	}, nil
}

// NextOffsetQuery returns the last acknowledged offset, 0 before the first ack.
func (a OffsetsAdapter) NextOffsetQuery(p wsql.NextOffsetQueryParams) (wsql.Query, error) {
	return wsql.Query{
		Query: `SELECT COALESCE((SELECT offset_acked FROM ` + a.MessagesOffsetsTable(p.Topic) + ` WHERE consumer_group = ?), 0)`,
		Args:  []any{p.ConsumerGroup},
	}, nil
}

// ConsumedMessageQuery is not used.
func (OffsetsAdapter) ConsumedMessageQuery(wsql.ConsumedMessageQueryParams) (wsql.Query, error) {
	return wsql.Query{}, nil
}

// BeforeSubscribingQueries is not used.
func (OffsetsAdapter) BeforeSubscribingQueries(wsql.BeforeSubscribingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

// subscriberDB is the database handle of the store's subscribers.
//
// watermill-sql keeps its "transaction" open while the handler processes the
// messages it read. On SQLite a write transaction held that long would stop
// every other writer (including a handler writing to the store), and a read
// transaction upgraded to a write at ack time fails with SQLITE_BUSY_SNAPSHOT
// whenever anything committed meanwhile. So the transaction handed to
// watermill-sql is not one: its queries run on the read pool and are buffered
// (no snapshot is held while handlers run), and its writes (the offset ack) run
// on the writer as single statements. Exclusivity inside a consumer group
// comes from groupLocks, held from the first query to Commit/Rollback.
type subscriberDB struct {
	s     *Store
	group string
}

func (d *subscriberDB) BeginTx(ctx context.Context, _ *sql.TxOptions) (wsql.Tx, error) {
	return &subscriberTx{db: d, ctx: ctx}, nil
}

func (d *subscriberDB) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	return d.s.write.ExecContext(ctx, query, args...)
}

func (d *subscriberDB) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	return bufferRows(ctx, d.s.read, query, args)
}

type subscriberTx struct {
	db     *subscriberDB
	ctx    context.Context
	unlock func()
}

func (t *subscriberTx) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	if t.unlock == nil {
		unlock, err := t.db.s.groups.lock(ctx, t.db.group+"\x00"+query)
		if err != nil {
			return nil, err
		}
		t.unlock = unlock
	}
	return bufferRows(ctx, t.db.s.read, query, args)
}

// ExecContext runs the offset ack even when the subscription is being
// cancelled: the messages it covers were acknowledged by their handlers.
func (t *subscriberTx) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return t.db.s.write.ExecContext(ctx, query, args...)
}

func (t *subscriberTx) Commit() error   { t.release(); return nil }
func (t *subscriberTx) Rollback() error { t.release(); return nil }

func (t *subscriberTx) release() {
	if t.unlock != nil {
		t.unlock()
		t.unlock = nil
	}
}

// bufferedRows holds a whole result set in memory.
type bufferedRows struct {
	rows [][]any
	cur  []any
}

func bufferRows(ctx context.Context, db *sql.DB, query string, args []any) (*bufferedRows, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	b := &bufferedRows{}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		b.rows = append(b.rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bufferedRows) Next() bool {
	if len(b.rows) == 0 {
		b.cur = nil
		return false
	}
	b.cur, b.rows = b.rows[0], b.rows[1:]
	return true
}

func (b *bufferedRows) Close() error { b.rows, b.cur = nil, nil; return nil }

func (b *bufferedRows) Scan(dest ...any) error {
	if b.cur == nil {
		return sql.ErrNoRows
	}
	if len(dest) != len(b.cur) {
		return fmt.Errorf("scan: %d columns, %d destinations", len(b.cur), len(dest))
	}
	for i, v := range b.cur {
		if err := assign(dest[i], v); err != nil {
			return fmt.Errorf("scan column %d: %w", i, err)
		}
	}
	return nil
}

// assign converts the driver values SQLite returns into the destinations
// SchemaAdapter.UnmarshalMessage uses.
func assign(dest, v any) error {
	switch d := dest.(type) {
	case *int64:
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("cannot scan %T into int64", v)
		}
		*d = n
	case *[]byte:
		switch s := v.(type) {
		case nil:
			*d = nil
		case []byte:
			*d = s
		case string:
			*d = []byte(s)
		default:
			return fmt.Errorf("cannot scan %T into []byte", v)
		}
	case *string:
		switch s := v.(type) {
		case []byte:
			*d = string(s)
		case string:
			*d = s
		default:
			return fmt.Errorf("cannot scan %T into string", v)
		}
	case *any:
		*d = v
	default:
		return fmt.Errorf("unsupported scan destination %T", dest)
	}
	return nil
}
