package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/carebridge/carebridge/store"
)

func auditRecord(chain string, seq uint64) store.AuditRecord {
	h := bytes.Repeat([]byte{byte(seq)}, 32)
	return store.AuditRecord{
		Chain: chain, Seq: seq, At: time.Date(2026, 11, 3, 14, 30, 0, int(seq)*1000, time.UTC),
		ActorKind: "peer", ActorID: "ENGINE-A", ActorAddress: "10.0.0.7:50122", Action: "message.accepted",
		Outcome: 4, Correlation: fmt.Sprintf("corr-%d", seq), Entities: []string{"inbound/1", "Patient/p"},
		Patient: "Patient/p", Prev: make([]byte, 32), Hash: h,
	}
}

// testAuditRoundTrip: records and checkpoints come back as stored, in
// chain and sequence order, and the head is the last record.
func testAuditRoundTrip(t *testing.T, st store.Store) {
	ctx := context.Background()
	if _, err := st.AuditHead(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("head of an empty chain: %v, want ErrNotFound", err)
	}
	var want []store.AuditRecord
	// Chain b goes in one batch (one statement for its records, on
	// PostgreSQL), chain a a record at a time; entities vary in number.
	entities := map[uint64][]string{1: {"inbound/1", "Patient/p"}, 2: nil, 3: {"Communication/c1", "Communication/c2", "Patient/p"}}
	for _, chain := range []string{"b", "a"} {
		var rs []store.AuditRecord
		var cps []store.AuditCheckpoint
		for seq := uint64(1); seq <= 3; seq++ {
			r := auditRecord(chain, seq)
			r.Entities = entities[seq]
			rs = append(rs, r)
			cps = append(cps, store.AuditCheckpoint{Chain: chain, Seq: seq, Hash: r.Hash, At: r.At, KeyID: "s1", Signature: []byte("sig")})
		}
		if chain == "b" {
			if err := st.AppendAudit(ctx, rs, cps); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for i := range rs {
			if err := st.AppendAudit(ctx, rs[i:i+1], cps[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, chain := range []string{"a", "b"} {
		for seq := uint64(1); seq <= 3; seq++ {
			r := auditRecord(chain, seq)
			r.Entities = entities[seq]
			if r.Entities == nil {
				r.Entities = []string{}
			}
			want = append(want, r)
		}
	}
	var got []store.AuditRecord
	if err := st.WalkAudit(ctx, func(r store.AuditRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("walk:\n got %+v\nwant %+v", got, want)
	}
	head, err := st.AuditHead(ctx, "b")
	if err != nil || !reflect.DeepEqual(head, want[5]) {
		t.Fatalf("head = %+v, %v", head, err)
	}
	cps, err := st.AuditCheckpoints(ctx)
	if err != nil || len(cps) != 6 || cps[0].Chain != "a" || cps[5].Seq != 3 || !cps[0].At.Equal(want[0].At) || string(cps[0].Signature) != "sig" {
		t.Fatalf("checkpoints = %+v, %v", cps, err)
	}
	stop := errors.New("stop")
	n := 0
	if err := st.WalkAudit(ctx, func(store.AuditRecord) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("walk did not stop at fn's error: %v after %d", err, n)
	}
}

// testAuditConflict: a record at a taken position fails the whole append.
func testAuditConflict(t *testing.T, st store.Store) {
	ctx := context.Background()
	if err := st.AppendAudit(ctx, []store.AuditRecord{auditRecord("c", 1)}, nil); err != nil {
		t.Fatal(err)
	}
	err := st.AppendAudit(ctx, []store.AuditRecord{auditRecord("c", 2), auditRecord("c", 1)}, nil)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("append at a taken position: %v, want ErrConflict", err)
	}
	head, err := st.AuditHead(ctx, "c")
	if err != nil || head.Seq != 1 {
		t.Fatalf("the failed append left record %d behind (%v)", head.Seq, err)
	}
}

// testAuditEntryOnce: an entry id is stored once, across chains.
func testAuditEntryOnce(t *testing.T, st store.Store) {
	ctx := context.Background()
	r := auditRecord("x", 1)
	r.EntryID = "entry-1"
	if ok, err := st.AuditEntryStored(ctx, "entry-1"); err != nil || ok {
		t.Fatalf("before: %v, %v", ok, err)
	}
	if err := st.AppendAudit(ctx, []store.AuditRecord{r}, nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.AuditEntryStored(ctx, "entry-1"); err != nil || !ok {
		t.Fatalf("after: %v, %v", ok, err)
	}
	other := auditRecord("y", 1)
	other.EntryID = "entry-1"
	if err := st.AppendAudit(ctx, []store.AuditRecord{other}, nil); !errors.Is(err, store.ErrEntryStored) || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the same entry on another chain: %v, want ErrEntryStored, an ErrConflict", err)
	}
	// A taken position is not mistaken for a stored entry: the audit log
	// reloads its chain on one, and looks entries up on the other.
	taken := auditRecord("x", 1)
	taken.EntryID = "entry-2"
	if err := st.AppendAudit(ctx, []store.AuditRecord{taken}, nil); !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrEntryStored) {
		t.Fatalf("a new entry at a taken position: %v, want ErrConflict and not ErrEntryStored", err)
	}
	if ok, _ := st.AuditEntryStored(ctx, ""); ok {
		t.Error("the empty entry id counts as stored")
	}
}

// fakeAppender links fixed records and notes how its transaction ended.
type fakeAppender struct {
	records      []store.AuditRecord
	linkErr      error
	linked, done int
	ended        error
	head         uint64 // the chain's head as read in the transaction
}

func (a *fakeAppender) LinkAudit(ctx context.Context, head store.AuditHeadFunc) ([]store.AuditRecord, []store.AuditCheckpoint, error) {
	a.linked++
	if a.linkErr != nil {
		return nil, nil, a.linkErr
	}
	// The head, read in the transaction, is the one before these records.
	h, err := head(ctx, "w")
	if errors.Is(err, store.ErrNotFound) {
		h.Seq, err = 0, nil
	}
	if err != nil {
		return nil, nil, err
	}
	a.head = h.Seq
	return a.records, nil, nil
}

func (a *fakeAppender) AuditDone(err error) { a.done++; a.ended = err }

// testAuditInWrites: a write given an audit appender stores its records
// in its own transaction, and tells the appender how that ended. A write
// that fails stores neither itself nor the records; a write that cannot
// take them, or is given two, refuses.
func testAuditInWrites(t *testing.T, st store.Store) {
	ctx := context.Background()
	head := func() uint64 {
		t.Helper()
		r, err := st.AuditHead(ctx, "w")
		if errors.Is(err, store.ErrNotFound) {
			return 0
		}
		if err != nil {
			t.Fatalf("AuditHead: %v", err)
		}
		return r.Seq
	}
	ok := &fakeAppender{records: []store.AuditRecord{auditRecord("w", 1)}}
	if err := st.CreateCommunication(ctx, apiRow("audited"), textEvent("created"), store.Event{Audit: ok}); err != nil {
		t.Fatalf("CreateCommunication with an audit record: %v", err)
	}
	if ok.linked != 1 || ok.done != 1 || ok.ended != nil || ok.head != 0 || head() != 1 {
		t.Fatalf("after a committed write: linked %d, done %d (%v), head %d then %d; want 1, 1 (nil), 0 then 1", ok.linked, ok.done, ok.ended, ok.head, head())
	}

	again := &fakeAppender{records: []store.AuditRecord{auditRecord("w", 2)}}
	if err := st.CreateCommunication(ctx, apiRow("audited"), store.Event{Audit: again}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("creating an existing id: %v, want ErrConflict", err)
	}
	// A store may fail it before linking its records, or link them and
	// then tell the appender that the write failed.
	if again.linked != again.done || (again.done == 1) != (again.ended != nil) || again.done > 1 || head() != 1 {
		t.Fatalf("a write that failed: linked %d, done %d (%v), head %d; want 0, 0 or 1, 1 (its error), and head 1", again.linked, again.done, again.ended, head())
	}

	for name, a := range map[string]*fakeAppender{
		"taken": {records: []store.AuditRecord{auditRecord("w", 1)}}, // the chain position is stored already
		"link":  {linkErr: errors.New("no chain")},
	} {
		err := st.CreateCommunication(ctx, apiRow("refused-"+name), store.Event{Audit: a})
		if err == nil {
			t.Fatalf("%s: the write committed", name)
		}
		if a.done != 1 || a.ended == nil {
			t.Errorf("%s: done %d with %v, want once with the write's error", name, a.done, a.ended)
		}
		if _, err := st.GetCommunication(ctx, "api-refused-"+name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the Communication of a failed write: %v, want ErrNotFound", name, err)
		}
	}

	one, two := &fakeAppender{records: []store.AuditRecord{auditRecord("w", 2)}}, &fakeAppender{records: []store.AuditRecord{auditRecord("w", 3)}}
	if err := st.CreateCommunication(ctx, apiRow("twice"), store.Event{Audit: one}, store.Event{Audit: two}); err == nil {
		t.Errorf("a write took two audit appenders")
	}
	if one.linked+two.linked != 0 || head() != 1 {
		t.Errorf("a write given two audit appenders linked %d, head %d; want none, 1", one.linked+two.linked, head())
	}

	v2 := apiRow("audited")
	v2.Status = "completed"
	up := &fakeAppender{records: []store.AuditRecord{auditRecord("w", 2)}}
	if _, err := st.UpdateCommunication(ctx, v2, 1, store.Event{Audit: up}); err != nil || up.done != 1 || up.ended != nil || up.head != 1 || head() != 2 {
		t.Fatalf("UpdateCommunication: %v; done %d (%v), head %d then %d; want committed, head 1 then 2", err, up.done, up.ended, up.head, head())
	}
	sub := &fakeAppender{records: []store.AuditRecord{auditRecord("w", 3)}}
	s := store.Subscription{ID: "audited", Criteria: "Communication?status=in-progress", Endpoint: "https://ehr.example/hook",
		Active: true, Created: time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)}
	if err := st.PutSubscription(ctx, s, store.Event{Audit: sub}); err != nil || sub.done != 1 || sub.head != 2 || head() != 3 {
		t.Fatalf("PutSubscription: %v; done %d, head %d then %d; want committed, head 2 then 3", err, sub.done, sub.head, head())
	}

	inbound := &fakeAppender{records: []store.AuditRecord{auditRecord("w", 4)}}
	if err := st.SetDelivery(ctx, "api-audited", "Practitioner/a", "delivered", time.Now(), store.Event{Audit: inbound}); err == nil {
		t.Errorf("SetDelivery took an audit appender")
	}
	if inbound.linked != 0 || head() != 3 {
		t.Errorf("a write that does not take audit appenders linked %d, head %d", inbound.linked, head())
	}
}
