package main

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/hl7"
	"github.com/carebridge/carebridge/mapping"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
)

// pipelineConfig is what serve needs to run the stages after the front
// door, checked before anything listens.
type pipelineConfig struct {
	rules     *mapping.Rules
	loc       *time.Location
	node      string
	push      *bridge.PushWebhook // nil without --push-url
	inbox     map[string]string   // dev token → recipient; nil without --inbox-dev-tokens
	hub       *bridge.Hub
	ehr       *fhir.Client // nil without --ehr-fhir-url
	ehrURL    string
	nats      *bridge.NATSConfig // nil without --nats-url
	publicURL string             // --public-url: carebridge's FHIR base as EHRs reach it
	inboxes   bridge.Announcer   // set by startInboxes
	hooks     *bridge.RestHook   // set by startInboxes
	log       *slog.Logger
}

func newPipelineConfig(cfg serveConfig, log *slog.Logger) (*pipelineConfig, error) {
	rules, err := loadRules(cfg.rules)
	if err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	loc := rules.Location()
	if cfg.timezone != "" {
		if loc, err = time.LoadLocation(cfg.timezone); err != nil {
			return nil, fmt.Errorf("--timezone %q: unknown time zone", cfg.timezone)
		}
	}
	node := cfg.node
	if node == "" {
		if node, err = os.Hostname(); err != nil || node == "" {
			node = "carebridge"
		}
	}
	p := &pipelineConfig{rules: rules, loc: loc, node: node, log: log, hub: bridge.NewHub(), publicURL: cfg.publicURL}
	if cfg.inboxTokens != "" {
		if p.inbox, err = readDevTokens(cfg.inboxTokens); err != nil {
			return nil, fmt.Errorf("--inbox-dev-tokens: %w", err)
		}
	}
	if cfg.pushURL != "" {
		u, err := url.Parse(cfg.pushURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("--push-url %q: want an http(s) URL", cfg.pushURL)
		}
		secret, err := os.ReadFile(cfg.pushSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--push-secret-file: %w", err)
		}
		secret = bytes.TrimSpace(secret)
		if len(secret) < 16 {
			return nil, errors.New("--push-secret-file: the secret must be at least 16 bytes")
		}
		p.push = &bridge.PushWebhook{URL: cfg.pushURL, Secret: secret}
	}
	if cfg.natsURL != "" {
		p.nats = &bridge.NATSConfig{URL: cfg.natsURL, StreamPrefix: cfg.natsPrefix, Logger: log}
	}
	if cfg.ehrURL != "" {
		var tokens fhir.TokenSource
		if cfg.ehrTokenFile != "" {
			tf := tokenFile(cfg.ehrTokenFile)
			if _, err := tf.Token(context.Background()); err != nil {
				return nil, fmt.Errorf("--ehr-token-file: %w", err)
			}
			tokens = tf
		}
		if cfg.ehrClientID != "" {
			key, err := readPrivateKey(cfg.ehrPrivateKey)
			if err != nil {
				return nil, fmt.Errorf("--ehr-private-key: %w", err)
			}
			if tokens, err = fhir.NewBackendServices(fhir.BackendServicesConfig{
				ClientID: cfg.ehrClientID, Key: key, KeyID: cfg.ehrKeyID, TokenURL: cfg.ehrTokenURL,
				FHIRBase: cfg.ehrURL, Scope: cfg.ehrScope,
			}); err != nil {
				return nil, err
			}
		}
		if p.ehr, err = fhir.NewClient(cfg.ehrURL, nil, tokens); err != nil {
			return nil, fmt.Errorf("--ehr-fhir-url: %w", err)
		}
		p.ehrURL = cfg.ehrURL
	}
	return p, nil
}

// exporter sends the audit trail to the EHR; nil without --ehr-fhir-url.
func (p *pipelineConfig) exporter(st store.Store) (*audit.Exporter, error) {
	if p.ehr == nil {
		return nil, nil
	}
	v, err := fhir.NewValidator()
	if err != nil {
		return nil, fmt.Errorf("loading the FHIR R4 validator: %w", err)
	}
	return audit.NewExporter(st, p.ehr, v, audit.ExporterConfig{
		Target: p.ehrURL, Source: audit.Source{Site: p.node}, Holder: p.node, Log: p.log,
	})
}

// readPrivateKey reads a PEM private key that only its owner may read.
func readPrivateKey(path string) (crypto.Signer, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	key, err := fhir.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// tokenFile is a bearer token kept in a file that only its owner may read,
// read again for every request so that it can be replaced while serving.
type tokenFile string

func (f tokenFile) Token(context.Context) (string, error) {
	b, err := readSecretFile(string(f))
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s must hold one token on one line", string(f))
	}
	return tok, nil
}

// router wires the map and audit stages on the store's queue, and returns
// the audit log, whose chain runCheckpoints signs periodically.
func (p *pipelineConfig) router(st store.Store, keys *secure.KeyRing) (*message.Router, *audit.Log, error) {
	v, err := fhir.NewValidator()
	if err != nil {
		return nil, nil, fmt.Errorf("loading the FHIR R4 validator: %w", err)
	}
	trail, err := audit.NewLog(st, keys, audit.LogConfig{Chain: p.node})
	if err != nil {
		return nil, nil, err
	}
	rc := bridge.RouterConfig{
		Subscriber: st.Subscriber,
		Poison:     st,
		Map: &bridge.MapStage{
			Store: st, Sealer: keys, Mapper: mapping.New(mapping.Config{Location: p.loc}), Rules: p.rules,
			Validator: v, Limits: hl7.DefaultLimits(), Now: time.Now, Log: p.log,
		},
		Audit:   &bridge.AuditStage{Log: trail},
		Deliver: p.deliver(st),
		Logger:  p.log,
	}
	if p.nats != nil {
		// The stages consume from JetStream; what the store's transactions
		// queue (the outbox) is relayed there.
		nc := *p.nats
		rc.Subscriber = func(group string) (message.Subscriber, error) { return bridge.NewNATSSubscriber(nc, group) }
		if rc.Relay, err = bridge.NewNATSPublisher(nc); err != nil {
			return nil, nil, err
		}
		rc.RelaySubscriber = st.Subscriber
	}
	r, err := bridge.NewRouter(rc)
	return r, trail, err
}

// startInboxes sets up how new messages reach inbox sessions: this
// process's hub, or with NATS every instance's. The returned function
// stops it.
func (p *pipelineConfig) startInboxes(st store.Store, keys *secure.KeyRing) (func(), error) {
	p.hooks = &bridge.RestHook{Store: st, Keys: keys, BaseURL: p.publicURL, Now: time.Now, Log: p.log}
	local := &bridge.LocalInbox{Hub: p.hub, Store: st, Keys: keys}
	if p.nats == nil {
		p.inboxes = local
		return func() {}, nil
	}
	n, err := bridge.NewNATSInbox(*p.nats, local, p.log)
	if err != nil {
		return nil, err
	}
	p.inboxes = n
	return func() { n.Close() }, nil
}

func (p *pipelineConfig) deliver(st store.Store) *bridge.DeliverStage {
	d := &bridge.DeliverStage{Store: st, Inbox: p.inboxes, Hooks: p.hooks, Now: time.Now, Log: p.log}
	if p.push != nil {
		d.Push = p.push // a nil *PushWebhook must not become a non-nil Pusher
	}
	return d
}

func (p *pipelineConfig) escalator(st store.Store, keys *secure.KeyRing) *bridge.Escalator {
	e := &bridge.Escalator{Store: st, Rules: p.rules, Inbox: p.inboxes, Now: time.Now, Log: p.log}
	if p.push != nil {
		e.Push = p.push
	}
	return e
}

func (p *pipelineConfig) inboxAPI(st store.Store, keys *secure.KeyRing, readers bridge.Readers, closing <-chan struct{}) *bridge.InboxAPI {
	return &bridge.InboxAPI{Store: st, Keys: keys, Hub: p.hub, Readers: readers, Tokens: p.inbox, Now: time.Now, Log: p.log, Closing: closing}
}

// readDevTokens reads "TOKEN REFERENCE" lines; # starts a comment. Tokens
// must be long enough not to be guessed; the file must not be readable by
// others.
func readDevTokens(path string) (map[string]string, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	tokens := map[string]string{}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) < 16 || !strings.Contains(f[1], "/") {
			return nil, fmt.Errorf("line %d: want \"TOKEN Practitioner/ID\" with a token of at least 16 characters", n+1)
		}
		tokens[f[0]] = f[1]
	}
	if len(tokens) == 0 {
		return nil, errors.New("no tokens")
	}
	return tokens, nil
}

// checkpointer is an audit chain (or pool of them) to sign periodically.
type checkpointer interface {
	Checkpoint(ctx context.Context, now time.Time) error
	Every() time.Duration
}

// runCheckpoints signs the tails of chains every chains[0].Every() until
// ctx ends, and once more then.
func runCheckpoints(ctx context.Context, log *slog.Logger, chains ...checkpointer) {
	t := time.NewTicker(chains[0].Every())
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		for _, c := range chains {
			if err := c.Checkpoint(context.WithoutCancel(ctx), time.Now()); err != nil {
				log.Error("signing the audit chain", "error", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}
