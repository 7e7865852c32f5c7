// Command carebridge is the secure messaging bridge between an EHR's HL7v2
// feeds and its clinicians. Run "carebridge help" for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // rules files name IANA zones; do not depend on the host's copy
)

// errUsage marks an error that is the caller's: it exits 2 without a
// trace. errFailed marks a run that did its work and reports failures
// itself (for example send, when a message was not accepted).
var (
	errUsage  = errors.New("usage")
	errFailed = errors.New("failed")
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *environment, args []string) error
}

// environment is what a command may touch of the process: streams and
// variables, injected so that tests can run commands in-process.
type environment struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() []command {
	return []command{
		{"serve", "receive HL7v2 over MLLP, store it encrypted, map, route and deliver it", runServe},
		{"send", "send HL7v2 files to an MLLP listener and report each ACK", runSend},
		{"inbound", "list and show received messages (metadata; content only with --reveal)", runInbound},
		{"migrate", "apply database migrations and exit", runMigrate},
		{"keys", "show or rotate the key ring; make the key that signs in to the EHR (SMART)", runKeys},
		{"audit", "verify the tamper-evident audit trail; show what waits for export to the EHR", runAudit},
		{"replay", "list and resend the messages a pipeline stage set aside", runReplay},
		{"token", "print an access token for a registered client (SMART Backend Services), to try the FHIR API", runToken},
		{"clients", "EHR systems registered to call the FHIR API (SMART Backend Services)", runClients},
		{"users", "clinicians and administrators who sign in (password and TOTP), their roles and locks", runUsers},
		{"subscriptions", "the EHR's rest-hook subscriptions to new messages (id-only notifications)", runSubscriptions},
		{"map", "map HL7v2 files to FHIR and route them offline, to try a rules file", runMap},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &environment{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	err := run(ctx, env, os.Args[1:])
	stop()
	os.Exit(exitCode(env, err))
}

func exitCode(env *environment, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errFailed):
		return 1
	default:
		fmt.Fprintf(env.stderr, "carebridge: %v\n", err)
		return 1
	}
}

func run(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 {
		printUsage(env.stderr)
		return errUsage
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			return run(ctx, env, []string{args[1], "--help"})
		}
		printUsage(env.stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(env.stderr, "carebridge: unknown command %q\n\n", name)
	printUsage(env.stderr)
	return errUsage
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `carebridge: the secure bridge from HL7v2 feeds to clinicians.

Usage:
  carebridge <command> [flags] [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "carebridge <command> --help" for a command's flags and an example.
Every flag can also be set as an environment variable: --data-dir is
CAREBRIDGE_DATA_DIR, --database-url is CAREBRIDGE_DATABASE_URL, and so on.

Example: start on the embedded database, then send the sample messages
  carebridge serve
  carebridge send ../shared/corpus/hl7v2/microsoft-fhir-converter
Try a rules file on sample messages without a server
  carebridge map --summary --rules mapping/testdata/rules.yaml mapping/testdata/hl7
`)
}
