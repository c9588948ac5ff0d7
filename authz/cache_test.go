package authz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// versionedKeys wraps fakeKeys with a key-set version and a kid lookup, as
// *jwks.Cache offers, so that results are cached.
type versionedFake struct {
	*fakeKeys
	mu      sync.Mutex
	version atomic.Uint64
	hasKey  atomic.Int64
}

func (v *versionedFake) Version() uint64 { return v.version.Load() }

func (v *versionedFake) PublicKey(_ context.Context, kid string) (crypto.PublicKey, bool) {
	v.hasKey.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok := v.keys[kid]
	return k, ok
}

// replace lists another key under kid and bumps the version.
func (v *versionedFake) replace(kid string, key any) {
	v.mu.Lock()
	v.keys[kid] = key
	v.mu.Unlock()
	v.version.Add(1)
}

// withdraw removes a key and bumps the version, as a refresh that no longer
// lists it would. (Tests call it between checks, never during one.)
func (v *versionedFake) withdraw(kid string) {
	v.keys = v.keysCopyLocked(kid)
	v.version.Add(1)
}

func (v *versionedFake) keysCopyLocked(drop string) map[string]any {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := make(map[string]any, len(v.keys))
	for k, key := range v.keys {
		if k != drop {
			m[k] = key
		}
	}
	return m
}

// cacheWorld is a world whose provider A is cacheable, with a movable clock.
type cacheWorld struct {
	srv  *Server
	keys *versionedFake
	now  atomic.Pointer[time.Time]
}

func newCacheWorld(t testing.TB, mutate func(*Config)) *cacheWorld {
	t.Helper()
	k := testKeys()
	w := &cacheWorld{keys: &versionedFake{fakeKeys: newFakeKeys(kidA, &k.keyA.PublicKey)}}
	start := testNow
	w.now.Store(&start)
	cfg := baseConfig(w.keys, newFakeKeys(kidB, &k.keyB.PublicKey))
	cfg.Now = func() time.Time { return *w.now.Load() }
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = srv
	return w
}

func (w *cacheWorld) advance(d time.Duration) {
	n := w.now.Load().Add(d)
	w.now.Store(&n)
}

func (w *cacheWorld) decide(t testing.TB, path, token string) Decision {
	t.Helper()
	return w.srv.Decide(context.Background(), Request{Method: "GET", Path: path, Authorization: bearer(token)})
}

func TestTokenCache(t *testing.T) {
	valid := mint(t, tokenSpec{})
	t.Run("second check is a hit and skips the key lookup", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		for i := range 3 {
			if d := w.decide(t, "/protected", valid); d.Reason != Allowed {
				t.Fatalf("check %d: %s", i, d.Reason)
			}
		}
		if got := w.keys.calls.Load(); got != 1 {
			t.Errorf("key lookups = %d, want 1", got)
		}
		st := w.srv.CacheStats()
		if st.Hits != 2 || st.Misses != 1 || st.Entries < 1 {
			t.Errorf("stats = %+v, want 2 hits, 1 miss", st)
		}
	})
	t.Run("rules are evaluated on every hit", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		if d := w.decide(t, "/protected", valid); d.Reason != Allowed {
			t.Fatal(d.Reason)
		}
		if d := w.decide(t, "/admin", valid); d.Reason != InsufficientScope {
			t.Errorf("cached token on /admin = %s, want insufficient_scope", d.Reason)
		}
		if d := w.decide(t, "/public", valid); d.Reason != Public || len(d.Headers) == 0 {
			t.Errorf("cached token on /public = %s with %d headers, want public with claim headers", d.Reason, len(d.Headers))
		}
	})
	t.Run("never served past exp plus the skew", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		short := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(time.Minute).Unix())})
		if d := w.decide(t, "/protected", short); d.Reason != Allowed {
			t.Fatal(d.Reason)
		}
		w.advance(time.Minute + 59*time.Second) // inside the 60s skew
		if d := w.decide(t, "/protected", short); d.Reason != Allowed {
			t.Fatalf("inside the skew: %s", d.Reason)
		}
		w.advance(2 * time.Second) // past exp + skew
		if d := w.decide(t, "/protected", short); d.Reason != Expired {
			t.Errorf("past exp+skew: %s, want expired", d.Reason)
		}
	})
	t.Run("a withdrawn key stops working at the next refresh", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		if d := w.decide(t, "/protected", valid); d.Reason != Allowed {
			t.Fatal(d.Reason)
		}
		w.keys.withdraw(kidA)
		if d := w.decide(t, "/protected", valid); d.Reason != UnknownKID {
			t.Errorf("after withdrawal: %s, want unknown_kid", d.Reason)
		}
	})
	t.Run("a refresh that keeps the key keeps the entry", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		w.decide(t, "/protected", valid)
		w.keys.version.Add(1) // replaced, same keys
		for range 3 {
			if d := w.decide(t, "/protected", valid); d.Reason != Allowed {
				t.Fatal(d.Reason)
			}
		}
		if got := w.keys.calls.Load(); got != 1 {
			t.Errorf("key lookups = %d, want 1 (entry kept)", got)
		}
		if got := w.keys.hasKey.Load(); got != 1 {
			t.Errorf("kid re-checks = %d, want 1 (once per replacement)", got)
		}
	})
	t.Run("a kid now naming another key drops the entry", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		w.decide(t, "/protected", valid)
		w.keys.replace(kidA, &testKeys().keyEvil.PublicKey)
		if d := w.decide(t, "/protected", valid); d.Reason != BadSignature {
			t.Errorf("kid re-keyed: %s, want bad_signature", d.Reason)
		}
	})
	t.Run("expired tokens are remembered as failures", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		expired := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
		for range 3 {
			if d := w.decide(t, "/protected", expired); d.Reason != Expired {
				t.Fatal(d.Reason)
			}
		}
		if got := w.keys.calls.Load(); got != 1 {
			t.Errorf("key lookups = %d, want 1", got)
		}
		if st := w.srv.CacheStats(); st.NegativeHits != 2 {
			t.Errorf("negative hits = %d, want 2", st.NegativeHits)
		}
	})
	t.Run("a token not valid yet is remembered until it becomes valid", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		early := mint(t, tokenSpec{claims: with(claimsA(), "nbf", testNow.Add(5*time.Minute).Unix())})
		for range 3 {
			if d := w.decide(t, "/protected", early); d.Reason != NotYetValid {
				t.Fatal(d.Reason)
			}
		}
		if got := w.keys.calls.Load(); got != 1 {
			t.Errorf("key lookups = %d, want 1 (the repeats answered from the negative cache)", got)
		}
		w.advance(4*time.Minute - time.Second) // nbf minus the 60s skew, less a second
		if d := w.decide(t, "/protected", early); d.Reason != NotYetValid {
			t.Fatalf("a second before nbf minus the skew: %s", d.Reason)
		}
		w.advance(time.Second)
		if d := w.decide(t, "/protected", early); d.Reason != Allowed {
			t.Errorf("at nbf minus the skew: %s, want allowed (verified again)", d.Reason)
		}
		if got := w.keys.calls.Load(); got != 2 {
			t.Errorf("key lookups = %d, want 2", got)
		}
	})
	t.Run("a bad signature is re-checked after a key set change", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		forged := mint(t, tokenSpec{key: testKeys().keyEvil})
		w.decide(t, "/protected", forged)
		w.decide(t, "/protected", forged)
		if got := w.keys.calls.Load(); got != 1 {
			t.Fatalf("key lookups = %d, want 1", got)
		}
		w.keys.version.Add(1)
		if d := w.decide(t, "/protected", forged); d.Reason != BadSignature {
			t.Fatal(d.Reason)
		}
		if got := w.keys.calls.Load(); got != 2 {
			t.Errorf("key lookups = %d, want 2 (re-verified after the change)", got)
		}
	})
	t.Run("unknown kids and missing key sets are not cached", func(t *testing.T) {
		w := newCacheWorld(t, nil)
		unknown := mint(t, tokenSpec{kid: "nope"})
		w.decide(t, "/protected", unknown)
		w.decide(t, "/protected", unknown)
		w.keys.notReady.Store(true)
		w.decide(t, "/protected", valid)
		w.decide(t, "/protected", valid)
		if got := w.keys.calls.Load(); got != 4 {
			t.Errorf("key lookups = %d, want 4 (nothing cached)", got)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		w := newCacheWorld(t, func(c *Config) { c.TokenCacheSize = -1 })
		w.decide(t, "/protected", valid)
		w.decide(t, "/protected", valid)
		if got := w.keys.calls.Load(); got != 2 {
			t.Errorf("key lookups = %d, want 2", got)
		}
		if st := w.srv.CacheStats(); st != (CacheStats{}) {
			t.Errorf("stats = %+v, want zero", st)
		}
	})
	t.Run("a source without versions is never cached as a success", func(t *testing.T) {
		w := newWorld(t, nil) // plain fakeKeys
		w.srv.Decide(context.Background(), Request{Path: "/protected", Authorization: bearer(valid)})
		w.srv.Decide(context.Background(), Request{Path: "/protected", Authorization: bearer(valid)})
		if got := w.keysA.calls.Load(); got != 2 {
			t.Errorf("key lookups = %d, want 2", got)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		w := newCacheWorld(t, func(c *Config) { c.TokenCacheSize = 16 })
		for i := range 200 {
			tok := mint(t, tokenSpec{claims: with(claimsA(), "jti", i)})
			w.decide(t, "/protected", tok)
		}
		w.srv.cache.pos.CleanUp()
		w.srv.cache.neg.CleanUp()
		if n := w.srv.CacheStats().Entries; n > 16+16 {
			t.Errorf("entries = %d, want at most the bounds (16 + 16)", n)
		}
	})
}

func TestTokenCacheConcurrent(t *testing.T) {
	w := newCacheWorld(t, nil)
	tokens := []string{mint(t, tokenSpec{}), mint(t, tokenSpec{key: testKeys().keyEvil}),
		mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})}
	want := []Reason{Allowed, BadSignature, Expired}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				j := (g + i) % len(tokens)
				if i%50 == 0 && g == 0 {
					w.keys.version.Add(1)
				}
				if d := w.srv.Decide(context.Background(), Request{Path: "/protected", Authorization: bearer(tokens[j])}); d.Reason != want[j] {
					t.Errorf("token %d: %s, want %s", j, d.Reason, want[j])
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkDecideCache measures an allow answered from the cache (the same
// token again) and one that misses it (a different token every time, so the
// RSA verification, the hashing and the insertion are all paid).
func BenchmarkDecideCache(b *testing.B) {
	tokens := make([]string, 1024)
	for i := range tokens {
		tokens[i] = mint(b, tokenSpec{claims: with(claimsA(), "jti", i)})
	}
	for _, bc := range []struct {
		name   string
		size   int
		spread int
	}{
		{name: "hit", size: DefaultTokenCacheSize, spread: 1},
		{name: "miss", size: 16, spread: len(tokens)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := newCacheWorld(b, func(c *Config) { c.TokenCacheSize = bc.size })
			ctx := context.Background()
			reqs := make([]Request, bc.spread)
			for i := range reqs {
				reqs[i] = Request{Method: "GET", Path: "/protected/items?page=2", Authorization: bearer(tokens[i]), HeaderNames: envoyHeaderNames}
			}
			if d := w.srv.Decide(ctx, reqs[0]); d.Reason != Allowed {
				b.Fatal(d.Reason)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w.srv.Decide(ctx, reqs[i%len(reqs)])
				i++
			}
		})
	}
}

// BenchmarkCacheMemory fills the verified-token cache with distinct tokens
// shaped like the demo issuer's (iss, sub, aud, iat, nbf, exp, jti, scope,
// client_id; default claim headers) and reports the heap each cached token
// costs and the heap at the fill size. ES256 tokens keep the fill fast (the
// entry holds claims and rendered headers, whatever the algorithm). The fill
// is 100k tokens, 10k with -short; b.N is not used.
func BenchmarkCacheMemory(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	keys := &versionedFake{fakeKeys: newFakeKeys(kidA, &key.PublicKey)}
	srv, err := New(Config{
		Providers:      []Provider{{Name: "a", Issuer: issuerA, Audiences: []string{audience}, Algorithms: []string{"ES256"}, Keys: keys}},
		TokenCacheSize: n,
		Logger:         discardLogger(),
		Now:            fixedNow,
	})
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, n)
	for i := range tokens {
		c := claimsA()
		c["jti"] = fmt.Sprintf("%026d", i)
		c["client_id"] = "demo-client"
		tokens[i] = mint(b, tokenSpec{method: jwt.SigningMethodES256, key: key, claims: c})
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	ctx := context.Background()
	before := heap()
	for _, tok := range tokens {
		if d := srv.Decide(ctx, Request{Path: "/x", Authorization: bearer(tok)}); d.Reason != Allowed {
			b.Fatal(d.Reason)
		}
	}
	srv.cache.pos.CleanUp()
	after := heap()
	entries := srv.cache.pos.EstimatedSize()
	if entries < n*9/10 {
		b.Fatalf("only %d of %d tokens cached", entries, n)
	}
	runtime.KeepAlive(tokens)
	for b.Loop() { // the fill above is the measurement; b.Loop runs this function once
	}
	b.ReportMetric(float64(after-before)/float64(entries), "B/entry")
	b.ReportMetric(float64(after)/(1<<20), "MiB-heap")
	b.ReportMetric(float64(entries), "entries")
}

// TestTokenCacheLifetimeFollowsServerClock pins that a cached success lives
// until the token's expiry on the server's clock, not the wall clock's: with a
// clock far from the wall clock (a test's fixed time, a host whose clock was
// stepped), a wall-clock lifetime would drop every entry after a second.
func TestTokenCacheLifetimeFollowsServerClock(t *testing.T) {
	for _, offset := range []time.Duration{-24 * 365 * time.Hour, 0, 24 * 365 * time.Hour} {
		clock := time.Now().Add(offset)
		c := newTokenCache(16, func() time.Time { return clock })
		key := sha256.Sum256([]byte("token"))
		v := verified{reason: Allowed, kid: kidA, validTill: clock.Add(time.Hour)}
		c.put(key, v, &versionedFake{}, 1, nil)
		e, ok := c.pos.GetEntryQuietly(key)
		if !ok {
			t.Fatalf("offset %v: success not cached", offset)
		}
		if got := e.ExpiresAfter(); got < 59*time.Minute || got > time.Hour {
			t.Errorf("offset %v: entry expires after %v, want the token's remaining hour", offset, got)
		}
	}
}

// funcKeys is a KeySource of a type that cannot be compared.
type funcKeys func(context.Context, *jwt.Token) (any, error)

func (f funcKeys) Key(ctx context.Context, t *jwt.Token) (any, error) { return f(ctx, t) }

// TestTokenCacheTakeOver pins when a reloaded Server takes over the
// verified-token cache of the one it replaces (Config.Previous): only when
// every cached result would be the same under the new configuration.
func TestTokenCacheTakeOver(t *testing.T) {
	k := testKeys()
	keysA := &versionedFake{fakeKeys: newFakeKeys(kidA, &k.keyA.PublicKey)}
	keysB := newFakeKeys(kidB, &k.keyB.PublicKey)
	base := func() Config {
		c := baseConfig(keysA, keysB)
		c.TokenCacheSize = 100
		return c
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		shared bool
	}{
		{name: "nothing changed", mutate: func(*Config) {}, shared: true},
		{name: "rules changed", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/admin", Scopes: []string{"root"}}} }, shared: true},
		{name: "realm changed", mutate: func(c *Config) { c.Realm = "other" }, shared: true},
		{name: "providers reordered, audiences reordered", mutate: func(c *Config) {
			c.Providers[0], c.Providers[1] = c.Providers[1], c.Providers[0]
			c.Providers[0].Audiences = []string{audience2, audience}
		}, shared: true},
		{name: "audience added", mutate: func(c *Config) {
			c.Providers[0].Audiences = append(c.Providers[0].Audiences, "https://other.example.com")
		}},
		{name: "audience replaced", mutate: func(c *Config) { c.Providers[1].Audiences = []string{audience} }},
		{name: "algorithms changed", mutate: func(c *Config) { c.Providers[0].Algorithms = []string{"RS256", "PS256"} }},
		{name: "provider renamed", mutate: func(c *Config) { c.Providers[0].Name = "renamed" }},
		{name: "provider removed", mutate: func(c *Config) { c.Providers = c.Providers[:1] }},
		{name: "issuer changed", mutate: func(c *Config) { c.Providers[1].Issuer = "https://elsewhere.example.com" }},
		{name: "another key source", mutate: func(c *Config) { c.Providers[1].Keys = newFakeKeys(kidB, &k.keyB.PublicKey) }},
		{name: "claim headers changed", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x-user": "sub"} }},
		{name: "clock skew changed", mutate: func(c *Config) { c.ClockSkew = 5 * time.Second }},
		{name: "cache size changed", mutate: func(c *Config) { c.TokenCacheSize = 200 }},
		{name: "cache disabled", mutate: func(c *Config) { c.TokenCacheSize = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev, err := New(base())
			if err != nil {
				t.Fatal(err)
			}
			tok := mint(t, tokenSpec{})
			if d := prev.Decide(context.Background(), Request{Path: "/x", Authorization: bearer(tok)}); d.Reason != Allowed {
				t.Fatal(d.Reason)
			}
			cfg := base()
			tc.mutate(&cfg)
			cfg.Previous = prev
			next, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := next.SharesTokenCache(prev); got != tc.shared {
				t.Fatalf("SharesTokenCache = %v, want %v", got, tc.shared)
			}
			d := next.Decide(context.Background(), Request{Path: "/x", Authorization: bearer(tok)})
			st := next.CacheStats()
			if tc.shared && (d.Reason != Allowed || st.Hits != 1 || st.Misses != 0) {
				t.Errorf("taken-over cache: %s, stats %+v; want allowed from the cache (1 hit, 0 misses, counted on the new server)", d.Reason, st)
			}
			if !tc.shared && st.Hits != 0 {
				t.Errorf("fresh cache: stats %+v; want no hit", st)
			}
			if p := prev.CacheStats(); p.Hits != 0 || p.Misses != 1 {
				t.Errorf("previous server's counters %+v changed; want its own 0 hits, 1 miss", p)
			}
		})
	}
	t.Run("key source not a pointer", func(t *testing.T) {
		fk := funcKeys(keysB.Key)
		cfg := base()
		cfg.Providers[1].Keys = fk
		prev, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Previous = prev
		next, err := New(cfg) // must not panic comparing the key sources
		if err != nil {
			t.Fatal(err)
		}
		if next.SharesTokenCache(prev) {
			t.Error("a cache was taken over with key sources that cannot be compared")
		}
	})
	t.Run("equal key source values are not the same source", func(t *testing.T) {
		cfg := base()
		cfg.Providers[1].Keys = valueKeys{id: 1}
		prev, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Previous = prev
		next, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if next.SharesTokenCache(prev) {
			t.Error("a cache was taken over on two key-source values that merely compare equal")
		}
	})
}

// valueKeys is a comparable KeySource that is not a pointer.
type valueKeys struct{ id int }

func (valueKeys) Key(context.Context, *jwt.Token) (any, error) { return nil, errors.New("no keys") }
