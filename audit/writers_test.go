package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/store"
)

// communication is a minimal Communication row to write.
func communication(id string) store.CommunicationRow {
	return store.CommunicationRow{ID: id, Identifier: "urn:uuid:" + id, Status: "in-progress", Priority: "routine",
		Subject: "Patient/p1", Recipients: []string{"Practitioner/a"}, Sent: start, Sealed: []byte("sealed " + id), Updated: start}
}

// TestWritersAppendInWrites: concurrent writes, each appending its audit
// record to one of the pool's chains in its own transaction, leave chains
// that verify, with one record per committed write and none for a failed
// one; a recorder's transactions beside them, on chains of their own,
// verify too; a chain another
// writer moved costs one failed write, after which it links onto the
// moved head; checkpoints sign every chain's tail.
func TestWritersAppendInWrites(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			kr := keyRing(t)
			ctx := context.Background()
			w, err := audit.NewWriters(b.st, kr, audit.LogConfig{Chain: "node-a.w", CheckpointEvery: 5, CheckpointAfter: time.Hour}, 3)
			if err != nil {
				t.Fatal(err)
			}
			readChains, err := audit.NewWriters(b.st, kr, audit.LogConfig{Chain: "node-a.r", CheckpointEvery: 5, CheckpointAfter: time.Hour}, 2)
			if err != nil {
				t.Fatal(err)
			}
			entry := func(i int) audit.Entry {
				return audit.Entry{At: start.Add(time.Duration(i) * time.Millisecond), Actor: audit.Actor{Kind: audit.ActorClient, ID: "ehr"},
					Action: "rest.create", Entities: []string{fmt.Sprintf("Communication/c%d", i)}, Patient: "Patient/p1"}
			}
			rec, err := audit.NewRecorder(readChains, 2)
			if err != nil {
				t.Fatal(err)
			}
			const workers, each = 8, 12
			var wg sync.WaitGroup
			var mu sync.Mutex
			committed, refused := 0, 0
			for g := range workers {
				wg.Go(func() {
					for k := range each {
						i := g*each + k
						id := fmt.Sprintf("c%d", i)
						if k%4 == 3 {
							id = fmt.Sprintf("c%d", i-1) // exists: fails, and so does its audit record
						}
						err := b.st.CreateCommunication(ctx, communication(id), store.Event{Audit: w.Entries(entry(i))})
						read := entry(i)
						read.Action = "rest.read"
						if err := rec.Record(ctx, read); err != nil { // beside the writes, in transactions of its own
							t.Errorf("Record: %v", err)
						}
						mu.Lock()
						switch {
						case err == nil:
							committed++
						case errors.Is(err, store.ErrConflict):
							refused++
						default:
							t.Errorf("CreateCommunication(%s): %v", id, err)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			rec.Wait()
			reads := workers * each
			if committed != workers*each*3/4 || refused != workers*each/4 {
				t.Fatalf("%d committed, %d refused; want %d and %d", committed, refused, workers*each*3/4, workers*each/4)
			}
			rep, err := audit.Verify(ctx, b.st, kr.SigningPublicKey)
			if err != nil || rep.Records != committed+reads || rep.Chains != 3+2 || rep.Checkpoints == 0 {
				t.Fatalf("verify = %+v, %v; want %d records on 5 chains, signed", rep, err, committed+reads)
			}

			// A write that failed may have left its chain to reload its
			// head; one committed write on each chain (the pool is first
			// in, first out) leaves every head known.
			for i := range 3 {
				if err := b.st.CreateCommunication(ctx, communication(fmt.Sprintf("settle-%d", i)), store.Event{Audit: w.Entries(entry(900 + i))}); err != nil {
					t.Fatal(err)
				}
				committed++
			}

			// Another writer moves every chain: each chain's next write
			// fails, once, and is not stored.
			for i := 1; i <= 3; i++ {
				other, err := audit.NewLog(b.st, kr, audit.LogConfig{Chain: fmt.Sprintf("node-a.w%d", i)})
				if err != nil {
					t.Fatal(err)
				}
				fill(t, other, 1000+i, 1)
			}
			failed := 0
			for i := range 3 + 3 {
				id := fmt.Sprintf("after-%d", i)
				err := b.st.CreateCommunication(ctx, communication(id), store.Event{Audit: w.Entries(entry(1000 + i))})
				if err != nil {
					failed++
					if _, err := b.st.GetCommunication(ctx, id); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("the write whose audit record failed was stored: %v", err)
					}
				}
			}
			if failed != 3 {
				t.Errorf("%d writes failed after another writer moved the 3 chains, want 3", failed)
			}
			if err := w.Checkpoint(ctx, start.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			rep, err = audit.Verify(ctx, b.st, kr.SigningPublicKey)
			if want := committed + reads + 3 + 3; err != nil || rep.Records != want {
				t.Fatalf("verify = %+v, %v; want %d records", rep, err, want)
			}
			last := signedTo(t, b.st)
			for i := 1; i <= 3; i++ {
				chain := fmt.Sprintf("node-a.w%d", i)
				head, err := b.st.AuditHead(ctx, chain)
				if err != nil {
					t.Fatal(err)
				}
				if last[chain] != head.Seq {
					t.Errorf("chain %s: last checkpoint at %d, head at %d", chain, last[chain], head.Seq)
				}
			}
		})
	}
}

// TestWritersCheckpointPassesABusyChain: a chain in a write's hands does
// not hold up the periodic checkpoint, which signs the free ones.
func TestWritersCheckpointPassesABusyChain(t *testing.T) {
	b := backends(t)["sqlite"](t)
	kr := keyRing(t)
	ctx := context.Background()
	w, err := audit.NewWriters(b.st, kr, audit.LogConfig{Chain: "node-a.w", CheckpointEvery: 1000, CheckpointAfter: time.Hour}, 2)
	if err != nil {
		t.Fatal(err)
	}
	entry := audit.Entry{At: start, Actor: audit.Actor{Kind: audit.ActorClient, ID: "ehr"}, Action: "rest.create"}
	for i := range 4 { // two on each chain: the first is signed at once, the second waits for a checkpoint
		if err := b.st.CreateCommunication(ctx, communication(fmt.Sprintf("c%d", i)), store.Event{Audit: w.Entries(entry)}); err != nil {
			t.Fatal(err)
		}
	}
	busy := w.Entries(entry)
	if _, _, err := busy.LinkAudit(ctx, b.st.AuditHead); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Checkpoint(ctx, start.Add(time.Minute)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Checkpoint waited for the busy chain")
	}
	busy.AuditDone(errors.New("rolled back"))
	signed := signedTo(t, b.st)
	// One chain was free and is signed to its head (2); the busy one keeps
	// its first checkpoint (1).
	if got := []uint64{signed["node-a.w1"], signed["node-a.w2"]}; got[0]+got[1] != 3 {
		t.Errorf("last checkpoints %v, want one chain at 2 and the busy one at 1", got)
	}
}

// signedTo is, for each chain, the last position a checkpoint signs.
func signedTo(t *testing.T, st interface {
	AuditCheckpoints(context.Context) ([]store.AuditCheckpoint, error)
}) map[string]uint64 {
	t.Helper()
	cps, err := st.AuditCheckpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	signed := map[string]uint64{}
	for _, c := range cps {
		signed[c.Chain] = max(signed[c.Chain], c.Seq)
	}
	return signed
}
