package authz

import (
	"context"
	"crypto"
	"crypto/sha256"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// versionedKeys is what a KeySource offers so that verification results can
// be cached: a version that changes whenever the key set is replaced, and a
// lookup of a kid in the current set. *jwks.Cache implements it. A KeySource
// without it is never cached.
type versionedKeys interface {
	Version() uint64
	PublicKey(ctx context.Context, kid string) (crypto.PublicKey, bool)
}

// tokenCache remembers verification results by the SHA-256 of the token, so
// that a token seen again costs a hash and a lookup instead of an RSA
// verification. Only the signature and claim verification is cached: rules
// and scopes are evaluated on every request.
//
// An entry is used only inside the token's validity window (nbf and iat
// minus the skew, exp plus the skew), and only while the key that verified it
// is still in its provider's key set: when the set is replaced, the kid is
// looked up again and the entry dropped unless the very same key is still
// listed under it (entries of tokens without a kid, and failures, are
// dropped on every replacement).
//
// Failures that cost an RSA verification and cannot turn into a success by
// themselves (bad signature under the same key set, expired, wrong audience,
// invalid claims, disallowed algorithm) are kept in a separate, smaller
// cache, so that a client retrying an expired token, or a flood of one forged
// token, costs a hash; a flood of distinct tokens cannot evict the positive
// entries. A token not valid yet is kept there too, until its nbf or iat
// minus the skew. Unknown kids and missing key sets are never cached.
//
// The SHA-256 key is collision resistant, so one token can never be answered
// with another's result.
type tokenCache struct {
	pos, neg *otter.Cache[[sha256.Size]byte, *cacheEntry]
	size     int
}

// cacheCounters count one Server's lookups, so that a cache taken over by
// the next Server is not counted twice.
type cacheCounters struct {
	hits, misses, negHits atomic.Uint64
}

// cacheEntry is an immutable cached result.
type cacheEntry struct {
	v          verified
	keys       versionedKeys // nil for results that do not depend on the key set
	keyVersion uint64
	key        crypto.PublicKey // the key that verified a success
	notBefore  time.Time        // zero: no lower bound
	expires    time.Time        // zero: no upper bound (negative entries)
}

// CacheStats counts the token cache's lookups.
type CacheStats struct {
	Hits         uint64 // verified tokens answered from the cache
	NegativeHits uint64 // failed tokens answered from the cache
	Misses       uint64 // tokens verified (signature checked)
	Entries      int    // results held now, positive and negative
}

// newTokenCache returns a cache of size positive entries (and a quarter as
// many negative ones), nil when size is not positive. now is the server's
// clock: a positive entry lives in the cache until the token's expiry as that
// clock reads it (usable checks it again on every hit).
func newTokenCache(size int, now func() time.Time) *tokenCache {
	if size <= 0 {
		return nil
	}
	expiry := otter.ExpiryWritingFunc(func(e otter.Entry[[sha256.Size]byte, *cacheEntry]) time.Duration {
		if e.Value.expires.IsZero() {
			return 24 * time.Hour // negative entries fall out by size long before
		}
		return max(e.Value.expires.Sub(now()), time.Second)
	})
	neg := max(size/4, 16)
	return &tokenCache{
		size: size,
		pos:  otter.Must(&otter.Options[[sha256.Size]byte, *cacheEntry]{MaximumSize: size, ExpiryCalculator: expiry}),
		neg:  otter.Must(&otter.Options[[sha256.Size]byte, *cacheEntry]{MaximumSize: neg, ExpiryCalculator: expiry}),
	}
}

func (c *tokenCache) stats(n *cacheCounters) CacheStats {
	if c == nil {
		return CacheStats{}
	}
	return CacheStats{Hits: n.hits.Load(), NegativeHits: n.negHits.Load(), Misses: n.misses.Load(),
		Entries: c.pos.EstimatedSize() + c.neg.EstimatedSize()}
}

// get returns the cached result for the token, if one is usable now, and
// counts the lookup in n.
func (c *tokenCache) get(ctx context.Context, n *cacheCounters, key [sha256.Size]byte, now time.Time) (verified, bool) {
	if e, ok := c.pos.GetIfPresent(key); ok {
		if c.usable(ctx, c.pos, key, e, now) {
			n.hits.Add(1)
			return e.v, true
		}
	} else if e, ok := c.neg.GetIfPresent(key); ok {
		if c.usable(ctx, c.neg, key, e, now) {
			n.negHits.Add(1)
			return e.v, true
		}
	}
	n.misses.Add(1)
	return verified{}, false
}

func (c *tokenCache) usable(ctx context.Context, cache *otter.Cache[[sha256.Size]byte, *cacheEntry], key [sha256.Size]byte, e *cacheEntry, now time.Time) bool {
	if !e.notBefore.IsZero() && now.Before(e.notBefore) || !e.expires.IsZero() && !now.Before(e.expires) {
		cache.Invalidate(key)
		return false
	}
	if e.keys == nil {
		return true
	}
	ver := e.keys.Version()
	if ver == e.keyVersion {
		return true
	}
	// The key set was replaced since: a success stands only if the key
	// that verified it is still listed under its kid. Either way the entry
	// is rewritten or dropped, so the lookup happens once per replacement.
	if e.v.reason != Allowed || e.v.kid == "" || !sameKey(ctx, e) {
		cache.Invalidate(key)
		return false
	}
	fresh := *e
	fresh.keyVersion = ver
	cache.Set(key, &fresh)
	return true
}

func sameKey(ctx context.Context, e *cacheEntry) bool {
	cur, ok := e.keys.PublicKey(ctx, e.v.kid)
	if !ok {
		return false
	}
	k, ok := e.key.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(cur)
}

// put caches a verification result when it is cacheable. verifier is the key
// that verified a success (nil when unknown: a key set was tried).
func (c *tokenCache) put(key [sha256.Size]byte, v verified, keys versionedKeys, keyVersion uint64, verifier any) {
	switch v.reason {
	case Allowed:
		if keys == nil {
			return
		}
		e := &cacheEntry{v: v, keys: keys, keyVersion: keyVersion, notBefore: v.validFrom, expires: v.validTill}
		if pk, ok := verifier.(crypto.PublicKey); ok && v.kid != "" {
			e.key = pk
		}
		if e.expires.IsZero() {
			return // cannot happen: exp is required; never cache without a bound
		}
		c.pos.Set(key, e)
	case BadSignature:
		if keys == nil {
			return
		}
		c.neg.Set(key, &cacheEntry{v: v, keys: keys, keyVersion: keyVersion})
	case Expired, WrongAudience, InvalidClaims, BadAlgorithm:
		c.neg.Set(key, &cacheEntry{v: v})
	case NotYetValid:
		// Heals by itself at validFrom: remembered until then. A key
		// withdrawn meanwhile changes nothing (the answer is a denial).
		if !v.validFrom.IsZero() {
			c.neg.Set(key, &cacheEntry{v: v, expires: v.validFrom})
		}
	}
}

// cacheInputs is cfg without what a cached verification cannot depend on:
// the rules (evaluated on every request), the forward-auth source, the
// realm and the token bound (read before the cache), the sender constraints
// (applied after it), and the plumbing. Every
// other field, one added later included, must be equal for a Server to take
// over its predecessor's token cache: a field forgotten here costs a cache
// warm-up on reload, never a stale result.
func cacheInputs(cfg Config) Config {
	cfg.Rules, cfg.ForwardAuthSource, cfg.Realm, cfg.MaxTokenBytes = nil, "", "", 0
	cfg.Logger, cfg.Observer, cfg.Now, cfg.Previous = nil, nil, nil, nil
	// The bind stage reads a cached token's cnf, whatever the constraint,
	// on every request.
	cfg.DPoPReplayCacheSize = 0
	// Order carries no meaning in these lists: compared as sets.
	cfg.Providers = slices.Clone(cfg.Providers)
	for i := range cfg.Providers {
		p := &cfg.Providers[i]
		p.Keys = nil // compared by identity in takesOver
		p.SenderConstraint, p.DPoP, p.ClientCertFrom, p.ClientCertHeader = "", DPoP{}, "", ""
		p.Audiences = slices.Sorted(slices.Values(p.Audiences))
	}
	slices.SortFunc(cfg.Providers, func(a, b Provider) int { return strings.Compare(a.Issuer, b.Issuer) })
	return cfg
}

// takesOver reports whether a Server built from cfg may keep prev's token
// cache: every cache input is equal, and each provider's key source is the
// very same one, whose key-set versions the entries recorded.
func takesOver(cfg Config, prev *Server) bool {
	if !reflect.DeepEqual(cacheInputs(cfg), prev.inputs) {
		return false
	}
	for _, p := range cfg.Providers {
		q := prev.providers[p.Issuer]
		if q == nil || !sameKeySource(p.Keys, q.keys) {
			return false
		}
	}
	return true
}

// sameKeySource compares key sources by identity: only pointers (such as
// *jwks.Cache) can be the same one; a key source of any other kind is never
// the same (comparing values could panic, or call two equal values one).
func sameKeySource(a, b KeySource) bool {
	ta := reflect.TypeOf(a)
	return ta != nil && ta == reflect.TypeOf(b) && ta.Kind() == reflect.Pointer && a == b
}
