package secure

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func newRing(t *testing.T) (*KeyRing, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring.json")
	kr, err := LoadOrCreateKeyRing(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKeyRing: %v", err)
	}
	return kr, path
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr, _ := newRing(t)
	for _, tc := range []struct {
		name      string
		plaintext []byte
	}{
		{"empty", nil},
		{"hl7", []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5.1\rPID|1||1^^^H^MR||DOE^JANE\r")},
		{"large", bytes.Repeat([]byte("x"), 64<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := kr.Seal(tc.plaintext, []byte("record-1"))
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.plaintext) > 8 && bytes.Contains(sealed, tc.plaintext[:8]) {
				t.Fatal("sealed bytes contain the plaintext")
			}
			got, err := kr.Open(sealed, []byte("record-1"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Open = %q, want %q", got, tc.plaintext)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	kr, _ := newRing(t)
	sealed, err := kr.Seal([]byte("DOE^JANE"), []byte("record-1"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	other, _ := newRing(t)
	for _, tc := range []struct {
		name   string
		ring   *KeyRing
		sealed []byte
		aad    string
		want   error
	}{
		{"wrong aad", kr, sealed, "record-2", ErrDecrypt},
		{"payload bit flipped", kr, flip(len(sealed) - 1), "record-1", ErrDecrypt},
		{"wrapped key bit flipped", kr, flip(2 + int(sealed[1]) + 15), "record-1", ErrDecrypt},
		{"truncated", kr, sealed[:20], "record-1", ErrDecrypt},
		{"bad version", kr, flip(0), "record-1", ErrDecrypt},
		{"another ring", other, sealed, "record-1", ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ring.Open(tc.sealed, []byte(tc.aad))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRotateKeepsOldKeys(t *testing.T) {
	kr, path := newRing(t)
	before := kr.ActiveKeyID()
	old, _ := kr.Seal([]byte("old"), nil)
	id, err := kr.Rotate(time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if id == before || kr.ActiveKeyID() != id {
		t.Fatalf("active key after rotate = %q (was %q, rotate said %q)", kr.ActiveKeyID(), before, id)
	}
	reloaded, err := LoadKeyRing(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := reloaded.Open(old, nil); err != nil || string(got) != "old" {
		t.Fatalf("reloaded ring opens old record = %q, %v", got, err)
	}
	if reloaded.ActiveKeyID() != id {
		t.Fatalf("reloaded active = %q, want %q", reloaded.ActiveKeyID(), id)
	}
}

func TestKeyRingFileMode(t *testing.T) {
	_, path := newRing(t)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Fatalf("key ring mode = %v, want 0600", got)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyRing(path); err == nil {
		t.Fatal("LoadKeyRing accepted a world-readable key ring")
	}
}

func TestConcurrentCreateAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			kr, err := LoadOrCreateKeyRing(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = kr.ActiveKeyID()
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent creators disagree on the key: %q vs %q", id, ids[0])
		}
	}
}

func BenchmarkSeal1500(b *testing.B) {
	kr, err := LoadOrCreateKeyRing(filepath.Join(b.TempDir(), "k.json"))
	if err != nil {
		b.Fatal(err)
	}
	msg := bytes.Repeat([]byte("A"), 1500)
	aad := []byte("0195f0b2-7c1e-7000-8000-000000000000")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Seal(msg, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen1500(b *testing.B) {
	kr, err := LoadOrCreateKeyRing(filepath.Join(b.TempDir(), "k.json"))
	if err != nil {
		b.Fatal(err)
	}
	sealed, _ := kr.Seal(bytes.Repeat([]byte("A"), 1500), nil)
	b.SetBytes(1500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Open(sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSigningKeys: a new ring has a signing key; rotation adds a new one
// and old public keys stay, across a reload; a ring from before signing
// keys existed loads and gains one on rotation.
func TestSigningKeys(t *testing.T) {
	kr, path := newRing(t)
	id1, key1, ok := kr.SigningKey()
	if !ok || len(key1) != ed25519.PrivateKeySize {
		t.Fatalf("new ring has no signing key")
	}
	msg := []byte("checkpoint")
	sig1 := ed25519.Sign(key1, msg)
	if _, err := kr.Rotate(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	id2, _, _ := kr.SigningKey()
	if id2 == id1 {
		t.Fatal("rotation kept the signing key")
	}
	reloaded, err := LoadKeyRing(path)
	if err != nil {
		t.Fatal(err)
	}
	pub1, ok := reloaded.SigningPublicKey(id1)
	if !ok || !ed25519.Verify(pub1, msg, sig1) {
		t.Fatal("the old signing key's signature does not verify after rotation and reload")
	}
	if got, _, _ := reloaded.SigningKey(); got != id2 {
		t.Fatalf("reloaded active signing key = %q, want %q", got, id2)
	}
	if _, ok := reloaded.SigningPublicKey("s9-unknown"); ok {
		t.Fatal("an unknown signing key id was found")
	}

	// A ring written before signing keys: no "signing" members.
	old := filepath.Join(t.TempDir(), "keyring.json")
	raw := `{"version":1,"active":"k1","keys":[{"id":"k1","created":"2026-11-01T00:00:00Z","key":"` +
		base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"}]}`
	if err := os.WriteFile(old, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	legacy, err := LoadKeyRing(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := legacy.SigningKey(); ok {
		t.Fatal("a legacy ring claims a signing key")
	}
	if err := legacy.EnsureSigningKey(time.Now()); err != nil {
		t.Fatal(err)
	}
	sid, _, ok := legacy.SigningKey()
	if !ok || legacy.ActiveKeyID() != "k1" {
		t.Fatalf("EnsureSigningKey: signing key %v, active key %q (must stay k1)", ok, legacy.ActiveKeyID())
	}
	if err := legacy.EnsureSigningKey(time.Now()); err != nil {
		t.Fatal(err)
	}
	if again, _, _ := legacy.SigningKey(); again != sid {
		t.Fatal("EnsureSigningKey replaced an existing signing key")
	}
	if reloaded, err := LoadKeyRing(old); err != nil {
		t.Fatal(err)
	} else if got, _, _ := reloaded.SigningKey(); got != sid {
		t.Fatalf("the signing key was not saved: %q", got)
	}
}

// Derived keys: the same in every process that shares the ring, one per
// purpose, never the checkpoint key, and still verifiable after rotation.
func TestDerivedSigningKeys(t *testing.T) {
	kr, path := newRing(t)
	id, tok, ok := kr.DerivedSigningKey("access-token")
	if !ok {
		t.Fatal("no derived key")
	}
	_, base, _ := kr.SigningKey()
	_, other, _ := kr.DerivedSigningKey("something-else")
	if tok.Equal(base) || tok.Equal(other) {
		t.Fatal("a derived key equals the checkpoint key or another purpose's key")
	}
	reloaded, err := LoadKeyRing(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, again, _ := reloaded.DerivedSigningKey("access-token"); !again.Equal(tok) {
		t.Fatal("another process sharing the ring derives a different key")
	}
	msg := []byte("token")
	sig := ed25519.Sign(tok, msg)
	if _, err := kr.Rotate(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if id2, _, _ := kr.DerivedSigningKey("access-token"); id2 == id {
		t.Fatal("rotation kept the derived key's id")
	}
	pub, ok := kr.DerivedSigningPublicKey(id, "access-token")
	if !ok || !ed25519.Verify(pub, msg, sig) {
		t.Fatal("a signature by the derived key does not verify after rotation")
	}
	if pub, _ := kr.DerivedSigningPublicKey(id, "something-else"); ed25519.Verify(pub, msg, sig) {
		t.Fatal("a signature verifies under another purpose's key")
	}
}
