package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/sqlite"
)

// queueTopics are the Watermill topics whose tables the store creates.
var queueTopics = bridge.Topics()

// storageFlags select where carebridge keeps its data.
type storageFlags struct {
	dataDir     string
	databaseURL string
}

func (s *storageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.dataDir, "data-dir", "./carebridge-data", "directory for the key ring and the embedded SQLite database")
	fs.StringVar(&s.databaseURL, "database-url", "", "PostgreSQL URL (postgres://user@host:5432/db; serve opens up to 24 connections); empty uses SQLite in --data-dir")
}

func (s *storageFlags) postgres() bool {
	return strings.HasPrefix(s.databaseURL, "postgres://") || strings.HasPrefix(s.databaseURL, "postgresql://")
}

func (s *storageFlags) validate() error {
	if s.databaseURL != "" && !s.postgres() {
		return fmt.Errorf("--database-url must start with postgres:// or postgresql:// (leave it empty for the embedded SQLite database)")
	}
	if s.dataDir == "" {
		return fmt.Errorf("--data-dir must not be empty")
	}
	return nil
}

// describe says where data lives, without credentials.
func (s *storageFlags) describe() string {
	if s.postgres() {
		return "PostgreSQL " + redactURL(s.databaseURL)
	}
	return "SQLite " + s.sqlitePath()
}

func (s *storageFlags) sqlitePath() string  { return filepath.Join(s.dataDir, "carebridge.db") }
func (s *storageFlags) keyRingPath() string { return filepath.Join(s.dataDir, "keyring.json") }

// openStore opens the database. With readOnly (the CLI while a server may
// be running) it neither creates nor migrates anything.
func (s *storageFlags) openStore(ctx context.Context, log *slog.Logger, readOnly bool) (store.Store, error) {
	if s.postgres() {
		st, err := postgres.Open(ctx, postgres.Config{URL: s.databaseURL, Topics: queueTopics, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("opening PostgreSQL %s: %w", redactURL(s.databaseURL), err)
		}
		return st, nil
	}
	if readOnly {
		if _, err := os.Stat(s.sqlitePath()); err != nil {
			return nil, fmt.Errorf("no carebridge database at %s (is --data-dir right? \"carebridge serve\" creates it)", s.sqlitePath())
		}
	} else if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Path: s.sqlitePath(), Topics: queueTopics, Logger: log, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("opening SQLite %s: %w", s.sqlitePath(), err)
	}
	return st, nil
}

// keyRing loads the key ring, creating it when create is set.
func (s *storageFlags) keyRing(create bool) (*secure.KeyRing, error) {
	if create {
		if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating data directory: %w", err)
		}
		return secure.LoadOrCreateKeyRing(s.keyRingPath())
	}
	kr, err := secure.LoadKeyRing(s.keyRingPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no key ring at %s (is --data-dir right?)", s.keyRingPath())
	}
	return kr, err
}

// redactURL drops the password from a database URL for printing.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	userinfo := u[scheme+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return u[:scheme+3] + userinfo[:i] + ":****" + u[at:]
	}
	return u
}
