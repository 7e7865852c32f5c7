package access

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

func TestPasswordHash(t *testing.T) {
	phc := hashPassword("correct horse battery staple", DefaultPasswordParams)
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not an argon2id PHC string with OWASP's parameters", phc)
	}
	p, salt, key, err := parseHash(phc)
	if err != nil || p != DefaultPasswordParams || len(salt) != 16 || len(key) != 32 {
		t.Fatalf("parseHash = %+v, %d-byte salt, %d-byte key, %v", p, len(salt), len(key), err)
	}
	if again := hashPassword("correct horse battery staple", DefaultPasswordParams); again == phc {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{"correct horse battery staple", true},
		{"correct horse battery stapl", false},
		{"Correct horse battery staple", false},
		{"", false},
	} {
		if got, err := verifyPassword(tc.password, phc); err != nil || got != tc.want {
			t.Errorf("verifyPassword(%q) = %v, %v; want %v", tc.password, got, err, tc.want)
		}
	}
	// A hash of other parameters verifies under its own.
	cheap := PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 8, KeyLen: 16}
	if ok, err := verifyPassword("pw", hashPassword("pw", cheap)); err != nil || !ok {
		t.Errorf("verifying a hash of other parameters = %v, %v", ok, err)
	}
}

func TestParseHashRefusesMalformed(t *testing.T) {
	good := hashPassword("pw", PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	for name, phc := range map[string]string{
		"empty":             "",
		"bcrypt":            "$2b$12$abcdefghijklmnopqrstuuJ9p3mAmkGxqXoDjdnuQ0DP3E8jW5Zte",
		"argon2i":           with(1, "argon2i"),
		"old version":       with(2, "v=16"),
		"parameter order":   with(3, "t=1,m=64,p=1"),
		"missing parameter": with(3, "m=64,t=1"),
		"extra parameter":   with(3, "m=64,t=1,p=1,x=2"),
		"huge memory":       with(3, "m=4194304,t=1,p=1"),
		"many passes":       with(3, "m=64,t=1000,p=1"),
		"no lanes":          with(3, "m=64,t=1,p=0"),
		"short salt":        with(4, "c2FsdA"),
		"bad key":           with(5, "!!!"),
		"extra field":       good + "$x",
	} {
		if _, err := verifyPassword("pw", phc); !errors.Is(err, errHash) {
			t.Errorf("%s: verifyPassword(%q) = %v, want errHash", name, phc, err)
		}
	}
}

func TestMatchTOTP(t *testing.T) {
	secret, uri, err := newTOTP("ann.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"otpauth://totp/carebridge:ann.md?", "secret=" + secret, "issuer=carebridge", "digits=6", "period=30", "algorithm=SHA1"} {
		if !strings.Contains(uri, want) {
			t.Errorf("URI %q lacks %q", uri, want)
		}
	}
	if len(secret) != 32 {
		t.Errorf("secret %q: want 32 base32 characters (160 bits)", secret)
	}
	now := time.Date(2026, 11, 3, 14, 30, 10, 0, time.UTC)
	cur := totpStep(now)
	for _, tc := range []struct {
		name string
		at   time.Duration // when the code was made, from now
		step int64
		ok   bool
	}{
		{"now", 0, cur, true},
		{"one step early", -30 * time.Second, cur - 1, true},
		{"one step late", 30 * time.Second, cur + 1, true},
		{"two steps early", -60 * time.Second, 0, false},
		{"two steps late", 60 * time.Second, 0, false},
	} {
		code, err := totp.GenerateCode(secret, now.Add(tc.at))
		if err != nil {
			t.Fatal(err)
		}
		step, ok := matchTOTP(secret, code, now)
		if ok != tc.ok || step != tc.step {
			t.Errorf("%s: matchTOTP = %d, %v; want %d, %v", tc.name, step, ok, tc.step, tc.ok)
		}
	}
	code, _ := totp.GenerateCode(secret, now)
	for _, bad := range []string{"", code[:5], code + "0", " " + code[1:], "12345a", "１２３４５６"} {
		if _, ok := matchTOTP(secret, bad, now); ok && bad != code {
			t.Errorf("matchTOTP accepted %q", bad)
		}
	}
}
