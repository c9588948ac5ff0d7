// Package idp is a small local OAuth 2.0 issuer for demos and tests. It owns
// the client credentials token endpoint, the signing keys and their rotation,
// the JWKS document and the discovery document; nothing else.
//
// It stands in for the hosted identity provider of the guide the project
// started from (AuthAction), so that the whole flow runs on a laptop with no
// account anywhere. It is not a production identity provider: clients and
// secrets come from plain configuration (by default the well-known demo
// credentials of [DemoClients]), keys live only in memory and are lost on
// restart, and nothing is rate limited.
//
// Routes served by [Server.Handler] (the public listener):
//
//	POST /oauth2/m2m/token                 client credentials grant (RFC 6749 §4.4), with
//	                                       DPoP (RFC 9449) and certificate-bound (RFC 8705) tokens
//	GET  /.well-known/jwks.json            public signing keys (RFC 7517)
//	GET  /.well-known/openid-configuration discovery (RFC 8414 / OpenID Discovery subset,
//	                                       RFC 9449 §5.1, RFC 8705 §3.3 and §5)
//
// The same handler may also be served over TLS with client certificates
// requested (cmd/demo-idp --tls-addr); [Config.MTLSBaseURL] tells the issuer
// where, so that discovery advertises it.
//
// Routes served by [Server.AdminHandler] (a separate listener, loopback by
// default, because anyone who can rotate keys can disturb every relying
// party):
//
//	POST /rotate  publish a new key, sign with it after the publish delay
//	GET  /keys    list the published keys and their state (no key material)
//
// The token endpoint accepts the guide's JSON body as well as the RFC 6749
// form encoding, with client credentials in the body (client_secret_post) or
// in HTTP Basic auth (client_secret_basic, RFC 6749 §2.3.1). Errors follow
// RFC 6749 §5.2. An audience the server or the client does not allow is
// refused with invalid_target (RFC 8707 §2), because that is the code the
// RFC defines for "the requested resource is invalid, missing, unknown, or
// malformed"; invalid_request would hide which part of the request was wrong.
//
// Sender-constrained tokens: without a DPoP header or a client certificate
// the token is a plain bearer token, exactly as in the guide. A request with
// one DPoP header holding a valid proof (RFC 9449 §4.3: for POST to the
// token endpoint as discovery publishes it, never as the Host header names
// it, without ath, and never seen before) gets token_type DPoP and a token
// whose cnf.jkt is the proof key's thumbprint (§5, §6.1); any other proof,
// a replayed one, or two DPoP headers get 400 invalid_dpop_proof. A request
// over TLS with a client certificate gets a token whose cnf["x5t#S256"] is
// the certificate's SHA-256 thumbprint (RFC 8705 §3.1), still Bearer; the
// client still authenticates with its secret, and the certificate may be
// self-signed, since the handshake proves the client holds its key. With
// both, the token is bound to both. Proofs are checked last, after the
// client and what it asked for, so that only a request that gets a token
// spends its proof and unauthenticated callers cannot fill the replay cache
// (in memory, as the keys).
//
// Key rotation: see [Server.Rotate]. Key state is evaluated lazily against
// [Config.Now] on every request, so the package starts no goroutines and has
// no Run method: a retired key disappears from the JWKS the first time the
// document is served after its last token has expired.
//
// The package is importable so that cmd/demo can run the issuer in-process
// and tests can mint tokens with the real issuer key ([Server.MintForTest]).
// It carries no API stability promise.
package idp
