package audit

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"sort"
	"time"
)

// Checkpoint pins a chain: the hash of its record Seq, signed. Whoever
// rewrites the chain from some record on must also forge every later
// checkpoint, which needs the private key.
type Checkpoint struct {
	Chain     string
	Seq       uint64
	Hash      Hash
	At        time.Time
	KeyID     string
	Signature []byte
}

const checkpointVersion = "carebridge-audit-checkpoint-v1"

func (c *Checkpoint) message() []byte {
	b := make([]byte, 0, 128)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(checkpointVersion)
	str(c.Chain)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	b = append(b, c.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.At.UTC().UnixMicro()))
	str(c.KeyID)
	return b
}

// SignCheckpoint signs the chain as it stands at r.
func SignCheckpoint(r Record, at time.Time, keyID string, key ed25519.PrivateKey) Checkpoint {
	c := Checkpoint{Chain: r.Chain, Seq: r.Seq, Hash: r.Hash, At: at.UTC().Truncate(time.Microsecond), KeyID: keyID}
	c.Signature = ed25519.Sign(key, c.message())
	return c
}

// PublicKeys finds the public key of a signing key id in the key ring.
type PublicKeys func(keyID string) (ed25519.PublicKey, bool)

// Verifier checks records as storage yields them (each chain in ascending
// sequence), keeping only the last record of each chain: a trail of any
// length verifies in constant memory.
type Verifier struct {
	last        map[string]*Record
	checkpoints map[string][]Checkpoint // per chain, by Seq, not yet reached
	records     int
}

// NewVerifier checks the checkpoints' signatures and returns a verifier
// that will hold the chains to them. A checkpoint that does not verify is a
// *Problem.
func NewVerifier(keys PublicKeys, checkpoints []Checkpoint) (*Verifier, error) {
	v := &Verifier{last: map[string]*Record{}, checkpoints: map[string][]Checkpoint{}}
	for _, c := range checkpoints {
		pub, ok := keys(c.KeyID)
		if !ok {
			return nil, &Problem{Kind: ProblemUnknownKey, Chain: c.Chain, Seq: c.Seq,
				Detail: fmt.Sprintf("the checkpoint is signed with key %q, which the key ring does not hold", c.KeyID)}
		}
		if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, c.message(), c.Signature) {
			return nil, &Problem{Kind: ProblemBadSignature, Chain: c.Chain, Seq: c.Seq,
				Detail: fmt.Sprintf("the checkpoint's signature does not verify with key %q", c.KeyID)}
		}
		v.checkpoints[c.Chain] = append(v.checkpoints[c.Chain], c)
	}
	for _, cs := range v.checkpoints {
		sort.Slice(cs, func(i, j int) bool { return cs[i].Seq < cs[j].Seq })
	}
	return v, nil
}

// Add checks the next record. The first problem is returned as a *Problem
// naming the chain and sequence number where verification fails.
func (v *Verifier) Add(r Record) error {
	v.records++
	if got := r.digest(); got != r.Hash {
		return &Problem{Kind: ProblemAltered, Chain: r.Chain, Seq: r.Seq,
			Detail: "the record's content does not give its stored hash: it was changed after it was written"}
	}
	last := v.last[r.Chain]
	switch {
	case last == nil && r.Seq != 1:
		return &Problem{Kind: ProblemGap, Chain: r.Chain, Seq: r.Seq,
			Detail: fmt.Sprintf("the chain starts at record %d; records 1 to %d are missing", r.Seq, r.Seq-1)}
	case last == nil && r.Prev != (Hash{}):
		return &Problem{Kind: ProblemBrokenLink, Chain: r.Chain, Seq: r.Seq,
			Detail: "the first record names a predecessor"}
	case last != nil && r.Seq <= last.Seq:
		return &Problem{Kind: ProblemOutOfOrder, Chain: r.Chain, Seq: r.Seq,
			Detail: fmt.Sprintf("record %d comes after record %d", r.Seq, last.Seq)}
	case last != nil && r.Seq > last.Seq+1:
		return &Problem{Kind: ProblemGap, Chain: r.Chain, Seq: last.Seq + 1,
			Detail: fmt.Sprintf("records %d to %d are missing (the chain goes from %d to %d)", last.Seq+1, r.Seq-1, last.Seq, r.Seq)}
	case last != nil && r.Prev != last.Hash:
		return &Problem{Kind: ProblemBrokenLink, Chain: r.Chain, Seq: r.Seq,
			Detail: fmt.Sprintf("the record does not follow record %d: one of the two was replaced", last.Seq)}
	}
	if cs := v.checkpoints[r.Chain]; len(cs) > 0 && cs[0].Seq == r.Seq {
		if cs[0].Hash != r.Hash {
			return &Problem{Kind: ProblemCheckpoint, Chain: r.Chain, Seq: r.Seq,
				Detail: "the chain differs from the signed checkpoint: records up to here were rewritten"}
		}
		v.checkpoints[r.Chain] = cs[1:]
	}
	rc := r
	v.last[r.Chain] = &rc
	return nil
}

// Finish reports records that checkpoints cover but that are gone (the
// tail of a chain cut off). Records after the last checkpoint can be cut
// off unnoticed; checkpoint often.
func (v *Verifier) Finish() error {
	chains := make([]string, 0, len(v.checkpoints))
	for c := range v.checkpoints {
		chains = append(chains, c)
	}
	sort.Strings(chains)
	for _, c := range chains {
		if cs := v.checkpoints[c]; len(cs) > 0 {
			var have uint64
			if l := v.last[c]; l != nil {
				have = l.Seq
			}
			return &Problem{Kind: ProblemTruncated, Chain: c, Seq: have + 1,
				Detail: fmt.Sprintf("a checkpoint covers record %d but the chain ends at %d", cs[len(cs)-1].Seq, have)}
		}
	}
	return nil
}

// Records is how many records Add has seen.
func (v *Verifier) Records() int { return v.records }
