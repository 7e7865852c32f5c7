// Package secure keeps carebridge's secrets: the key ring of key-encryption
// keys (and of the Ed25519 keys that sign audit checkpoints) and the
// envelope encryption that seals every record at rest.
//
// Each sealed record gets its own random AES-256 data key. The record is
// encrypted with AES-256-GCM under that data key, and the data key is
// wrapped (AES-256-GCM again) under the key ring's active key-encryption
// key. Rotating the ring adds a new active key; older keys stay to open old
// records. See NIST SP 800-38D for GCM.
package secure

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const (
	keySize       = 32 // AES-256
	envelopeV1    = 1
	ringFileMode  = 0o600
	maxKeyIDBytes = 64
)

// ErrDecrypt is returned when a sealed record cannot be opened: wrong key,
// wrong associated data, or tampered bytes.
var ErrDecrypt = errors.New("secure: cannot open sealed data")

// ErrUnknownKey is returned when a sealed record names a key the ring does
// not hold (for example one that was destroyed).
var ErrUnknownKey = errors.New("secure: unknown key")

// KeyRing holds key-encryption keys. It is safe for concurrent use.
type KeyRing struct {
	path string

	mu      sync.RWMutex
	active  string
	keys    map[string]cipher.AEAD
	signing map[string]ed25519.PrivateKey
	file    ringFile
}

type ringFile struct {
	Version int       `json:"version"`
	Active  string    `json:"active"`
	Keys    []ringKey `json:"keys"`
	// Signing keys (Ed25519 seeds) sign audit checkpoints; rings written
	// before they existed have none until the next rotation.
	ActiveSigning string    `json:"active_signing,omitempty"`
	Signing       []ringKey `json:"signing,omitempty"`
}

type ringKey struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Key     string    `json:"key"` // base64, 32 bytes
}

// LoadOrCreateKeyRing opens the key ring file at path, creating it with one
// fresh key (mode 0600) when it does not exist. It refuses a file that
// others than its owner may read.
func LoadOrCreateKeyRing(path string) (*KeyRing, error) {
	kr, err := LoadKeyRing(path)
	if err == nil {
		return kr, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	kr = &KeyRing{path: path, keys: map[string]cipher.AEAD{}, signing: map[string]ed25519.PrivateKey{}}
	kr.file.Version = 1
	now := time.Now()
	if _, err := kr.addKey(now); err != nil {
		return nil, err
	}
	kr.addSigningKey(now)
	if err := kr.save(true); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process created it first
			return LoadKeyRing(path)
		}
		return nil, err
	}
	return kr, nil
}

// LoadKeyRing opens an existing key ring file.
func LoadKeyRing(path string) (*KeyRing, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening key ring: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("opening key ring %s: mode %v lets other users read it; run chmod 600 on it", path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("opening key ring: %w", err)
	}
	kr := &KeyRing{path: path, keys: map[string]cipher.AEAD{}, signing: map[string]ed25519.PrivateKey{}}
	if err := json.Unmarshal(data, &kr.file); err != nil {
		return nil, fmt.Errorf("reading key ring %s: %w", path, err)
	}
	if kr.file.Version != 1 {
		return nil, fmt.Errorf("reading key ring %s: unsupported version %d", path, kr.file.Version)
	}
	for _, k := range kr.file.Keys {
		raw, err := base64.StdEncoding.DecodeString(k.Key)
		if err != nil || len(raw) != keySize {
			return nil, fmt.Errorf("reading key ring %s: key %q is not %d base64 bytes", path, k.ID, keySize)
		}
		aead, err := newGCM(raw)
		if err != nil {
			return nil, err
		}
		kr.keys[k.ID] = aead
	}
	if _, ok := kr.keys[kr.file.Active]; !ok {
		return nil, fmt.Errorf("reading key ring %s: active key %q is missing", path, kr.file.Active)
	}
	kr.active = kr.file.Active
	for _, k := range kr.file.Signing {
		seed, err := base64.StdEncoding.DecodeString(k.Key)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("reading key ring %s: signing key %q is not %d base64 bytes", path, k.ID, ed25519.SeedSize)
		}
		kr.signing[k.ID] = ed25519.NewKeyFromSeed(seed)
	}
	if _, ok := kr.signing[kr.file.ActiveSigning]; kr.file.ActiveSigning != "" && !ok {
		return nil, fmt.Errorf("reading key ring %s: active signing key %q is missing", path, kr.file.ActiveSigning)
	}
	return kr, nil
}

// SigningKey returns the active Ed25519 signing key and its id; ok is false
// for a ring written before signing keys existed (rotate it to add one).
func (kr *KeyRing) SigningKey() (id string, key ed25519.PrivateKey, ok bool) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	key, ok = kr.signing[kr.file.ActiveSigning]
	return kr.file.ActiveSigning, key, ok
}

// EnsureSigningKey gives a ring written before signing keys existed its
// first one, saving the ring; it does nothing when the ring has one. It
// re-reads the file after writing, so that of two processes upgrading the
// same ring at once, both end up with the key that was kept.
func (kr *KeyRing) EnsureSigningKey(now time.Time) error {
	if _, _, ok := kr.SigningKey(); ok {
		return nil
	}
	kr.mu.Lock()
	kr.addSigningKey(now)
	err := kr.save(false)
	kr.mu.Unlock()
	if err != nil {
		return err
	}
	fresh, err := LoadKeyRing(kr.path)
	if err != nil {
		return err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.file.Signing, kr.file.ActiveSigning = fresh.file.Signing, fresh.file.ActiveSigning
	kr.signing = fresh.signing
	return nil
}

// SigningPublicKey returns the public half of signing key id, active or
// not, so that old signatures still verify.
func (kr *KeyRing) SigningPublicKey(id string) (ed25519.PublicKey, bool) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	k, ok := kr.signing[id]
	if !ok {
		return nil, false
	}
	return k.Public().(ed25519.PublicKey), true
}

// ActiveKeyID names the key that new records are sealed under.
func (kr *KeyRing) ActiveKeyID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active
}

// Rotate adds a new key and a new signing key, makes them the active ones
// and saves the ring. Records sealed under earlier keys still open, and
// signatures by earlier signing keys still verify.
func (kr *KeyRing) Rotate(now time.Time) (string, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	id, err := kr.addKey(now)
	if err != nil {
		return "", err
	}
	kr.addSigningKey(now)
	if err := kr.save(false); err != nil {
		return "", err
	}
	return id, nil
}

// addKey makes a new key active; the caller holds mu (or owns kr alone).
func (kr *KeyRing) addKey(now time.Time) (string, error) {
	raw := make([]byte, keySize)
	rand.Read(raw)
	aead, err := newGCM(raw)
	if err != nil {
		return "", err
	}
	var suffix [4]byte
	rand.Read(suffix[:])
	id := fmt.Sprintf("k%d-%s-%x", len(kr.file.Keys)+1, now.UTC().Format("20060102T150405Z"), suffix)
	kr.file.Keys = append(kr.file.Keys, ringKey{ID: id, Created: now.UTC(), Key: base64.StdEncoding.EncodeToString(raw)})
	kr.file.Active = id
	kr.keys[id] = aead
	kr.active = id
	return id, nil
}

// addSigningKey makes a new Ed25519 key the active signing key; the caller
// holds mu (or owns kr alone).
func (kr *KeyRing) addSigningKey(now time.Time) string {
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	var suffix [4]byte
	rand.Read(suffix[:])
	id := fmt.Sprintf("s%d-%s-%x", len(kr.file.Signing)+1, now.UTC().Format("20060102T150405Z"), suffix)
	kr.file.Signing = append(kr.file.Signing, ringKey{ID: id, Created: now.UTC(), Key: base64.StdEncoding.EncodeToString(seed)})
	kr.file.ActiveSigning = id
	kr.signing[id] = ed25519.NewKeyFromSeed(seed)
	return id
}

// save writes the ring atomically (temp file, fsync, rename). With
// exclusive it fails with fs.ErrExist if the file appeared meanwhile.
func (kr *KeyRing) save(exclusive bool) error {
	data, err := json.MarshalIndent(kr.file, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding key ring: %w", err)
	}
	dir := filepath.Dir(kr.path)
	tmp, err := os.CreateTemp(dir, ".keyring-*")
	if err != nil {
		return fmt.Errorf("writing key ring: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(ringFileMode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing key ring: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing key ring: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing key ring: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing key ring: %w", err)
	}
	if exclusive {
		// Link fails if the target exists, unlike rename.
		if err := os.Link(tmp.Name(), kr.path); err != nil {
			return fmt.Errorf("writing key ring: %w", err)
		}
	} else if err := os.Rename(tmp.Name(), kr.path); err != nil {
		return fmt.Errorf("writing key ring: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("creating AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating GCM: %w", err)
	}
	return aead, nil
}

// DerivedSigningKey returns an Ed25519 key for purpose (such as
// "access-token"), derived with HKDF-SHA256 from the active signing key, and
// that key's id. Every process sharing the ring derives the same key, and
// it rotates with the ring; a key for one purpose signs nothing that
// verifies for another, or as an audit checkpoint.
func (kr *KeyRing) DerivedSigningKey(purpose string) (id string, key ed25519.PrivateKey, ok bool) {
	id, base, ok := kr.SigningKey()
	if !ok {
		return "", nil, false
	}
	return id, derive(base, purpose), true
}

// DerivedSigningPublicKey is the public half of the key for purpose derived
// from signing key id, active or not.
func (kr *KeyRing) DerivedSigningPublicKey(id, purpose string) (ed25519.PublicKey, bool) {
	kr.mu.RLock()
	base, ok := kr.signing[id]
	kr.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return derive(base, purpose).Public().(ed25519.PublicKey), true
}

func derive(base ed25519.PrivateKey, purpose string) ed25519.PrivateKey {
	seed, err := hkdf.Key(sha256.New, base.Seed(), nil, "carebridge signing key: "+purpose, ed25519.SeedSize)
	if err != nil { // only for lengths HKDF cannot give
		panic(err)
	}
	return ed25519.NewKeyFromSeed(seed)
}
