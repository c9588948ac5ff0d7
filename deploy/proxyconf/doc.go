// Package proxyconf renders the bundled nginx and Caddy configurations
// (deploy/nginx/nginx.conf.tmpl, deploy/caddy/Caddyfile.tmpl) for given
// listen, backend and ext_authz addresses, claim headers and state
// directories. The committed deploy/nginx/nginx.conf and deploy/caddy/Caddyfile
// are the renderings of the zero values, for people running the proxies by
// hand; tests render the templates for loopback ports picked at run time and
// start real nginx and Caddy processes with NginxArgs, CaddyArgs and
// CaddyEnv.
//
// Every substituted value is checked against a narrow character set before
// rendering, so a value cannot add directives to the generated file.
//
// The package carries no stability promise.
package proxyconf
