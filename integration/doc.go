// Package integration owns the end-to-end tests of the project: the real
// binaries (cmd/extauthz, cmd/demo-idp, cmd/demo-backend, cmd/demo-client),
// built once per test run, run as separate processes on 127.0.0.1 and
// driven through the guide's flow behind three kinds of front: the Envoy
// stand-in (package standin, in the test process, talking gRPC to the
// extauthz process), a real nginx and a real Caddy (rendered from
// deploy/proxyconf, talking to the HTTP forward-auth port).
//
// The package has no code of its own; everything is in package
// integration_test, so that `go test ./...` runs it with nothing installed but
// Go. nginx and Caddy are looked up on PATH: where one is missing its front is
// skipped with a message, unless EXTAUTHZ_REQUIRE_PEERS=1 (set by .ci/run),
// which turns a missing peer into a failure. `go test -short` skips the
// package.
//
// What the tests cover, through every front: a token from the demo issuer;
// /public without a token; /protected with and without one; a bad signature;
// the admin scope; a token that really expires at the issuer; client-sent
// claim headers (x-jwt-sub in several spellings, x_jwt_sub, a forged
// x-jwt-payload, X-Original-URI) never reaching the backend, and a
// Connection header never stripping the verified ones; key rotation at
// the issuer while traffic flows (no request may fail); the issuer down
// (cached keys keep working, /readyz stays 200); and the ext_authz server
// killed (every front fails closed and the backend sees nothing). Issue 11's
// rules too: method and host rules (every front passes the original method
// and host, never a client's claim of them), the bearer token kept from the
// backend unless the provider has forward_token: true (a second stack), named
// policies chosen by the stand-in's routes (the "envoy-yaml" stand-in takes
// its routes and access log format from envoy/envoy.yaml), and the subject in
// that access log, from ext_authz's dynamic metadata. Sender-constrained
// tokens (sender_test.go): DPoP-bound and certificate-bound tokens from the
// demo issuer (its TLS listener for the latter) behind the stand-in, over
// TLS with include_peer_certificate too, with fresh, replayed and wrong
// proofs, server nonces, a provider requiring bound tokens, the real demo
// client, and DPoP through nginx and Caddy.
//
// Between the fronts and the demo backend sits a recording reverse proxy in
// the test process (the tap), so a test can tell exactly which requests, with
// which headers, reached the backend.
//
// When the tests are built with -race, the binaries are built with -race
// too, and a data race reported by any of them fails the test that ran it.
package integration
