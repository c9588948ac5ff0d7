package jwks_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/jwks"
)

// These tests run Cache.Run inside a synctest bubble, whose clock only moves
// when every goroutine in it is blocked, so refresh schedules are checked to
// the nanosecond without sleeping. The JWKS endpoint is a fake
// http.RoundTripper: no network inside the bubble.

// fakeIdP is an http.RoundTripper that answers JWKS fetches from a script
// and records when each one started, relative to the bubble's start.
type fakeIdP struct {
	start time.Time
	// answer returns the n-th (from 0) response. It runs inside the bubble,
	// so it may sleep to stand for a slow server.
	answer func(r *http.Request, n int) (*http.Response, error)

	mu    sync.Mutex
	calls []time.Duration
}

func newFakeIdP(answer func(r *http.Request, n int) (*http.Response, error)) *fakeIdP {
	return &fakeIdP{start: time.Now(), answer: answer}
}

func (f *fakeIdP) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, time.Since(f.start))
	f.mu.Unlock()
	return f.answer(r, n)
}

func (f *fakeIdP) times() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func respond(r *http.Request, code int, body []byte) (*http.Response, error) {
	return &http.Response{
		StatusCode:    code,
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}, nil
}

// sleepCtx stands for a server that takes d to answer, or is cut off by the
// request's context.
func sleepCtx(r *http.Request, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

// runInBubble builds a Cache on idp and starts Run. The returned stop
// cancels Run and checks that it returned nil. The schedule has no jitter,
// so that fetch times are exact, unless the test passes its own.
func runInBubble(t *testing.T, idp *fakeIdP, cfg jwks.Config, jitter ...func(time.Duration) time.Duration) (*jwks.Cache, func()) {
	t.Helper()
	if cfg.URL == "" && !cfg.Discovery {
		cfg.URL = "https://idp.test/.well-known/jwks.json"
	}
	cfg.Client = &http.Client{Transport: idp}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := jwks.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	noJitter := func(d time.Duration) time.Duration { return d }
	jwks.SetJitter(c, append(jitter, noJitter)[0])
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return c, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	}
}

func secs(s ...float64) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out
}

func TestNewStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, nil) })
		c, err := jwks.New(jwks.Config{URL: "https://idp.test/jwks", Client: &http.Client{Transport: idp}, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := idp.times(); len(got) != 0 {
			t.Errorf("fetches without Run: got %v, want none", got)
		}
		if c.Ready() {
			t.Error("Ready: got true without Run, want false")
		}
		// synctest.Test itself fails if New left a goroutine behind.
	})
}

func TestRunFetchesImmediately(t *testing.T) {
	body := rsaSet(t, 0)
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) })
		c, stop := runInBubble(t, idp, jwks.Config{})
		defer stop()
		synctest.Wait()
		if got, want := idp.times(), secs(0); !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
		if !c.Ready() || c.Version() != 1 {
			t.Errorf("Ready, Version: got %t, %d, want true, 1", c.Ready(), c.Version())
		}
	})
}

// TestRunSchedule checks the whole schedule: the first fetch at once, failed
// fetches retried after MinRefreshInterval, doubling up to RefreshInterval,
// then a refresh every RefreshInterval, and the backoff starting over after a
// success.
func TestRunSchedule(t *testing.T) {
	body := rsaSet(t, 0)
	synctest.Test(t, func(t *testing.T) {
		// Fetches 0-5 and 7 fail; the others succeed.
		fail := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 7: true}
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			if fail[n] {
				if n%2 == 0 {
					return respond(r, http.StatusBadGateway, nil)
				}
				return nil, errors.New("connection refused")
			}
			return respond(r, 200, body)
		})
		rec := newRecorder()
		c, stop := runInBubble(t, idp, jwks.Config{
			MinRefreshInterval: time.Second,
			RefreshInterval:    10 * time.Second,
			Observer:           rec,
		})

		checkpoints := []struct {
			at          float64 // seconds
			wantReady   bool
			wantVersion uint64
		}{
			{at: 34.5, wantReady: false, wantVersion: 0}, // before the first success
			{at: 35.5, wantReady: true, wantVersion: 1},
			{at: 45.5, wantReady: true, wantVersion: 1}, // a failed refresh keeps the set
			{at: 46.5, wantReady: true, wantVersion: 2},
			{at: 56.5, wantReady: true, wantVersion: 3}, // a refresh of an unchanged set is still a new version
		}
		start := time.Now()
		for _, cp := range checkpoints {
			time.Sleep(time.Until(start.Add(time.Duration(cp.at * float64(time.Second)))))
			synctest.Wait()
			if c.Ready() != cp.wantReady || c.Version() != cp.wantVersion {
				t.Errorf("at %vs: Ready, Version: got %t, %d, want %t, %d", cp.at, c.Ready(), c.Version(), cp.wantReady, cp.wantVersion)
			}
		}
		stop()

		// Backoff 1s, 2s, 4s, 8s, then capped at 10s; success at 35s; next
		// refresh 10s later fails; retried 1s later; then every 10s.
		want := secs(0, 1, 3, 7, 15, 25, 35, 45, 46, 56)
		if got := idp.times(); !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
		if got, want := len(rec.all()), len(want); got != want {
			t.Errorf("Observer calls: got %d, want %d", got, want)
		}
	})
}

// TestRunBackoffCapped checks that a long outage before the first load never
// retries more often than MinRefreshInterval nor less often than
// RefreshInterval.
func TestRunBackoffCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) {
			return respond(r, http.StatusServiceUnavailable, nil)
		})
		_, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: 10 * time.Second, RefreshInterval: 15 * time.Minute})
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		stop()
		got := idp.times()
		// 10s, 20s, ... 640s, then 900s: 0, 10, 30, 70, 150, 310, 630, 1270, 2170, ...
		want := secs(0, 10, 30, 70, 150, 310, 630, 1270, 2170, 3070, 3970, 4870, 5770, 6670)
		if !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
	})
}

// TestRunRetriesSlowFetch checks that a fetch cut off by FetchTimeout counts
// as a failure, and the retry is timed from its end.
func TestRunRetriesSlowFetch(t *testing.T) {
	body := rsaSet(t, 0)
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			if n == 0 {
				if err := sleepCtx(r, time.Hour); err != nil {
					return nil, err
				}
			}
			return respond(r, 200, body)
		})
		rec := newRecorder()
		c, stop := runInBubble(t, idp, jwks.Config{FetchTimeout: 5 * time.Second, MinRefreshInterval: 10 * time.Second, Observer: rec})
		defer stop()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got, want := idp.times(), secs(0, 15); !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
		if ev := rec.all(); len(ev) < 1 || !errors.Is(ev[0].err, context.DeadlineExceeded) || ev[0].d != 5*time.Second {
			t.Errorf("first fetch: got %+v, want a DeadlineExceeded after 5s", ev)
		}
		if !c.Ready() {
			t.Error("Ready: got false, want true")
		}
	})
}

// TestRefreshIntervalDropsKey checks that a scheduled refresh (no unknown
// kid involved) removes keys the provider no longer lists.
func TestRefreshIntervalDropsKey(t *testing.T) {
	before, after := rsaSet(t, 0, 1), rsaSet(t, 1)
	t0, t1 := mint(t, key(0), "k0"), mint(t, key(1), "k1")
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			if n == 0 {
				return respond(r, 200, before)
			}
			return respond(r, 200, after)
		})
		c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, RefreshInterval: time.Minute})
		defer stop()
		synctest.Wait()
		if err := verify(t.Context(), c, t0); err != nil {
			t.Errorf("verify k0 before the refresh: got %v, want nil", err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if err := verify(t.Context(), c, t0); !errors.Is(err, jwks.ErrKeyNotFound) {
			t.Errorf("verify k0 after the refresh: got %v, want %v", err, jwks.ErrKeyNotFound)
		}
		if err := verify(t.Context(), c, t1); err != nil {
			t.Errorf("verify k1 after the refresh: got %v, want nil", err)
		}
		// The k0 miss came right after the scheduled fetch, made while no
		// unknown kid was asked for, so it fetched once more (a poll just
		// before a rotation must not hold back the new key's first tokens);
		// the next miss is rate limited: three fetches in all.
		if err := verify(t.Context(), c, t0); !errors.Is(err, jwks.ErrKeyNotFound) {
			t.Errorf("verify k0 again: got %v, want %v", err, jwks.ErrKeyNotFound)
		}
		if got, want := idp.times(), secs(0, 60, 60); !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
	})
}

// TestUnknownKIDRateLimitOverTime sends an unknown kid every 50ms for 10s and
// checks that fetches start at most once per MinRefreshInterval and that no
// lookup ever waits on the rate limit.
func TestUnknownKIDRateLimitOverTime(t *testing.T) {
	body := rsaSet(t, 0)
	tok := mint(t, key(1), "k1")
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) })
		c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, RefreshInterval: time.Hour})
		defer stop()
		synctest.Wait()
		for range 200 {
			time.Sleep(50 * time.Millisecond)
			start := time.Now()
			err := verify(t.Context(), c, tok)
			if !errors.Is(err, jwks.ErrKeyNotFound) {
				t.Fatalf("verify k1: got %v, want %v", err, jwks.ErrKeyNotFound)
			}
			// Fetches take no time here, so any wait is a wait on the limiter.
			if d := time.Since(start); d != 0 {
				t.Fatalf("verify k1 at %v waited %v, want 0", start.Sub(idp.start), d)
			}
		}
		// The first lookup, 50ms after the first fetch, fetches: that fetch
		// was made before any unknown kid was asked for. Then one a second.
		got := idp.times()
		want := []time.Duration{0}
		for i := range 10 {
			want = append(want, time.Duration(i)*time.Second+50*time.Millisecond)
		}
		if !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
	})
}

// TestUnknownKIDWithPolling pins the unknown-kid budget against a provider
// that asks to be polled as often as allowed (Cache-Control: no-cache, as Ory
// Hydra sends): a poll made just before a key rotation does not hold back the
// new key's first token, and under a flood the polls count against the budget,
// so fetches stay one per MinRefreshInterval (plus the first).
func TestUnknownKIDWithPolling(t *testing.T) {
	before, after := rsaSet(t, 0), rsaSet(t, 0, 1)
	t1, bogus := mint(t, key(1), "k1"), mint(t, key(2), "made-up")
	noCache := hdr("Cache-Control", "no-cache")
	t.Run("rotation", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var rotated atomic.Bool
			idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) {
				if rotated.Load() {
					return respondH(r, 200, after, noCache)
				}
				return respondH(r, 200, before, noCache)
			})
			c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, RefreshInterval: time.Hour})
			defer stop()
			time.Sleep(3500 * time.Millisecond) // polls at 0, 1, 2, 3s
			rotated.Store(true)
			time.Sleep(100 * time.Millisecond)
			if err := verify(t.Context(), c, t1); err != nil {
				t.Errorf("verify k1 600ms after a poll, 100ms after the rotation: got %v, want nil", err)
			}
			time.Sleep(1500 * time.Millisecond)
			// The unknown kid's fetch at 3.6s moved the next poll to 4.6s.
			if got, want := idp.times(), secs(0, 1, 2, 3, 3.6, 4.6); !slices.Equal(got, want) {
				t.Errorf("fetch times: got %v, want %v", got, want)
			}
		})
	})
	t.Run("flood", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respondH(r, 200, before, noCache) })
			c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, RefreshInterval: time.Hour})
			defer stop()
			synctest.Wait()
			for range 143 { // 10s, off the polls' beat
				time.Sleep(70 * time.Millisecond)
				if err := verify(t.Context(), c, bogus); !errors.Is(err, jwks.ErrKeyNotFound) {
					t.Fatalf("verify a made-up kid: got %v, want %v", err, jwks.ErrKeyNotFound)
				}
			}
			got := idp.times()
			// 0s: the first fetch; 70ms: the first unknown kid's; then the
			// polls and the flood share one fetch a second.
			if len(got) < 2 || got[1] != 70*time.Millisecond {
				t.Fatalf("fetch times: got %v, want 0s, 70ms, then one a second", got)
			}
			for i := 2; i < len(got); i++ {
				if d := got[i] - got[i-1]; d < time.Second {
					t.Errorf("fetches %d and %d %v apart, want at least 1s: %v", i-1, i, d, got)
				}
			}
			if len(got) > 11 {
				t.Errorf("%d fetches in 10s, want at most 11: %v", len(got), got)
			}
		})
	})
}

// TestUnknownKIDWaitBounded checks, in fake time, that an unknown-kid lookup
// waits exactly UnknownKIDWait for a slow in-flight fetch, not FetchTimeout,
// and succeeds when the fetch lands within UnknownKIDWait.
func TestUnknownKIDWaitBounded(t *testing.T) {
	first, second := rsaSet(t, 0), rsaSet(t, 0, 1)
	tok := mint(t, key(1), "k1")
	tests := []struct {
		name      string
		fetchTime time.Duration
		wantErr   error
		wantWait  time.Duration
	}{
		{name: "fetch slower than the wait", fetchTime: 3 * time.Second, wantErr: jwks.ErrKeyNotFound, wantWait: 100 * time.Millisecond},
		{name: "fetch within the wait", fetchTime: 60 * time.Millisecond, wantErr: nil, wantWait: 60 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
					if n == 0 {
						return respond(r, 200, first)
					}
					if err := sleepCtx(r, tc.fetchTime); err != nil {
						return nil, err
					}
					return respond(r, 200, second)
				})
				c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, FetchTimeout: 5 * time.Second, UnknownKIDWait: 100 * time.Millisecond})
				defer stop()
				synctest.Wait()
				time.Sleep(time.Second)
				start := time.Now()
				err := verify(t.Context(), c, tok)
				if d := time.Since(start); d != tc.wantWait {
					t.Errorf("lookup waited %v, want %v", d, tc.wantWait)
				}
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
					t.Errorf("verify k1: got %v, want %v", err, tc.wantErr)
				}
				// Whatever the lookup saw, the fetch completes and brings k1.
				time.Sleep(5 * time.Second)
				if err := verify(t.Context(), c, tok); err != nil {
					t.Errorf("verify k1 after the fetch: got %v, want nil", err)
				}
				if got := len(idp.times()); got != 2 {
					t.Errorf("fetches: got %d, want 2", got)
				}
			})
		})
	}
}

// TestUnknownKIDRequestNotLost: an unknown kid that asks for a refresh just
// as a fetch finishes must get that refresh. Run's observer call sits in
// that window (after the fetch released its waiters, before Run loops), so a
// lookup made from the Observer lands there deterministically; any request
// arriving at that moment does the same in production.
func TestUnknownKIDRequestNotLost(t *testing.T) {
	first, second := rsaSet(t, 0), rsaSet(t, 0, 1)
	tok := mint(t, key(1), "k1")
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			if n == 0 {
				// A first fetch that takes MinRefreshInterval, so that the
				// rate limit allows a lookup right after it.
				if err := sleepCtx(r, time.Second); err != nil {
					return nil, err
				}
				return respond(r, 200, first)
			}
			return respond(r, 200, second)
		})
		var cache atomic.Pointer[jwks.Cache]
		lookupErr := make(chan error, 1)
		obs := observerFunc(func(_ string, err error, _ time.Duration, _ int) {
			if c := cache.Load(); err == nil && c != nil && c.Version() == 1 {
				lookupErr <- verify(context.Background(), c, tok)
			}
		})
		c, stop := runInBubble(t, idp, jwks.Config{
			MinRefreshInterval: time.Second,
			RefreshInterval:    time.Hour,
			FetchTimeout:       5 * time.Second,
			UnknownKIDWait:     100 * time.Millisecond,
			Observer:           obs,
		})
		defer stop()
		cache.Store(c)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		// The lookup itself gave up after UnknownKIDWait (Run was busy calling
		// the Observer); the refresh it asked for must still happen.
		select {
		case err := <-lookupErr:
			if !errors.Is(err, jwks.ErrKeyNotFound) {
				t.Errorf("lookup from the observer: got %v, want %v", err, jwks.ErrKeyNotFound)
			}
		default:
			t.Fatal("the observer made no lookup")
		}
		if got, want := idp.times(), secs(0, 1.1); !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v (the refresh the lookup asked for was dropped)", got, want)
		}
		if err := verify(t.Context(), c, tok); err != nil {
			t.Errorf("verify k1 later: got %v, want nil", err)
		}
	})
}

type observerFunc func(provider string, err error, d time.Duration, keys int)

func (f observerFunc) ObserveFetch(provider string, err error, d time.Duration, keys int) {
	f(provider, err, d, keys)
}
