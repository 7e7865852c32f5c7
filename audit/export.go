package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/store"
)

// ExportStore is what the exporter needs of storage.
type ExportStore interface {
	AuditChains(ctx context.Context) ([]store.AuditChainHead, error)
	ReadAudit(ctx context.Context, chain string, after uint64, limit int) ([]store.AuditRecord, error)
	AddAuditTarget(ctx context.Context, target string, at time.Time) error
	AuditExported(ctx context.Context, target string) (map[string]uint64, error)
	AdvanceAuditExport(ctx context.Context, target string, positions map[string]uint64, dead []store.AuditDeadLetter, at time.Time) error
	TakeLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
}

// EHR is the FHIR server AuditEvents go to (fhir.Client).
type EHR interface {
	Transaction(ctx context.Context, items []fhir.Serialized) ([]int, error)
	Put(ctx context.Context, item fhir.Serialized) error
}

// ExporterConfig configures an Exporter.
type ExporterConfig struct {
	// Target names the EHR (its FHIR base URL): positions and dead letters
	// are kept per target.
	Target string
	Source Source
	// Batch is the most records sent in one transaction. Default 100.
	Batch int
	// Idle is how often to look for new records when there were none.
	// Default 1 s; Wake looks at once.
	Idle time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure, doubled
	// each time. Defaults 1 s and 5 min: an EHR down for hours is retried
	// every five minutes, and nothing is dropped meanwhile.
	MinBackoff, MaxBackoff time.Duration
	// Holder names this instance. Where several instances export to the
	// same target, the one holding the target's lease (renewed every
	// batch, lost after Lease without renewal) exports and the others
	// wait, so the EHR is not sent everything twice. Empty: no lease.
	Holder string
	Lease  time.Duration // default 30 s
	// Now and Sleep stand in for the clock in tests.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	Log   *slog.Logger
}

// Exporter sends every audit record, as an IHE BALP AuditEvent validated
// as R4, to the EHR's FHIR server, chain by chain in order. It keeps its
// position in the database: a record behind it was accepted by the EHR
// (or is a dead letter with the reason), so a restart resumes where it
// stopped, and AuditEvent ids are derived from chain and sequence so that
// a batch sent again after a crash updates what the EHR holds instead of
// copying it. Several processes may export the same target: at worst a
// batch is sent twice, with the same ids.
type Exporter struct {
	st  ExportStore
	ehr EHR
	v   *fhir.Validator
	cfg ExporterConfig

	wake chan struct{}

	mu         sync.Mutex
	individual bool // the EHR does not take transactions: one PUT each
}

// NewExporter returns an exporter to cfg.Target.
func NewExporter(st ExportStore, ehr EHR, v *fhir.Validator, cfg ExporterConfig) (*Exporter, error) {
	if cfg.Target == "" {
		return nil, errors.New("audit export: no target")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Idle <= 0 {
		cfg.Idle = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Minute, cfg.MinBackoff)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Exporter{st: st, ehr: ehr, v: v, cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wake makes a running exporter look for records now.
func (x *Exporter) Wake() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// Run exports until ctx ends: a batch after another while records wait,
// then every Idle (or at Wake); after a failure it waits, doubling the
// wait up to MaxBackoff, and tries the same records again.
func (x *Exporter) Run(ctx context.Context) error {
	if err := x.st.AddAuditTarget(ctx, x.cfg.Target, x.cfg.Now()); err != nil {
		return err
	}
	backoff := x.cfg.MinBackoff
	failures := 0
	for {
		if held, err := x.lease(ctx); err == nil && !held {
			// Another instance exports; take over if it stops renewing.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(x.cfg.Lease / 3):
			}
			continue
		}
		n, err := x.ExportOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			// The first failure is logged as a warning, a lasting one as
			// an error every time the wait reaches its cap.
			if failures == 1 || backoff == x.cfg.MaxBackoff {
				lvl := slog.LevelWarn
				if failures > 1 {
					lvl = slog.LevelError
				}
				x.cfg.Log.Log(ctx, lvl, "exporting AuditEvents to the EHR failed; retrying, nothing is dropped",
					"target", x.cfg.Target, "err", err, "failures", failures, "retry_in", backoff)
			}
			if x.cfg.Sleep(ctx, backoff) != nil {
				return nil
			}
			backoff = min(2*backoff, x.cfg.MaxBackoff)
			continue
		}
		if failures > 0 {
			x.cfg.Log.Info("exporting AuditEvents to the EHR again", "target", x.cfg.Target, "after_failures", failures)
		}
		backoff, failures = x.cfg.MinBackoff, 0
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-x.wake:
		case <-time.After(x.cfg.Idle):
		}
	}
}

// lease takes or renews the target's export lease; without a Holder it
// always holds. A failure to reach the database counts as held: the
// export then fails on the same database and backs off.
func (x *Exporter) lease(ctx context.Context) (bool, error) {
	if x.cfg.Holder == "" {
		return true, nil
	}
	now := x.cfg.Now()
	return x.st.TakeLease(ctx, "audit-export "+x.cfg.Target, x.cfg.Holder, now, now.Add(x.cfg.Lease))
}

// state of one record in a batch.
type exportState uint8

const (
	statePending exportState = iota // not accepted yet: sent again next time
	stateDone                       // the EHR holds it
	stateDead                       // refused for good: a dead letter
)

type exportItem struct {
	rec    store.AuditRecord
	item   fhir.Serialized
	state  exportState
	reason string
}

// ExportOnce sends one batch of the records not yet exported and moves the
// positions past what the EHR accepted or refused for good. It returns how
// many records it settled; an error means the EHR (or the database) failed
// and the records not settled are tried again on the next call.
func (x *Exporter) ExportOnce(ctx context.Context) (int, error) {
	items, err := x.next(ctx)
	if err != nil || len(items) == 0 {
		return 0, err
	}
	sendErr := x.send(ctx, items)
	settled, err := x.advance(ctx, items)
	if err != nil {
		return 0, err
	}
	if sendErr != nil {
		return settled, sendErr
	}
	return settled, nil
}

// next reads up to Batch records past the target's positions, builds
// their AuditEvents and validates them. A record that does not give its
// stored hash (changed in the database) or whose AuditEvent is not valid R4
// is a dead letter rather than sent.
func (x *Exporter) next(ctx context.Context) ([]*exportItem, error) {
	heads, err := x.st.AuditChains(ctx)
	if err != nil {
		return nil, err
	}
	pos, err := x.st.AuditExported(ctx, x.cfg.Target)
	if err != nil {
		return nil, err
	}
	var items []*exportItem
	for _, h := range heads {
		if h.Seq <= pos[h.Chain] || len(items) >= x.cfg.Batch {
			continue
		}
		rows, err := x.st.ReadAudit(ctx, h.Chain, pos[h.Chain], x.cfg.Batch-len(items))
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			it := &exportItem{rec: row}
			r := RecordFromRow(row)
			ev := Event(r, x.cfg.Source)
			switch b, err := x.v.ValidateResource(ev); {
			case r.digest() != r.Hash:
				it.state, it.reason = stateDead, "the record does not give its stored hash (changed in the database?); run carebridge audit verify"
			case err != nil:
				it.state, it.reason = stateDead, "its AuditEvent is not valid FHIR R4"
			default:
				it.item = fhir.Serialized{Resource: ev, JSON: b}
			}
			items = append(items, it)
		}
	}
	return items, nil
}

// send offers the pending items to the EHR: as one transaction, or one by
// one where the EHR does not take transactions or refused the transaction
// (to find which entries it refuses). It stops at the first failure that
// sending again may cure.
func (x *Exporter) send(ctx context.Context, items []*exportItem) error {
	var batch []fhir.Serialized
	var sent []*exportItem
	for _, it := range items {
		if it.state == statePending {
			batch, sent = append(batch, it.item), append(sent, it)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	x.mu.Lock()
	individual := x.individual
	x.mu.Unlock()
	if !individual {
		statuses, err := x.ehr.Transaction(ctx, batch)
		var se *fhir.StatusError
		switch {
		case err == nil:
			var retry error
			for i, st := range statuses {
				x.settle(sent[i], st)
				if sent[i].state == statePending && retry == nil {
					retry = &fhir.StatusError{Op: "an entry of the transaction", Status: st}
				}
			}
			return retry
		case errors.As(err, &se) && se.NotSupported():
			x.cfg.Log.Warn("the EHR does not take transaction Bundles; sending AuditEvents one by one", "target", x.cfg.Target, "status", se.Status)
			x.mu.Lock()
			x.individual = true
			x.mu.Unlock()
		case errors.As(err, &se) && se.Rejected():
			// A transaction is all or nothing: find the entries it refuses.
		default:
			return err
		}
	}
	for _, it := range sent {
		err := x.ehr.Put(ctx, it.item)
		var se *fhir.StatusError
		switch {
		case err == nil:
			x.settle(it, http.StatusOK)
		case errors.As(err, &se):
			x.settle(it, se.Status)
			if it.state == statePending {
				return err
			}
		default:
			return err
		}
	}
	return nil
}

// settle records what an HTTP status means for an item. 409 and 412 on a
// PUT by our own id mean the EHR has the AuditEvent already and will not
// update it (AuditEvents are often immutable): it holds it, so it is done.
func (x *Exporter) settle(it *exportItem, status int) {
	switch {
	case status >= 200 && status <= 299, status == http.StatusConflict, status == http.StatusPreconditionFailed:
		it.state = stateDone
	case status == http.StatusBadRequest || status == http.StatusUnprocessableEntity:
		it.state, it.reason = stateDead, fmt.Sprintf("the EHR refused the AuditEvent with HTTP %d", status)
	}
}

// advance moves each chain's position past its leading settled records
// and keeps the dead letters among them. It returns how many it settled.
func (x *Exporter) advance(ctx context.Context, items []*exportItem) (int, error) {
	now := x.cfg.Now()
	positions := map[string]uint64{}
	blocked := map[string]bool{}
	var dead []store.AuditDeadLetter
	n := 0
	for _, it := range items {
		chain := it.rec.Chain
		if blocked[chain] || it.state == statePending {
			blocked[chain] = true
			continue
		}
		positions[chain] = it.rec.Seq
		n++
		if it.state == stateDead {
			dead = append(dead, store.AuditDeadLetter{Target: x.cfg.Target, Chain: chain, Seq: it.rec.Seq, At: now, Reason: it.reason})
			x.cfg.Log.Error("an AuditEvent was refused for good; kept as a dead letter (carebridge audit pending)",
				"target", x.cfg.Target, "chain", chain, "seq", it.rec.Seq, "reason", it.reason)
		}
	}
	if len(positions) == 0 {
		return 0, nil
	}
	if err := x.st.AdvanceAuditExport(ctx, x.cfg.Target, positions, dead, now); err != nil {
		return 0, err
	}
	return n, nil
}

// Backlog is what waits to be exported to one target.
type Backlog struct {
	Target  string
	Chains  []ChainBacklog
	Pending uint64
	// Oldest is when the oldest waiting record was recorded (zero: none).
	Oldest      time.Time
	Dead        int
	DeadLetters []store.AuditDeadLetter // the oldest, up to the limit asked for
}

// ChainBacklog is one chain's export position.
type ChainBacklog struct {
	Chain    string
	Exported uint64 // records settled (sent, or dead letters)
	Head     uint64
	Oldest   time.Time // of the first record waiting, zero if none
}

// BacklogStore is what Pending needs of storage.
type BacklogStore interface {
	ExportStore
	AuditTargets(ctx context.Context) ([]string, error)
	AuditDeadLetters(ctx context.Context, target string, limit int) ([]store.AuditDeadLetter, int, error)
}

// Pending reports the backlog of every registered target, and of extra
// ones (a target not exported to yet has every record waiting), by target.
func Pending(ctx context.Context, st BacklogStore, deadLimit int, extra ...string) ([]Backlog, error) {
	targets, err := st.AuditTargets(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, t := range targets {
		seen[t] = true
	}
	for _, t := range extra {
		if !seen[t] {
			targets, seen[t] = append(targets, t), true
		}
	}
	sort.Strings(targets)
	heads, err := st.AuditChains(ctx)
	if err != nil {
		return nil, err
	}
	var out []Backlog
	for _, t := range targets {
		pos, err := st.AuditExported(ctx, t)
		if err != nil {
			return nil, err
		}
		b := Backlog{Target: t}
		for _, h := range heads {
			cb := ChainBacklog{Chain: h.Chain, Exported: min(pos[h.Chain], h.Seq), Head: h.Seq}
			if cb.Exported < cb.Head {
				first, err := st.ReadAudit(ctx, h.Chain, cb.Exported, 1)
				if err != nil {
					return nil, err
				}
				if len(first) == 1 {
					cb.Oldest = first[0].At
					if b.Oldest.IsZero() || cb.Oldest.Before(b.Oldest) {
						b.Oldest = cb.Oldest
					}
				}
				b.Pending += cb.Head - cb.Exported
			}
			b.Chains = append(b.Chains, cb)
		}
		if b.DeadLetters, b.Dead, err = st.AuditDeadLetters(ctx, t, deadLimit); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
