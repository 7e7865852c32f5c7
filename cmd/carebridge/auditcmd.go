package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/carebridge/carebridge/audit"
)

// runAudit is "carebridge audit": checks of the audit trail.
func runAudit(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		w := env.stdout
		if len(args) == 0 {
			w = env.stderr
		}
		fmt.Fprint(w, `Usage: carebridge audit verify|pending [flags]

  verify   checks the tamper-evident audit trail, naming the first broken record
  pending  shows what waits to be exported to the EHR as AuditEvents, and
           what the EHR refused (dead letters)

Run "carebridge audit verify --help" or "carebridge audit pending --help"
for the flags.

Examples:
  carebridge audit verify
  carebridge audit pending
`)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(ctx, env, args[1:])
	case "pending":
		return runAuditPending(ctx, env, args[1:])
	}
	fmt.Fprintf(env.stderr, "carebridge audit: unknown subcommand %q (want verify or pending)\n", args[0])
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

func runAuditPending(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	var target string
	var deadLimit int
	fs := newFlagSet(env, "audit pending", "audit pending [flags]", `
Shows, for each EHR that serve --ehr-fhir-url exports to, how many audit
records wait to be sent as AuditEvents, since when, how far each chain has
gone, and the records the EHR refused for good (dead letters, with the
reason). Records wait while the EHR is down or refuses carebridge's
credentials; they are sent, in order, when it answers again. Nothing is
dropped. Works while the server runs.`, `  carebridge audit pending
  carebridge audit pending --ehr-fhir-url https://ehr.example.org/fhir --dead 100`)
	storage.register(fs)
	fs.StringVar(&target, "ehr-fhir-url", "", "show this target even if nothing was exported to it yet")
	fs.IntVar(&deadLimit, "dead", 20, "list at most this many dead letters per target")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge audit pending: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), true)
	if err != nil {
		return err
	}
	defer st.Close()
	var extra []string
	if target != "" {
		extra = append(extra, target)
	}
	backlogs, err := audit.Pending(ctx, st, max(deadLimit, 0), extra...)
	if err != nil {
		return fmt.Errorf("reading the audit export backlog: %w", err)
	}
	if len(backlogs) == 0 {
		fmt.Fprintln(env.stdout, "no EHR to export to yet: start serve with --ehr-fhir-url")
		return nil
	}
	now := time.Now()
	for _, b := range backlogs {
		fmt.Fprintf(env.stdout, "%s: %d records waiting", b.Target, b.Pending)
		if !b.Oldest.IsZero() {
			fmt.Fprintf(env.stdout, ", the oldest recorded %s (%s ago)", b.Oldest.Format(time.RFC3339), now.Sub(b.Oldest).Round(time.Second))
		}
		fmt.Fprintf(env.stdout, "; %d dead letters\n", b.Dead)
		for _, c := range b.Chains {
			fmt.Fprintf(env.stdout, "  chain %s: %d of %d records exported\n", c.Chain, c.Exported, c.Head)
		}
		for _, d := range b.DeadLetters {
			fmt.Fprintf(env.stdout, "  dead letter %s/%d (%s): %s\n", d.Chain, d.Seq, d.At.Format(time.RFC3339), d.Reason)
		}
		if b.Dead > len(b.DeadLetters) {
			fmt.Fprintf(env.stdout, "  … and %d more dead letters (--dead N lists more)\n", b.Dead-len(b.DeadLetters))
		}
	}
	return nil
}
