// Package sqlite is carebridge's embedded store: store.Store on one SQLite
// file (modernc.org/sqlite, no cgo), with the Watermill SQL queue in the same
// file so that storing a message and queuing it is one commit.
//
// The database runs in write-ahead-log mode (https://www.sqlite.org/wal.html)
// with synchronous=FULL, so a committed (and acknowledged) message survives a
// power loss. Writes go through a single connection and take the write lock
// at BEGIN (BEGIN IMMEDIATE); reads use a separate pool and, thanks to WAL,
// never wait for the writer, including reads from another process such as
// "carebridge inbound list" while the server runs.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/store"

	msqlite "modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrReadOnly is returned by writes on a store opened with Config.ReadOnly.
var ErrReadOnly = errors.New("store opened read-only")

// busyTimeoutMillis is how long a connection waits for another one (of this
// or another process) to release a lock before failing with SQLITE_BUSY.
const busyTimeoutMillis = 10000

// Config says which database to open and how.
type Config struct {
	// Path is the file path of the database; its directory must exist. A new
	// file is created with mode 0600.
	Path string
	// Topics are the Watermill topics whose queue tables Open creates.
	// Publishing an event on any other topic fails.
	Topics []string
	// Logger receives the store's and Watermill's logs; nil discards them.
	Logger *slog.Logger
	// ReadOnly opens the database for reading only, without migrating: the
	// file and its schema must exist and be current. Used by CLI commands
	// while a server owns the database.
	ReadOnly bool
	// ReadConns is the size of the read pool; 0 means max(4, GOMAXPROCS).
	ReadConns int
	// QueuePoll is how often an idle subscriber looks for what other
	// processes (carebridge replay) committed; this process's commits wake
	// it at once. 0 means 250 ms (see postgres.Config.QueuePoll).
	QueuePoll time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ReadConns <= 0 {
		c.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if c.QueuePoll <= 0 {
		c.QueuePoll = 250 * time.Millisecond
	}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("sqlite: Path is empty"))
	}
	if strings.ContainsAny(c.Path, "?#") {
		errs = append(errs, errors.New("sqlite: Path must not contain '?' or '#'"))
	}
	for _, t := range c.Topics {
		if !validTopic(t) {
			errs = append(errs, fmt.Errorf("sqlite: invalid topic name %q", t))
		}
	}
	return errors.Join(errs...)
}

// Store is store.Store on SQLite. It is safe for concurrent use.
type Store struct {
	cfg    Config
	logger *slog.Logger
	wlog   watermill.LoggerAdapter

	write *sql.DB // nil when read-only; one connection, BEGIN IMMEDIATE
	read  *sql.DB // pool, query_only

	insertStmt *sql.Stmt
	dedupeStmt *sql.Stmt
	// Statements prepared on first use, by query: parsing SQL is a good
	// part of a small statement's cost on SQLite (database/sql prepares a
	// pool's statement once per connection).
	readStmts, writeStmts sync.Map // string → *sql.Stmt

	schema  SchemaAdapter
	offsets OffsetsAdapter
	groups  groupLocks
	wake    store.Waker // this process's subscribers, told of each commit that publishes

	// published holds the topics the open write transaction published on
	// (txPublisher). There is one write connection, so one write
	// transaction at a time: a rolled-back one's topics are only woken
	// in vain by the next commit.
	publishedMu sync.Mutex
	published   []string
	// pendingAudit is the audit appender of the open write transaction,
	// whose AuditDone its commit owes.
	pendingAudit store.AuditAppender
}

// commit commits a write transaction that published events and wakes the
// subscribers of the topics it published on.
func (s *Store) commit(tx *sql.Tx) error {
	// Taken before the commit hands the connection to the next write,
	// whose publishIn may add its own.
	s.publishedMu.Lock()
	pending := s.pendingAudit
	s.pendingAudit = nil
	s.publishedMu.Unlock()
	err := tx.Commit()
	if pending != nil {
		pending.AuditDone(err)
	}
	if err != nil {
		return err
	}
	s.publishedMu.Lock()
	topics := s.published
	s.published = nil
	s.publishedMu.Unlock()
	s.wake.Wake(topics...)
	return nil
}

// PublishedOn notes a topic the open write transaction published on.
func (s *Store) PublishedOn(topic string) {
	s.publishedMu.Lock()
	if !slices.Contains(s.published, topic) {
		s.published = append(s.published, topic)
	}
	s.publishedMu.Unlock()
}

// txPublisher publishes in the write transaction tx; commit wakes the
// topics it published on.
func (s *Store) txPublisher(tx *sql.Tx) (message.Publisher, error) {
	pub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: s.schema}, s.wlog)
	if err != nil {
		return nil, err
	}
	return store.RecordingPublisher{Publisher: pub, Rec: s}, nil
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, applies pending
// migrations and creates the queue tables of cfg.Topics. With cfg.ReadOnly it
// does neither and fails unless the schema is current.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:    cfg,
		logger: cfg.Logger,
		wlog:   watermill.NewSlogLogger(cfg.Logger),
		groups: groupLocks{m: map[string]chan struct{}{}},
	}
	if err := s.open(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	path := s.cfg.Path
	if s.cfg.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("opening SQLite database read-only: %w", err)
		}
	} else if err := createFile(path); err != nil {
		return err
	}

	var err error
	if !s.cfg.ReadOnly {
		s.write, err = sql.Open("sqlite", dsn(path, "rw", "immediate", false))
		if err != nil {
			return fmt.Errorf("opening SQLite writer: %w", err)
		}
		s.write.SetMaxOpenConns(1)
		s.write.SetMaxIdleConns(1)
		s.write.SetConnMaxLifetime(0)
		s.write.SetConnMaxIdleTime(0)
		if err := pingUntilFree(ctx, s.write); err != nil {
			return fmt.Errorf("opening SQLite writer: %w", err)
		}
		applied, err := migrate(ctx, s.write)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			s.logger.Info("applied SQLite migrations", "path", path, "versions", applied)
		}
		if err := s.createTopics(ctx); err != nil {
			return err
		}
	}

	s.read, err = sql.Open("sqlite", dsn(path, "rw", "deferred", true))
	if err != nil {
		return fmt.Errorf("opening SQLite readers: %w", err)
	}
	s.read.SetMaxOpenConns(s.cfg.ReadConns)
	s.read.SetMaxIdleConns(s.cfg.ReadConns)
	if err := s.checkSchema(ctx); err != nil {
		return err
	}
	if s.write != nil {
		return s.prepare(ctx)
	}
	return nil
}

// pingUntilFree opens a connection of db, trying again for up to the busy
// timeout while SQLite answers SQLITE_BUSY without having waited: a new
// connection's journal_mode(WAL) can find another process's converting
// the file or recovering its WAL, which fails at once instead of calling
// the busy handler (four stores opening a new database together did,
// in 6 of 300 runs of TestConcurrentOpen).
func pingUntilFree(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeoutMillis * time.Millisecond)
	for {
		err := db.PingContext(ctx)
		var se *msqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// createFile creates path with mode 0600 unless it exists, so that SQLite
// (which gives -wal and -shm the mode of the database) never makes the
// database readable by others.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("creating SQLite database: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("creating SQLite database: %w", err)
	}
	return nil
}

// dsn builds a modernc.org/sqlite data source name.
func dsn(path, mode, txlock string, queryOnly bool) string {
	q := url.Values{}
	q.Set("mode", mode)
	q.Set("_txlock", txlock)
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(busyTimeoutMillis)+")")
	q.Add("_pragma", "foreign_keys(1)")
	if queryOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func (s *Store) prepare(ctx context.Context) error {
	var err error
	s.insertStmt, err = s.write.PrepareContext(ctx, `INSERT INTO inbound (
		id, received_at, peer, transport, sending_application, sending_facility,
		receiving_application, receiving_facility, control_id, message_type, version,
		state, ack_code, error, correlation_id, size, sealed
	) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("preparing inbound insert: %w", err)
	}
	s.dedupeStmt, err = s.write.PrepareContext(ctx, `SELECT id, ack_code FROM inbound
		WHERE sending_application = ? AND sending_facility = ? AND control_id = ?
		AND state = 'accepted' AND received_at >= ?
		ORDER BY received_at, id LIMIT 1`)
	if err != nil {
		return fmt.Errorf("preparing inbound dedupe lookup: %w", err)
	}
	for _, q := range writeQueries {
		if _, err := cached(ctx, &s.writeStmts, s.write, q); err != nil {
			return fmt.Errorf("preparing %.40q: %w", q, err)
		}
	}
	return nil
}

// cached returns the statement q prepared on db, preparing it on first
// use.
func cached(ctx context.Context, m *sync.Map, db *sql.DB, q string) (*sql.Stmt, error) {
	if st, ok := m.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := m.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// queryRow runs q on the read pool as a prepared statement.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := cached(ctx, &s.readStmts, s.read, q)
	if err != nil {
		return s.read.QueryRowContext(ctx, q, args...) // which reports the error
	}
	return st.QueryRowContext(ctx, args...)
}

// query runs q on the read pool as a prepared statement.
func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := cached(ctx, &s.readStmts, s.read, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// txStmt is the writer's prepared statement q (one of writeQueries) for
// use in tx; q unprepared if it is not one of them.
func (s *Store) txStmt(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, bool) {
	st, ok := s.writeStmts.Load(q)
	if !ok {
		return nil, false
	}
	return tx.StmtContext(ctx, st.(*sql.Stmt)), true
}

// txExec runs q in tx (on the writer), prepared if it is one of
// writeQueries.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st, ok := s.txStmt(ctx, tx, q); ok {
		return st.ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, q, args...)
}

// Close closes the database. Subscribers must be closed first.
func (s *Store) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.insertStmt, s.dedupeStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, m := range []*sync.Map{&s.readStmts, &s.writeStmts} {
		m.Range(func(_, st any) bool {
			errs = append(errs, st.(*sql.Stmt).Close())
			return true
		})
	}
	for _, db := range []*sql.DB{s.read, s.write} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing SQLite store: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging SQLite: %w", err)
	}
	if s.write != nil {
		if err := s.write.PingContext(ctx); err != nil {
			return fmt.Errorf("pinging SQLite writer: %w", err)
		}
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
	return loadMigrations(migrationFiles)
}

func loadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
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
		b, err := fs.ReadFile(fsys, name)
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

// Migrate opens the database at cfg.Path, applies pending migrations, creates
// the queue tables of cfg.Topics and closes it. It returns the versions it
// applied, none when the schema was current.
func Migrate(ctx context.Context, cfg Config) ([]int, error) {
	cfg.ReadOnly = false
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := createFile(cfg.Path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(cfg.Path, "rw", "immediate", false))
	if err != nil {
		return nil, fmt.Errorf("opening SQLite writer: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := pingUntilFree(ctx, db); err != nil {
		return nil, fmt.Errorf("opening SQLite writer: %w", err)
	}
	applied, err := migrate(ctx, db)
	if err != nil {
		return applied, err
	}
	s := &Store{cfg: cfg, write: db}
	return applied, s.createTopics(ctx)
}

// migrate applies each pending migration in its own BEGIN IMMEDIATE
// transaction, re-checking inside it, so two processes opening the same file
// at once apply each migration exactly once.
func migrate(ctx context.Context, db *sql.DB) ([]int, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	var applied []int
	for _, m := range ms {
		done, err := applyMigration(ctx, db, m)
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

func applyMigration(ctx context.Context, db *sql.DB, m Migration) (applied bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migration %s: beginning transaction: %w", m.Name, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
	)`); err != nil {
		return false, fmt.Errorf("creating schema_migrations: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
		return false, fmt.Errorf("migration %s: checking schema_migrations: %w", m.Name, err)
	}
	if n > 0 {
		return false, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.Version, m.Name); err != nil {
		return false, fmt.Errorf("migration %s: recording it: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %s: committing: %w", m.Name, err)
	}
	return true, nil
}

// SchemaVersion returns the highest applied migration version, 0 when none.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return 0, nil
		}
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return int(v.Int64), nil
}

func (s *Store) checkSchema(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	want := ms[len(ms)-1].Version
	got, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if got < want {
		return fmt.Errorf("SQLite database %s has schema version %d, this carebridge needs %d: run \"carebridge migrate\"", s.cfg.Path, got, want)
	}
	return nil
}

// createTopics creates the queue and offsets tables of every configured topic.
func (s *Store) createTopics(ctx context.Context) error {
	if len(s.cfg.Topics) == 0 {
		return nil
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating queue tables: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, topic := range s.cfg.Topics {
		qs, err := s.schema.SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams{Topic: topic})
		if err != nil {
			return fmt.Errorf("creating queue tables of %s: %w", topic, err)
		}
		oqs, err := s.offsets.SchemaInitializingQueries(wsql.OffsetsSchemaInitializingQueriesParams{Topic: topic})
		if err != nil {
			return fmt.Errorf("creating queue tables of %s: %w", topic, err)
		}
		for _, q := range append(qs, oqs...) {
			if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
				return fmt.Errorf("creating queue tables of %s: %w", topic, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("creating queue tables: %w", err)
	}
	return nil
}

// Subscriber returns a Watermill subscriber on the store's queue tables for
// consumerGroup. Subscribers of one Store and consumer group take turns on a
// topic, so each message is delivered to one of them; across processes
// delivery is at least once.
func (s *Store) Subscriber(consumerGroup string) (message.Subscriber, error) {
	if s.write == nil {
		return nil, fmt.Errorf("creating subscriber: %w", ErrReadOnly)
	}
	return store.QueueSubscriber(&subscriberDB{s: s, group: consumerGroup}, consumerGroup, s.schema, s.offsets, s.wlog, func(topic string) *store.WakeBackoff {
		return s.wake.Backoff(topic, s.cfg.QueuePoll, 200*time.Millisecond)
	}), nil
}

// groupLocks gives subscribers of one consumer group turns on a topic, the
// way SELECT … FOR UPDATE on the offsets row does on PostgreSQL.
type groupLocks struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (g *groupLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	g.mu.Lock()
	ch, ok := g.m[key]
	if !ok {
		ch = make(chan struct{}, 1)
		g.m[key] = ch
	}
	g.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
