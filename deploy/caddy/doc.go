// Package caddy holds the bundled Caddy configuration for running Caddy in
// front of a backend with the ext_authz server as its forward_auth endpoint:
// Caddyfile.tmpl, a Go text/template, and Caddyfile, its rendering with the
// default addresses.
//
// The package has no logic; render the template with
// github.com/extauthz/extauthz/deploy/proxyconf. It carries no stability
// promise.
package caddy
