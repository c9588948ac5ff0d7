// Command bench is the project's load harness: one command that builds the
// ext_authz server from this repository, starts it on loopback, drives it
// over real gRPC with ghz and over HTTP with wrk, does the same runs against
// the peers, and writes the table of BENCHMARKS.md.
//
//	go run ./bench --install   # once: build ghz and the Go peers into the tools dir
//	go run ./bench             # the full comparison; rewrites BENCHMARKS.md
//	go run ./bench --quick     # smoke run: our server (with and without the policy config) and the do-nothing server only
//
// The targets, each started fresh for each measured run and stopped after it:
//
//   - extauthz, built with `go build ./cmd/extauthz`, run with its defaults
//     plus the loopback addresses, issuer, audience and JWKS URL;
//   - extauthz-policy, the same with --config naming a 50-rule policy file
//     (methods, hosts, claims, CEL conditions, deny; bench/policy.go) that
//     the harness writes into its run directory, gRPC only;
//   - (a) bench/nop, a do-nothing ext_authz server on the same grpc-go and
//     net/http (always OK): the transport's own limit;
//   - (b) the seed guide's Flask app (bench/flaskapp, its two files as the guide
//     writes them), run with /usr/bin/python3 app.py: the Flask development
//     server, fetching the JWKS over TLS from https://idp.bench.test;
//   - (c) OPA-Envoy (opa-envoy-plugin v1.0.0-envoy) with a Rego policy that
//     calls io.jwt.decode_verify on the same tokens;
//   - (d) Ory Oathkeeper v0.40.9 (/decisions) and oauth2-proxy v7.15.6
//     (/oauth2/auth with --skip-jwt-bearer-tokens), HTTP only.
//
// After the ghz and wrk runs, three more steps, all in --quick too (with
// fewer calls):
//
//   - DPoP (RFC 9449): extauthz with an access token bound by cnf.jkt to an
//     ES256 key, each call carrying a proof of its own (new jti, iat now),
//     which ghz cannot sign per call. The harness signs the proofs just
//     before the target starts and bench/pace sends them in its closed loop
//     (-c workers, -dpop-requests calls, at most 40s: a proof is accepted
//     for 60s). The same driver runs extauthz with the hit token as a bearer
//     token, and the do-nothing server with the same DPoP requests, for the
//     ratios. A probe before and after each run shows the proof enforced
//     (a replayed proof, a missing one, the bound token as a bearer token,
//     a proof for another URI are denied), and any call not allowed fails
//     the run.
//   - The replay cache's memory, in the harness's own process: -replay-fill
//     proofs verified by a dpop.Verifier over a dpop.ReplayCache made with
//     the server's defaults, the heap measured as it fills.
//   - Many providers: extauthz started with a generated --config of
//     -providers providers (own issuer, JWKS URL on a key server in the
//     harness), against one provider: the time to /readyz 200 and the RSS
//     then; and once with each key set answering after 50ms, which shows the
//     server's bound of 16 concurrent fetches.
//
// Every target sees the same RSA-2048 key, JWKS and RS256 tokens (issuer
// https://idp.bench.test, audience https://api.example.com). A "hit" run
// repeats one token, a "miss" run sends each of --tokens distinct tokens
// once. The key and the distinct tokens are cached in the tools directory
// (valid 30 days), since minting 100k RS256 tokens takes minutes on 2 cores.
//
// The Flask app is run unmodified: its code builds https://<domain>/ for the
// JWKS and the issuer, so the harness serves the JWKS over TLS with a
// certificate for idp.bench.test from a throw-away CA, points httpx at that
// CA with SSL_CERT_FILE, and at a CONNECT proxy on 127.0.0.1 with
// HTTPS_PROXY. The proxy tunnels idp.bench.test:443, and nothing else, to
// the harness's TLS server, so nothing leaves the machine.
//
// Peers that are not installed are skipped (and named in the report) unless
// --require-peers is given. Peers and load generators are built outside the
// repository, in --tools-dir (default $XDG_CACHE_HOME/extauthz-bench).
package main
