package access

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	maxJWKSBytes  = 64 << 10
	jwksCacheLife = 5 * time.Minute
	jwksMinFetch  = 30 * time.Second
)

// ParseJWKS reads a client's key set: JSON with at least one public key
// that can sign RS384 (RSA, 2048 bits or more) or ES384 (EC P-384). A set
// holding a private key is refused: it is a secret, not a registration.
func ParseJWKS(b []byte) (StaticKeys, error) {
	if len(b) > maxJWKSBytes {
		return StaticKeys{}, fmt.Errorf("the key set is larger than %d bytes", maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return StaticKeys{}, fmt.Errorf("the key set is not a JWKS: %w", err)
	}
	usable := 0
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return StaticKeys{}, fmt.Errorf("key %d of the set (kid %q) is a private key; register the public keys only", i, k.KeyID)
		}
		switch pub := k.Key.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() >= 2048 {
				usable++
			}
		case *ecdsa.PublicKey:
			if pub.Curve == elliptic.P384() {
				usable++
			}
		}
	}
	if usable == 0 {
		return StaticKeys{}, errors.New("the key set has no RSA key of 2048 bits or more and no EC P-384 key (SMART backend services sign with RS384 or ES384)")
	}
	return StaticKeys(set), nil
}

// CheckKeysURL accepts an https URL, or http to a loopback address.
func CheckKeysURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not an https URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q is not an https URL (http is accepted on loopback only)", raw)
}

// KeyCache fetches key sets published at URLs and keeps each for five
// minutes; an assertion that names an unknown key fetches again, at most
// every 30 seconds per URL. It is safe for concurrent use.
type KeyCache struct {
	HTTP *http.Client // http.Client with a 5-second timeout when nil
	Now  func() time.Time

	mu   sync.Mutex
	sets map[string]*cachedSet
}

type cachedSet struct {
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	fetched time.Time
	ok      bool
}

// For returns the KeySource of the key set at rawURL.
func (c *KeyCache) For(rawURL string) KeySource { return urlKeys{c: c, url: rawURL} }

type urlKeys struct {
	c   *KeyCache
	url string
}

func (u urlKeys) KeySet(ctx context.Context, refresh bool) (jose.JSONWebKeySet, error) {
	return u.c.get(ctx, u.url, refresh)
}

func (c *KeyCache) get(ctx context.Context, rawURL string, refresh bool) (jose.JSONWebKeySet, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	c.mu.Lock()
	if c.sets == nil {
		c.sets = map[string]*cachedSet{}
	}
	cs, ok := c.sets[rawURL]
	if !ok {
		cs = &cachedSet{}
		c.sets[rawURL] = cs
	}
	c.mu.Unlock()

	cs.mu.Lock()
	defer cs.mu.Unlock()
	age := now().Sub(cs.fetched)
	if cs.ok && age < jwksCacheLife && (!refresh || age < jwksMinFetch) {
		return cs.set, nil
	}
	set, err := c.fetch(ctx, rawURL)
	if err != nil {
		if cs.ok && age < jwksCacheLife {
			return cs.set, nil
		}
		return jose.JSONWebKeySet{}, err
	}
	cs.set, cs.fetched, cs.ok = set, now(), true
	return set, nil
}

func (c *KeyCache) fetch(ctx context.Context, rawURL string) (jose.JSONWebKeySet, error) {
	if err := CheckKeysURL(rawURL); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("fetching the key set: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("fetching the key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jose.JSONWebKeySet{}, fmt.Errorf("fetching the key set: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("fetching the key set: %w", err)
	}
	set, err := ParseJWKS(b)
	if err != nil {
		return jose.JSONWebKeySet{}, fmt.Errorf("fetching the key set: %w", err)
	}
	return jose.JSONWebKeySet(set), nil
}
