package access

import (
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP as authenticator apps expect it (RFC 6238 with the defaults of
// Google Authenticator's key URI format): 6 digits every 30 seconds,
// HMAC-SHA1, a 160-bit secret. A code is accepted one step early or late
// (clock drift, typing time), once.
const (
	TOTPIssuer     = "carebridge"
	totpPeriod     = 30
	totpSkew       = 1
	totpSecretSize = 20
)

var totpOpts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// newTOTP makes a random TOTP secret (base32) and its otpauth:// URI,
// otpauth://totp/carebridge:USERNAME?secret=…&issuer=carebridge&…, which
// an authenticator app takes typed in or as a QR code.
func newTOTP(username string) (secret, uri string, err error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: TOTPIssuer, AccountName: username, Period: totpPeriod,
		SecretSize: totpSecretSize, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", fmt.Errorf("making a TOTP secret: %w", err)
	}
	return key.Secret(), key.URL(), nil
}

// totpStep is the RFC 6238 time step of t.
func totpStep(t time.Time) int64 { return t.Unix() / totpPeriod }

// matchTOTP returns the latest time step within the skew of now whose code
// is code. Every candidate is computed and compared in constant time.
func matchTOTP(secret, code string, now time.Time) (step int64, ok bool) {
	if len(code) != totpOpts.Digits.Length() {
		return 0, false
	}
	for _, c := range code {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	cur := totpStep(now)
	for s := cur - totpSkew; s <= cur+totpSkew; s++ {
		want, err := hotp.GenerateCodeCustom(secret, uint64(s), totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, ok = s, true
		}
	}
	return step, ok
}
