package audit_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carebridge/carebridge/audit"
	"github.com/carebridge/carebridge/secure"
	"github.com/carebridge/carebridge/store"
	"github.com/carebridge/carebridge/store/postgres"
	"github.com/carebridge/carebridge/store/sqlite"
	"github.com/carebridge/carebridge/store/storetest"
)

// backend is a fresh store and a way to run raw SQL on it, as an
// attacker with database access would.
type backend struct {
	st   store.Store
	exec func(t *testing.T, query string)
}

func backends(t *testing.T) map[string]func(t *testing.T) backend {
	return map[string]func(t *testing.T) backend{
		"sqlite": func(t *testing.T) backend {
			path := filepath.Join(t.TempDir(), "carebridge.db")
			st, err := sqlite.Open(context.Background(), sqlite.Config{Path: path, Topics: storetest.Topics()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return backend{st: st, exec: func(t *testing.T, q string) {
				db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}}
		},
		"postgres": func(t *testing.T) backend {
			storetest.PostgresURL(t)
			url := storetest.PostgresSchema(t)
			st, err := postgres.Open(context.Background(), postgres.Config{URL: url, Topics: storetest.Topics()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return backend{st: st, exec: func(t *testing.T, q string) {
				conn, err := pgx.Connect(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				if _, err := conn.Exec(context.Background(), q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}}
		},
	}
}

func keyRing(t *testing.T) *secure.KeyRing {
	t.Helper()
	kr, err := secure.LoadOrCreateKeyRing(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

var start = time.Date(2026, 11, 3, 14, 30, 0, 0, time.UTC)

// fill appends n records in batches of up to 7, one second apart.
func fill(t *testing.T, log *audit.Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; {
		var batch []audit.Record
		for k := 0; k < 7 && i < from+n; k++ {
			batch = append(batch, audit.Record{
				At: start.Add(time.Duration(i) * time.Second), Actor: audit.Actor{Kind: audit.ActorPeer, ID: "ENGINE-A", Address: "10.0.0.7:50122"},
				Action: "message.accepted", Correlation: fmt.Sprintf("corr-%d", i), Entities: []string{fmt.Sprintf("inbound/%d", i)},
			})
			i++
		}
		if err := log.Append(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
}

func newLog(t *testing.T, st store.Store, kr *secure.KeyRing) *audit.Log {
	t.Helper()
	log, err := audit.NewLog(st, kr, audit.LogConfig{Chain: "node-a", CheckpointEvery: 50, CheckpointAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// TestTamperingInTheDatabase is acceptance point 4 of the pipeline issue,
// on both stores: editing, deleting or reordering one row, or cutting the
// tail, makes Verify fail and name the row; an untouched trail verifies.
func TestTamperingInTheDatabase(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		kind audit.ProblemKind
		seq  uint64
	}{
		{"untouched", "", "", 0},
		{"edit a row", "UPDATE audit SET action = 'message.rejected' WHERE seq = 120", audit.ProblemAltered, 120},
		{"edit a row's time", "UPDATE audit SET at = (SELECT at FROM audit WHERE seq = 1) WHERE seq = 120", audit.ProblemAltered, 120},
		{"delete a row", "DELETE FROM audit WHERE seq = 120", audit.ProblemGap, 120},
		{"reorder two rows", "UPDATE audit SET seq = 100000 WHERE seq = 120; UPDATE audit SET seq = 120 WHERE seq = 121; UPDATE audit SET seq = 121 WHERE seq = 100000", audit.ProblemAltered, 120},
		{"cut off the tail", "DELETE FROM audit WHERE seq > 220", audit.ProblemTruncated, 221},
		// Batches of 7, a checkpoint at the first batch and then every 50
		// records or more: at 7, 63, 119, 175 and 231.
		{"forge a checkpoint", "UPDATE audit_checkpoint SET hash = (SELECT hash FROM audit WHERE seq = 62) WHERE seq = 63", audit.ProblemBadSignature, 63},
		{"delete a middle checkpoint: records intact, later ones still verify", "DELETE FROM audit_checkpoint WHERE seq = 63", "", 0},
	}
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					b := open(t)
					kr := keyRing(t)
					fill(t, newLog(t, b.st, kr), 0, 250)
					if tc.sql != "" {
						b.exec(t, tc.sql)
					}
					rep, err := audit.Verify(context.Background(), b.st, kr.SigningPublicKey)
					if tc.kind == "" {
						if err != nil {
							t.Fatalf("verify: %v", err)
						}
						if rep.Chains != 1 || rep.Checkpoints < 4 {
							t.Errorf("report = %+v", rep)
						}
						return
					}
					var p *audit.Problem
					if !errors.As(err, &p) {
						t.Fatalf("verify = %v (%+v), want a *Problem", err, rep)
					}
					if p.Kind != tc.kind || p.Seq != tc.seq {
						t.Errorf("problem = %v, want %s at record %d", p, tc.kind, tc.seq)
					}
				})
			}
		})
	}
}

// TestLogContinuesAndSigns: a new Log (a restart) continues the chain where
// it ended; checkpoints come every CheckpointEvery records; a Log refuses
// to build on a changed last record.
func TestLogContinuesAndSigns(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			kr := keyRing(t)
			fill(t, newLog(t, b.st, kr), 0, 120)
			fill(t, newLog(t, b.st, kr), 120, 40)
			head, err := b.st.AuditHead(context.Background(), "node-a")
			if err != nil || head.Seq != 160 {
				t.Fatalf("head = %d, %v; want 160", head.Seq, err)
			}
			rep, err := audit.Verify(context.Background(), b.st, kr.SigningPublicKey)
			if err != nil || rep.Records != 160 || rep.Checkpoints < 3 {
				t.Fatalf("verify = %+v, %v", rep, err)
			}
			b.exec(t, "UPDATE audit SET actor_id = 'someone' WHERE seq = 160")
			err = newLog(t, b.st, kr).Append(context.Background(), audit.Record{At: start, Action: "message.accepted"})
			var p *audit.Problem
			if !errors.As(err, &p) || p.Seq != 160 {
				t.Fatalf("append on an altered head = %v, want a problem at 160", err)
			}
		})
	}
}

// TestVerifyWithAnotherKeyRing: checkpoints signed by keys the ring does
// not hold are reported, not trusted.
func TestVerifyWithAnotherKeyRing(t *testing.T) {
	b := backends(t)["sqlite"](t)
	fill(t, newLog(t, b.st, keyRing(t)), 0, 60)
	other := keyRing(t)
	_, err := audit.Verify(context.Background(), b.st, other.SigningPublicKey)
	var p *audit.Problem
	if !errors.As(err, &p) || p.Kind != audit.ProblemUnknownKey {
		t.Fatalf("verify with another ring = %v, want unknown-key", err)
	}
	var _ ed25519.PublicKey // keys are ed25519
}

// TestCheckpointPinsAQuietTail: after a periodic Checkpoint, cutting off
// the last records of a quiet chain is caught.
func TestCheckpointPinsAQuietTail(t *testing.T) {
	b := backends(t)["sqlite"](t)
	kr := keyRing(t)
	log := newLog(t, b.st, kr)
	fill(t, log, 0, 20) // one checkpoint, at the first batch (record 7)
	if err := log.Checkpoint(context.Background(), start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := log.Checkpoint(context.Background(), start.Add(2*time.Hour)); err != nil {
		t.Fatal(err) // nothing new: no second checkpoint, no conflict
	}
	b.exec(t, "DELETE FROM audit WHERE seq > 15")
	_, err := audit.Verify(context.Background(), b.st, kr.SigningPublicKey)
	var p *audit.Problem
	if !errors.As(err, &p) || p.Kind != audit.ProblemTruncated || p.Seq != 16 {
		t.Fatalf("verify = %v, want the tail from record 16 reported as cut off", err)
	}
}

// TestAppendEntriesSkipsStored: a redelivered batch that mixes entries
// appended before with new ones appends only the new ones, keeps the chain
// whole, and goes on appending afterwards on the same log.
func TestAppendEntriesSkipsStored(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			kr := keyRing(t)
			log := newLog(t, b.st, kr)
			ctx := context.Background()
			entry := func(id string) audit.Entry {
				return audit.Entry{ID: id, At: start, Actor: audit.Actor{Kind: audit.ActorPeer, ID: "ENGINE-A"},
					Action: "message.accepted", Correlation: "corr-" + id}
			}
			if n, err := log.AppendEntries(ctx, []audit.Entry{entry("a"), entry("b")}); err != nil || n != 2 {
				t.Fatalf("first append = %d, %v; want 2", n, err)
			}
			if n, err := log.AppendEntries(ctx, []audit.Entry{entry("a"), entry("c"), entry("b"), entry("d")}); err != nil || n != 2 {
				t.Fatalf("redelivered batch = %d, %v; want the 2 new entries", n, err)
			}
			if n, err := log.AppendEntries(ctx, []audit.Entry{entry("d")}); err != nil || n != 0 {
				t.Fatalf("a stored entry alone = %d, %v; want 0", n, err)
			}
			if n, err := log.AppendEntries(ctx, []audit.Entry{entry("e")}); err != nil || n != 1 {
				t.Fatalf("a new entry after = %d, %v; want 1", n, err)
			}
			head, err := b.st.AuditHead(ctx, "node-a")
			if err != nil || head.Seq != 5 {
				t.Fatalf("head = %d, %v; want 5", head.Seq, err)
			}
			if rep, err := audit.Verify(ctx, b.st, kr.SigningPublicKey); err != nil || rep.Records != 5 {
				t.Fatalf("verify = %+v, %v", rep, err)
			}
		})
	}
}

// TestRecorderRelinksAfterAnotherWriter: when another writer took the
// chain's next position, the recorder's append reloads the head and links
// again instead of failing the requests it was recording.
func TestRecorderRelinksAfterAnotherWriter(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			kr := keyRing(t)
			ctx := context.Background()
			rec, err := audit.NewRecorder(newLog(t, b.st, kr), 1)
			if err != nil {
				t.Fatal(err)
			}
			entry := audit.Entry{At: start, Actor: audit.Actor{Kind: audit.ActorClient, ID: "ehr"}, Action: "rest.read"}
			if err := rec.Record(ctx, entry); err != nil {
				t.Fatalf("first Record: %v", err)
			}
			fill(t, newLog(t, b.st, kr), 1, 1) // the other writer, on the same chain
			if err := rec.Record(ctx, entry); err != nil {
				t.Fatalf("Record after another writer appended: %v", err)
			}
			if rep, err := audit.Verify(ctx, b.st, kr.SigningPublicKey); err != nil || rep.Records != 3 {
				t.Fatalf("verify = %+v, %v; want 3 records", rep, err)
			}
		})
	}
}
