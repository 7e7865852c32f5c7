// Package postgres is carebridge's PostgreSQL store: store.Store on a pgx
// connection pool, with the Watermill SQL queue (watermill-sql's PostgreSQL
// schema and offsets adapters) in the same database, so that storing a
// message and queuing it is one transaction.
//
// Duplicate detection is safe across carebridge instances: a transaction
// takes a transaction-level advisory lock on each dedupe key it looks up
// (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS),
// in sorted order, before looking.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/carebridge/carebridge/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config says which database to use and how.
type Config struct {
	// URL is a PostgreSQL connection URL or keyword/value string. A
	// search_path parameter in it selects the schema of every table.
	URL string
	// Topics are the Watermill topics whose queue tables Open creates.
	Topics []string
	// Logger receives the store's and Watermill's logs; nil discards them.
	Logger *slog.Logger
	// MaxConns is the size of the connection pool; 0 means 16.
	MaxConns int32
	// QueuePoll is how often an idle subscriber looks for what other
	// processes committed (another instance, "carebridge replay"); this
	// process's commits wake it at once. 0 means 250 ms: at 20 ms the
	// idle stages ran some 250 poll transactions a second, a few per cent
	// of a loaded server's CPU and the whole of an idle one's.
	QueuePoll time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 16
	}
	if c.QueuePoll <= 0 {
		c.QueuePoll = 250 * time.Millisecond
	}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("postgres: URL is empty")
	}
	return nil
}

// Store is store.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	cfg     Config
	pool    *pgxpool.Pool
	wlog    watermill.LoggerAdapter
	schema  wsql.DefaultPostgreSQLSchema
	offsets wsql.DefaultPostgreSQLOffsetsAdapter
	wake    *store.Waker // this process's subscribers, told of each commit that publishes
}

// inTx runs fn in a transaction that publishes events and, once it has
// committed, wakes the subscribers of the topics it published on (see
// txPublisher).
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) (err error) {
	var wt *wakeTx
	defer func() {
		if wt == nil {
			return
		}
		ended := err
		p := recover()
		if p != nil {
			ended = fmt.Errorf("transaction abandoned: panic: %v", p)
		}
		if wt.appender != nil {
			wt.appender.AuditDone(ended)
		}
		if p != nil {
			panic(p)
		}
	}()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		wt = &wakeTx{Tx: tx}
		return fn(wt)
	})
	if err != nil {
		return err
	}
	s.wake.Wake(wt.topics...)
	return nil
}

// wakeTx is inTx's transaction: it keeps the topics published in it, and
// the audit appender whose AuditDone its end owes.
type wakeTx struct {
	pgx.Tx
	topics   []string
	appender store.AuditAppender
}

func (t *wakeTx) PublishedOn(topic string) {
	if !slices.Contains(t.topics, topic) {
		t.topics = append(t.topics, topic)
	}
}

// txPublisher publishes in tx; in inTx's transaction, the commit wakes the
// topics it published on.
func (s *Store) txPublisher(tx pgx.Tx) (message.Publisher, error) {
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: s.schema}, s.wlog)
	if err != nil {
		return nil, err
	}
	rec, _ := tx.(*wakeTx)
	if rec == nil {
		return pub, nil
	}
	return store.RecordingPublisher{Publisher: pub, Rec: rec}, nil
}

var _ store.Store = (*Store)(nil)

// Open connects, applies pending migrations and creates the queue tables of
// cfg.Topics.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	s, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	applied, err := s.Migrate(ctx)
	if err != nil {
		s.pool.Close()
		return nil, err
	}
	if len(applied) > 0 {
		cfg.Logger.Info("applied PostgreSQL migrations", "versions", applied)
	}
	if err := s.createTopics(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

func connect(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing PostgreSQL URL: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	return &Store{
		cfg:  cfg,
		pool: pool,
		wake: &store.Waker{},
		wlog: watermill.NewSlogLogger(cfg.Logger),
		schema: wsql.DefaultPostgreSQLSchema{
			GeneratePayloadType: func(string) string { return "BYTEA" },
		},
	}, nil
}

// Reserve returns the store on a pool of conns connections of its own,
// for work that must not wait behind this store's callers for a
// connection: serve gives the pipeline's stages one, so that however many
// requests the FHIR API has in flight, a STAT result still finds a
// connection. Its commits wake the same subscribers. Close it before
// this store.
func (s *Store) Reserve(ctx context.Context, conns int32) (*Store, error) {
	cfg := s.cfg
	cfg.MaxConns = conns
	r, err := connect(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("reserving %d connections: %w", conns, err)
	}
	r.wake = s.wake
	return r, nil
}

// Pool returns the store's connection pool, for tests and tools.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool. Subscribers must be closed first.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging PostgreSQL: %w", err)
	}
	return nil
}

// Migration is one versioned schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	var ms []Migration
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and '_'", base)
		}
		b, err := fs.ReadFile(migrationFiles, name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", base, err)
		}
		ms = append(ms, Migration{Version: v, Name: strings.TrimSuffix(base, ".sql"), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// Migrate connects, applies pending migrations, creates the queue tables of
// cfg.Topics and disconnects. It returns the versions it applied.
func Migrate(ctx context.Context, cfg Config) ([]int, error) {
	cfg.MaxConns = 2
	s, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.pool.Close()
	applied, err := s.Migrate(ctx)
	if err != nil {
		return applied, err
	}
	return applied, s.createTopics(ctx)
}

// Migrate applies pending migrations, each in its own transaction, holding a
// session advisory lock (per schema) so that concurrent openers wait for one
// another. It returns the versions it applied, none when current.
func (s *Store) Migrate(ctx context.Context) (applied []int, err error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrating: acquiring connection: %w", err)
	}
	defer conn.Release()
	const lockKey = `hashtextextended('carebridge.migrate:' || current_schema(), 0)`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+lockKey+`)`); err != nil {
		return nil, fmt.Errorf("migrating: taking advisory lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+lockKey+`)`); uerr != nil {
			conn.Conn().PgConn().Close(context.WithoutCancel(ctx)) // the lock goes with the session
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return nil, fmt.Errorf("creating schema_migrations: %w", err)
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&done); err != nil {
				return fmt.Errorf("checking schema_migrations: %w", err)
			}
			if done {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("recording it: %w", err)
			}
			applied = append(applied, m.Version)
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return applied, nil
}

// SchemaVersion returns the highest applied migration version, 0 when none.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v *int
	err := s.pool.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// createTopics creates the queue and offsets tables of every configured
// topic, with watermill-sql's own queries (which take an advisory lock).
func (s *Store) createTopics(ctx context.Context) error {
	if len(s.cfg.Topics) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, topic := range s.cfg.Topics {
			qs, err := s.schema.SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams{Topic: topic})
			if err != nil {
				return fmt.Errorf("topic %s: %w", topic, err)
			}
			oqs, err := s.offsets.SchemaInitializingQueries(wsql.OffsetsSchemaInitializingQueriesParams{Topic: topic})
			if err != nil {
				return fmt.Errorf("topic %s: %w", topic, err)
			}
			for _, q := range append(qs, oqs...) {
				if _, err := tx.Exec(ctx, q.Query, q.Args...); err != nil {
					return fmt.Errorf("topic %s: %w", topic, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("creating queue tables: %w", err)
	}
	return nil
}

// Subscriber returns a watermill-sql subscriber on the store's queue tables
// for consumerGroup, exactly-once within the group.
func (s *Store) Subscriber(consumerGroup string) (message.Subscriber, error) {
	return store.QueueSubscriber(wsql.BeginnerFromPgx(s.pool), consumerGroup, s.schema, s.offsets, s.wlog, func(topic string) *store.WakeBackoff {
		return s.wake.SettlingBackoff(topic, s.cfg.QueuePoll, 200*time.Millisecond, time.Millisecond, 20*time.Millisecond)
	}), nil
}
