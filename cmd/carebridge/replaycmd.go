package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/carebridge/carebridge/store"
)

// runReplay is "carebridge replay": the messages the pipeline set aside.
func runReplay(ctx context.Context, env *environment, args []string) error {
	var (
		storage storageFlags
		all     bool
		handler string
	)
	fs := newFlagSet(env, "replay", "replay [flags] [MESSAGE-ID ...]", `
Lists the queue messages a pipeline stage failed on for good (a payload it
could not read, a record it could not open, a panic), with the stage and the
reason; they are kept, never dropped. With message ids (or --all) it sends
them to their stage again, once the cause is fixed; a message that fails
again comes back to this list. Payloads are ids, never message content.`, `  carebridge replay
  carebridge replay 0195f0b2-7c1e-7a3b-9d1e-5f2a0c4e8b11
  carebridge replay --all --handler map`)
	storage.register(fs)
	fs.BoolVar(&all, "all", false, "replay every listed message (of --handler, if given)")
	fs.StringVar(&handler, "handler", "", "only messages of this stage (map, audit)")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge replay: %v\n", err)
		return errUsage
	}
	replaying := all || fs.NArg() > 0
	st, err := storage.openStore(ctx, quietLogger(), !replaying)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := st.ListPoison(ctx)
	if err != nil {
		return err
	}
	var picked []store.PoisonMessage
	want := map[string]bool{}
	for _, id := range fs.Args() {
		want[id] = true
	}
	for _, m := range list {
		if handler != "" && m.Handler != handler {
			continue
		}
		if all || want[m.ID] || !replaying {
			picked = append(picked, m)
			delete(want, m.ID)
		}
	}
	if !replaying {
		if len(picked) == 0 {
			fmt.Fprintln(env.stdout, "no messages set aside")
			return nil
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MESSAGE\tSTAGE\tTOPIC\tFAILED\tREASON")
		for _, m := range picked {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.Handler, m.Topic, m.FailedAt.Format(time.RFC3339), m.Reason)
		}
		return tw.Flush()
	}
	failed := len(want) > 0
	for id := range want {
		fmt.Fprintf(env.stderr, "carebridge replay: no message %s is set aside\n", id)
	}
	for _, m := range picked {
		if err := st.ReplayPoison(ctx, m.ID, m.Handler); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue // replayed meanwhile
			}
			return err
		}
		fmt.Fprintf(env.stdout, "replayed %s to %s\n", m.ID, m.Handler)
	}
	if failed {
		return errFailed
	}
	return nil
}
