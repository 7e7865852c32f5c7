package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/carebridge/carebridge/fhir"
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
		ehrKey  string
	)
	fs := newFlagSet(env, "keys", "keys [flags]", `
Shows the key ring (key ids only, never key material). With --rotate it adds
a new key that seals all new records and a new Ed25519 key that signs audit
checkpoints; older keys stay to open old records and verify old signatures.
Stop "serve" before rotating, or restart it afterwards.
With --ehr-key FILE it prints the public JWKS of the key that signs SMART
Backend Services assertions to the EHR (serve --ehr-private-key FILE),
making a new EC P-384 key there (mode 0600) if FILE does not exist:
register that JWKS at the EHR with carebridge's client id.`, `  carebridge keys
  carebridge keys --rotate --data-dir /var/lib/carebridge
  carebridge keys --ehr-key /etc/carebridge/ehr-client.pem > carebridge-jwks.json`)
	storage.register(fs)
	fs.BoolVar(&rotate, "rotate", false, "add a new active key")
	fs.StringVar(&ehrKey, "ehr-key", "", "print the public JWKS of this PEM private key, making a new EC P-384 key there if the file does not exist")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if ehrKey != "" {
		if rotate {
			fmt.Fprintln(env.stderr, "carebridge keys: --ehr-key and --rotate are separate steps")
			return errUsage
		}
		return printEHRJWKS(env, ehrKey)
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

// printEHRJWKS prints the public JWKS of the SMART assertion key at path,
// first making a P-384 key there if there is none. An existing file is
// never overwritten.
func printEHRJWKS(env *environment, path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			return fmt.Errorf("making an EC P-384 key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("encoding the key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("--ehr-key: %w", err)
		}
		if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		fmt.Fprintf(env.stderr, "made a new EC P-384 key in %s (mode 0600); its public JWKS follows\n", path)
	}
	key, err := readPrivateKey(path)
	if err != nil {
		return fmt.Errorf("--ehr-key: %w", err)
	}
	jwks, err := fhir.PublicJWKS(key, "")
	if err != nil {
		return fmt.Errorf("--ehr-key: %w", err)
	}
	fmt.Fprintf(env.stdout, "%s\n", jwks)
	return nil
}
