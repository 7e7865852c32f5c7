package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/carebridge/carebridge/store"
)

// Store is what the log needs of storage.
type Store interface {
	AppendAudit(ctx context.Context, records []store.AuditRecord, checkpoints []store.AuditCheckpoint) error
	AuditHead(ctx context.Context, chain string) (store.AuditRecord, error)
	WalkAudit(ctx context.Context, fn func(store.AuditRecord) error) error
	AuditCheckpoints(ctx context.Context) ([]store.AuditCheckpoint, error)
	AuditEntryStored(ctx context.Context, entryID string) (bool, error)
}

// Signer gives the active signing key (the key ring's).
type Signer interface {
	SigningKey() (id string, key ed25519.PrivateKey, ok bool)
}

// LogConfig says which chain a log writes and how often it signs.
type LogConfig struct {
	// Chain names this writer's chain; each process that writes audit
	// records needs its own (the host name and data directory, say).
	Chain string
	// CheckpointEvery signs the chain after this many records. Default 100.
	CheckpointEvery int
	// CheckpointAfter signs the chain when it has records not yet signed
	// and this long has passed since the last checkpoint. Default 1 minute.
	CheckpointAfter time.Duration
}

// Log appends records to one chain. It is safe for concurrent use; appends
// are serialised, as a chain must be.
type Log struct {
	st     Store
	signer Signer
	cfg    LogConfig

	mu        sync.Mutex
	head      *Record // nil before the first Append loads it
	loaded    bool
	unsigned  int
	lastCheck time.Time
}

// NewLog returns a log writing cfg.Chain.
func NewLog(st Store, signer Signer, cfg LogConfig) (*Log, error) {
	if cfg.Chain == "" {
		return nil, errors.New("audit log: no chain name")
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 100
	}
	if cfg.CheckpointAfter <= 0 {
		cfg.CheckpointAfter = time.Minute
	}
	if _, _, ok := signer.SigningKey(); !ok {
		return nil, errors.New("audit log: the key ring has no signing key (run carebridge keys --rotate)")
	}
	return &Log{st: st, signer: signer, cfg: cfg}, nil
}

// Append links records onto the chain and stores them in one transaction,
// with a signed checkpoint when one is due. On error nothing is stored and
// the chain is as before.
func (l *Log) Append(ctx context.Context, records ...Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := l.link(ctx, records, l.st.AuditHead)
	if err != nil || len(p.linked) == 0 {
		return err
	}
	if err := l.st.AppendAudit(ctx, p.rows, p.checkpoints); err != nil {
		if errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrEntryStored) {
			l.loaded = false // another writer on this chain: reload before the next append
		}
		return fmt.Errorf("appending to audit chain %q: %w", l.cfg.Chain, err)
	}
	l.advance(p)
	return nil
}

// linked is records linked onto the chain's head, not yet stored.
type linked struct {
	linked      []Record
	rows        []store.AuditRecord
	checkpoints []store.AuditCheckpoint // the signed checkpoint, when one is due
}

// link links records onto the head, loading it with head first if need
// be, and signs a checkpoint of the last when one is due. l.mu must be
// held.
func (l *Log) link(ctx context.Context, records []Record, head store.AuditHeadFunc) (linked, error) {
	if err := l.load(ctx, head); err != nil {
		return linked{}, err
	}
	prev := l.head
	p := linked{linked: make([]Record, 0, len(records)), rows: make([]store.AuditRecord, 0, len(records))}
	for _, r := range records {
		r.Chain = l.cfg.Chain
		lr, err := Link(prev, r)
		if err != nil {
			return linked{}, fmt.Errorf("appending audit record %q: %w", r.Action, err)
		}
		p.linked = append(p.linked, lr)
		prev = &p.linked[len(p.linked)-1]
		p.rows = append(p.rows, toRow(lr))
	}
	if len(p.linked) == 0 {
		return p, nil
	}
	last := p.linked[len(p.linked)-1]
	if l.unsigned+len(p.linked) >= l.cfg.CheckpointEvery || last.At.Sub(l.lastCheck) >= l.cfg.CheckpointAfter {
		id, key, _ := l.signer.SigningKey()
		p.checkpoints = append(p.checkpoints, checkpointRow(SignCheckpoint(last, last.At, id, key)))
	}
	return p, nil
}

// advance makes p's last record the head, once p is stored. l.mu must be
// held.
func (l *Log) advance(p linked) {
	if len(p.linked) == 0 {
		return
	}
	last := p.linked[len(p.linked)-1]
	l.head = &last
	if len(p.checkpoints) > 0 {
		l.unsigned, l.lastCheck = 0, last.At
	} else {
		l.unsigned += len(p.linked)
	}
}

// Checkpoint signs the chain's last record if records were appended since
// the last checkpoint, so that a quiet chain's tail is pinned too. Call it
// periodically (serve does, every CheckpointAfter).
func (l *Log) Checkpoint(ctx context.Context, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.loaded || l.head == nil || l.unsigned == 0 {
		return nil
	}
	id, key, _ := l.signer.SigningKey()
	cp := SignCheckpoint(*l.head, now, id, key)
	if err := l.st.AppendAudit(ctx, nil, []store.AuditCheckpoint{checkpointRow(cp)}); err != nil {
		return fmt.Errorf("signing audit chain %q: %w", l.cfg.Chain, err)
	}
	l.unsigned, l.lastCheck = 0, l.head.At
	return nil
}

// Every is how often Checkpoint should be called.
func (l *Log) Every() time.Duration { return l.cfg.CheckpointAfter }

// AppendEntries appends, in one transaction, those of entries not stored
// already (by id; an entry without one is always appended), and returns
// how many it appended. On error nothing is appended.
//
// Entries are nearly always new (a stored one comes back only when the
// audit stage is redelivered a message it had appended), so it first
// appends them all without looking: the unique entry id refuses the
// transaction if one is stored, and only then is each looked up. That
// saves a query per entry on the path every audited request takes.
func (l *Log) AppendEntries(ctx context.Context, entries []Entry) (appended int, err error) {
	records := make([]Record, 0, len(entries))
	for _, e := range entries {
		records = append(records, e.Record())
	}
	err = l.Append(ctx, records...)
	if err == nil {
		return len(records), nil
	}
	if !errors.Is(err, store.ErrEntryStored) {
		return 0, err
	}
	records = records[:0]
	for _, e := range entries {
		if e.ID != "" {
			done, err := l.st.AuditEntryStored(ctx, e.ID)
			if err != nil {
				return 0, err
			}
			if done {
				continue
			}
		}
		records = append(records, e.Record())
	}
	if err := l.Append(ctx, records...); err != nil {
		return 0, err
	}
	return len(records), nil
}

func (l *Log) load(ctx context.Context, head store.AuditHeadFunc) error {
	if l.loaded {
		return nil
	}
	row, err := head(ctx, l.cfg.Chain)
	switch {
	case errors.Is(err, store.ErrNotFound):
		l.head = nil
	case err != nil:
		return fmt.Errorf("loading audit chain %q: %w", l.cfg.Chain, err)
	default:
		r := RecordFromRow(row)
		if r.digest() != r.Hash {
			// Never build on a record that was changed: the new records
			// would hide where the chain broke.
			return &Problem{Kind: ProblemAltered, Chain: r.Chain, Seq: r.Seq,
				Detail: "the chain's last record does not give its stored hash; run carebridge audit verify"}
		}
		l.head = &r
	}
	l.loaded, l.unsigned = true, 0
	return nil
}

// Report is what Verify found.
type Report struct {
	Records     int
	Chains      int
	Checkpoints int
}

// Verify walks the whole trail in st and checks it against its signed
// checkpoints. A problem in the trail is a *Problem naming the chain and
// record; other errors are failures to read it.
func Verify(ctx context.Context, st Store, keys PublicKeys) (Report, error) {
	var rep Report
	cps, err := st.AuditCheckpoints(ctx)
	if err != nil {
		return rep, err
	}
	checkpoints := make([]Checkpoint, 0, len(cps))
	for _, c := range cps {
		cp := Checkpoint{Chain: c.Chain, Seq: c.Seq, At: c.At, KeyID: c.KeyID, Signature: c.Signature}
		if len(c.Hash) != len(cp.Hash) {
			return rep, &Problem{Kind: ProblemBadSignature, Chain: c.Chain, Seq: c.Seq, Detail: "the checkpoint's hash is not 32 bytes"}
		}
		copy(cp.Hash[:], c.Hash)
		checkpoints = append(checkpoints, cp)
	}
	rep.Checkpoints = len(checkpoints)
	v, err := NewVerifier(keys, checkpoints)
	if err != nil {
		return rep, err
	}
	chains := map[string]bool{}
	err = st.WalkAudit(ctx, func(row store.AuditRecord) error {
		chains[row.Chain] = true
		if len(row.Prev) != len(Hash{}) || len(row.Hash) != len(Hash{}) {
			return &Problem{Kind: ProblemAltered, Chain: row.Chain, Seq: row.Seq, Detail: "a stored hash is not 32 bytes"}
		}
		return v.Add(RecordFromRow(row))
	})
	rep.Records, rep.Chains = v.Records(), len(chains)
	if err != nil {
		return rep, err
	}
	return rep, v.Finish()
}

// toRow is r as stored, with the id of its AuditEvent.
func toRow(r Record) store.AuditRecord {
	return store.AuditRecord{
		Chain: r.Chain, Seq: r.Seq, At: r.At, ActorKind: string(r.Actor.Kind), ActorID: r.Actor.ID,
		ActorAddress: r.Actor.Address, Action: r.Action, Outcome: uint8(r.Outcome), Correlation: r.Correlation,
		Entities: r.Entities, Patient: r.Patient, EntryID: r.EntryID, EventID: AuditEventID(r), Prev: r.Prev[:], Hash: r.Hash[:],
	}
}

// RecordFromRow is the record a stored row holds (its EventID, which is
// not part of the record, left out): what Event and Verify take.
func RecordFromRow(row store.AuditRecord) Record {
	r := Record{
		Chain: row.Chain, Seq: row.Seq, At: row.At, Actor: Actor{Kind: ActorKind(row.ActorKind), ID: row.ActorID, Address: row.ActorAddress},
		Action: row.Action, Outcome: Outcome(row.Outcome), Correlation: row.Correlation, Entities: row.Entities, Patient: row.Patient,
		EntryID: row.EntryID,
	}
	copy(r.Prev[:], row.Prev)
	copy(r.Hash[:], row.Hash)
	return r
}

func checkpointRow(c Checkpoint) store.AuditCheckpoint {
	return store.AuditCheckpoint{Chain: c.Chain, Seq: c.Seq, Hash: c.Hash[:], At: c.At, KeyID: c.KeyID, Signature: c.Signature}
}
