// Package authz owns the authorization decision: it takes the bearer token
// and path of one HTTP request, verifies the token against the key set of the
// provider that issued it, applies the path rules, and answers allow (with the
// claim headers the upstream should see) or deny (with an RFC 6750 challenge).
//
// The decision ([Server.Decide]) knows nothing of transports. Two adapters
// expose it: [Server.Check] implements Envoy's ext_authz v3 gRPC Authorization
// service, and [Server.ServeHTTP] is a forward-auth endpoint for nginx
// auth_request, Caddy forward_auth, Traefik ForwardAuth and Envoy's HTTP
// ext_authz mode.
//
// Security properties the package keeps, each with tests:
//   - fail closed: every error, panic or missing key set is a denial;
//   - a token is verified only with the keys of the provider its (unverified)
//     iss names, only with that provider's allowed algorithms (never none or
//     HMAC), and must carry exp, the issuer and one accepted audience;
//   - paths are normalised before rule matching, and a path whose readings
//     differ (encoded slashes, dot segments, parameters, backslashes) gets
//     the strictest rules of all its readings;
//   - a client can never get its own value of a claim header to the upstream:
//     a header that is set overwrites, one that is not set is removed, and
//     look-alike spellings (x_jwt_sub for x-jwt-sub) are removed too;
//   - a sender-constrained token (cnf.jkt, cnf["x5t#S256"]) is accepted only
//     with a fresh DPoP proof by that key, or with that client certificate,
//     on every request, cached or not; never as a bearer token;
//   - tokens are never logged.
//
// The package carries no API stability promise.
package authz
