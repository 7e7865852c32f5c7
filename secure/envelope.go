package secure

import (
	"crypto/rand"
	"fmt"
)

// Sealed layout, version 1:
//
//	[0]        version (1)
//	[1]        n = len(key id)
//	[2:2+n]    key id of the key-encryption key
//	next 12    nonce of the wrapped data key
//	next 48    wrapped data key (32 bytes + 16 tag)
//	next 12    nonce of the payload
//	rest       payload ciphertext + 16 tag
//
// The header (version, key id) is authenticated as associated data of the
// wrapped key; the caller's associated data (a record id) binds the payload
// to its record, so a ciphertext moved to another row does not open.
const (
	nonceSize   = 12
	tagSize     = 16
	wrappedSize = keySize + tagSize
)

// Seal encrypts plaintext under a fresh data key wrapped by the active key.
// aad is authenticated but not stored: the same aad must be given to Open.
func (kr *KeyRing) Seal(plaintext, aad []byte) ([]byte, error) {
	kr.mu.RLock()
	id := kr.active
	kek := kr.keys[id]
	kr.mu.RUnlock()
	if kek == nil {
		return nil, fmt.Errorf("sealing: %w %q", ErrUnknownKey, id)
	}
	hdr := 2 + len(id)
	out := make([]byte, hdr+nonceSize+wrappedSize+nonceSize+len(plaintext)+tagSize)
	out[0] = envelopeV1
	out[1] = byte(len(id))
	copy(out[2:], id)

	var secrets [keySize + nonceSize + nonceSize]byte
	rand.Read(secrets[:])
	dek := secrets[:keySize]
	wrapNonce := out[hdr : hdr+nonceSize]
	copy(wrapNonce, secrets[keySize:keySize+nonceSize])
	kek.Seal(out[hdr+nonceSize:hdr+nonceSize], wrapNonce, dek, out[:hdr])

	dataAEAD, err := newGCM(dek)
	clear(secrets[:keySize])
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	p := hdr + nonceSize + wrappedSize
	nonce := out[p : p+nonceSize]
	copy(nonce, secrets[keySize+nonceSize:])
	dataAEAD.Seal(out[p+nonceSize:p+nonceSize], nonce, plaintext, aad)
	return out, nil
}

// Open decrypts what Seal produced with the same aad.
func (kr *KeyRing) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != envelopeV1 {
		return nil, fmt.Errorf("opening: unknown envelope version: %w", ErrDecrypt)
	}
	n := int(sealed[1])
	hdr := 2 + n
	if n == 0 || n > maxKeyIDBytes || len(sealed) < hdr+nonceSize+wrappedSize+nonceSize+tagSize {
		return nil, fmt.Errorf("opening: envelope too short: %w", ErrDecrypt)
	}
	id := string(sealed[2:hdr])
	kr.mu.RLock()
	kek := kr.keys[id]
	kr.mu.RUnlock()
	if kek == nil {
		return nil, fmt.Errorf("opening: %w %q", ErrUnknownKey, id)
	}
	var dekBuf [keySize]byte
	dek, err := kek.Open(dekBuf[:0], sealed[hdr:hdr+nonceSize], sealed[hdr+nonceSize:hdr+nonceSize+wrappedSize], sealed[:hdr])
	if err != nil {
		return nil, fmt.Errorf("opening data key: %w", ErrDecrypt)
	}
	dataAEAD, err := newGCM(dek)
	clear(dekBuf[:])
	if err != nil {
		return nil, fmt.Errorf("opening: %w", err)
	}
	p := hdr + nonceSize + wrappedSize
	plain, err := dataAEAD.Open(nil, sealed[p:p+nonceSize], sealed[p+nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("opening payload: %w", ErrDecrypt)
	}
	return plain, nil
}
