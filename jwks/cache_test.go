package jwks_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     jwks.Config
		wantErr bool
	}{
		{name: "minimal", cfg: jwks.Config{URL: "https://idp.example.com/.well-known/jwks.json"}},
		{name: "http", cfg: jwks.Config{URL: "http://127.0.0.1:9000/jwks"}},
		{name: "every algorithm", cfg: jwks.Config{URL: "https://idp.example.com/jwks", Algorithms: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}}},
		{name: "min equals refresh interval", cfg: jwks.Config{URL: "https://idp.example.com/jwks", RefreshInterval: time.Minute, MinRefreshInterval: time.Minute}},
		{name: "no URL", cfg: jwks.Config{}, wantErr: true},
		{name: "relative URL", cfg: jwks.Config{URL: "/.well-known/jwks.json"}, wantErr: true},
		{name: "no host", cfg: jwks.Config{URL: "https:///jwks"}, wantErr: true},
		{name: "file scheme", cfg: jwks.Config{URL: "file:///etc/jwks.json"}, wantErr: true},
		{name: "unparsable URL", cfg: jwks.Config{URL: "https://idp.example.com/%zz"}, wantErr: true},
		{name: "HS256", cfg: jwks.Config{URL: "https://idp.example.com/jwks", Algorithms: []string{"RS256", "HS256"}}, wantErr: true},
		{name: "none", cfg: jwks.Config{URL: "https://idp.example.com/jwks", Algorithms: []string{"none"}}, wantErr: true},
		{name: "lower-case alg", cfg: jwks.Config{URL: "https://idp.example.com/jwks", Algorithms: []string{"rs256"}}, wantErr: true},
		{name: "min longer than refresh interval", cfg: jwks.Config{URL: "https://idp.example.com/jwks", RefreshInterval: time.Minute, MinRefreshInterval: 2 * time.Minute}, wantErr: true},
		{name: "min longer than default refresh interval", cfg: jwks.Config{URL: "https://idp.example.com/jwks", MinRefreshInterval: time.Hour}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := jwks.New(tc.cfg)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("New: got error %v, want error %t", err, tc.wantErr)
			}
			if err == nil && c == nil {
				t.Fatal("New: got nil Cache and nil error")
			}
		})
	}
}

func TestName(t *testing.T) {
	tests := []struct {
		name string
		cfg  jwks.Config
		want string
	}{
		{name: "default is the host", cfg: jwks.Config{URL: "https://idp.example.com:8443/jwks"}, want: "idp.example.com:8443"},
		{name: "configured", cfg: jwks.Config{Name: "authaction", URL: "https://idp.example.com/jwks"}, want: "authaction"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := jwks.New(tc.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := c.Name(); got != tc.want {
				t.Errorf("Name: got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestNewDoesNotChangeCallersClient checks that refusing redirects does not
// reach into the http.Client the caller passed (it may be shared).
func TestNewDoesNotChangeCallersClient(t *testing.T) {
	client := &http.Client{Timeout: time.Minute}
	if _, err := jwks.New(jwks.Config{URL: "https://idp.example.com/jwks", Client: client}); err != nil {
		t.Fatalf("New: %v", err)
	}
	if client.CheckRedirect != nil {
		t.Error("New set CheckRedirect on the caller's client, want it left alone")
	}
}

func TestNotReady(t *testing.T) {
	t.Run("before Run", func(t *testing.T) {
		srv := newJWKSServer(t, rsaSet(t, 0))
		c, err := jwks.New(jwks.Config{URL: srv.URL, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if c.Ready() {
			t.Error("Ready: got true before Run, want false")
		}
		if err := verify(t.Context(), c, mint(t, key(0), "k0")); !errors.Is(err, jwks.ErrNotReady) {
			t.Errorf("verify: got %v, want %v", err, jwks.ErrNotReady)
		}
		if got, want := c.Status(), (jwks.Status{KeySetURL: srv.URL}); got != want {
			t.Errorf("Status: got %+v, want %+v", got, want)
		}
		if got := c.Version(); got != 0 {
			t.Errorf("Version: got %d, want 0", got)
		}
		if n := srv.hits.Load(); n != 0 {
			t.Errorf("hits: got %d before Run, want 0", n)
		}
	})
	t.Run("first fetch failed", func(t *testing.T) {
		srv := newJWKSServer(t, nil)
		srv.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
		c := startCache(t, srv, jwks.Config{})
		if c.Ready() {
			t.Error("Ready: got true after a failed fetch, want false")
		}
		err := verify(t.Context(), c.Cache, mint(t, key(0), "k0"))
		if !errors.Is(err, jwks.ErrNotReady) {
			t.Errorf("verify: got %v, want %v", err, jwks.ErrNotReady)
		}
		st := c.Status()
		if st.Loaded || st.Keys != 0 || !st.LastSuccess.IsZero() {
			t.Errorf("Status: got %+v, want not loaded, no keys, no success", st)
		}
		if se, ok := errors.AsType[*jwks.StatusError](st.LastError); !ok || se.Code != http.StatusServiceUnavailable {
			t.Errorf("Status.LastError: got %v, want a *StatusError with code 503", st.LastError)
		}
		if !errors.Is(st.LastError, jwks.ErrFetch) {
			t.Errorf("Status.LastError: got %v, want it to wrap %v", st.LastError, jwks.ErrFetch)
		}
		// Not ready means no lookup can trigger a fetch either.
		if n := srv.hits.Load(); n != 1 {
			t.Errorf("hits: got %d, want 1", n)
		}
	})
}

func TestKnownKID(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0, 1))
	c := startCache(t, srv, jwks.Config{})
	if !c.Ready() {
		t.Fatal("Ready: got false after a successful fetch, want true")
	}
	for _, i := range []int{0, 1} {
		if err := verify(t.Context(), c.Cache, mint(t, key(i), kid(i))); err != nil {
			t.Errorf("verify %s: got %v, want nil", kid(i), err)
		}
	}
	// A known kid with another key's signature is a bad signature, not an
	// unknown kid, and fetches nothing.
	err := verify(t.Context(), c.Cache, mint(t, key(2), "k0"))
	if !errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("verify with the wrong key: got %v, want %v", err, jwt.ErrTokenSignatureInvalid)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("hits: got %d, want 1", n)
	}
	if got := c.Version(); got != 1 {
		t.Errorf("Version: got %d, want 1", got)
	}
}

// TestKeyReturnsPublicKey checks what authz gets from Key for a kid: the
// RSA public key, never anything else.
func TestKeyReturnsPublicKey(t *testing.T) {
	srv := newJWKSServer(t, set(t, withPrivate(rsaJWK(key(0), "k0"), key(0))))
	c := startCache(t, srv, jwks.Config{})
	tok, _, err := jwt.NewParser().ParseUnverified(mint(t, key(0), "k0"), jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Key(t.Context(), tok)
	if err != nil {
		t.Fatalf("Key: %v", err)
	}
	pub, ok := got.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("Key: got %T, want *rsa.PublicKey", got)
	}
	if !pub.Equal(&key(0).PublicKey) {
		t.Error("Key: got another public key, want the one of k0")
	}
}

// TestTokenWithoutKID checks that a token without a kid is tried against the
// keys that fit its alg and never triggers a fetch.
func TestTokenWithoutKID(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 1, 0))
	c := startCache(t, srv, jwks.Config{})
	if err := verify(t.Context(), c.Cache, mint(t, key(0), "")); err != nil {
		t.Errorf("verify signed by a known key: got %v, want nil", err)
	}
	if err := verify(t.Context(), c.Cache, mint(t, key(2), "")); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("verify signed by an unknown key: got %v, want %v", err, jwt.ErrTokenSignatureInvalid)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("hits: got %d, want 1", n)
	}
}

// TestKeyAlgMismatch checks that a JWK that names its alg is not used for a
// token of another alg, and that this is not an unknown-kid refresh.
func TestKeyAlgMismatch(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{Algorithms: []string{"RS256", "RS384"}})
	tok := jwt.NewWithClaims(jwt.SigningMethodRS384, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k0"
	s, err := tok.SignedString(key(0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = jwt.Parse(s, func(tok *jwt.Token) (any, error) { return c.Key(t.Context(), tok) }, jwt.WithValidMethods([]string{"RS384"}))
	if err == nil || errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("verify RS384 with an RS256 key: got %v, want an alg mismatch error", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("hits: got %d, want 1", n)
	}
}

// TestUnknownKIDRotation: the provider adds a key, a token names it, one
// refresh finds it.
func TestUnknownKIDRotation(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{})
	srv.setBody(rsaSet(t, 0, 1))
	c.clock.Advance(time.Minute) // the initial fetch is MinRefreshInterval ago

	if err := verify(t.Context(), c.Cache, mint(t, key(1), "k1")); err != nil {
		t.Fatalf("verify new kid: got %v, want nil", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("hits: got %d, want 2", n)
	}
	if got := c.Version(); got != 2 {
		t.Errorf("Version: got %d, want 2", got)
	}
	if got := c.Status().Keys; got != 2 {
		t.Errorf("Status.Keys: got %d, want 2", got)
	}
	if err := verify(t.Context(), c.Cache, mint(t, key(0), "k0")); err != nil {
		t.Errorf("verify old kid: got %v, want nil", err)
	}
	// Both lookups are answered from memory now.
	if err := verify(t.Context(), c.Cache, mint(t, key(1), "k1")); err != nil {
		t.Errorf("verify new kid again: got %v, want nil", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("hits after the lookups: got %d, want 2", n)
	}
}

// TestUnknownKIDFlood: many requests with the same new kid arrive at once;
// they share one fetch and all succeed.
func TestUnknownKIDFlood(t *testing.T) {
	const n = 200
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{})

	// Hold the refresh until every lookup has started, so that they overlap
	// the one fetch as much as possible.
	release := make(chan struct{})
	body := rsaSet(t, 0, 1)
	srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(body)
	})
	c.clock.Advance(time.Minute)
	token := mint(t, key(1), "k1")

	var started, done sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			<-start
			errs <- verify(t.Context(), c.Cache, token)
		}()
	}
	started.Wait()
	close(start)
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	done.Wait()
	close(errs)

	var failed int
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("verify: got %v, want nil", err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d lookups failed, want 0", failed, n)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("hits: got %d, want 2 (the initial fetch and one refresh)", got)
	}
	// The observer hears of a fetch after its waiters are released: wait
	// for the second call rather than expect it already made.
	for deadline := time.Now().Add(5 * time.Second); len(c.rec.all()) < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := len(c.rec.all()); got != 2 {
		t.Errorf("Observer calls: got %d, want 2", got)
	}
}

// TestUnknownKIDRacesRefresh: lookups that miss just as a refresh lands must
// see the key it brought, not fail on the then-spent rate limit. Every lookup
// here starts after the new key was published and while (or after) the one
// refresh for it runs, so every lookup must succeed. The race is narrow, so
// the test makes 100 rotations with 20 simultaneous lookups each.
func TestUnknownKIDRacesRefresh(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{})
	var failed atomic.Int64
	for r := range 100 {
		k := "rot-" + strconv.Itoa(r)
		srv.setBody(set(t, rsaJWK(key(0), "k0"), rsaJWK(key(1), k)))
		c.clock.Advance(time.Minute)
		tok := mint(t, key(1), k)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 20 {
			wg.Go(func() {
				<-start
				if err := verify(t.Context(), c.Cache, tok); err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("rotation %d: verify: got %v, want nil", r, err)
					}
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of 2000 lookups failed, want 0", n)
	}
	if got, want := srv.hits.Load(), int64(101); got != want {
		t.Errorf("hits: got %d, want %d (one per rotation)", got, want)
	}
}

// TestUnknownKIDRateLimited: once a refresh ran, another unknown kid within
// MinRefreshInterval fails at once, fetches nothing and does not wait.
func TestUnknownKIDRateLimited(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{}) // UnknownKIDWait is 10s here
	srv.setBody(rsaSet(t, 0, 1))
	c.clock.Advance(time.Minute)
	if err := verify(t.Context(), c.Cache, mint(t, key(1), "k1")); err != nil {
		t.Fatalf("verify k1: got %v, want nil", err)
	}

	lastFetch := c.clock.Now()
	for _, wait := range []time.Duration{0, time.Second, time.Minute - time.Nanosecond} {
		t.Run(fmt.Sprintf("after %v", wait), func(t *testing.T) {
			c.clock.Advance(wait - c.clock.Now().Sub(lastFetch))
			start := time.Now()
			err := verify(t.Context(), c.Cache, mint(t, key(2), "k2"))
			elapsed := time.Since(start)
			if !errors.Is(err, jwks.ErrKeyNotFound) {
				t.Errorf("verify k2: got %v, want %v", err, jwks.ErrKeyNotFound)
			}
			if elapsed > time.Second {
				t.Errorf("verify k2 took %v, want it to fail at once (well under 1s)", elapsed)
			}
			if n := srv.hits.Load(); n != 2 {
				t.Errorf("hits: got %d, want 2", n)
			}
		})
		if t.Failed() {
			return
		}
	}
	// The observer hears of a fetch after its waiters are released: wait
	// for the second call rather than expect it already made.
	for deadline := time.Now().Add(5 * time.Second); len(c.rec.all()) < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := len(c.rec.all()); got != 2 {
		t.Errorf("Observer calls: got %d, want 2", got)
	}

	// Once MinRefreshInterval has passed since the last fetch started, an
	// unknown kid may fetch again (and still fail if the set lacks it).
	c.clock.Advance(time.Minute)
	err := verify(t.Context(), c.Cache, mint(t, key(2), "k2"))
	if !errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("verify k2 later: got %v, want %v", err, jwks.ErrKeyNotFound)
	}
	if n := srv.hits.Load(); n != 3 {
		t.Errorf("hits later: got %d, want 3", n)
	}
}

// TestUnknownKIDHangingServer: the JWKS endpoint stops answering. Lookups of
// unknown kids give up after UnknownKIDWait, known kids keep working, and Run
// still stops promptly.
func TestUnknownKIDHangingServer(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	c := startCache(t, srv, jwks.Config{UnknownKIDWait: 100 * time.Millisecond, FetchTimeout: time.Minute})

	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before srv.Close, which waits for handlers
	entered := make(chan struct{}, 10)
	srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c.clock.Advance(time.Minute)

	start := time.Now()
	err := verify(t.Context(), c.Cache, mint(t, key(1), "k1"))
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("unknown kid lookup took %v, want about UnknownKIDWait (100ms), under 1s", elapsed)
	}
	if !errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("verify k1: got %v, want %v", err, jwks.ErrKeyNotFound)
	}
	select {
	case <-entered:
	case <-time.After(waitLong):
		t.Fatal("the refresh never reached the server")
	}

	// While the fetch hangs: a known kid is answered from memory, another
	// unknown kid waits for the same fetch (no second one) and gives up.
	start = time.Now()
	if err := verify(t.Context(), c.Cache, mint(t, key(0), "k0")); err != nil {
		t.Errorf("verify k0 during the hang: got %v, want nil", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("known kid lookup during the hang took %v, want under 1s", elapsed)
	}
	start = time.Now()
	err = verify(t.Context(), c.Cache, mint(t, key(2), "k2"))
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("second unknown kid lookup took %v, want under 1s", elapsed)
	}
	if !errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("verify k2: got %v, want %v", err, jwks.ErrKeyNotFound)
	}
	// A cancelled request context ends the wait at once, and says why.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = verify(ctx, c.Cache, mint(t, key(2), "k2"))
	if !errors.Is(err, jwks.ErrKeyNotFound) || !errors.Is(err, context.Canceled) {
		t.Errorf("verify with a cancelled ctx: got %v, want %v and %v", err, jwks.ErrKeyNotFound, context.Canceled)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("hits: got %d, want 2", n)
	}
	if !c.Ready() {
		t.Error("Ready: got false during a hanging refresh, want true")
	}

	// Run returns promptly when cancelled in the middle of the fetch.
	start = time.Now()
	c.stop()
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Run took %v to return after cancellation mid-fetch, want well under 5s", elapsed)
	}
}

// TestFailedRefreshKeepsSet: every way a refresh can fail leaves the loaded
// set in place, so an identity-provider outage logs nobody out.
func TestFailedRefreshKeepsSet(t *testing.T) {
	const maxBody = 8 << 10
	// Bodies are built here: a handler runs on the server's goroutine and
	// must not call t.Fatal.
	good := rsaSet(t, 0, 1) // what a refresh would bring if it were accepted
	unusable := set(t, rsaJWK(rsa1024(), "small"), with(rsaJWK(key(1), "k1"), "use", "enc"), with(rsaJWK(key(2), "k2"), "e", "Ag"))
	three := rsaSet(t, 0, 1, 2)
	padded := func() []byte {
		// A valid set, padded with JSON whitespace past the body limit.
		return append(append([]byte{}, good[:len(good)-1]...), []byte(strings.Repeat(" ", 2*maxBody)+"}")...)
	}()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(padded)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gzipped := gz.Bytes()
	if len(gzipped) >= maxBody {
		t.Fatalf("gzipped body is %d bytes, want it under the limit %d", len(gzipped), maxBody)
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		cfg     jwks.Config
		want    []error
		code    int // the *StatusError code wanted, if any
	}{
		{
			name: "503",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "maintenance", http.StatusServiceUnavailable)
			},
			want: []error{jwks.ErrFetch}, code: http.StatusServiceUnavailable,
		},
		{
			name:    "404 with a valid set in the body",
			handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound); _, _ = w.Write(good) },
			want:    []error{jwks.ErrFetch}, code: http.StatusNotFound,
		},
		{
			name:    "204",
			handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) },
			want:    []error{jwks.ErrFetch}, code: http.StatusNoContent,
		},
		{
			name:    "bad JSON",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>we'll be back</html>")) },
			want:    []error{jwks.ErrFetch, jwks.ErrParse},
		},
		{
			name:    "truncated JSON",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(good[:len(good)/2]) },
			want:    []error{jwks.ErrFetch, jwks.ErrParse},
		},
		{
			name:    "empty set",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) },
			want:    []error{jwks.ErrFetch, jwks.ErrNoUsableKeys},
		},
		{
			name: "only unusable keys",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write(unusable)
			},
			want: []error{jwks.ErrFetch, jwks.ErrNoUsableKeys},
		},
		{
			name:    "more than MaxKeys",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(three) },
			cfg:     jwks.Config{MaxKeys: 2},
			want:    []error{jwks.ErrFetch, jwks.ErrParse},
		},
		{
			name: "oversize body with Content-Length",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(padded)))
				_, _ = w.Write(padded)
			},
			want: []error{jwks.ErrFetch, jwks.ErrBodyTooLarge},
		},
		{
			// Refused on the header alone: were the body read, this fetch
			// would end on FetchTimeout with DeadlineExceeded instead.
			name: "Content-Length over the limit, body stalls",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(1<<30))
				_, _ = w.Write(good[:100])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			cfg:  jwks.Config{FetchTimeout: time.Minute},
			want: []error{jwks.ErrFetch, jwks.ErrBodyTooLarge},
		},
		{
			name: "oversize body without Content-Length",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				// Flushing before the end forces chunked encoding.
				for chunk := range slices.Chunk(padded, 1024) {
					_, _ = w.Write(chunk)
					w.(http.Flusher).Flush()
				}
			},
			want: []error{jwks.ErrFetch, jwks.ErrBodyTooLarge},
		},
		{
			// The transport asks for gzip and inflates transparently, so
			// the limit must apply to the inflated body: 20 KiB of
			// whitespace compresses to a few dozen bytes.
			name: "gzip body over the limit once inflated",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
					_, _ = w.Write(padded)
					return
				}
				w.Header().Set("Content-Encoding", "gzip")
				w.Header().Set("Content-Length", strconv.Itoa(len(gzipped)))
				_, _ = w.Write(gzipped)
			},
			want: []error{jwks.ErrFetch, jwks.ErrBodyTooLarge},
		},
		{
			name: "body cut short",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(good)))
				_, _ = w.Write(good[:len(good)/2])
			},
			want: []error{jwks.ErrFetch},
		},
		{
			name: "no answer within FetchTimeout",
			handler: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			cfg:  jwks.Config{FetchTimeout: time.Second},
			want: []error{jwks.ErrFetch, context.DeadlineExceeded},
		},
		{
			name: "body not finished within FetchTimeout",
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write(good[:10])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			cfg:  jwks.Config{FetchTimeout: time.Second},
			want: []error{jwks.ErrFetch, context.DeadlineExceeded},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newJWKSServer(t, rsaSet(t, 0))
			cfg := tc.cfg
			cfg.MaxBodyBytes = maxBody
			c := startCache(t, srv, cfg)
			loadedAt := c.clock.Now()
			srv.setHandler(tc.handler)
			assertRefreshKeepsSet(t, c, srv, loadedAt, tc.want, tc.code)
		})
	}
}

// TestRedirectRefused: a redirect is a failed refresh, even with a client
// that would follow it, and its target is never asked.
func TestRedirectRefused(t *testing.T) {
	clients := []struct {
		name   string
		client *http.Client
	}{
		{name: "default client", client: nil},
		{name: "client that follows redirects", client: &http.Client{}},
		{name: "client with its own CheckRedirect", client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}},
	}
	for _, cl := range clients {
		for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
			t.Run(cl.name+"/"+strconv.Itoa(code), func(t *testing.T) {
				target := newJWKSServer(t, rsaSet(t, 0, 1))
				srv := newJWKSServer(t, rsaSet(t, 0))
				c := startCache(t, srv, jwks.Config{Client: cl.client})
				loadedAt := c.clock.Now()
				srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, target.URL+"/jwks.json", code)
				})
				assertRefreshKeepsSet(t, c, srv, loadedAt, []error{jwks.ErrFetch}, code)
				if n := target.hits.Load(); n != 0 {
					t.Errorf("redirect target hits: got %d, want 0", n)
				}
			})
		}
	}
}

// assertRefreshKeepsSet triggers a refresh with an unknown kid (k1) and
// checks that it failed with every error in want (and a *StatusError of
// code, if code is not 0) and that the set loaded at loadedAt, holding k0
// only, is still in use.
func assertRefreshKeepsSet(t *testing.T, c *testCache, srv *jwksServer, loadedAt time.Time, want []error, code int) {
	t.Helper()
	c.clock.Advance(time.Minute)
	err := verify(t.Context(), c.Cache, mint(t, key(1), "k1"))
	if !errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("verify k1: got %v, want %v", err, jwks.ErrKeyNotFound)
	}
	ev := c.rec.next(t)
	if missing := errorsIsAll(ev.err, want...); missing != nil {
		t.Errorf("fetch error: got %v, want it to wrap %v", ev.err, missing)
	}
	if code != 0 {
		if se, ok := errors.AsType[*jwks.StatusError](ev.err); !ok || se.Code != code || se.URL == "" {
			t.Errorf("fetch error: got %v, want a *StatusError with code %d and the URL", ev.err, code)
		}
	}
	if ev.keys != 0 {
		t.Errorf("Observer keys: got %d for a failed fetch, want 0", ev.keys)
	}
	if !c.Ready() {
		t.Error("Ready: got false after a failed refresh, want true")
	}
	if err := verify(t.Context(), c.Cache, mint(t, key(0), "k0")); err != nil {
		t.Errorf("verify k0 after the failed refresh: got %v, want nil", err)
	}
	if got := c.Version(); got != 1 {
		t.Errorf("Version: got %d, want 1 (unchanged)", got)
	}
	st := c.Status()
	if !st.Loaded || st.Keys != 1 || !st.LastSuccess.Equal(loadedAt) {
		t.Errorf("Status: got loaded=%t keys=%d last success %v, want true, 1, %v", st.Loaded, st.Keys, st.LastSuccess, loadedAt)
	}
	if st.LastError != ev.err {
		t.Errorf("Status.LastError: got %v, want the fetch error %v", st.LastError, ev.err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("hits: got %d, want 2", n)
	}
}

// TestRefreshDropsKey: a key the provider withdrew stops working at the next
// successful refresh.
func TestRefreshDropsKey(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0, 1))
	c := startCache(t, srv, jwks.Config{})
	if err := verify(t.Context(), c.Cache, mint(t, key(0), "k0")); err != nil {
		t.Fatalf("verify k0 before: got %v, want nil", err)
	}
	srv.setBody(rsaSet(t, 1, 2))
	c.clock.Advance(time.Minute)
	if err := verify(t.Context(), c.Cache, mint(t, key(2), "k2")); err != nil {
		t.Fatalf("verify k2: got %v, want nil", err)
	}
	if err := verify(t.Context(), c.Cache, mint(t, key(0), "k0")); !errors.Is(err, jwks.ErrKeyNotFound) {
		t.Errorf("verify dropped k0: got %v, want %v", err, jwks.ErrKeyNotFound)
	}
	if err := verify(t.Context(), c.Cache, mint(t, key(1), "k1")); err != nil {
		t.Errorf("verify kept k1: got %v, want nil", err)
	}
	if c.HasKey(t.Context(), "k0") || !c.HasKey(t.Context(), "k1") || !c.HasKey(t.Context(), "k2") {
		t.Errorf("HasKey k0, k1, k2: got %t, %t, %t, want false, true, true",
			c.HasKey(t.Context(), "k0"), c.HasKey(t.Context(), "k1"), c.HasKey(t.Context(), "k2"))
	}
	if got := c.Version(); got != 2 {
		t.Errorf("Version: got %d, want 2", got)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("hits: got %d, want 2", n)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		srv := newJWKSServer(t, rsaSet(t, 0))
		c := startCache(t, srv, jwks.Config{})
		start := time.Now()
		c.stop()
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("Run took %v to return, want well under 5s", elapsed)
		}
	})
	t.Run("during the first fetch", func(t *testing.T) {
		entered := make(chan struct{}, 1)
		srv := newJWKSServer(t, nil)
		srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-r.Context().Done()
		})
		rec := newRecorder()
		c, err := jwks.New(jwks.Config{URL: srv.URL, FetchTimeout: time.Hour, Logger: quietLogger(), Observer: rec})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		select {
		case <-entered:
		case <-time.After(waitLong):
			t.Fatal("the first fetch never reached the server")
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: got %v, want nil", err)
			}
		case <-time.After(waitLong):
			t.Fatalf("Run did not return within %v of cancellation", waitLong)
		}
		if ev := rec.next(t); !errors.Is(ev.err, context.Canceled) {
			t.Errorf("Observer error: got %v, want %v", ev.err, context.Canceled)
		}
		if c.Ready() {
			t.Error("Ready: got true, want false")
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		srv := newJWKSServer(t, rsaSet(t, 0))
		c, err := jwks.New(jwks.Config{URL: srv.URL, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	})
}

func TestObserver(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0, 1))
	c := startCache(t, srv, jwks.Config{Name: "authaction"})
	srv.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	c.clock.Advance(time.Minute)
	_ = verify(t.Context(), c.Cache, mint(t, key(2), "k2"))
	c.rec.next(t)
	srv.setBody(rsaSet(t, 2))
	c.clock.Advance(time.Minute)
	if err := verify(t.Context(), c.Cache, mint(t, key(2), "k2")); err != nil {
		t.Fatalf("verify k2: %v", err)
	}
	c.rec.next(t)
	c.stop()

	events := c.rec.all()
	if got, want := len(events), int(srv.hits.Load()); got != want {
		t.Fatalf("Observer calls: got %d, want one per fetch (%d)", got, want)
	}
	wantKeys := []int{2, 0, 1}
	wantErr := []bool{false, true, false}
	if len(events) != len(wantKeys) {
		t.Fatalf("Observer calls: got %d, want %d", len(events), len(wantKeys))
	}
	for i, ev := range events {
		if ev.provider != "authaction" {
			t.Errorf("call %d provider: got %q, want %q", i, ev.provider, "authaction")
		}
		if ev.keys != wantKeys[i] {
			t.Errorf("call %d keys: got %d, want %d", i, ev.keys, wantKeys[i])
		}
		if (ev.err != nil) != wantErr[i] {
			t.Errorf("call %d error: got %v, want error %t", i, ev.err, wantErr[i])
		}
		if ev.d <= 0 {
			t.Errorf("call %d duration: got %v, want > 0", i, ev.d)
		}
	}
}

func TestStatus(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0, 1))
	c := startCache(t, srv, jwks.Config{})
	first := c.clock.Now()
	url := srv.URL + "/.well-known/jwks.json"
	// NextRefresh is RefreshInterval (1h here) from the fetch, give or take
	// the jitter: checked apart.
	checkNext := func(t *testing.T, st jwks.Status, from time.Time) {
		t.Helper()
		if d := st.NextRefresh.Sub(from); d < 54*time.Minute || d > 66*time.Minute {
			t.Errorf("Status.NextRefresh: %v after the fetch, want 1h ± 10%%", d)
		}
	}
	st := c.Status()
	checkNext(t, st, first)
	st.NextRefresh = time.Time{}
	if want := (jwks.Status{Loaded: true, Keys: 2, LastSuccess: first, Source: jwks.SourceFetch, FetchedAt: first, KeySetURL: url}); st != want {
		t.Errorf("Status after the first fetch: got %+v, want %+v", st, want)
	}
	c.clock.Advance(time.Second)
	if got := c.Status().Age; got != time.Second {
		t.Errorf("Status.Age a second later: got %v, want 1s", got)
	}

	srv.setHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusInternalServerError) })
	c.clock.Advance(time.Minute)
	_ = verify(t.Context(), c.Cache, mint(t, key(2), "k2"))
	st = c.Status()
	if !st.Loaded || st.Keys != 2 || !st.LastSuccess.Equal(first) || !errors.Is(st.LastError, jwks.ErrFetch) {
		t.Errorf("Status after a failure: got %+v, want loaded, 2 keys, last success %v, an ErrFetch", st, first)
	}
	if st.Source != jwks.SourceFetch || !st.FetchedAt.Equal(first) || st.Age != time.Minute+time.Second {
		t.Errorf("Status after a failure: source %q fetched at %v age %v, want fetch, %v, 1m1s", st.Source, st.FetchedAt, st.Age, first)
	}

	srv.setBody(rsaSet(t, 2))
	c.clock.Advance(time.Minute)
	if err := verify(t.Context(), c.Cache, mint(t, key(2), "k2")); err != nil {
		t.Fatalf("verify k2: %v", err)
	}
	now := c.clock.Now()
	// The observer hears of the fetch once Run has scheduled the next.
	c.rec.next(t)
	c.rec.next(t)
	st = c.Status()
	checkNext(t, st, now)
	st.NextRefresh = time.Time{}
	if want := (jwks.Status{Loaded: true, Keys: 1, LastSuccess: now, Source: jwks.SourceFetch, FetchedAt: now, KeySetURL: url}); st != want {
		t.Errorf("Status after recovery: got %+v, want %+v", st, want)
	}
}

// TestConcurrentUse runs lookups, status reads and refreshes at once, for the
// race detector.
func TestConcurrentUse(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	var flip atomic.Bool
	a, b := rsaSet(t, 0, 1), rsaSet(t, 0, 2)
	srv.setHandler(func(w http.ResponseWriter, _ *http.Request) {
		if flip.Load() {
			_, _ = w.Write(a)
		} else {
			_, _ = w.Write(b)
		}
		flip.Store(!flip.Load())
	})
	c := startCache(t, srv, jwks.Config{UnknownKIDWait: 50 * time.Millisecond})
	tokens := []string{mint(t, key(0), "k0"), mint(t, key(1), "k1"), mint(t, key(2), "k2")}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if g == 0 {
					c.clock.Advance(time.Minute)
				}
				err := verify(t.Context(), c.Cache, tokens[(g+i)%len(tokens)])
				if (g+i)%len(tokens) == 0 && err != nil {
					t.Errorf("verify k0, which every set holds: got %v, want nil", err)
				}
				_ = c.Status()
				_ = c.Version()
				_ = c.Ready()
			}
		})
	}
	wg.Wait()
}

// TestKeysFirstSeen: Keys describes the set in force (kid, alg, type, size)
// and keeps the time each kid was first seen across refreshes.
func TestKeysFirstSeen(t *testing.T) {
	srv := newJWKSServer(t, rsaSet(t, 0))
	tc := startCache(t, srv, jwks.Config{MinRefreshInterval: time.Millisecond})
	t0 := tc.clock.Now()
	keys := tc.Keys()
	if len(keys) != 1 || keys[0].KID != kid(0) || keys[0].Type != "RSA" || keys[0].Bits != 2048 || !keys[0].FirstSeen.Equal(t0) {
		t.Fatalf("Keys = %+v", keys)
	}
	tc.clock.Advance(time.Hour)
	srv.setBody(rsaSet(t, 0, 1))
	// An unknown kid refreshes the set.
	if err := verify(t.Context(), tc.Cache, mint(t, key(1), kid(1))); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	keys = tc.Keys()
	if len(keys) != 2 || !keys[0].FirstSeen.Equal(t0) || keys[1].KID != kid(1) || !keys[1].FirstSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after a rotation: %+v", keys)
	}
}
