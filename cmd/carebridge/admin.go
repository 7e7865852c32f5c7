package main

import (
	"context"
	"fmt"
	"time"
)

func runMigrate(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	fs := newFlagSet(env, "migrate", "migrate [flags]", `
Applies the database migrations embedded in this binary and exits. "serve"
applies them too at start; run this to migrate ahead of a rollout.`, `  carebridge migrate --database-url postgres://carebridge@db:5432/carebridge`)
	storage.register(fs)
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge migrate: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), false)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "migrations applied: %s\n", storage.describe())
	return nil
}

func runKeys(ctx context.Context, env *environment, args []string) error {
	var (
		storage storageFlags
		rotate  bool
	)
	fs := newFlagSet(env, "keys", "keys [flags]", `
Shows the key ring (key ids only, never key material). With --rotate it adds
a new key that seals all new records and a new Ed25519 key that signs audit
checkpoints; older keys stay to open old records and verify old signatures.
Stop "serve" before rotating, or restart it afterwards.`, `  carebridge keys
  carebridge keys --rotate --data-dir /var/lib/carebridge`)
	storage.register(fs)
	fs.BoolVar(&rotate, "rotate", false, "add a new active key")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	kr, err := storage.keyRing(rotate)
	if err != nil {
		return err
	}
	if rotate {
		id, err := kr.Rotate(time.Now())
		if err != nil {
			return fmt.Errorf("rotating the key ring: %w", err)
		}
		fmt.Fprintf(env.stdout, "new active key: %s\n", id)
		return nil
	}
	fmt.Fprintf(env.stdout, "key ring: %s\nactive key: %s\n", storage.keyRingPath(), kr.ActiveKeyID())
	if id, _, ok := kr.SigningKey(); ok {
		fmt.Fprintf(env.stdout, "active signing key: %s\n", id)
	} else {
		fmt.Fprintln(env.stdout, "active signing key: none (this ring predates audit signing; run keys --rotate)")
	}
	return nil
}
