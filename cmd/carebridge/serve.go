package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/bridge"
	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/index"
	"github.com/carebridge/carebridge/hl7/mllp"
	"github.com/carebridge/carebridge/inbound"
	"github.com/carebridge/carebridge/store/postgres"
)

type serveConfig struct {
	storage         storageFlags
	mllpAddr        string
	httpAddr        string
	tlsCert         string
	tlsKey          string
	tlsClientCA     string
	allow           string
	maxConns        int
	dedupeWindow    time.Duration
	shutdownTimeout time.Duration
	logLevel        string
	logFormat       string
	hl7Versions     string
	requiredMSH     string
	checkDatatypes  bool
	rules           string
	timezone        string
	node            string
	pushURL         string
	pushSecretFile  string
	ehrURL          string
	natsURL         string
	natsPrefix      string
	publicURL       string
	ehrTokenFile    string
	ehrClientID     string
	ehrPrivateKey   string
	ehrKeyID        string
	ehrTokenURL     string
	ehrScope        string
	inboxTokens     string
	allowPlainHTTP  bool
	hooksPrivate    bool
	sessions        sessionFlags
	debugAddr       string
}

func runServe(ctx context.Context, env *environment, args []string) error {
	var cfg serveConfig
	fs := newFlagSet(env, "serve", "serve [flags]", `
Runs carebridge: listens for HL7v2 over MLLP, stores every message encrypted
and queued in one transaction, and only then acknowledges it (AA/CA). Bad
messages are stored as rejected and answered AE/AR with ERR segments.
Accepted messages are then mapped to FHIR and routed to Communications
(stored encrypted), delivered (inbox, push), escalated when urgent and
unread, and every step is appended to the audit trail
("carebridge audit verify" checks it). A message no retry can fix is set
aside with its reason ("carebridge replay" lists and resends them).
With no flags it uses an embedded SQLite database in ./carebridge-data.
SIGINT or SIGTERM stops it gracefully: messages in flight are still stored
and acknowledged.`, `  carebridge serve
  carebridge serve --database-url postgres://carebridge@db:5432/carebridge \
      --mllp-addr :2575 --tls-cert mllp.crt --tls-key mllp.key \
      --tls-client-ca engines-ca.crt --allow 10.20.0.0/16`)
	cfg.storage.register(fs)
	fs.StringVar(&cfg.mllpAddr, "mllp-addr", "127.0.0.1:2575", "address for the MLLP listener")
	fs.StringVar(&cfg.httpAddr, "http-addr", "127.0.0.1:8080", "address for the HTTP listener: the FHIR API (/fhir, /auth/token), /healthz, /readyz")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate (with --tls-key): MLLP over TLS, and HTTPS for the FHIR API (TLS 1.2 or later)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.BoolVar(&cfg.hooksPrivate, "hooks-allow-private", false, "let EHR clients subscribe (POST /fhir/Subscription) endpoints on loopback, private and link-local addresses; off, only the operator's \"carebridge subscriptions add\" may, so that a client cannot make carebridge post to the services beside it")
	fs.BoolVar(&cfg.allowPlainHTTP, "allow-plain-http", false, "serve plain HTTP on a non-loopback --http-addr without --tls-cert (only behind a proxy that terminates TLS: tokens and PHI cross this port)")
	fs.StringVar(&cfg.tlsClientCA, "tls-client-ca", "", "PEM CA bundle; when set, MLLP peers must present a certificate it signed (mutual TLS)")
	fs.StringVar(&cfg.allow, "allow", "", "comma-separated networks allowed to connect over MLLP, e.g. 10.1.0.0/16,192.0.2.7 (default: all)")
	fs.IntVar(&cfg.maxConns, "max-connections", 256, "most MLLP connections at once")
	fs.DurationVar(&cfg.dedupeWindow, "dedupe-window", 7*24*time.Hour, "how long a control id (MSH-10) is remembered to acknowledge resends without storing them twice")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for messages in flight")
	fs.StringVar(&cfg.hl7Versions, "hl7-versions", strings.Join(inbound.SupportedVersions(), ","), "HL7 versions (MSH-12) accepted; others are answered AR")
	fs.StringVar(&cfg.requiredMSH, "required-msh", "9,10,11,12", "MSH fields that must be valued, e.g. 3,4,5,6,9,10,11,12 to insist on sender and receiver; others are answered AR")
	fs.BoolVar(&cfg.checkDatatypes, "check-datatypes", true, "answer AE when an OBX typed NM (OBX-2) holds no number")
	fs.StringVar(&cfg.rules, "rules", "", "routing rules file (YAML); default: the shipped rules (carebridge map --print-default-rules); try one with carebridge map first")
	fs.StringVar(&cfg.timezone, "timezone", "", "IANA zone of HL7 times sent without an offset (default: the rules file's timezone)")
	fs.StringVar(&cfg.node, "node", "", "this instance's name, which names its audit chain (default: the host name)")
	fs.StringVar(&cfg.pushURL, "push-url", "", "push gateway webhook (in front of APNs/FCM); each new message is announced there by opaque id, priority and unread count only")
	fs.StringVar(&cfg.inboxTokens, "inbox-dev-tokens", "", "file of development bearer tokens for the clinician inbox (/api/inbox, /api/inbox/stream) besides signed-in sessions, one \"TOKEN Practitioner/ID\" per line; for trials and benchmarks only")
	fs.StringVar(&cfg.pushSecretFile, "push-secret-file", "", "file holding the shared secret that signs push webhook bodies (HMAC-SHA256); required with --push-url")
	fs.StringVar(&cfg.ehrURL, "ehr-fhir-url", "", "the EHR's FHIR R4 base URL; every audit record is sent there as an AuditEvent (transaction Bundles, retried with backoff, never dropped; see carebridge audit pending)")
	fs.StringVar(&cfg.ehrTokenFile, "ehr-token-file", "", "file holding the bearer token for --ehr-fhir-url (mode 0600; read again for each batch, so it can be rotated in place)")
	fs.StringVar(&cfg.ehrClientID, "ehr-client-id", "", "SMART Backend Services: carebridge's client id at the EHR, with --ehr-private-key; tokens are then asked for with a signed assertion (private_key_jwt) and renewed before they expire")
	fs.StringVar(&cfg.ehrPrivateKey, "ehr-private-key", "", "SMART Backend Services: PEM private key (mode 0600) that signs the assertions, RSA of 2048+ bits (RS384) or EC P-384 (ES384); \"carebridge keys --ehr-key FILE\" makes one and prints the JWKS to register at the EHR")
	fs.StringVar(&cfg.ehrKeyID, "ehr-key-id", "", "SMART Backend Services: the assertion's kid (default: the key's RFC 7638 thumbprint, as carebridge keys --ehr-key prints it)")
	fs.StringVar(&cfg.ehrTokenURL, "ehr-token-url", "", "SMART Backend Services: the EHR's token endpoint (default: token_endpoint of --ehr-fhir-url/.well-known/smart-configuration)")
	fs.StringVar(&cfg.ehrScope, "ehr-scope", fhir.DefaultBackendScope, "SMART Backend Services: the scopes asked for (v1 servers: system/AuditEvent.write)")
	fs.StringVar(&cfg.natsURL, "nats-url", "", "NATS JetStream server(s), e.g. nats://127.0.0.1:4222: the pipeline's queue, shared by every instance pointed at it and at the same PostgreSQL database (default: the database's own queue tables)")
	fs.StringVar(&cfg.natsPrefix, "nats-prefix", bridge.DefaultNATSStreamPrefix, "prefix of carebridge's NATS subjects and streams, so deployments sharing a NATS server stay apart")
	fs.StringVar(&cfg.publicURL, "public-url", "", "carebridge's FHIR base URL as EHRs reach it, ending in /fhir, e.g. https://carebridge.example.org/fhir: the audience of its access tokens, the issuer (without /fhir) and what subscription notifications point to (default: http://HTTP-ADDR/fhir)")
	cfg.sessions.register(fs)
	fs.StringVar(&cfg.debugAddr, "debug-addr", "", "loopback address for Go's profiler (/debug/pprof/), e.g. 127.0.0.1:6060, for performance work; off by default, and never on another interface (profiles name code, not data)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error (logs never contain message content)")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "carebridge serve: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(env.stderr, "carebridge serve: %v\n", err)
		return errUsage
	}
	log, err := newLogger(env, cfg.logLevel, cfg.logFormat)
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge serve: %v\n", err)
		return errUsage
	}
	return serve(ctx, env, cfg, log)
}

func (c *serveConfig) validate() error {
	if err := c.storage.validate(); err != nil {
		return err
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.tlsClientCA != "" && c.tlsCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if (c.pushURL == "") != (c.pushSecretFile == "") {
		return errors.New("--push-url and --push-secret-file go together")
	}
	if c.publicURL != "" {
		if u, err := url.Parse(c.publicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--public-url %q: want an http(s) URL", c.publicURL)
		}
		if !strings.HasSuffix(strings.TrimRight(c.publicURL, "/"), "/fhir") {
			return fmt.Errorf("--public-url %q: want carebridge's FHIR base URL, ending in /fhir", c.publicURL)
		}
	}
	if c.ehrTokenFile != "" && c.ehrURL == "" {
		return errors.New("--ehr-token-file needs --ehr-fhir-url")
	}
	if (c.ehrClientID == "") != (c.ehrPrivateKey == "") {
		return errors.New("--ehr-client-id and --ehr-private-key go together")
	}
	if c.ehrClientID != "" && c.ehrURL == "" {
		return errors.New("--ehr-client-id needs --ehr-fhir-url")
	}
	if c.ehrClientID != "" && c.ehrTokenFile != "" {
		return errors.New("give --ehr-token-file or --ehr-client-id, not both")
	}
	if (c.ehrKeyID != "" || c.ehrTokenURL != "") && c.ehrClientID == "" {
		return errors.New("--ehr-key-id and --ehr-token-url need --ehr-client-id")
	}
	if c.tlsCert == "" && !c.allowPlainHTTP && !loopbackAddr(c.httpAddr) {
		return fmt.Errorf("--http-addr %s is not a loopback address: give --tls-cert and --tls-key for HTTPS, or --allow-plain-http behind a proxy that terminates TLS", c.httpAddr)
	}
	if c.debugAddr != "" && !loopbackAddr(c.debugAddr) {
		return fmt.Errorf("--debug-addr %s is not a loopback address: the profiler is for this machine only", c.debugAddr)
	}
	if c.maxConns <= 0 {
		return errors.New("--max-connections must be positive")
	}
	return nil
}

func newLogger(env *environment, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// pipelineConns is the size of the pipeline's own PostgreSQL pool: the
// front door's four writers, the map stage's two partitions, and the
// audit and deliver stages, each holding one only while it stores.
const pipelineConns = 8

// serveGCPercent is the garbage collector's target while serving, unless
// GOGC is set. The live heap is small and mostly the FHIR validator's
// type descriptors (about 18 MB), which every collection marks again;
// at Go's default of 100 the collector ran about eight times a second
// under search load and took 15 % of the server's CPU, at 400 3 %, for a
// heap that peaks near five times the live one (about 100 MB).
const serveGCPercent = 400

func serve(ctx context.Context, env *environment, cfg serveConfig, log *slog.Logger) error {
	if env.getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(serveGCPercent))
	}
	mllpCfg := mllp.Config{MaxConnections: cfg.maxConns, ShutdownTimeout: cfg.shutdownTimeout, Logger: log}
	if cfg.allow != "" {
		nets, err := mllp.ParseNetworks(cfg.allow)
		if err != nil {
			return fmt.Errorf("--allow: %w", err)
		}
		mllpCfg.AllowedNetworks = nets
	}
	transport := "mllp"
	if cfg.tlsCert != "" {
		tc, err := mllp.ServerTLSConfig(cfg.tlsCert, cfg.tlsKey, cfg.tlsClientCA)
		if err != nil {
			return fmt.Errorf("loading MLLP TLS configuration: %w", err)
		}
		mllpCfg.TLS = tc
		transport = "mllp+tls"
	}

	keys, err := cfg.storage.keyRing(true)
	if err != nil {
		return err
	}
	if err := keys.EnsureSigningKey(time.Now()); err != nil {
		return fmt.Errorf("adding an audit signing key to the key ring: %w", err)
	}
	pipeline, err := newPipelineConfig(cfg, log)
	if err != nil {
		return err
	}
	st, err := cfg.storage.openStore(ctx, log, false)
	if err != nil {
		return err
	}
	defer st.Close()
	// On PostgreSQL the pipeline gets connections of its own: under a
	// heavy FHIR API load its stages would otherwise queue behind the
	// API's requests for the pool's, and a STAT result with them.
	pst := st
	if pg, ok := st.(*postgres.Store); ok {
		r, err := pg.Reserve(ctx, pipelineConns)
		if err != nil {
			return err
		}
		defer r.Close()
		pst = r
	}
	// Records stored before AuditEvent search get their AuditEvent ids.
	if n, err := audit.BackfillEventIDs(ctx, st); err != nil {
		return fmt.Errorf("giving earlier audit records their AuditEvent ids: %w", err)
	} else if n > 0 {
		log.Info("gave earlier audit records their AuditEvent ids", "records", n)
	}
	// Resources stored before resource search get their index rows.
	if n, left, err := index.Backfill(ctx, st, keys); err != nil {
		return fmt.Errorf("indexing earlier resources for search: %w", err)
	} else if n > 0 || left > 0 {
		log.Info("indexed earlier resources for search", "resources", n, "left_unreadable", left)
	}

	writers := 1
	if cfg.storage.postgres() {
		writers = 4
	}
	rules := inbound.DefaultRules()
	rules.CheckDatatypes = cfg.checkDatatypes
	if rules.Versions, err = inbound.ParseVersions(cfg.hl7Versions); err != nil {
		return fmt.Errorf("--hl7-versions: %w", err)
	}
	if rules.RequiredMSH, err = inbound.ParseFieldList(cfg.requiredMSH); err != nil {
		return fmt.Errorf("--required-msh: %w", err)
	}
	in, err := inbound.New(pst, keys, inbound.Config{DedupeWindow: cfg.dedupeWindow, Writers: writers, Rules: &rules, Logger: log, AuditTopic: bridge.TopicAuditRecorded})
	if err != nil {
		return err
	}
	stopInboxes, err := pipeline.startInboxes(pst, keys)
	if err != nil {
		return err
	}
	defer stopInboxes()
	router, trail, err := pipeline.router(pst, keys)
	if err != nil {
		return err
	}
	// Made before the listeners open and the stages start, so that its
	// failure returns with nothing left running.
	exporter, err := pipeline.exporter(st)
	if err != nil {
		return err
	}

	handler := mllp.HandlerFunc(func(ctx context.Context, peer net.Addr, msg []byte) ([]byte, error) {
		res, err := in.Accept(ctx, inbound.Peer{Addr: peer.String(), Transport: transport}, msg)
		if err != nil {
			return nil, err
		}
		return res.ACK, nil
	})
	mllpSrv, err := mllp.NewServer(mllpCfg, handler)
	if err != nil {
		return err
	}

	mllpLn, err := net.Listen("tcp", cfg.mllpAddr)
	if err != nil {
		return fmt.Errorf("listening for MLLP on %s: %w", cfg.mllpAddr, err)
	}
	httpLn, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		mllpLn.Close()
		return fmt.Errorf("listening for HTTP on %s: %w", cfg.httpAddr, err)
	}

	httpScheme := "http"
	if mllpCfg.TLS != nil {
		httpScheme = "https"
	}
	var ready atomic.Bool
	httpMux := http.NewServeMux()
	httpMux.Handle("/", healthHandler(&ready, st))
	closing := make(chan struct{})
	users, err := newUsers(st, keys, cfg.sessions)
	if err != nil {
		mllpLn.Close()
		httpLn.Close()
		return err
	}
	inboxAPI := pipeline.inboxAPI(st, keys, inboxReaders{users}, closing)
	httpMux.Handle("/api/", inboxAPI.Handler())
	apiChains, err := newAPIAudit(st, keys, pipeline.node)
	if err != nil {
		mllpLn.Close()
		httpLn.Close()
		return err
	}
	fhirAPI, apiAudit, err := newFHIRAPI(st, keys, in, apiChains, pipeline.node, fhirBase(cfg.publicURL, httpScheme, httpLn.Addr()), log, users, subscriptionRules{allowPrivate: cfg.hooksPrivate}, pipeline.hooks)
	if err != nil {
		mllpLn.Close()
		httpLn.Close()
		return err
	}
	httpMux.Handle("/fhir/", fhirAPI)
	httpMux.Handle("/auth/", fhirAPI)
	httpMux.Handle("/hl7/", fhirAPI)
	httpMux.Handle("/.well-known/", fhirAPI)
	httpSrv := &http.Server{
		Handler:           httpMux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if mllpCfg.TLS != nil {
		httpSrv.TLSConfig = httpTLSConfig(mllpCfg.TLS.Certificates)
	}
	httpSrv.RegisterOnShutdown(func() { close(closing) })
	// Opened after every step that can fail, so that no error path
	// leaves it open.
	var debugLn net.Listener
	if cfg.debugAddr != "" {
		if debugLn, err = net.Listen("tcp", cfg.debugAddr); err != nil {
			mllpLn.Close()
			httpLn.Close()
			return fmt.Errorf("listening for the profiler on %s: %w", cfg.debugAddr, err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	inCtx, stopInbound := context.WithCancel(context.Background())
	defer stopInbound()
	g.Go(func() error { return in.Run(inCtx) })
	g.Go(func() error {
		// The inbound writers stop only after the listener has finished
		// its in-flight messages, so that those are still committed.
		defer stopInbound()
		if err := mllpSrv.Serve(gctx, mllpLn); err != nil {
			return fmt.Errorf("MLLP listener: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// The pipeline drains what is in flight when serve stops; anything
		// left waits in the queue for the next start.
		if err := router.Run(gctx); err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		runCheckpoints(gctx, log, trail, apiChains)
		return nil
	})
	g.Go(func() error {
		// Due subscription notices likewise.
		pipeline.hooks.Run(gctx, 2*time.Second)
		return nil
	})
	g.Go(func() error {
		// Due escalations are found by the database every few seconds.
		pipeline.escalator(st, keys).Run(gctx, 5*time.Second)
		return nil
	})
	if exporter != nil {
		g.Go(func() error {
			if err := exporter.Run(gctx); err != nil {
				return fmt.Errorf("audit export: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		serveHTTP := httpSrv.Serve
		if httpSrv.TLSConfig != nil {
			serveHTTP = func(ln net.Listener) error { return httpSrv.ServeTLS(ln, "", "") }
		}
		if err := serveHTTP(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP listener: %w", err)
		}
		return nil
	})
	if debugLn != nil {
		g.Go(func() error { return serveDebug(gctx, debugLn, log) })
	}
	g.Go(func() error {
		<-gctx.Done()
		ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
		defer cancel()
		err := httpSrv.Shutdown(sctx)
		inboxAPI.Drain() // the streams' last deliveries, before the store closes
		apiAudit.Wait()
		return err
	})

	ready.Store(true)
	mllpScheme := "mllp"
	if mllpCfg.TLS != nil {
		mllpScheme = "mllp+tls"
		if mllpCfg.TLS.ClientCAs != nil {
			mllpScheme += " (mutual TLS)"
		}
	}
	fmt.Fprintf(env.stdout, "carebridge ready\n  MLLP:    %s %s\n  HTTP:    %s://%s  (/healthz, /readyz)\n  FHIR:    %s  (register EHR systems with carebridge clients add)\n  storage: %s\n  keys:    %s\nSend the sample messages with:\n  carebridge send --addr %s ../shared/corpus/hl7v2/microsoft-fhir-converter\n",
		mllpScheme, mllpLn.Addr(), httpScheme, httpLn.Addr(), fhirBase(cfg.publicURL, httpScheme, httpLn.Addr()), cfg.storage.describe(), cfg.storage.keyRingPath(), mllpLn.Addr())
	log.Info("carebridge started", "mllp", mllpLn.Addr().String(), "http", httpLn.Addr().String(), "storage", cfg.storage.describe())

	err = g.Wait()
	stats := in.Stats()
	log.Info("carebridge stopped", "accepted", stats.Accepted, "rejected", stats.Rejected, "duplicates", stats.Duplicates, "batches", stats.Batches)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// pinger is what the health endpoints need of the store.
type pinger interface {
	Ping(ctx context.Context) error
}

// healthHandler answers /healthz (the process is up and accepting) and
// /readyz (and its database answers).
func healthHandler(ready *atomic.Bool, db pinger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting or stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting or stopping", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := db.Ping(ctx); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// joinNonEmpty joins the non-empty parts with sep.
func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}
