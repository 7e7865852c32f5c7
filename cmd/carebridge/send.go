package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/hl7/mllp"
)

type sendConfig struct {
	addr       string
	tlsCA      string
	tlsCert    string
	tlsKey     string
	ackTimeout time.Duration
	retries    int
	quiet      bool
}

func runSend(ctx context.Context, env *environment, args []string) error {
	var cfg sendConfig
	fs := newFlagSet(env, "send", "send [flags] FILE|DIR|- ...", `
Sends HL7v2 messages over MLLP, one at a time and in order, and prints one
line per message: where it came from, its control id (MSH-10), the ACK code
and the ACK's error text. Files holding several messages or FHS/BHS batches
are split; directories are walked (files that are not HL7 are skipped); "-"
reads standard input. A message whose ACK does not arrive is retried with
backoff (the server acknowledges resends without storing them twice).
Exits 1 if any message was not accepted (AA/CA).`, `  carebridge send ../shared/corpus/hl7v2/microsoft-fhir-converter
  carebridge send --addr mllp.example.org:2575 --tls-ca ca.crt adt.hl7
  cat adt.hl7 | carebridge send -`)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:2575", "MLLP address to send to")
	fs.StringVar(&cfg.tlsCA, "tls-ca", "", "PEM CA bundle to verify the server; setting it (or --tls-cert) turns TLS on")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM client certificate for mutual TLS")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM client key for mutual TLS")
	fs.DurationVar(&cfg.ackTimeout, "ack-timeout", 30*time.Second, "how long to wait for each ACK before retrying")
	fs.IntVar(&cfg.retries, "retries", 5, "retries per message after a connection failure or ACK timeout")
	fs.BoolVar(&cfg.quiet, "quiet", false, "print only messages that were not accepted, and the summary")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(env.stderr, "carebridge send: name at least one file, directory or - (run \"carebridge send --help\")")
		return errUsage
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		fmt.Fprintln(env.stderr, "carebridge send: --tls-cert and --tls-key go together")
		return errUsage
	}
	ccfg := mllp.ClientConfig{Addr: cfg.addr, AckTimeout: cfg.ackTimeout, MaxRetries: cfg.retries}
	if cfg.tlsCA != "" || cfg.tlsCert != "" {
		tc, err := clientTLSConfig(cfg.tlsCA, cfg.tlsCert, cfg.tlsKey, cfg.addr)
		if err != nil {
			return fmt.Errorf("loading TLS configuration: %w", err)
		}
		ccfg.TLS = tc
	}
	client, err := mllp.NewClient(ccfg)
	if err != nil {
		return err
	}
	defer client.Close()

	files, skipped, err := collectInputs(fs.Args())
	if err != nil {
		return err
	}
	s := sender{env: env, client: client, quiet: cfg.quiet, files: len(files)}
	s.lastProgress = time.Now()
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			break
		}
		s.sendFile(ctx, env, f)
		s.progress(i + 1)
	}
	fmt.Fprintf(env.stdout, "sent %d messages from %d files to %s: %d accepted, %d not accepted, %d without ACK",
		s.sent, len(files), cfg.addr, s.accepted, s.refused, s.failed)
	if skipped > 0 {
		fmt.Fprintf(env.stdout, " (%d files skipped: not HL7)", skipped)
	}
	fmt.Fprintln(env.stdout)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if s.refused > 0 || s.failed > 0 || s.sent == 0 {
		return errFailed
	}
	return nil
}

type sender struct {
	env                     *environment
	client                  *mllp.Client
	quiet                   bool
	files                   int
	sent, accepted, refused int
	failed                  int
	lastProgress            time.Time
	progressShown           bool
}

// progress prints a line to stderr at most once a second for long runs.
func (s *sender) progress(done int) {
	if s.files < 20 || time.Since(s.lastProgress) < time.Second {
		if done == s.files && s.progressShown {
			fmt.Fprintf(s.env.stderr, "progress: %d/%d files, %d messages\n", done, s.files, s.sent)
		}
		return
	}
	s.lastProgress = time.Now()
	s.progressShown = true
	fmt.Fprintf(s.env.stderr, "progress: %d/%d files, %d messages\n", done, s.files, s.sent)
}

func (s *sender) sendFile(ctx context.Context, env *environment, in input) {
	data, err := in.read(env)
	if err != nil {
		s.failed++
		fmt.Fprintf(env.stdout, "%s\t-\t-\tcannot read: %v\n", in.name, err)
		return
	}
	msgs, err := hl7.Split(data)
	if err != nil {
		s.failed++
		fmt.Fprintf(env.stdout, "%s\t-\t-\tnot sent: %v\n", in.name, err)
		return
	}
	for i, msg := range msgs {
		name := in.name
		if len(msgs) > 1 {
			name = fmt.Sprintf("%s#%d", in.name, i+1)
		}
		controlID := "-"
		if h, err := hl7.ParseHeader(msg); err == nil || h.ControlID != "" {
			controlID = h.ControlID
		}
		s.sent++
		ack, _, err := s.client.Send(ctx, msg)
		if err != nil {
			s.failed++
			fmt.Fprintf(env.stdout, "%s\t%s\t-\tno ACK: %v\n", name, controlID, err)
			continue
		}
		if ack.Accepted() {
			s.accepted++
			if !s.quiet {
				fmt.Fprintf(env.stdout, "%s\t%s\t%s\n", name, controlID, ack.Code)
			}
			continue
		}
		s.refused++
		fmt.Fprintf(env.stdout, "%s\t%s\t%s\t%s\n", name, controlID, ack.Code, ackText(ack))
	}
}

// ackText is the ACK's explanation: MSA-3 and the ERR texts.
func ackText(a hl7.Ack) string {
	var parts []string
	if a.Text != "" {
		parts = append(parts, a.Text)
	}
	for _, e := range a.Errors {
		t := e.Text
		if e.Location != "" {
			t = e.Location + ": " + t
		}
		if e.Code != 0 {
			t = fmt.Sprintf("%s (code %d)", t, e.Code)
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, "; ")
}

type input struct {
	name string // path, or "-" for standard input
}

func (in input) read(env *environment) ([]byte, error) {
	if in.name == "-" {
		return io.ReadAll(env.stdin)
	}
	return os.ReadFile(in.name)
}

// collectInputs expands directories into the HL7 files below them, in
// lexical order. Files named explicitly are always sent; files found in a
// directory are sent only if they look like HL7 (start with MSH, FHS or BHS).
func collectInputs(args []string) (files []input, skipped int, err error) {
	for _, a := range args {
		if a == "-" {
			files = append(files, input{name: "-"})
			continue
		}
		info, err := os.Stat(a)
		if err != nil {
			return nil, 0, fmt.Errorf("reading %s: %w", a, err)
		}
		if !info.IsDir() {
			files = append(files, input{name: a})
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != a && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			ok, err := looksLikeHL7(path)
			if err != nil {
				return err
			}
			if ok {
				found = append(found, path)
			} else {
				skipped++
			}
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("walking %s: %w", a, err)
		}
		sort.Strings(found)
		for _, f := range found {
			files = append(files, input{name: f})
		}
	}
	return files, skipped, nil
}

func looksLikeHL7(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 64)
	n, _ := io.ReadFull(f, buf)
	b := bytes.TrimPrefix(buf[:n], []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	return bytes.HasPrefix(b, []byte("MSH")) || bytes.HasPrefix(b, []byte("FHS")) || bytes.HasPrefix(b, []byte("BHS")), nil
}
