// Package access decides who may do what: the scopes of SMART App Launch
// 2.x (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html),
// the access tokens carebridge issues to EHR systems under SMART Backend
// Services (https://hl7.org/fhir/smart-app-launch/backend-services.html),
// the sign-in of clinicians and administrators, and the verification of
// both kinds of bearer token on every request.
//
// An EHR system is registered with its public keys (a JWKS, from a file or
// a URL) and the scopes it may be granted. It asks POST /auth/token for a
// token with a client assertion: a JWT it signs with RS384 or ES384, used
// once (its jti is remembered until it expires). The token carebridge
// issues is a short-lived JWT signed with an Ed25519 key derived from the
// key ring, so that every instance sharing the ring verifies it without a
// database round trip.
//
// A person (Users) has a username, a Role whose Scopes are in the "user"
// context, a password hashed with argon2id (RFC 9106, OWASP's parameters:
// 19 MiB, 2 passes, 1 lane) and a TOTP second factor (RFC 6238: 6 digits,
// 30 seconds, SHA-1, as authenticator apps expect; each code accepted
// once). An administrator adds them with a one-time password, which they
// replace at their first login. Ten failed logins in a row lock the
// account for 15 minutes. A login starts a session whose token is 32
// random bytes (the store keeps only its SHA-256); the session ends after
// 15 minutes without use, 12 hours after sign-in, at logout, or when the
// user is disabled or their second factor reset.
package access
