package caddy

import _ "embed" // for //go:embed

// Template is the text of Caddyfile.tmpl, a text/template over proxyconf's
// Caddy view. Use proxyconf.RenderCaddy rather than executing it directly: it
// validates the values that are substituted.
//
//go:embed Caddyfile.tmpl
var Template string

// Config is the text of Caddyfile, Template rendered with the defaults:
// listen 127.0.0.1:8080, backend 127.0.0.1:8000, ext_authz 127.0.0.1:9192,
// claim headers X-Jwt-Sub and X-Jwt-Payload, Caddy's default storage.
//
//go:embed Caddyfile
var Config string
