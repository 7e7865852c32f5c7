package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/store"
)

// runSubscriptions is "carebridge subscriptions": the EHR's rest-hook
// Subscriptions to Communications, for an operator; the EHR itself makes
// and reads them at /fhir/Subscription, and both see the same ones.
func runSubscriptions(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		w := env.stdout
		if len(args) == 0 {
			w = env.stderr
		}
		fmt.Fprint(w, `Usage: carebridge subscriptions add|list|delete [flags]

The EHR's FHIR R4 rest-hook Subscriptions: each new Communication that
meets a subscription's criteria is announced to its endpoint by id only
(no content), retried with backoff for a day, then kept as dead. The EHR
can manage its own through the FHIR API (POST, GET and DELETE
/fhir/Subscription, GET /fhir/Subscription/ID/$status, with the scope
system/Subscription.crds); these commands see and change the same ones.

  add     subscribe an endpoint (--endpoint, --criteria, --header-file)
  list    the subscriptions, their notices sent, pending and dead, and the
          latest dead ones with the reason
  delete  remove a subscription (and its notices) by id

Run "carebridge subscriptions add --help" for the flags.

Examples:
  carebridge subscriptions add --endpoint https://ehr.example.org/hooks/carebridge \
      --criteria 'Communication?priority=urgent,stat' --header-file ehr-hook.headers
  carebridge subscriptions list
`)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "add":
		return runSubscriptionsAdd(ctx, env, args[1:])
	case "list":
		return runSubscriptionsList(ctx, env, args[1:])
	case "delete":
		return runSubscriptionsDelete(ctx, env, args[1:])
	}
	fmt.Fprintf(env.stderr, "carebridge subscriptions: unknown subcommand %q (want add, list or delete)\n", args[0])
	return errUsage
}

func runSubscriptionsAdd(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	var id, endpoint, criteria, headerFile string
	fs := newFlagSet(env, "subscriptions add", "subscriptions add [flags]", `
Subscribes an EHR endpoint to new Communications. Criteria are FHIR search
on Communication: priority= and category= (comma lists), recipient= (one
reference). The header file (mode 0600) holds "Name: value" lines sent with
every notification, such as the EHR's Authorization; it is stored
encrypted. Adding an id that exists replaces that subscription.`, `  carebridge subscriptions add --endpoint https://ehr.example.org/hooks/carebridge --criteria 'Communication?priority=urgent,stat'`)
	storage.register(fs)
	fs.StringVar(&id, "id", "", "the subscription's id (default: a new UUID)")
	fs.StringVar(&endpoint, "endpoint", "", "the rest-hook URL notifications are POSTed to (https; http only for loopback)")
	fs.StringVar(&criteria, "criteria", "Communication", "which Communications: Communication?priority=urgent,stat&category=alert&recipient=Practitioner/ID")
	fs.StringVar(&headerFile, "header-file", "", "file of \"Name: value\" header lines to send (mode 0600)")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := validateSubscription(storage, endpoint, criteria, fs); err != nil {
		fmt.Fprintf(env.stderr, "carebridge subscriptions add: %v\n", err)
		return errUsage
	}
	if id == "" {
		id = uuid.NewString()
	}
	keys, err := storage.keyRing(false)
	if err != nil {
		return err
	}
	sub := store.Subscription{ID: id, Criteria: criteria, Endpoint: endpoint, Active: true, Created: time.Now().UTC()}
	if headerFile != "" {
		lines, err := readSecretFile(headerFile)
		if err != nil {
			fmt.Fprintf(env.stderr, "carebridge subscriptions add: --header-file: %v\n", err)
			return errUsage
		}
		if _, err := bridge.ParseHeaderLines(string(lines)); err != nil {
			fmt.Fprintf(env.stderr, "carebridge subscriptions add: --header-file: %v\n", err)
			return errUsage
		}
		if sub.Header, err = keys.Seal(lines, []byte("Subscription/"+id)); err != nil {
			return fmt.Errorf("sealing the subscription's headers: %w", err)
		}
	}
	st, err := storage.openStore(ctx, quietLogger(), false)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.PutSubscription(ctx, sub); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "Subscription/%s: %s -> %s (a running server picks it up within a second)\n", id, criteria, redactURL(endpoint))
	return nil
}

func validateSubscription(storage storageFlags, endpoint, criteria string, fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := storage.validate(); err != nil {
		return err
	}
	if err := bridge.CheckEndpoint(endpoint); err != nil {
		return fmt.Errorf("--endpoint: %w (credentials go in --header-file)", err)
	}
	_, err := bridge.ParseCriteria(criteria)
	return err
}

// readSecretFile reads a file only its owner may read.
func readSecretFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s lets other users read it; run chmod 600 on it", path)
	}
	return os.ReadFile(path)
}

func runSubscriptionsList(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	var deadLimit int
	fs := newFlagSet(env, "subscriptions list", "subscriptions list [flags]", `
Lists the subscriptions with their notices sent, pending (being retried)
and dead (given up after a day), then the latest dead notices with the
last error. Works while the server runs.`, `  carebridge subscriptions list`)
	storage.register(fs)
	fs.IntVar(&deadLimit, "dead", 20, "list at most this many dead notices")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge subscriptions list: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), true)
	if err != nil {
		return err
	}
	defer st.Close()
	subs, err := st.ListSubscriptions(ctx)
	if err != nil {
		return err
	}
	if len(subs) == 0 {
		fmt.Fprintln(env.stdout, "no subscriptions (carebridge subscriptions add)")
		return nil
	}
	counts, err := st.NoticeCounts(ctx)
	if err != nil {
		return err
	}
	for _, s := range subs {
		c := counts[s.ID]
		state := "active"
		if !s.Active {
			state = "off"
		}
		by := "the operator"
		if s.Owner != "" {
			by = "client " + s.Owner
		}
		fmt.Fprintf(env.stdout, "Subscription/%s %s %s -> %s (by %s): %d sent, %d pending, %d dead\n", s.ID, state, s.Criteria,
			redactURL(s.Endpoint), by, c[store.NoticeSent], c[store.NoticePending], c[store.NoticeDead])
	}
	dead, err := st.DeadNotices(ctx, max(deadLimit, 0))
	if err != nil {
		return err
	}
	for _, n := range dead {
		fmt.Fprintf(env.stdout, "  dead: Subscription/%s event %d Communication/%s after %d attempts since %s: %s\n",
			n.SubscriptionID, n.EventNumber, n.CommunicationID, n.Attempts, n.FirstAt.Format(time.RFC3339), n.LastError)
	}
	return nil
}

func runSubscriptionsDelete(ctx context.Context, env *environment, args []string) error {
	var storage storageFlags
	fs := newFlagSet(env, "subscriptions delete", "subscriptions delete [flags] ID", `
Removes a subscription and its notices.`, `  carebridge subscriptions delete 4f1c…`)
	storage.register(fs)
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(env.stderr, "carebridge subscriptions delete: give one subscription id")
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), false)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.DeleteSubscription(ctx, fs.Arg(0)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(env.stderr, "carebridge subscriptions delete: no subscription %q\n", fs.Arg(0))
			return errFailed
		}
		return err
	}
	fmt.Fprintf(env.stdout, "deleted Subscription/%s\n", fs.Arg(0))
	return nil
}
