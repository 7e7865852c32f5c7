package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/store"
)

const clientColumns = `id, jwks, jwks_url, scope, disabled, created_at`

// AddClient registers a client. See store.Clients.
func (s *Store) AddClient(ctx context.Context, c store.Client) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO client (`+clientColumns+`) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
		c.ID, nonNil(c.JWKS), c.JWKSURL, c.Scope, c.Disabled, c.CreatedAt)
	if err != nil {
		return fmt.Errorf("registering client %s: %w", c.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("registering client %s: %w", c.ID, store.ErrConflict)
	}
	return nil
}

func scanClient(row pgx.CollectableRow) (store.Client, error) {
	var c store.Client
	err := row.Scan(&c.ID, &c.JWKS, &c.JWKSURL, &c.Scope, &c.Disabled, &c.CreatedAt)
	if len(c.JWKS) == 0 {
		c.JWKS = nil
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, err
}

// GetClient returns one client. See store.Clients.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+clientColumns+` FROM client WHERE id = $1`, id)
	if err != nil {
		return store.Client{}, fmt.Errorf("reading client %s: %w", id, err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, scanClient)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Client{}, fmt.Errorf("reading client %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("reading client %s: %w", id, err)
	}
	return c, nil
}

// ListClients returns every client, by id. See store.Clients.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+clientColumns+` FROM client ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing clients: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanClient)
	if err != nil {
		return nil, fmt.Errorf("listing clients: %w", err)
	}
	return out, nil
}

// SetClientDisabled disables or enables a client. See store.Clients.
func (s *Store) SetClientDisabled(ctx context.Context, id string, disabled bool) error {
	tag, err := s.pool.Exec(ctx, `UPDATE client SET disabled = $1 WHERE id = $2`, disabled, id)
	if err != nil {
		return fmt.Errorf("disabling client %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("disabling client %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// UseAssertion spends a client assertion and forgets the expired ones, in
// one transaction. See store.Clients.
//
// The spend comes first, as an upsert that takes over the row of an
// expired spend of the same jti, and the clean-up skips rows another
// transaction holds: a transaction waits only in its first statement,
// holding no locks, so concurrent spends never deadlock. Two spends of
// one jti queue on its row: the second sees the first's and is a replay.
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, expires, now time.Time) (fresh bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO client_assertion (client_id, jti, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at
			WHERE client_assertion.expires_at < $4`, clientID, jti, expires, now)
		if err != nil {
			return err
		}
		fresh = tag.RowsAffected() == 1
		if _, err := tx.Exec(ctx, `DELETE FROM client_assertion WHERE (client_id, jti) IN (
			SELECT client_id, jti FROM client_assertion WHERE expires_at < $1 FOR UPDATE SKIP LOCKED)`, now); err != nil {
			return fmt.Errorf("forgetting expired client assertions: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("spending an assertion of client %s: %w", clientID, err)
	}
	return fresh, nil
}
