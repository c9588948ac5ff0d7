package jwks_test

// The attack catalogue of SECURITY.md, for key sets: what a hostile or broken
// JWKS endpoint, and a flood of hostile tokens, can do to the key cache.
// Where an attack still succeeds, its test fails that check and skips with
// "KNOWN VULNERABILITY" and the evidence, and passes once it is fixed.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/jwks"
)

// median returns the median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// TestAttackHangingJWKS: an endpoint that accepts the fetch and never
// answers. A lookup for an unknown kid still answers within the
// UnknownKIDWait of 100ms (asserted on the median of several tries, under
// 500ms, well inside Envoy's 200ms budget on a quiet machine and never near
// the 5s fetch timeout), every one of them shares the one fetch, and known
// kids do not wait at all.
func TestAttackHangingJWKS(t *testing.T) {
	const (
		wait  = 100 * time.Millisecond
		tries = 7
	)
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{UnknownKIDWait: wait, FetchTimeout: time.Minute})

	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for handlers
	srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c.clock.Advance(time.Minute) // the rate limit allows one refresh

	unknown := make([]time.Duration, 0, tries)
	known := make([]time.Duration, 0, tries)
	for i := range tries {
		start := time.Now()
		err := verify(t.Context(), c.Cache, mint(t, key(1+i%3), fmt.Sprintf("unknown-%d", i)))
		unknown = append(unknown, time.Since(start))
		if !errors.Is(err, jwks.ErrKeyNotFound) {
			t.Errorf("unknown kid %d: %v, want %v", i, err, jwks.ErrKeyNotFound)
		}
		start = time.Now()
		if err := verify(t.Context(), c.Cache, mint(t, key(0), "k0")); err != nil {
			t.Errorf("known kid during the hang: %v", err)
		}
		known = append(known, time.Since(start))
	}
	if m := median(unknown); m < wait/2 || m > 500*time.Millisecond {
		t.Errorf("unknown kid lookups during the hang: median %v (%v), want about %v and under 500ms", m, unknown, wait)
	}
	if m := median(known); m >= wait {
		t.Errorf("known kid lookups during the hang: median %v (%v), want under %v: they must not wait for the fetch", m, known, wait)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("JWKS hits = %d, want 2 (the load and one hanging refresh)", n)
	}
	if !c.Ready() {
		t.Error("the cache lost its key set during a hanging refresh")
	}
}

// TestAttackUnknownKIDFloodDistinct: a flood of tokens, each with a kid of
// its own, over several rate-limit windows, costs at most one fetch per
// window, and the known key keeps working.
func TestAttackUnknownKIDFloodDistinct(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{MinRefreshInterval: time.Minute})
	const windows, perWindow = 3, 100
	for w := range windows {
		c.clock.Advance(time.Minute)
		var wg sync.WaitGroup
		errs := make(chan error, perWindow)
		for i := range perWindow {
			tok := mint(t, key(1), fmt.Sprintf("flood-%d-%d", w, i))
			wg.Go(func() { errs <- verify(t.Context(), c.Cache, tok) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, jwks.ErrKeyNotFound) {
				t.Fatalf("flood token: %v, want %v", err, jwks.ErrKeyNotFound)
			}
		}
		if err := verify(t.Context(), c.Cache, mint(t, key(0), "k0")); err != nil {
			t.Errorf("known kid after window %d: %v", w, err)
		}
	}
	// The load, then at most one refresh per window.
	if n := srv.hits.Load(); n > 1+windows {
		t.Errorf("JWKS hits = %d for %d unknown kids over %d windows, want at most %d", n, windows*perWindow, windows, 1+windows)
	}
}

// TestAttackDuplicateKIDInSet: a set listing one kid twice keeps the first
// key; a token signed by the second key under that kid does not verify.
func TestAttackDuplicateKIDInSet(t *testing.T) {
	srv := newJWKSServer(t, set(t, rsaJWK(key(0), "dup"), rsaJWK(key(1), "dup")))
	c := startCache(t, srv, jwks.Config{})
	if err := verify(t.Context(), c.Cache, mint(t, key(0), "dup")); err != nil {
		t.Errorf("first key under the kid: %v, want nil", err)
	}
	if err := verify(t.Context(), c.Cache, mint(t, key(1), "dup")); err == nil {
		t.Errorf("second key under the same kid verified")
	}
}

// TestAttackWeakRSABoundary: 2048 bits is the floor, exactly: a modulus of
// 2047 bits is skipped wherever it appears, and a set of only such keys is
// no set.
func TestAttackWeakRSABoundary(t *testing.T) {
	n := new(big.Int).Rsh(key(0).N, 1)
	n.SetBit(n, 0, 1) // odd, 2047 bits
	if n.BitLen() != 2047 {
		t.Fatalf("modulus of %d bits", n.BitLen())
	}
	weak := with(rsaJWK(key(0), "weak"), "n", b64(n.Bytes()))
	tests := []struct {
		name     string
		doc      []byte
		wantKIDs []string
		wantErr  error
	}{
		{name: "2047 bits alone", doc: set(t, weak), wantErr: jwks.ErrNoUsableKeys},
		{name: "2047 bits beside 2048", doc: set(t, weak, rsaJWK(key(1), "good")), wantKIDs: []string{"good"}},
		{name: "2047 bits with leading zero bytes", doc: set(t, with(weak, "n", b64(append([]byte{0, 0}, n.Bytes()...)))), wantErr: jwks.ErrNoUsableKeys},
		{name: "2048 bits", doc: set(t, rsaJWK(key(1), "good")), wantKIDs: []string{"good"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := jwks.Parse(tc.doc, []string{"RS256", "PS256"}, 0)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse error %v, want %v", err, tc.wantErr)
			}
			var kids []string
			for _, k := range res.Keys {
				kids = append(kids, k.Marshal().KID)
			}
			if !slices.Equal(kids, tc.wantKIDs) {
				t.Errorf("kept kids %q, want %q", kids, tc.wantKIDs)
			}
		})
	}
}

// TestAttackWeakRSAKeyToken: a token signed by a 1024-bit key listed in the
// JWKS does not verify: the key was never loaded.
func TestAttackWeakRSAKeyToken(t *testing.T) {
	small := rsa1024()
	srv := newJWKSServer(t, set(t, rsaJWK(key(0), "k0"), rsaJWK(small, "small")))
	c := startCache(t, srv, jwks.Config{})
	if err := verify(t.Context(), c.Cache, mint(t, small, "small")); !errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("token signed by the 1024-bit key: %v, want %v", err, jwks.ErrKeyNotFound)
	}
	if c.HasKey(t.Context(), "small") {
		t.Errorf("the 1024-bit key is in the set")
	}
}

// TestAttackPlainHTTPJWKSURL: a key set fetched over plain HTTP from another
// host can be replaced by anyone on the path, who can then sign any token.
// Loopback (the demo issuer) is fine; anything else must at least be warned
// about.
func TestAttackPlainHTTPJWKSURL(t *testing.T) {
	for _, u := range []string{"http://idp.example.com/.well-known/jwks.json", "http://10.0.0.7:8080/jwks"} {
		t.Run(u, func(t *testing.T) {
			var logs bytes.Buffer
			_, err := jwks.New(jwks.Config{URL: u, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			problem := ""
			if err == nil && !strings.Contains(logs.String(), "level=WARN") {
				problem = "jwks.New accepted " + u + " and logged nothing"
			}
			if problem == "" {
				return
			}
			t.Skipf("KNOWN VULNERABILITY: a plain-http JWKS URL to a non-loopback host is accepted silently; "+
				"a network attacker between the server and the identity provider can publish a key and sign any token\nevidence: %s", problem)
		})
	}
	t.Run("loopback is accepted", func(t *testing.T) {
		if _, err := jwks.New(jwks.Config{URL: "http://127.0.0.1:9000/.well-known/jwks.json", Logger: quietLogger()}); err != nil {
			t.Errorf("New(loopback http) = %v", err)
		}
	})
}

// TestAttackCancelledLookup: a lookup whose request has gone (Envoy gave up)
// returns at once with the context's error and never a key.
func TestAttackCancelledLookup(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{UnknownKIDWait: time.Minute})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c.clock.Advance(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := verify(ctx, c.Cache, mint(t, key(1), "k1"))
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
		t.Errorf("the lookup outlived its context by %v", elapsed-50*time.Millisecond)
	}
	if !errors.Is(err, jwks.ErrKeyNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("verify = %v, want %v and %v", err, jwks.ErrKeyNotFound, context.DeadlineExceeded)
	}
}
