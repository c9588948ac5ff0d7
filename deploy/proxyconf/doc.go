// Package proxyconf renders the bundled nginx and Caddy configurations
// (deploy/nginx/nginx.conf.tmpl, deploy/caddy/Caddyfile.tmpl) for given
// listen, backend and ext_authz addresses, claim headers and state
// directories. The committed deploy/nginx/nginx.conf and deploy/caddy/Caddyfile
// are the renderings of the zero values, for people running the proxies by
// hand; tests render the templates for loopback ports picked at run time and
// start real nginx and Caddy processes with NginxArgs, CaddyArgs and
// CaddyEnv.
//
// Both configs protect exactly the claim headers they are rendered with
// (Nginx.ClaimHeaders, Caddy.ClaimHeaders); render them with the ext_authz
// server's claim_headers and again whenever those change. Core nginx cannot
// delete headers by prefix, so an unlisted claim header can be forged
// through nginx unless Nginx.HeadersMoreModule is set (see
// github.com/extauthz/extauthz/deploy/nginx).
//
// Both send the check the original method, URI and host, and drop the
// Authorization header before the backend when the check's
// X-Envoy-Auth-Headers-To-Remove names it (the server's default unless the
// token's provider has forward_token: true).
//
// Every substituted value is checked against a narrow character set before
// rendering, so a value cannot add directives to the generated file.
//
// The package carries no stability promise.
package proxyconf
