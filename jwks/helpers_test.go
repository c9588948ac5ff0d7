package jwks_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks"
)

// waitLong bounds every wait on a channel in these tests. It is generous on
// purpose: it only matters when something is broken, and a loaded CI machine
// running -race must never hit it otherwise.
const waitLong = 10 * time.Second

// testKeys are RSA-2048 signing keys, generated once per test binary because
// key generation is slow under -race.
var testKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 4)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// key returns test key i (0 to 3).
func key(i int) *rsa.PrivateKey { return testKeys()[i] }

var b64 = base64.RawURLEncoding.EncodeToString

// rsaJWK returns the public JWK of k as a JSON object, with alg RS256 and use
// sig. Tests add, change or delete members as a case needs.
func rsaJWK(k *rsa.PrivateKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA",
		"kid": kid,
		"alg": "RS256",
		"use": "sig",
		"n":   b64(k.N.Bytes()),
		"e":   b64(big.NewInt(int64(k.E)).Bytes()),
	}
}

// withPrivate adds k's private members to the JWK m.
func withPrivate(m map[string]any, k *rsa.PrivateKey) map[string]any {
	k.Precompute()
	m["d"] = b64(k.D.Bytes())
	m["p"] = b64(k.Primes[0].Bytes())
	m["q"] = b64(k.Primes[1].Bytes())
	m["dp"] = b64(k.Precomputed.Dp.Bytes())
	m["dq"] = b64(k.Precomputed.Dq.Bytes())
	m["qi"] = b64(k.Precomputed.Qinv.Bytes())
	return m
}

// set encodes a JWK Set document holding keys.
func set(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatalf("marshal JWK Set: %v", err)
	}
	return b
}

// rsaSet is a JWK Set of the test keys idx, with kids "k<i>".
func rsaSet(t testing.TB, idx ...int) []byte {
	t.Helper()
	var keys []map[string]any
	for _, i := range idx {
		keys = append(keys, rsaJWK(key(i), kid(i)))
	}
	return set(t, keys...)
}

func kid(i int) string { return "k" + string(rune('0'+i)) }

// mint returns an RS256 token signed by k, with the kid header set unless kid
// is empty.
func mint(t testing.TB, k *rsa.PrivateKey, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": "alice",
		"exp": time.Now().Add(time.Hour).Unix(),
	})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return s
}

// verify parses a token with the cache's Keyfunc the way authz does.
func verify(ctx context.Context, c *jwks.Cache, token string) error {
	_, err := jwt.Parse(token, func(t *jwt.Token) (any, error) { return c.Key(ctx, t) }, jwt.WithValidMethods([]string{"RS256"}))
	return err
}

// fakeClock is a Config.Now whose time only moves when a test says so. Cache
// uses Now for its rate limit, so the tests can step over
// MinRefreshInterval without sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// jwksServer is an httptest JWKS endpoint that counts hits and whose answer a
// test can change at any time.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu      sync.Mutex
	handler http.HandlerFunc
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.setBody(body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		h := s.handler
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setHandler(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}

func (s *jwksServer) setBody(body []byte) {
	s.setHandler(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	})
}

// fetchEvent is one Observer call.
type fetchEvent struct {
	provider string
	err      error
	d        time.Duration
	keys     int
}

// recorder is an Observer that keeps every call and signals each one on a
// channel, so tests wait for fetches instead of sleeping.
type recorder struct {
	mu     sync.Mutex
	events []fetchEvent
	ch     chan fetchEvent
}

func newRecorder() *recorder { return &recorder{ch: make(chan fetchEvent, 1000)} }

func (r *recorder) ObserveFetch(provider string, err error, d time.Duration, keys int) {
	ev := fetchEvent{provider: provider, err: err, d: d, keys: keys}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.ch <- ev:
	default:
	}
}

func (r *recorder) all() []fetchEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fetchEvent(nil), r.events...)
}

// next waits for the next fetch to finish.
func (r *recorder) next(t testing.TB) fetchEvent {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(waitLong):
		t.Fatalf("no fetch finished within %v", waitLong)
		return fetchEvent{}
	}
}

// quietLogger discards the cache's logs; the assertions look at errors and
// Status instead.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// slogText is a logger writing text lines to w, Debug and up.
func slogText(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testCache is a Cache whose Run goroutine is stopped at the end of the test.
type testCache struct {
	*jwks.Cache
	rec   *recorder
	clock *fakeClock
	stop  func() // cancels Run and waits for it to return nil
}

// startCache builds a Cache for srv with cfg's non-zero fields, a fake clock
// and a recorder, starts Run and waits for the first fetch to finish.
func startCache(t *testing.T, srv *jwksServer, cfg jwks.Config) *testCache {
	t.Helper()
	tc := &testCache{rec: newRecorder(), clock: newFakeClock()}
	if cfg.URL == "" && !cfg.Discovery {
		cfg.URL = srv.URL + "/.well-known/jwks.json"
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = time.Hour
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = time.Minute
	}
	if cfg.UnknownKIDWait == 0 {
		// Far above any fetch from a local httptest server, so that a slow
		// -race run never turns a coalesced wait into a timeout.
		cfg.UnknownKIDWait = waitLong
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.Now == nil {
		cfg.Now = tc.clock.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = tc.rec
	}
	c, err := jwks.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tc.Cache = c
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	tc.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(waitLong):
				t.Errorf("Run did not return within %v of cancellation", waitLong)
			}
		})
	}
	t.Cleanup(tc.stop)
	tc.rec.next(t)
	return tc
}

// errorsIsAll reports the first target err does not match, or nil.
func errorsIsAll(err error, targets ...error) error {
	for _, target := range targets {
		if !errors.Is(err, target) {
			return target
		}
	}
	return nil
}
