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
//     [Config.MinRefreshInterval] (a scheduled refresh made while unknown kids
//     are being looked up counts as one; one made before does not, so a poll
//     just before a key rotation never holds back the new key); a lookup
//     never waits on the rate limit, only (for at most [Config.UnknownKIDWait])
//     on the one shared in-flight fetch;
//   - readiness: [Cache.Ready] reports whether a key set was ever loaded.
//
// The key set is fetched as an HTTP resource: a response's Cache-Control
// max-age (less its Age; no-cache and no-store count as 0) sets the next
// scheduled refresh, clamped to [MinRefreshInterval, RefreshInterval]; each
// request carries the validators of the set in force (If-None-Match,
// If-Modified-Since), and a 304 is a successful refresh of that set; a 429
// or 503 with Retry-After holds every fetch of the provider, scheduled or
// for an unknown kid, until then (capped at RefreshInterval); and each
// scheduled refresh moves by a fresh random jitter of up to 10% either way
// (never below MinRefreshInterval nor before a Retry-After), so that
// replicas started together do not fetch in step. An unknown kid's refresh
// is never delayed by the jitter.
//
// With [Config.Discovery], the key set's location comes from the provider's
// OpenID Connect discovery document ([ParseDiscovery]), refreshed with it
// under the same bounds; the document must name the configured issuer
// exactly.
//
// With [Config.CacheDir], the last good key set (and discovery document) is
// written to disk after each successful refresh, and [Cache.Run] loads it
// before its first fetch, so that a restart while the provider is down still
// verifies tokens: one file per provider, named from a SHA-256 of the URL
// (without its user info, query included) or, with discovery, of the issuer
// and the discovery URL; written to a temporary file in the same directory,
// fsynced, renamed, mode 0600; holding a JSON envelope of that source, the
// fetch time, the documents and a SHA-256 over them. A file loads only if it
// is a regular file owned by this process's user and writable by nobody
// else, for this source, its hash matches, it is younger than
// [Config.CacheMaxAge] and its documents pass the checks a fetched one does;
// anything else is ignored with a warning. The hash detects damage, not
// forgery: the directory must be writable by this process only. A stored
// set lasts until the first successful fetch, which is unconditional (the
// validators are not stored) and replaces it.
//
// A [FetchLimiter] shared by many caches bounds how many refreshes run at
// once.
//
// All network and disk I/O runs in [Cache.Run], under the caller's
// context; [New] does none. The package knows nothing of Envoy, gRPC or
// authorization rules. It carries no API stability promise.
package jwks
