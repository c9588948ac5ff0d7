package main

// The many-providers runs: extauthz started with a generated config of
// -providers providers, each with its own issuer and JWKS URL on a JWKS
// server in the harness; how long until /readyz answers 200, and the memory
// then, next to the same with one provider.

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"
)

// providerRTT is how long each JWKS answer is held in the third run: a
// remote issuer's round trip, which makes the server's bound on concurrent
// fetches (jwks.DefaultFetchConcurrency) show in the time to ready and in
// the most fetches the JWKS server saw at once.
const providerRTT = 50 * time.Millisecond

// providerRun is one start of extauthz with a generated config.
type providerRun struct {
	Providers int           `json:"providers"`
	Delay     time.Duration `json:"jwks_delay_ns,omitempty"`
	// Ready is from starting the process to the first 200 of /readyz
	// (polled every 2ms), which answers 200 once every provider's key set
	// has loaded.
	Ready time.Duration `json:"ready_ns"`
	// RunsReady is every run's Ready when the run was repeated; the
	// result is the median one.
	RunsReady []time.Duration `json:"runs_ready_ns,omitempty"`
	// RSS is the server's at ready; HeapInuse and Goroutines from its
	// /metrics right after.
	RSS        int64 `json:"rss"`
	HeapInuse  int64 `json:"heap_inuse,omitempty"`
	Goroutines int64 `json:"goroutines,omitempty"`
	// Fetches and MaxInflight are the JWKS requests the key server
	// answered until ready, and the most it was answering at once.
	Fetches     int64 `json:"fetches"`
	MaxInflight int64 `json:"max_inflight"`
}

// providerEntry is one provider of extauthz's --config file.
type providerEntry struct {
	Name      string   `yaml:"name"`
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences,flow"`
	JWKSURL   string   `yaml:"jwks_url"`
}

// writeProvidersConfig writes an extauthz --config file of n providers
// whose key sets are at base/p<i>/.well-known/jwks.json into dir.
func writeProvidersConfig(dir string, n int, base string) (string, error) {
	var file struct {
		Providers []providerEntry `yaml:"providers"`
	}
	for i := range n {
		file.Providers = append(file.Providers, providerEntry{Name: providerName(i), Issuer: providerIssuer(i),
			Audiences: []string{audience}, JWKSURL: base + "/" + providerName(i) + jwksPath})
	}
	raw, err := yaml.Marshal(file)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "providers.yaml")
	return path, os.WriteFile(path, raw, 0o644)
}

func providerName(i int) string   { return fmt.Sprintf("p%03d", i) }
func providerIssuer(i int) string { return "https://" + providerName(i) + ".bench.test" }

// keyServer serves provider i's JWKS (two RSA-2048 keys, kids p<i>-a and
// p<i>-b) at /p<i>/jwks.json on 127.0.0.1, each answer held for a delay,
// and counts the requests and the most in flight at once.
type keyServer struct {
	URL                         string // http://127.0.0.1:port
	sets                        map[string][]byte
	delay                       atomic.Int64
	hits, inflight, maxInflight atomic.Int64
	srv                         *http.Server
}

func startKeyServer(n int, a, b *rsa.PublicKey) (*keyServer, error) {
	ks := &keyServer{sets: map[string][]byte{}}
	for i := range n {
		ks.sets["/"+providerName(i)+jwksPath] = jwkSet(map[string]*rsa.PublicKey{providerName(i) + "-a": a, providerName(i) + "-b": b})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ks.URL = "http://" + l.Addr().String()
	ks.srv = &http.Server{Handler: ks, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ks.srv.Serve(l) }()
	return ks, nil
}

func (ks *keyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := ks.sets[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	ks.hits.Add(1)
	n := ks.inflight.Add(1)
	defer ks.inflight.Add(-1)
	for m := ks.maxInflight.Load(); n > m && !ks.maxInflight.CompareAndSwap(m, n); m = ks.maxInflight.Load() {
	}
	if d := time.Duration(ks.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Write(body)
}

// reset zeroes the counts and sets the delay, before a run.
func (ks *keyServer) reset(delay time.Duration) {
	ks.delay.Store(int64(delay))
	ks.hits.Store(0)
	ks.maxInflight.Store(0)
}

func (ks *keyServer) Close() { ks.srv.Close() }

// providerRuns starts extauthz with 1 provider, with -providers, and with
// -providers whose JWKS answers take providerRTT, -repeat times
// interleaved, and keeps the median run of each by time to ready.
func (h *harness) providerRuns(ctx context.Context) error {
	n := h.cfg.providers
	second, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	ks, err := startKeyServer(n, &h.tokens.key.PublicKey, &second.PublicKey)
	if err != nil {
		return err
	}
	defer ks.Close()
	type variant struct {
		providers int
		delay     time.Duration
	}
	variants := []variant{{1, 0}, {n, 0}, {n, providerRTT}}
	if n == 1 {
		variants = slices.Delete(variants, 1, 2)
	}
	runs := make([][]providerRun, len(variants))
	for range h.cfg.repeat {
		for i, v := range variants {
			r, err := h.providerRun(ctx, ks, second, v.providers, v.delay)
			if err != nil {
				return fmt.Errorf("%d providers: %w", v.providers, err)
			}
			runs[i] = append(runs[i], r)
		}
	}
	for _, rs := range runs {
		sorted := slices.Clone(rs)
		slices.SortStableFunc(sorted, func(a, b providerRun) int { return cmp.Compare(a.Ready, b.Ready) })
		m := sorted[len(sorted)/2]
		if len(rs) > 1 {
			for _, r := range rs {
				m.RunsReady = append(m.RunsReady, r.Ready)
			}
		}
		h.manyProviders = append(h.manyProviders, m)
	}
	return nil
}

// providerRun starts extauthz with a config of n providers whose key sets
// answer after delay, measures it at ready, and checks that a token of the
// last provider is allowed and the bench token (an issuer not configured)
// denied.
func (h *harness) providerRun(ctx context.Context, ks *keyServer, key *rsa.PrivateKey, n int, delay time.Duration) (providerRun, error) {
	r := providerRun{Providers: n, Delay: delay}
	if _, err := h.waitQuiet(ctx); err != nil {
		return r, err
	}
	dir, err := h.runDir(fmt.Sprintf("providers-%d", n))
	if err != nil {
		return r, err
	}
	path, err := writeProvidersConfig(dir, n, ks.URL)
	if err != nil {
		return r, err
	}
	claims := benchClaims("bench-providers", fmt.Sprintf("providers-%d", time.Now().UnixNano()), time.Now(), time.Now().Add(time.Hour))
	claims["iss"] = providerIssuer(n - 1)
	good, err := signRS256(key, providerName(n-1)+"-b", claims)
	if err != nil {
		return r, err
	}
	ks.reset(delay)
	start := time.Now()
	in, ready, err := launchOurs(ctx, h, dir, []string{"--config", path}, nil, 2*time.Millisecond)
	if err != nil {
		return r, err
	}
	defer in.stop()
	r.Ready = ready.Sub(start)
	r.Fetches, r.MaxInflight = ks.hits.Load(), ks.maxInflight.Load()
	mem, err := memoryOf(in.main().cmd.Process.Pid)
	if err != nil {
		return r, in.main().failure(err)
	}
	r.RSS = mem.RSS
	if v, ok := scrapeGauge(ctx, in.metricsURL, "go_memstats_heap_inuse_bytes"); ok {
		r.HeapInuse = int64(v)
	}
	if v, ok := scrapeGauge(ctx, in.metricsURL, "go_goroutines"); ok {
		r.Goroutines = int64(v)
	}
	if err := in.probe(ctx, modeGRPC, good, h.tokens.hit, false, nil); err != nil {
		return r, in.main().failure(fmt.Errorf("%s's token allowed, the bench issuer's denied: %w", providerName(n-1), err))
	}
	h.logf("extauthz with %d provider(s), JWKS answers after %s: ready in %s, RSS %s, heap in use %s, %d goroutines, %d fetches (at most %d at once)",
		n, delay, r.Ready.Round(100*time.Microsecond), fmtBytes(r.RSS), fmtBytes(r.HeapInuse), r.Goroutines, r.Fetches, r.MaxInflight)
	return r, nil
}
