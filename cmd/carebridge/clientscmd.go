package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/carebridge/carebridge/access"
	"github.com/carebridge/carebridge/store"
)

// runClients is "carebridge clients": the EHR systems registered for SMART
// Backend Services.
func runClients(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		w := env.stdout
		if len(args) == 0 {
			w = env.stderr
		}
		fmt.Fprint(w, `Usage: carebridge clients add|list|disable|enable [flags]

EHR systems that call the FHIR API register here (SMART Backend Services).
A client signs a JWT assertion with its private key (RS384 or ES384),
POSTs it to /auth/token and gets a bearer token of up to 5 minutes for the
scopes it asked for, within those registered here.

  add      register a client (--client-id, --jwks FILE|URL, --scope)
  list     the clients, their scopes and whether they are disabled
  disable  refuse a client's new tokens, and its current ones within 10 s
  enable   accept a disabled client again

Run "carebridge clients add --help" for the flags.

Examples:
  carebridge clients add --client-id ehr-prod --jwks ehr-prod.jwks.json \
      --scope 'system/Communication.rs system/Patient.r'
  carebridge clients add --client-id ehr-test --jwks https://ehr.example.org/.well-known/jwks.json \
      --scope 'system/*.rs'
  carebridge clients disable --client-id ehr-test
`)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "add":
		return runClientsAdd(ctx, env, args[1:])
	case "list":
		return runClientsList(ctx, env, args[1:])
	case "disable":
		return runClientsDisable(ctx, env, args[1:], true)
	case "enable":
		return runClientsDisable(ctx, env, args[1:], false)
	}
	fmt.Fprintf(env.stderr, "carebridge clients: unknown subcommand %q (want add, list, disable or enable)\n", args[0])
	return errUsage
}

func runClientsAdd(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	var id, jwks, scope string
	fs := newFlagSet(env, "clients add", "clients add --client-id ID --jwks FILE|URL --scope SCOPES [flags]", `
Registers an EHR system for SMART Backend Services. --jwks is a file with
its public keys (a JWKS; private keys are refused) or the https URL where
it publishes them (fetched when it asks for a token, kept 5 minutes).
--scope lists what it may be granted, in SMART v2 syntax
(system/Communication.rs, system/*.rs …; v1 .read/.write accepted).`,
		`  carebridge clients add --client-id ehr-prod --jwks ehr-prod.jwks.json --scope 'system/Communication.rs system/Patient.r'`)
	storage.register(fs)
	fs.StringVar(&id, "client-id", "", "the client's id: the iss and sub of its assertions")
	fs.StringVar(&jwks, "jwks", "", "its public keys: a JWKS file, or an https URL that serves one")
	fs.StringVar(&scope, "scope", "", "space-separated SMART scopes it may be granted, such as 'system/Communication.rs'")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	c, err := clientToAdd(storage, id, jwks, scope, fs.NArg())
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge clients add: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), false)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.AddClient(ctx, c); errors.Is(err, store.ErrConflict) {
		fmt.Fprintf(env.stderr, "carebridge clients add: client %q exists (carebridge clients list)\n", id)
		return errUsage
	} else if err != nil {
		return err
	}
	keys := "keys from " + jwks
	fmt.Fprintf(env.stdout, "client %s registered with %s, scope %q\n", id, keys, c.Scope)
	return nil
}

func clientToAdd(storage storageFlags, id, jwks, scope string, extra int) (store.Client, error) {
	if extra > 0 {
		return store.Client{}, errors.New("unexpected arguments")
	}
	if err := storage.validate(); err != nil {
		return store.Client{}, err
	}
	if id == "" || len(id) > 128 || strings.ContainsAny(id, " \t\r\n") {
		return store.Client{}, errors.New("--client-id is required: up to 128 characters, no spaces")
	}
	scopes, other, err := access.ParseScopes(scope)
	if err != nil {
		return store.Client{}, fmt.Errorf("--scope: %w", err)
	}
	if len(other) > 0 || len(scopes) == 0 {
		return store.Client{}, errors.New("--scope must list SMART resource scopes such as system/Communication.rs, and nothing else")
	}
	for _, s := range scopes {
		if s.Context != "system" {
			return store.Client{}, fmt.Errorf("--scope: %s is not a system/ scope; backend services clients get system scopes", s)
		}
	}
	c := store.Client{ID: id, Scope: scopes.String(), CreatedAt: time.Now().UTC()}
	switch {
	case jwks == "":
		return store.Client{}, errors.New("--jwks is required: a JWKS file or an https URL")
	case strings.HasPrefix(jwks, "https://") || strings.HasPrefix(jwks, "http://"):
		if err := access.CheckKeysURL(jwks); err != nil {
			return store.Client{}, fmt.Errorf("--jwks: %w", err)
		}
		c.JWKSURL = jwks
	default:
		b, err := os.ReadFile(jwks)
		if err != nil {
			return store.Client{}, fmt.Errorf("--jwks: %w", err)
		}
		if _, err := access.ParseJWKS(b); err != nil {
			return store.Client{}, fmt.Errorf("--jwks %s: %w", jwks, err)
		}
		c.JWKS = b
	}
	return c, nil
}

func runClientsList(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	fs := newFlagSet(env, "clients list", "clients list [flags]", `
Lists the registered EHR systems: id, scopes, where their keys come from,
and whether they are disabled.`, `  carebridge clients list`)
	storage.register(fs)
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge clients list: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), true)
	if err != nil {
		return err
	}
	defer st.Close()
	cs, err := st.ListClients(ctx)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		fmt.Fprintln(env.stdout, "no clients (carebridge clients add)")
		return nil
	}
	for _, c := range cs {
		state, keys := "active", "JWKS registered"
		if c.Disabled {
			state = "disabled"
		}
		if c.JWKSURL != "" {
			keys = "JWKS at " + c.JWKSURL
		}
		fmt.Fprintf(env.stdout, "%s %s: %s; %s; since %s\n", c.ID, state, c.Scope, keys, c.CreatedAt.Format(time.RFC3339))
	}
	return nil
}

func runClientsDisable(ctx context.Context, env *environment, args []string, disable bool) error {
	name := "enable"
	if disable {
		name = "disable"
	}
	var storage storageFlags
	var id string
	fs := newFlagSet(env, "clients "+name, "clients "+name+" --client-id ID [flags]", `
Disables a client: its token requests are refused, and tokens it holds stop
working within 10 seconds. "enable" accepts it again.`, "  carebridge clients "+name+" --client-id ehr-test")
	storage.register(fs)
	fs.StringVar(&id, "client-id", "", "the client's id")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil || id == "" || fs.NArg() > 0 {
		if err == nil {
			err = errors.New("--client-id is required")
		}
		fmt.Fprintf(env.stderr, "carebridge clients %s: %v\n", name, err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), false)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.SetClientDisabled(ctx, id, disable); errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(env.stderr, "carebridge clients %s: no client %q (carebridge clients list)\n", name, id)
		return errUsage
	} else if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "client %s %sd\n", id, name)
	return nil
}
