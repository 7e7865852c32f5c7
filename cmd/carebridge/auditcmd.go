package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/carebridge/carebridge/audit"
)

// runAudit is "carebridge audit": checks of the audit trail.
func runAudit(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		w := env.stdout
		if len(args) == 0 {
			w = env.stderr
		}
		fmt.Fprint(w, `Usage: carebridge audit verify [flags]

Checks the tamper-evident audit trail. Run "carebridge audit verify --help"
for the flags.

Example:
  carebridge audit verify
`)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	if args[0] == "verify" {
		return runAuditVerify(ctx, env, args[1:])
	}
	fmt.Fprintf(env.stderr, "carebridge audit: unknown subcommand %q (want verify)\n", args[0])
	return errUsage
}

func runAuditVerify(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	fs := newFlagSet(env, "audit verify", "audit verify [flags]", `
Walks every audit chain record by record: each record must give its stored
SHA-256, name the hash of the one before it, and follow it without a gap;
each signed checkpoint must verify with the key ring's signing keys and
match the chain at its record. Prints the first problem with the chain and
record that show it, and exits 1; exits 0 when the whole trail verifies.
Records after a chain's last checkpoint are only as safe as the database
until the next checkpoint is signed. Works while the server runs.`, `  carebridge audit verify
  carebridge audit verify --database-url postgres://carebridge@db/carebridge`)
	storage.register(fs)
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge audit verify: %v\n", err)
		return errUsage
	}
	kr, err := storage.keyRing(false)
	if err != nil {
		return err
	}
	st, err := storage.openStore(ctx, quietLogger(), true)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := audit.Verify(ctx, st, kr.SigningPublicKey)
	var p *audit.Problem
	if errors.As(err, &p) {
		fmt.Fprintf(env.stdout, "NOT VERIFIED: %v\n(checked %d records before it)\n", p, rep.Records)
		return errFailed
	}
	if err != nil {
		return fmt.Errorf("verifying the audit trail: %w", err)
	}
	fmt.Fprintf(env.stdout, "verified: %d records in %d chains, %d signed checkpoints\n", rep.Records, rep.Chains, rep.Checkpoints)
	return nil
}
