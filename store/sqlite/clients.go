package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/store"
)

const clientColumns = `id, jwks, jwks_url, scope, disabled, created_at`

// AddClient registers a client. See store.Clients.
func (s *Store) AddClient(ctx context.Context, c store.Client) error {
	if s.write == nil {
		return fmt.Errorf("registering client %s: %w", c.ID, ErrReadOnly)
	}
	res, err := s.write.ExecContext(ctx, `INSERT INTO client (`+clientColumns+`) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		c.ID, nonNil(c.JWKS), c.JWKSURL, c.Scope, c.Disabled, c.CreatedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("registering client %s: %w", c.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("registering client %s: %w", c.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("registering client %s: %w", c.ID, store.ErrConflict)
	}
	return nil
}

func scanClient(sc scanner) (store.Client, error) {
	var c store.Client
	var created int64
	if err := sc.Scan(&c.ID, &c.JWKS, &c.JWKSURL, &c.Scope, &c.Disabled, &created); err != nil {
		return c, err
	}
	if len(c.JWKS) == 0 {
		c.JWKS = nil
	}
	c.CreatedAt = time.UnixMicro(created).UTC()
	return c, nil
}

// GetClient returns one client. See store.Clients.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := scanClient(s.queryRow(ctx, `SELECT `+clientColumns+` FROM client WHERE id = ?`, id))
	if isNoRows(err) {
		return c, fmt.Errorf("reading client %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading client %s: %w", id, err)
	}
	return c, nil
}

// ListClients returns every client, by id. See store.Clients.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	rows, err := s.query(ctx, `SELECT `+clientColumns+` FROM client ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing clients: %w", err)
	}
	defer rows.Close()
	var out []store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, fmt.Errorf("listing clients: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing clients: %w", err)
	}
	return out, nil
}

// SetClientDisabled disables or enables a client. See store.Clients.
func (s *Store) SetClientDisabled(ctx context.Context, id string, disabled bool) error {
	if s.write == nil {
		return fmt.Errorf("disabling client %s: %w", id, ErrReadOnly)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE client SET disabled = ? WHERE id = ?`, disabled, id)
	if err != nil {
		return fmt.Errorf("disabling client %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("disabling client %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("disabling client %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// UseAssertion spends a client assertion, forgetting the expired ones, in
// one transaction; the single writer makes two spends of one jti take
// turns. See store.Clients.
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, expires, now time.Time) (fresh bool, err error) {
	if s.write == nil {
		return false, fmt.Errorf("spending an assertion of client %s: %w", clientID, ErrReadOnly)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("spending an assertion of client %s: %w", clientID, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = s.txExec(ctx, tx, sqlForgetAssertions, now.UnixMicro()); err != nil {
		return false, fmt.Errorf("forgetting expired client assertions: %w", err)
	}
	res, err := s.txExec(ctx, tx, sqlSpendAssertion, clientID, jti, expires.UnixMicro())
	if err != nil {
		return false, fmt.Errorf("spending an assertion of client %s: %w", clientID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("spending an assertion of client %s: %w", clientID, err)
	}
	if err = tx.Commit(); err != nil {
		return false, fmt.Errorf("spending an assertion of client %s: %w", clientID, err)
	}
	return n == 1, nil
}
