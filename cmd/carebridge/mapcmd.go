package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/mapping"
)

type mapConfig struct {
	rules       string
	summary     bool
	timezone    string
	now         string
	printRules  bool
	logLevel    string
	logFormat   string
	compactJSON bool
}

// runMap is "carebridge map": parse, map and route files offline, so an
// analyst can see what a feed and a rules file would produce before
// deploying them.
func runMap(ctx context.Context, env *environment, args []string) error {
	var cfg mapConfig
	fs := newFlagSet(env, "map", "map [flags] FILE|DIR|- ...", `
Maps HL7v2 messages to FHIR R4 offline, exactly as the server would: parse,
map, route through the rules file, and validate every resource as R4. Prints
one transaction Bundle per message on standard output, or with --summary one
line per Communication: the source, its priority, the rule and the
recipients. Nothing is stored or sent.

Data problems (a missing identifier, an unknown code, a rule that found no
recipient) are listed on standard error without quoting message content. A
resource that is not valid R4 is reported there and left out of the Bundle,
as the server would never send it on. The exit status is 1 when a message
could not be parsed or a resource was invalid, 2 for bad flags or rules.

Start a rules file from the shipped one with --print-default-rules.`, `  carebridge map --summary --rules mapping/testdata/rules.yaml mapping/testdata/hl7
  carebridge map --rules rules.yaml --now 2026-11-07T03:00:00Z oru.hl7 > bundle.json
  carebridge map --print-default-rules > rules.yaml`)
	fs.StringVar(&cfg.rules, "rules", "", "routing rules file (YAML); default: the shipped rules (see --print-default-rules)")
	fs.BoolVar(&cfg.summary, "summary", false, "print one line per Communication instead of the Bundles")
	fs.StringVar(&cfg.timezone, "timezone", "", "IANA zone of HL7 times sent without an offset (default: the rules file's timezone)")
	fs.StringVar(&cfg.now, "now", "", "route as if at this time (RFC 3339), to try on-call schedules (default: now)")
	fs.BoolVar(&cfg.printRules, "print-default-rules", false, "print the shipped rules file, with its documentation, and exit")
	fs.BoolVar(&cfg.compactJSON, "compact", false, "print each Bundle on one line")
	fs.StringVar(&cfg.logLevel, "log-level", "warn", "debug, info, warn or error (logs never contain message content)")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if cfg.printRules {
		_, err := env.stdout.Write(mapping.DefaultRulesYAML())
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(env.stderr, "carebridge map: no files given\nRun \"carebridge map --help\" for the flags.")
		return errUsage
	}
	log, err := newLogger(env, cfg.logLevel, cfg.logFormat)
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge map: %v\n", err)
		return errUsage
	}
	rules, err := loadRules(cfg.rules)
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge map: %v\n", err)
		return errUsage
	}
	loc := rules.Location()
	if cfg.timezone != "" {
		if loc, err = time.LoadLocation(cfg.timezone); err != nil {
			fmt.Fprintf(env.stderr, "carebridge map: --timezone %q: unknown time zone\n", cfg.timezone)
			return errUsage
		}
	}
	now := time.Now()
	if cfg.now != "" {
		if now, err = time.Parse(time.RFC3339, cfg.now); err != nil {
			fmt.Fprintf(env.stderr, "carebridge map: --now %q: want an RFC 3339 time such as 2026-11-07T03:00:00Z\n", cfg.now)
			return errUsage
		}
	}
	files, _, err := collectInputs(fs.Args())
	if err != nil {
		return err
	}
	validator, err := fhir.NewValidator()
	if err != nil {
		return fmt.Errorf("loading the FHIR R4 validator: %w", err)
	}
	m := &offlineMapper{
		env: env, log: log, cfg: cfg, now: now, rules: rules, validator: validator,
		mapper: mapping.New(mapping.Config{Location: loc}),
	}
	if cfg.summary {
		fmt.Fprintln(env.stdout, "# source\ttrigger\tcontrol id\tpriority\trule\trecipients (source name <reference>)")
	}
	for _, in := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.file(in)
	}
	log.Info("map finished", "messages", m.messages, "communications", m.communications, "failed", m.failed)
	if m.failed > 0 {
		return errFailed
	}
	return nil
}

func loadRules(path string) (*mapping.Rules, error) {
	if path == "" {
		return mapping.DefaultRules(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the rules file: %w", err)
	}
	r, err := mapping.ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

type offlineMapper struct {
	env       *environment
	log       *slog.Logger
	cfg       mapConfig
	now       time.Time
	rules     *mapping.Rules
	validator *fhir.Validator
	mapper    *mapping.Mapper

	messages, communications, failed int
}

// file maps every message in one input. A message that cannot be parsed is
// reported and counted; the others in the file still map.
func (m *offlineMapper) file(in input) {
	data, err := in.read(m.env)
	if err != nil {
		fmt.Fprintf(m.env.stderr, "%s: %v\n", in.name, err)
		m.failed++
		return
	}
	msgs, err := hl7.Split(data)
	if err != nil {
		fmt.Fprintf(m.env.stderr, "%s: %v\n", in.name, err)
		m.failed++
		return
	}
	for i, raw := range msgs {
		src := in.name
		if len(msgs) > 1 {
			src = fmt.Sprintf("%s#%d", in.name, i+1)
		}
		m.message(src, raw)
	}
}

func (m *offlineMapper) message(src string, raw []byte) {
	m.messages++
	msg, err := hl7.Parse(raw)
	if err != nil {
		// hl7 errors name the place, never the content.
		fmt.Fprintf(m.env.stderr, "%s: not parsed: %v\n", src, err)
		m.failed++
		return
	}
	res := m.mapper.Map(msg)
	notes := m.rules.Route(res, m.now)
	kept := m.validator.Gate(res.Resources, &res.Outcome)
	ev := res.Event
	m.log.Debug("mapped", "source", src, "trigger", ev.Trigger, "control_id", ev.ControlID,
		"resources", len(kept), "communications", len(notes), "issues", len(res.Outcome))
	for _, is := range res.Outcome {
		// Issue.String is the PHI-free form; diagnostics stay out.
		fmt.Fprintf(m.env.stderr, "%s %s %s: %s\n", src, ev.Trigger, ev.ControlID, is)
		if is.Code == fhir.CodeInvalid {
			m.failed++
		}
	}
	valid := map[string]bool{}
	for _, s := range kept {
		valid[s.Reference()] = true
	}
	if m.cfg.summary {
		m.printSummary(src, ev, notes, valid)
		return
	}
	for _, n := range notes {
		if valid[n.Communication] {
			m.communications++
		}
	}
	b, err := fhir.SerializedBundle(kept)
	if err == nil && !m.cfg.compactJSON {
		var buf bytes.Buffer
		if err = json.Indent(&buf, b, "", "  "); err == nil {
			b = buf.Bytes()
		}
	}
	if err != nil {
		fmt.Fprintf(m.env.stderr, "%s: writing the bundle: %v\n", src, err)
		m.failed++
		return
	}
	writeLine(m.env.stdout, b)
}

// printSummary writes one line per Communication: source, trigger, control
// id, priority, rule and recipients. It names no patient.
func (m *offlineMapper) printSummary(src string, ev mapping.Event, notes []mapping.Notification, valid map[string]bool) {
	printed := 0
	for _, n := range notes {
		if !valid[n.Communication] {
			continue
		}
		printed++
		m.communications++
		who := make([]string, len(n.Recipients))
		for i, r := range n.Recipients {
			who[i] = n.Why[i] + " <" + r + ">"
		}
		fmt.Fprintf(m.env.stdout, "%s\t%s\t%s\t%s\t%s\t%s\n", src, ev.Trigger, ev.ControlID,
			n.Priority, n.Rule, strings.Join(who, "; "))
	}
	if printed == 0 {
		what := "no Communication"
		if !ev.Mapped {
			what = "not mapped (trigger not covered)"
		}
		fmt.Fprintf(m.env.stdout, "%s\t%s\t%s\t-\t-\t%s\n", src, ev.Trigger, ev.ControlID, what)
	}
}

func writeLine(w io.Writer, b []byte) {
	w.Write(b)
	w.Write([]byte("\n"))
}
