// Package server owns the running process around the decision: it builds one
// jwks.Cache per provider and the authz.Server from a config.Config, serves
// the Envoy ext_authz gRPC service with gRPC health, the HTTP forward-auth
// check, and the admin endpoints (/healthz, /readyz, Prometheus /metrics),
// runs the key refreshes, and shuts everything down gracefully when its
// context ends.
//
// cmd/extauthz and cmd/demo are thin wrappers around [Server.Run]. The
// package carries no API stability promise.
package server
