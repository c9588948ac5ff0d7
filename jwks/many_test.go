package jwks_test

// Many providers: a hundred caches start together, their first fetches
// bounded by a shared FetchLimiter.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/jwks"
)

// readyAt is an Observer that records, per provider, when its first
// successful fetch ended, relative to start.
type readyAt struct {
	start time.Time
	mu    sync.Mutex
	at    map[string]time.Duration
}

func (r *readyAt) ObserveFetch(provider string, err error, _ time.Duration, _ int) {
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.at[provider]; !ok {
		r.at[provider] = time.Since(r.start)
	}
}

// TestManyProvidersBounded: 100 caches start at once against providers that
// take 50ms to answer. With a limiter of n, never more than n fetches run
// at once and the last cache is ready after ceil(100/n) rounds of 50ms;
// without one, all 100 fetch at once.
func TestManyProvidersBounded(t *testing.T) {
	const (
		providers = 100
		rtt       = 50 * time.Millisecond
	)
	body := rsaSet(t, 0, 1)
	tests := []struct {
		name         string
		limit        int // 0: no limiter
		wantMax      int64
		wantAllReady time.Duration
	}{
		{name: "no limiter", limit: 0, wantMax: providers, wantAllReady: rtt},
		{name: "limit 10", limit: 10, wantMax: 10, wantAllReady: 10 * rtt},
		{name: "default limit", limit: jwks.DefaultFetchConcurrency, wantMax: jwks.DefaultFetchConcurrency, wantAllReady: 7 * rtt},
		{name: "limit 1", limit: 1, wantMax: 1, wantAllReady: providers * rtt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var inflight, maxInflight atomic.Int64
				idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) {
					n := inflight.Add(1)
					defer inflight.Add(-1)
					for m := maxInflight.Load(); n > m && !maxInflight.CompareAndSwap(m, n); m = maxInflight.Load() {
					}
					if err := sleepCtx(r, rtt); err != nil {
						return nil, err
					}
					return respond(r, 200, body)
				})
				var limiter *jwks.FetchLimiter
				if tc.limit > 0 {
					limiter = jwks.NewFetchLimiter(tc.limit)
				}
				obs := &readyAt{start: time.Now(), at: map[string]time.Duration{}}
				ctx, cancel := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				caches := make([]*jwks.Cache, providers)
				for i := range caches {
					c, err := jwks.New(jwks.Config{
						Name: fmt.Sprintf("p%03d", i), URL: fmt.Sprintf("https://idp-%03d.test/jwks", i),
						Client: &http.Client{Transport: idp}, FetchLimiter: limiter, Observer: obs, Logger: quietLogger(),
					})
					if err != nil {
						t.Fatal(err)
					}
					caches[i] = c
					wg.Go(func() { _ = c.Run(ctx) })
				}
				time.Sleep(tc.wantAllReady - time.Millisecond)
				synctest.Wait()
				ready := 0
				for _, c := range caches {
					if c.Ready() {
						ready++
					}
				}
				if ready == providers {
					t.Errorf("all %d ready before %v", providers, tc.wantAllReady)
				}
				time.Sleep(time.Millisecond)
				synctest.Wait()
				for _, c := range caches {
					if !c.Ready() {
						t.Errorf("%s not ready at %v", c.Name(), tc.wantAllReady)
					}
				}
				cancel()
				wg.Wait()
				if got := maxInflight.Load(); got != tc.wantMax {
					t.Errorf("most fetches at once: got %d, want %d", got, tc.wantMax)
				}
				var last time.Duration
				for _, d := range obs.at {
					last = max(last, d)
				}
				if len(obs.at) != providers || last != tc.wantAllReady {
					t.Errorf("%d providers ready, the last at %v; want %d at %v", len(obs.at), last, providers, tc.wantAllReady)
				}
			})
		})
	}
}

// TestFetchLimiterCancel: a refresh waiting for a slot gives up when Run's
// context ends, and Run returns.
func TestFetchLimiterCancel(t *testing.T) {
	body := rsaSet(t, 0)
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) })
		limiter := jwks.NewFetchLimiter(1)
		hold, release := make(chan struct{}), make(chan struct{})
		// One cache holds the only slot: its fetch blocks until released.
		blocking := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) {
			close(hold)
			<-release
			return respond(r, 200, body)
		})
		a, stopA := runInBubble(t, blocking, jwks.Config{FetchLimiter: limiter})
		<-hold
		rec := newRecorder()
		b, stopB := runInBubble(t, idp, jwks.Config{FetchLimiter: limiter, Observer: rec})
		synctest.Wait()
		if len(idp.times()) != 0 || b.Ready() {
			t.Errorf("the second cache fetched without a slot")
		}
		stopB() // returns although its refresh waits for a slot
		if ev := rec.all(); len(ev) != 1 || ev[0].err == nil {
			t.Errorf("observed %+v, want one error (cancelled while waiting)", ev)
		}
		close(release)
		synctest.Wait()
		stopA()
		if !a.Ready() {
			t.Error("the first cache is not ready")
		}
	})
}

// BenchmarkStartProviders starts 100 caches against 100 providers (two
// RSA-2048 keys each) and reports the time until all are ready, and the
// heap and goroutines each one adds once ready. Against httptest servers
// (loopback HTTP, in this process: the heap includes both ends of each idle
// keep-alive connection, and a goroutine per end): with the default fetch
// limit and a transport per cache (a nil Config.Client), with one shared
// client, and with one shared client and no limit. Against an in-memory
// transport: the caches alone.
func BenchmarkStartProviders(b *testing.B) {
	const providers = 100
	bodies := make([][]byte, providers)
	servers := make([]*httptest.Server, providers)
	for i := range servers {
		body := set(b, rsaJWK(key(0), fmt.Sprintf("p%03d-a", i)), rsaJWK(key(1), fmt.Sprintf("p%03d-b", i)))
		bodies[i] = body
		servers[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/jwk-set+json")
			_, _ = w.Write(body)
		}))
		defer servers[i].Close()
	}
	memory := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		var i int
		_, _ = fmt.Sscanf(r.URL.Host, "idp-%03d.test", &i)
		return respond(r, 200, bodies[i])
	})}
	httpURL := func(i int) string { return servers[i].URL + "/.well-known/jwks.json" }
	memURL := func(i int) string { return fmt.Sprintf("https://idp-%03d.test/jwks", i) }
	shared := func() *http.Client { return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()} }
	for _, bc := range []struct {
		name   string
		client func() *http.Client
		url    func(int) string
		limit  int
	}{
		{name: "httptest, own transport", client: func() *http.Client { return nil }, url: httpURL, limit: jwks.DefaultFetchConcurrency},
		{name: "httptest, shared client", client: shared, url: httpURL, limit: jwks.DefaultFetchConcurrency},
		{name: "httptest, shared client, no limit", client: shared, url: httpURL},
		{name: "in memory", client: func() *http.Client { return memory }, url: memURL, limit: jwks.DefaultFetchConcurrency},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var total time.Duration
			var heap, goroutines int64
			for b.Loop() {
				client := bc.client()
				var limiter *jwks.FetchLimiter
				if bc.limit > 0 {
					limiter = jwks.NewFetchLimiter(bc.limit)
				}
				var ready sync.WaitGroup
				ready.Add(providers)
				obs := observerFunc(func(_ string, err error, _ time.Duration, _ int) {
					if err == nil {
						ready.Done()
					}
				})
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				g0 := runtime.NumGoroutine()
				start := time.Now()
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				caches := make([]*jwks.Cache, providers)
				for i := range caches {
					c, err := jwks.New(jwks.Config{
						Name: fmt.Sprintf("p%03d", i), URL: bc.url(i), Client: client,
						FetchLimiter: limiter, Observer: obs, Logger: quietLogger(), RefreshInterval: time.Hour,
					})
					if err != nil {
						b.Fatal(err)
					}
					caches[i] = c
					wg.Go(func() { _ = c.Run(ctx) })
				}
				ready.Wait()
				total += time.Since(start)
				goroutines += int64(runtime.NumGoroutine() - g0)
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap += int64(after.HeapAlloc) - int64(before.HeapAlloc)
				cancel()
				wg.Wait()
				runtime.KeepAlive(caches)
				// Let the connections of this round close before the next
				// one measures.
				for _, srv := range servers {
					srv.CloseClientConnections()
				}
				for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > g0 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}
			b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/start")
			b.ReportMetric(float64(heap)/float64(b.N)/providers, "B/provider")
			b.ReportMetric(float64(goroutines)/float64(b.N)/providers, "goroutines/provider")
			b.ReportMetric(0, "ns/op")
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
