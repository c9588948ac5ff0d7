package envoy

import _ "embed" // for //go:embed

// GRPCConfig is the text of envoy.yaml: Envoy listening on 0.0.0.0:8080 in
// front of backend:8000, calling the ext_authz server at extauthz:9191 over
// gRPC (ext_authz v3), failing closed. It is a string so that callers cannot
// modify the shared copy.
//
//go:embed envoy.yaml
var GRPCConfig string

// HTTPConfig is the text of envoy-http.yaml: the same front proxy with
// ext_authz in HTTP mode, checking against extauthz:9192 and copying the
// x-jwt-sub and x-jwt-payload claim headers upstream.
//
//go:embed envoy-http.yaml
var HTTPConfig string

// DemoAuthzConfig is the text of extauthz-demo.yaml, the ext_authz server's
// config file (--config) used by docker-compose.yaml: /public is public,
// /admin needs the admin scope, everything else needs a valid token; the
// named policy "admin", which envoy.yaml's /admin route chooses, needs the
// admin scope too. The identity provider is configured through environment
// variables in the compose file.
//
//go:embed extauthz-demo.yaml
var DemoAuthzConfig string

// ComposeFile is the text of docker-compose.yaml, the container demo. Its
// relative paths (./envoy.yaml, the build context ..) are relative to this
// directory.
//
//go:embed docker-compose.yaml
var ComposeFile string
