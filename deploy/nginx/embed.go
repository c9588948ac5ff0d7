package nginx

import _ "embed" // for //go:embed

// Template is the text of nginx.conf.tmpl, a text/template over
// proxyconf's nginx view. Use proxyconf.RenderNginx rather than executing it
// directly: it validates the values that are substituted.
//
//go:embed nginx.conf.tmpl
var Template string

// Config is the text of nginx.conf, Template rendered with the defaults:
// listen 127.0.0.1:8080, backend 127.0.0.1:8000, ext_authz 127.0.0.1:9192,
// claim headers X-Jwt-Sub and X-Jwt-Payload, state relative to nginx's -p
// prefix.
//
//go:embed nginx.conf
var Config string
