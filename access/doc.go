// Package access decides who may do what: the scopes of SMART App Launch
// 2.x (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html),
// the access tokens carebridge issues to EHR systems under SMART Backend
// Services (https://hl7.org/fhir/smart-app-launch/backend-services.html),
// and their verification on every request.
//
// An EHR system is registered with its public keys (a JWKS, from a file or
// a URL) and the scopes it may be granted. It asks POST /auth/token for a
// token with a client assertion: a JWT it signs with RS384 or ES384, used
// once (its jti is remembered until it expires). The token carebridge
// issues is a short-lived JWT signed with an Ed25519 key derived from the
// key ring, so that every instance sharing the ring verifies it without a
// database round trip.
package access
