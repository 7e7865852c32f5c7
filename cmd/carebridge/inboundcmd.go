package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/carebridge/carebridge/store"
)

func runInbound(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		w := env.stdout
		if len(args) == 0 {
			w = env.stderr
		}
		fmt.Fprint(w, `Usage: carebridge inbound list [flags]
       carebridge inbound show [flags] ID

Lists and shows the HL7v2 messages carebridge received: metadata and state,
never their content unless "show --reveal" is given. Works while the server
runs. Run "carebridge inbound list --help" for the flags.

Example:
  carebridge inbound list --state rejected
  carebridge inbound list --json | jq -r 'select(.message_type=="ADT^A01").id'
  carebridge inbound show 0195f0b2-7c1e-7a3b-9d1e-5f2a0c4e8b11
`)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "list":
		return runInboundList(ctx, env, args[1:])
	case "show":
		return runInboundShow(ctx, env, args[1:])
	}
	fmt.Fprintf(env.stderr, "carebridge inbound: unknown subcommand %q (want list or show)\n", args[0])
	return errUsage
}

// inboundJSON is the --json form of one inbound message: a stable contract
// for scripts.
type inboundJSON struct {
	ID                   string    `json:"id"`
	ReceivedAt           time.Time `json:"received_at"`
	State                string    `json:"state"`
	AckCode              string    `json:"ack_code"`
	MessageType          string    `json:"message_type"`
	ControlID            string    `json:"control_id"`
	SendingApplication   string    `json:"sending_application"`
	SendingFacility      string    `json:"sending_facility"`
	ReceivingApplication string    `json:"receiving_application"`
	ReceivingFacility    string    `json:"receiving_facility"`
	Version              string    `json:"version"`
	Peer                 string    `json:"peer"`
	Transport            string    `json:"transport"`
	Size                 int       `json:"size"`
	Error                string    `json:"error,omitempty"`
	CorrelationID        string    `json:"correlation_id"`
}

func toJSON(m store.InboundMessage) inboundJSON {
	return inboundJSON{
		ID: m.ID, ReceivedAt: m.ReceivedAt.UTC(), State: string(m.State), AckCode: m.AckCode,
		MessageType: m.MessageType, ControlID: m.ControlID,
		SendingApplication: m.SendingApplication, SendingFacility: m.SendingFacility,
		ReceivingApplication: m.ReceivingApplication, ReceivingFacility: m.ReceivingFacility,
		Version: m.Version, Peer: m.Peer, Transport: m.Transport, Size: m.Size,
		Error: m.Error, CorrelationID: m.CorrelationID,
	}
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func runInboundList(ctx context.Context, env *environment, args []string) error {
	var (
		storage storageFlags
		state   string
		limit   int
		after   string
		asJSON  bool
	)
	fs := newFlagSet(env, "inbound list", "inbound list [flags]", `
Lists received messages, oldest first: id, time, state, ACK code, type,
control id and sender. Content is never shown here.`, `  carebridge inbound list --state rejected --limit 20
  carebridge inbound list --json --database-url postgres://carebridge@db/carebridge`)
	storage.register(fs)
	fs.StringVar(&state, "state", "", "only messages in this state: accepted or rejected")
	fs.IntVar(&limit, "limit", 1000, "most messages to list (at most 10000)")
	fs.StringVar(&after, "after", "", "list messages after this id (paging)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if state != "" && !store.State(state).Valid() {
		fmt.Fprintf(env.stderr, "carebridge inbound list: --state %q: want accepted or rejected\n", state)
		return errUsage
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge inbound list: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), true)
	if err != nil {
		return err
	}
	defer st.Close()
	msgs, err := st.ListInbound(ctx, store.InboundFilter{State: store.State(state), Limit: limit, AfterID: after})
	if err != nil {
		return fmt.Errorf("listing inbound messages: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		for _, m := range msgs {
			if err := enc.Encode(toJSON(m)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tSTATE\tACK\tTYPE\tCONTROL ID\tSENDER\tSIZE")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", m.ID, m.ReceivedAt.UTC().Format(time.RFC3339), m.State, m.AckCode,
			orDash(m.MessageType), orDash(m.ControlID), orDash(joinNonEmpty("/", m.SendingApplication, m.SendingFacility)), m.Size)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(msgs) == limit {
		fmt.Fprintf(env.stderr, "(showing %d; more with --after %s)\n", len(msgs), msgs[len(msgs)-1].ID)
	}
	return nil
}

func runInboundShow(ctx context.Context, env *environment, args []string) error {
	var (
		storage storageFlags
		reveal  bool
		asJSON  bool
	)
	fs := newFlagSet(env, "inbound show", "inbound show [flags] ID", `
Shows one received message's metadata. With --reveal it also decrypts and
prints the raw message (segments one per line): that output contains PHI.`, `  carebridge inbound show 0195f0b2-7c1e-7a3b-9d1e-5f2a0c4e8b11
  carebridge inbound show --reveal 0195f0b2-7c1e-7a3b-9d1e-5f2a0c4e8b11`)
	storage.register(fs)
	fs.BoolVar(&reveal, "reveal", false, "decrypt and print the message content (contains PHI)")
	fs.BoolVar(&asJSON, "json", false, "print the metadata as JSON")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(env.stderr, "carebridge inbound show: name exactly one message id (see \"carebridge inbound list\")")
		return errUsage
	}
	if err := storage.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge inbound show: %v\n", err)
		return errUsage
	}
	st, err := storage.openStore(ctx, quietLogger(), true)
	if err != nil {
		return err
	}
	defer st.Close()
	id := fs.Arg(0)
	m, err := st.GetInbound(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no inbound message with id %s", id)
	}
	if err != nil {
		return fmt.Errorf("reading inbound message %s: %w", id, err)
	}
	if asJSON {
		if err := json.NewEncoder(env.stdout).Encode(toJSON(m)); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		j := toJSON(m)
		for _, kv := range [][2]string{
			{"id", j.ID}, {"received_at", j.ReceivedAt.Format(time.RFC3339Nano)}, {"state", j.State}, {"ack_code", j.AckCode},
			{"message_type", j.MessageType}, {"control_id", j.ControlID}, {"version", j.Version},
			{"sending_application", j.SendingApplication}, {"sending_facility", j.SendingFacility},
			{"receiving_application", j.ReceivingApplication}, {"receiving_facility", j.ReceivingFacility},
			{"peer", j.Peer}, {"transport", j.Transport}, {"size", fmt.Sprint(j.Size)},
			{"correlation_id", j.CorrelationID}, {"error", j.Error},
		} {
			if kv[1] != "" {
				fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !reveal {
		return nil
	}
	keys, err := storage.keyRing(false)
	if err != nil {
		return err
	}
	raw, err := keys.Open(m.Sealed, []byte(m.ID))
	if err != nil {
		return fmt.Errorf("decrypting inbound message %s: %w", m.ID, err)
	}
	fmt.Fprintln(env.stderr, "warning: the content below contains PHI")
	fmt.Fprintln(env.stdout, "---")
	out := bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
	env.stdout.Write(out)
	if !bytes.HasSuffix(out, []byte("\n")) {
		fmt.Fprintln(env.stdout)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
