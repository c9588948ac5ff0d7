// Package envoy owns the bundled Envoy front-proxy configuration and the
// container demo built around it: envoy.yaml (ext_authz over gRPC),
// envoy-http.yaml (ext_authz in HTTP mode), docker-compose.yaml and the demo
// rules file extauthz-demo.yaml that the compose file mounts into the
// ext_authz server.
//
// The package contains no logic. It exposes the files' contents (see
// embed.go) so that tests and tools can use exactly the configuration that
// ships. Its tests decode the Envoy files into the go-control-plane Bootstrap
// proto, run Envoy's validation rules on them and assert the settings the
// security model depends on (fail closed, claim headers stripped before
// ext_authz, no per-route bypass), the per-route policy (envoy.yaml's /admin
// route names the policy "admin" that extauthz-demo.yaml defines) and the
// access log (the verified subject from ext_authz's dynamic metadata, never
// the token or the query string), and load the compose file with
// compose-spec/compose-go to check its wiring. There is no Envoy binary in
// CI, so these tests are the guard against a config that Envoy would reject.
//
// The package carries no stability promise.
package envoy
