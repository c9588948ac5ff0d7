// Package nginx holds the bundled nginx configuration for running nginx in
// front of a backend with the ext_authz server as its auth_request
// (forward-auth) endpoint: nginx.conf.tmpl, a Go text/template, and
// nginx.conf, its rendering with the default addresses.
//
// # Claim headers must be listed
//
// Core nginx cannot delete request headers by name prefix. The config
// protects exactly the claim headers it was rendered with: each gets an
// auth_request_set/proxy_set_header pair that overwrites a client-sent
// header of that name with the check's value, or removes it when the check
// returns none. Any other header a client sends, X-Jwt-Email included,
// reaches the backend unchanged. So the list must hold every header of the
// ext_authz server's claim_headers, and change with it: when a server gets
// "x-jwt-email: email" and nginx.conf is not rendered again, the backend
// gets no verified X-Jwt-Email but does get any X-Jwt-Email a client made
// up. Pass the server's list as proxyconf.Nginx.ClaimHeaders. The committed
// nginx.conf lists the server's defaults, X-Jwt-Sub and X-Jwt-Payload; a
// test in proxyconf keeps it in step with authz.DefaultClaimHeaders and
// the compose demo's config.
//
// Where the third-party headers-more module is installed,
// proxyconf.Nginx.HeadersMoreModule makes the config delete every
// client-sent X-Jwt-* header as well (more_clear_input_headers accepts a
// trailing "*"), which is what the Caddyfile does with core Caddy. It is
// not the default because nginx.org's and most distributions' nginx do not
// ship the module. The other generic options were rejected:
// proxy_pass_request_headers off with an allow-list of forwarded headers
// would drop every header an application needs that the list forgot, and
// a map over $http_* variables names headers one by one, like
// proxy_set_header.
//
// # The bearer token and the original request
//
// The check gets the original method, URI and host (X-Original-Method,
// X-Original-URI, X-Original-Host), which the server's methods and hosts
// rules need. The Authorization header reaches the backend only when the
// check allows it: the server names authorization in its 200 answer's
// X-Envoy-Auth-Headers-To-Remove unless the token's provider has
// forward_token: true, and a map turns that list into the Authorization
// header proxy_pass sends (none, or the client's).
//
// The package has no logic; render the template with
// github.com/extauthz/extauthz/deploy/proxyconf. It carries no stability
// promise.
package nginx
