// Package nginx holds the bundled nginx configuration for running nginx in
// front of a backend with the ext_authz server as its auth_request
// (forward-auth) endpoint: nginx.conf.tmpl, a Go text/template, and
// nginx.conf, its rendering with the default addresses.
//
// The package has no logic; render the template with
// github.com/extauthz/extauthz/deploy/proxyconf. It carries no stability
// promise.
package nginx
