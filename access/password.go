package access

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are the argon2id parameters of a password hash (RFC
// 9106): memory in KiB, passes, lanes, and the salt and key lengths in
// bytes.
type PasswordParams struct {
	Memory  uint32
	Time    uint32
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultPasswordParams are OWASP's first recommended argon2id
// configuration (Password Storage Cheat Sheet): 19 MiB, 2 passes, one
// lane, a 16-byte salt and a 32-byte key.
var DefaultPasswordParams = PasswordParams{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on the parameters a stored hash may name, so that a corrupt or
// planted hash cannot make a login take gigabytes or minutes.
const (
	maxHashMemory  = 1 << 20 // KiB: 1 GiB
	maxHashTime    = 16
	maxPasswordLen = 1024
)

// errHash is wrapped by the errors of a PHC string that cannot be read.
var errHash = errors.New("not an argon2id PHC string")

var b64 = base64.RawStdEncoding

// hashPassword returns the PHC string of password under p, with a fresh
// random salt: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>.
func hashPassword(password string, p PasswordParams) string {
	salt := make([]byte, p.SaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// parseHash reads a PHC string made by hashPassword.
func parseHash(phc string) (p PasswordParams, salt, key []byte, err error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: want $argon2id$v=19$…", errHash)
	}
	fields := strings.Split(parts[3], ",")
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		var v string
		ok := len(fields) == 3
		if ok {
			v, ok = strings.CutPrefix(fields[i], name)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return p, nil, nil, fmt.Errorf("%w: parameters %q, want m=…,t=…,p=…", errHash, parts[3])
		}
		vals[i] = n
	}
	m, t, threads := vals[0], vals[1], vals[2]
	if m == 0 || m > maxHashMemory || t == 0 || t > maxHashTime || threads == 0 || threads > 255 || m < 8*threads {
		return p, nil, nil, fmt.Errorf("%w: parameters %q out of bounds", errHash, parts[3])
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, fmt.Errorf("%w: bad salt", errHash)
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 128 {
		return p, nil, nil, fmt.Errorf("%w: bad key", errHash)
	}
	p = PasswordParams{Memory: uint32(m), Time: uint32(t), Threads: uint8(threads), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	return p, salt, key, nil
}

// verifyPassword reports whether password hashes to phc, comparing in
// constant time.
func verifyPassword(password, phc string) (bool, error) {
	p, salt, key, err := parseHash(phc)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}
