// Package dpop verifies DPoP proofs (RFC 9449): the JWT a client signs with
// its own key for each request, binding an access token to that key. It owns
// the proof's checks (§4.3: typ, an asymmetric alg from an allow-list, a
// public jwk, the signature, htm, htu, iat within a window, ath, jti never
// seen within the window), the JWK SHA-256 thumbprint the token's cnf.jkt
// names (RFC 7638), the replay cache, and stateless server nonces (§8).
//
// It knows nothing of access tokens beyond their bytes (for ath) and their
// cnf.jkt, which the caller compares with [Proof.JKT].
package dpop
