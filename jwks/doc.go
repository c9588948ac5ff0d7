// Package jwks owns the signing keys of each identity provider: it fetches a
// provider's JSON Web Key Set, keeps it in memory, refreshes it on a schedule
// and when a token names a key id it does not know, and answers key lookups
// for token verification.
//
// A [Cache] holds the keys of exactly one provider. It is built on
// github.com/MicahParks/jwkset (JWK parsing and in-memory storage) and
// github.com/MicahParks/keyfunc/v3 (the jwt.Keyfunc that matches a token's
// kid and alg to a JWK), and adds what those libraries leave out:
//
//   - the fetch is bounded in time ([Config.FetchTimeout]) and size
//     ([Config.MaxBodyBytes], [Config.MaxKeys]) and refuses redirects;
//   - a refresh replaces the key set only when it answered 200 with at least
//     one usable signing key, so an identity-provider outage or an empty set
//     never logs anybody out, while a key the provider withdrew stops working
//     at the next successful refresh;
//   - an unknown kid triggers at most one refresh per
//     [Config.MinRefreshInterval]; a lookup never waits on the rate limit, only
//     (for at most [Config.UnknownKIDWait]) on the one shared in-flight fetch;
//   - readiness: [Cache.Ready] reports whether a key set was ever loaded.
//
// All network I/O runs in [Cache.Run], under the caller's context. The package
// knows nothing of Envoy, gRPC or authorization rules. It carries no API
// stability promise.
package jwks
