package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/carebridge/carebridge/fhir"
)

// runToken is "carebridge token": a client's access token from a
// carebridge (or any SMART) server, for trying the FHIR API with curl.
func runToken(ctx context.Context, env *environment, args []string) error {
	var clientID, keyFile, fhirBase, scope, keyID string
	fs := newFlagSet(env, "token", "token --client-id ID --key FILE [flags]", `
Asks a FHIR server's token endpoint (found in BASE/.well-known/smart-configuration)
for an access token as a SMART Backend Services client: it signs a
one-time assertion with the client's private key (RS384 or ES384) and
prints the token, for use as "Authorization: Bearer TOKEN". The token lives
up to 5 minutes. For trying the API by hand; an EHR asks for its own.`,
		`  carebridge keys --ehr-key ehr-test.pem > ehr-test.jwks.json
  carebridge clients add --client-id ehr-test --jwks ehr-test.jwks.json --scope 'system/Communication.rs'
  TOKEN=$(carebridge token --client-id ehr-test --key ehr-test.pem --scope 'system/Communication.rs')
  curl -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8080/fhir/Communication?_sort=-sent&_count=5'`)
	fs.StringVar(&clientID, "client-id", "", "the client's registered id")
	fs.StringVar(&keyFile, "key", "", "the client's PEM private key (mode 0600), as carebridge keys --ehr-key makes")
	fs.StringVar(&keyID, "key-id", "", "the assertion's kid (default: the key's RFC 7638 thumbprint, as in the JWKS keys --ehr-key prints)")
	fs.StringVar(&fhirBase, "fhir-url", "http://127.0.0.1:8080/fhir", "the FHIR base URL")
	fs.StringVar(&scope, "scope", "system/Communication.rs", "the scopes to ask for, space-separated")
	if err := parseFlags(env, fs, args); err != nil {
		return helpOK(err)
	}
	if clientID == "" || keyFile == "" || fs.NArg() > 0 {
		fmt.Fprintln(env.stderr, "carebridge token: --client-id and --key are required")
		return errUsage
	}
	pemBytes, err := readSecretFile(keyFile)
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge token: --key: %v\n", err)
		return errUsage
	}
	key, err := fhir.ParsePrivateKey(pemBytes)
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge token: --key: %v\n", err)
		return errUsage
	}
	ts, err := fhir.NewBackendServices(fhir.BackendServicesConfig{ClientID: clientID, Key: key, KeyID: keyID,
		FHIRBase: strings.TrimRight(fhirBase, "/"), Scope: scope})
	if err != nil {
		fmt.Fprintf(env.stderr, "carebridge token: %v\n", err)
		return errUsage
	}
	tok, err := ts.Token(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, tok)
	return nil
}
