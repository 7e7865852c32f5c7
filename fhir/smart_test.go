package fhir_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/carebridge/carebridge/fhir"
	"github.com/carebridge/carebridge/fhir/fhirtest"
)

func auditEvent(id string) fhir.Serialized {
	return fhir.Serialized{Resource: fhir.Resource{Type: "AuditEvent", ID: id}, JSON: []byte(`{"resourceType":"AuditEvent","id":"` + id + `",` +
		`"type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110100"},"recorded":"2026-12-01T06:00:00Z",` +
		`"agent":[{"requestor":true,"who":{"display":"carebridge"}}],"source":{"observer":{"display":"carebridge"}}}`)}
}

func TestBackendServicesAuthorisesExports(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"RS384": rsaKey, "ES384": ecKey} {
		t.Run(name, func(t *testing.T) {
			ehr := fhirtest.NewEHR(t)
			jwks, err := fhir.PublicJWKS(key, "")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(jwks), `"d"`) {
				t.Fatalf("the JWKS holds the private key:\n%s", jwks)
			}
			if err := ehr.RequireSMART("carebridge-test", jwks, 4*time.Second); err != nil {
				t.Fatal(err)
			}
			// No token URL: it is discovered from the FHIR base.
			src, err := fhir.NewBackendServices(fhir.BackendServicesConfig{ClientID: "carebridge-test", Key: key, FHIRBase: ehr.URL})
			if err != nil {
				t.Fatal(err)
			}
			c, err := fhir.NewClient(ehr.URL, nil, src)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for i := range 3 {
				if err := c.Put(ctx, auditEvent("a"+string(rune('0'+i)))); err != nil {
					t.Fatalf("PUT %d with a SMART token: %v", i, err)
				}
			}
			if issued, _ := ehr.TokenStats(); issued != 1 {
				t.Errorf("%d tokens asked for three requests, want one reused", issued)
			}
			// Half way through a short life (a minute before a longer one
			// ends), a token is renewed.
			time.Sleep(2100 * time.Millisecond)
			if err := c.Put(ctx, auditEvent("b")); err != nil {
				t.Fatal(err)
			}
			if issued, _ := ehr.TokenStats(); issued != 2 {
				t.Errorf("%d tokens issued, want a second one as the first neared expiry", issued)
			}
			// A token the EHR stops taking gets one 401, then a new token.
			ehr.RevokeTokens()
			var se *fhir.StatusError
			if err := c.Put(ctx, auditEvent("c")); !errors.As(err, &se) || se.Status != 401 {
				t.Fatalf("PUT with a revoked token: %v, want 401", err)
			}
			if err := c.Put(ctx, auditEvent("c")); err != nil {
				t.Fatalf("PUT after a 401: %v, want a new token", err)
			}
			if issued, refused := ehr.TokenStats(); issued != 3 || refused != 0 {
				t.Errorf("tokens issued %d, refused %d; want 3 and 0", issued, refused)
			}
			if len(ehr.Held("AuditEvent")) != 5 {
				t.Errorf("the EHR holds %d AuditEvents, want 5", len(ehr.Held("AuditEvent")))
			}
		})
	}
}

func TestBackendServicesRefusals(t *testing.T) {
	registered, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ehr := fhirtest.NewEHR(t)
	jwks, _ := fhir.PublicJWKS(registered, "k1")
	if err := ehr.RequireSMART("carebridge-test", jwks, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, client, kid string
		key               crypto.Signer
	}{
		{"unregistered key", "carebridge-test", "k1", other},
		{"unknown kid", "carebridge-test", "k2", registered},
		{"wrong client", "someone-else", "k1", registered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := fhir.NewBackendServices(fhir.BackendServicesConfig{ClientID: tc.client, Key: tc.key, KeyID: tc.kid, FHIRBase: ehr.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(context.Background())
			var te *fhir.TokenError
			if !errors.As(err, &te) || te.Status != 401 || te.Code != "invalid_client" {
				t.Fatalf("Token = %v, want a 401 invalid_client TokenError", err)
			}
		})
	}
}

func TestBackendServicesChecksItsConfiguration(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	good, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name string
		cfg  fhir.BackendServicesConfig
		want string
	}{
		{"no client id", fhir.BackendServicesConfig{Key: good, FHIRBase: "https://ehr.example.org/fhir"}, "no client id"},
		{"small RSA", fhir.BackendServicesConfig{ClientID: "c", Key: small, FHIRBase: "https://ehr.example.org/fhir"}, "1024 bits"},
		{"P-256", fhir.BackendServicesConfig{ClientID: "c", Key: p256, FHIRBase: "https://ehr.example.org/fhir"}, "P-384"},
		{"Ed25519", fhir.BackendServicesConfig{ClientID: "c", Key: ed, FHIRBase: "https://ehr.example.org/fhir"}, "RS384"},
		{"nowhere to ask", fhir.BackendServicesConfig{ClientID: "c", Key: good}, "neither a token URL"},
		{"token URL in clear", fhir.BackendServicesConfig{ClientID: "c", Key: good, TokenURL: "http://auth.example.org/token"}, "loopback only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fhir.NewBackendServices(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestParsePrivateKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub, _ := x509.MarshalPKIXPublicKey(ec.Public())
	for _, tc := range []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"PKCS #8 EC", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), true},
		{"SEC 1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), true},
		{"PKCS #1 RSA", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), true},
		{"a public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), false},
		{"not PEM", []byte("hello"), false},
		{"corrupt", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fhir.ParsePrivateKey(tc.pem)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
