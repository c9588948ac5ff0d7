// Package caddy holds the bundled Caddy configuration for running Caddy in
// front of a backend with the ext_authz server as its forward_auth endpoint:
// Caddyfile.tmpl, a Go text/template, and Caddyfile, its rendering with the
// default addresses.
//
// The config deletes every client-sent X-Jwt-* header (and each configured
// claim header outside that prefix) before the check, and copies only the
// claim headers it was rendered with from the check's answer; pass the
// server's claim_headers as proxyconf.Caddy.ClaimHeaders. It also cuts the
// options naming claim headers out of the client's Connection header:
// reverse_proxy removes the headers Connection names when it forwards
// (RFC 9110, section 7.6.1), which would otherwise take the verified claim
// headers off an allowed request. The other options keep their meaning, so
// WebSocket and other upgrades still work.
//
// The check gets the original method, URI and host (X-Forwarded-Method,
// X-Forwarded-Uri, X-Forwarded-Host, overwriting the client's), which the
// server's methods and hosts rules need. On a 2xx answer whose
// X-Envoy-Auth-Headers-To-Remove names authorization (the server's default,
// unless the token's provider has forward_token: true), the request goes to
// the backend without its Authorization header.
//
// The package has no logic; render the template with
// github.com/extauthz/extauthz/deploy/proxyconf. It carries no stability
// promise.
package caddy
