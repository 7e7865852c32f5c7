package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 3, 14, 30, 0, 123456789, time.UTC)

// trail builds n linked records with a checkpoint every 10.
func trail(t *testing.T, chain string, n int, key ed25519.PrivateKey) ([]Record, []Checkpoint) {
	t.Helper()
	var recs []Record
	var cps []Checkpoint
	var prev *Record
	for i := 1; i <= n; i++ {
		r, err := Link(prev, Record{
			Chain: chain, At: t0.Add(time.Duration(i) * time.Second),
			Actor:  Actor{Kind: ActorPeer, ID: "ENGINE-A", Address: "10.0.0.7:50122"},
			Action: "message.accepted", Correlation: fmt.Sprintf("corr-%d", i),
			Entities: []string{fmt.Sprintf("inbound/%d", i)}, Patient: "Patient/p1",
		})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		prev = &recs[len(recs)-1]
		if i%10 == 0 {
			cps = append(cps, SignCheckpoint(r, r.At, "sig-1", key))
		}
	}
	return recs, cps
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func ring(pub ed25519.PublicKey) PublicKeys {
	return func(id string) (ed25519.PublicKey, bool) { return pub, id == "sig-1" }
}

func verify(keys PublicKeys, recs []Record, cps []Checkpoint) error {
	v, err := NewVerifier(keys, cps)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := v.Add(r); err != nil {
			return err
		}
	}
	return v.Finish()
}

func TestUntouchedChainVerifies(t *testing.T) {
	pub, priv := newKey(t)
	recs, cps := trail(t, "node-a", 100, priv)
	if recs[0].At.Nanosecond()%1000 != 0 || recs[0].At.Location() != time.UTC {
		t.Errorf("time not normalised to UTC microseconds: %v", recs[0].At)
	}
	v, err := NewVerifier(ring(pub), cps)
	if err != nil {
		t.Fatal(err)
	}
	// Two chains interleaved, as two writers would leave them.
	other, ocps := trail(t, "node-b", 30, priv)
	v2, err := NewVerifier(ring(pub), append(cps, ocps...))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if err := v.Add(r); err != nil {
			t.Fatal(err)
		}
		if err := v2.Add(r); err != nil {
			t.Fatal(err)
		}
		if i < len(other) {
			if err := v2.Add(other[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := v.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := v2.Finish(); err != nil {
		t.Fatal(err)
	}
	if v.Records() != 100 || v2.Records() != 130 {
		t.Errorf("records seen: %d and %d", v.Records(), v2.Records())
	}
}

// TestTamperingIsFoundAndNamed: each way of changing the stored trail is
// caught, and the problem names the record where it shows.
func TestTamperingIsFoundAndNamed(t *testing.T) {
	pub, priv := newKey(t)
	_, otherKey := newKey(t)
	relink := func(recs []Record, from int) {
		for i := from; i < len(recs); i++ {
			var prev *Record
			if i > 0 {
				prev = &recs[i-1]
			}
			r, err := Link(prev, recs[i])
			if err != nil {
				t.Fatal(err)
			}
			recs[i] = r
		}
	}
	cases := []struct {
		name   string
		tamper func(recs []Record, cps []Checkpoint) ([]Record, []Checkpoint)
		kind   ProblemKind
		seq    uint64
	}{
		{"edit a row", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[39].Action = "message.rejected"
			return r, c
		}, ProblemAltered, 40},
		{"edit a row's patient", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[39].Patient = "Patient/someone-else"
			return r, c
		}, ProblemAltered, 40},
		{"edit a row and fix its hash", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[41].Outcome = OutcomeMajor // record 42: not a checkpoint
			r[41].Hash = r[41].digest()
			return r, c
		}, ProblemBrokenLink, 43},
		{"edit a checkpointed row and fix its hash", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[39].Outcome = OutcomeMajor
			r[39].Hash = r[39].digest()
			return r, c
		}, ProblemCheckpoint, 40},
		{"edit a row and rewrite the chain after it", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[44].Actor.ID = "someone"
			relink(r, 44)
			return r, c
		}, ProblemCheckpoint, 50},
		{"delete a row", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			return append(r[:39:39], r[40:]...), c
		}, ProblemGap, 40},
		{"delete the first row", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			return r[1:], c
		}, ProblemGap, 2},
		{"reorder two rows", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[39], r[40] = r[40], r[39]
			return r, c
		}, ProblemGap, 40},
		{"swap two rows' sequence numbers", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[39].Seq, r[40].Seq = r[40].Seq, r[39].Seq
			return r, c
		}, ProblemAltered, 41},
		{"repeat a row", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			return append(r[:41:41], r[40:]...), c
		}, ProblemOutOfOrder, 41},
		{"cut off the tail", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			return r[:85], c
		}, ProblemTruncated, 86},
		{"forge a checkpoint's hash", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			c[2].Hash[0] ^= 1
			return r, c
		}, ProblemBadSignature, 30},
		{"re-sign with a key not in the ring", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			r[44].Actor.ID = "someone"
			relink(r, 44)
			for i := range c {
				c[i] = SignCheckpoint(r[c[i].Seq-1], c[i].At, "sig-1", otherKey)
			}
			return r, c
		}, ProblemBadSignature, 10},
		{"name a key the ring lacks", func(r []Record, c []Checkpoint) ([]Record, []Checkpoint) {
			c[0] = SignCheckpoint(r[9], c[0].At, "sig-attacker", otherKey)
			return r, c
		}, ProblemUnknownKey, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs, cps := trail(t, "node-a", 100, priv)
			recs, cps = tc.tamper(recs, cps)
			err := verify(ring(pub), recs, cps)
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("verify = %v, want a *Problem", err)
			}
			if p.Kind != tc.kind || p.Seq != tc.seq || p.Chain != "node-a" {
				t.Errorf("problem = %s (%s at %d), want %s at %d", p, p.Kind, p.Seq, tc.kind, tc.seq)
			}
			if !strings.Contains(p.Error(), fmt.Sprintf("record %d", tc.seq)) {
				t.Errorf("the message does not name the record: %s", p)
			}
		})
	}
}

// TestCanonicalFormIsUnambiguous: moving text between fields changes the
// hash, so no edit can keep it by shifting bytes around.
func TestCanonicalFormIsUnambiguous(t *testing.T) {
	base := Record{Chain: "c", At: t0, Action: "a", Actor: Actor{Kind: ActorUser, ID: "ab", Address: "c"}, Entities: []string{"x", "yz"}}
	variants := []func(r *Record){
		func(r *Record) { r.Actor.ID, r.Actor.Address = "a", "bc" },
		func(r *Record) { r.Entities = []string{"xy", "z"} },
		func(r *Record) { r.Entities = []string{"x", "y", "z"} },
		func(r *Record) { r.Entities = []string{"xyz"} },
		func(r *Record) { r.Actor.Kind = ActorClient },
		func(r *Record) { r.At = r.At.Add(time.Microsecond) },
		func(r *Record) { r.Outcome = OutcomeMinor },
		func(r *Record) { r.Correlation, r.Patient = "p", "" },
		func(r *Record) { r.Patient = "p" },
	}
	a, err := Link(nil, base)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Hash]int{a.Hash: -1}
	for i, change := range variants {
		r := base
		r.Entities = append([]string(nil), base.Entities...)
		change(&r)
		b, err := Link(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if j, dup := seen[b.Hash]; dup {
			t.Errorf("variant %d hashes like %d", i, j)
		}
		seen[b.Hash] = i
	}
}

func TestLinkRefusesBadRecords(t *testing.T) {
	ok := Record{Chain: "c", At: t0, Action: "a"}
	first, err := Link(nil, ok)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]Record{
		"no action":     {Chain: "c", At: t0},
		"no time":       {Chain: "c", Action: "a"},
		"no chain":      {At: t0, Action: "a"},
		"long field":    {Chain: "c", At: t0, Action: "a", Correlation: strings.Repeat("x", MaxFieldBytes+1)},
		"many entities": {Chain: "c", At: t0, Action: "a", Entities: make([]string, MaxEntities+1)},
		"long entity":   {Chain: "c", At: t0, Action: "a", Entities: []string{strings.Repeat("x", MaxFieldBytes+1)}},
	} {
		if _, err := Link(nil, r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := Link(&first, Record{Chain: "other", At: t0, Action: "a"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("linking into another chain: err = %v", err)
	}
	second, err := Link(&first, Record{At: t0, Action: "b"})
	if err != nil || second.Seq != 2 || second.Prev != first.Hash || second.Chain != "c" {
		t.Errorf("second record: %+v, %v", second, err)
	}
}

func BenchmarkLink(b *testing.B) {
	prev, _ := Link(nil, Record{Chain: "c", At: t0, Action: "a"})
	r := Record{At: t0, Action: "communication.delivered", Actor: Actor{Kind: ActorSystem, ID: "carebridge"},
		Correlation: "0195f0b2-7c1e-7a3b-9d1e-5f2a0c4e8b11", Entities: []string{"Communication/7d9e95fe-caff-830b-9722-d69881d872f6", "Practitioner/296d5bdc-2b8a-885f-a547-96530e17fb78"},
		Patient: "Patient/752afa8a-ba2f-8bcd-8328-a63c213f9d6c"}
	b.ReportAllocs()
	for b.Loop() {
		next, err := Link(&prev, r)
		if err != nil {
			b.Fatal(err)
		}
		prev = next
	}
}

func TestDecodeEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		n       int
		err     string
	}{
		{"one entry", `{"id":"e1","at":"2026-12-01T06:00:00Z","action":"message.mapped"}`, 1, ""},
		{"one without id", `{"at":"2026-12-01T06:00:00Z","action":"message.mapped"}`, 1, ""},
		{"a batch", ` [{"id":"e1","at":"2026-12-01T06:00:00Z","action":"a"},{"id":"e2","at":"2026-12-01T06:00:01Z","action":"b"}]`, 2, ""},
		{"a batch entry without id", `[{"at":"2026-12-01T06:00:00Z","action":"a"}]`, 0, "entry 0 of the batch"},
		{"an empty batch", `[]`, 0, "a batch of 0"},
		{"no action", `{"id":"e1","at":"2026-12-01T06:00:00Z"}`, 0, "not an audit entry"},
		{"not JSON", `garbage`, 0, "not an audit entry"},
		{"a broken batch", `[{"id":`, 0, "not JSON audit entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeEntries([]byte(tc.payload))
			if tc.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrInvalid saying %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != tc.n {
				t.Fatalf("got %d entries, %v; want %d", len(got), err, tc.n)
			}
		})
	}
	big := make([]Entry, MaxBatch+1)
	for i := range big {
		big[i] = Entry{ID: fmt.Sprint(i), At: time.Now(), Action: "a"}
	}
	b, _ := json.Marshal(big)
	if _, err := DecodeEntries(b); !errors.Is(err, ErrInvalid) {
		t.Errorf("a batch over MaxBatch: %v, want ErrInvalid", err)
	}
}
