package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/jwks"
)

// Options are what a caller can give Run besides the config.
type Options struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// GRPCListener, HTTPListener and AdminListener, when set, are used
	// instead of listening on the config's addresses (tests, cmd/demo).
	GRPCListener, HTTPListener, AdminListener net.Listener
	// HTTPClient fetches the key sets (custom CA, proxies). Defaults to a
	// clone of http.DefaultTransport's client.
	HTTPClient *http.Client
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Ready, when set, is called once every provider's key set has loaded.
	Ready func()

	// Load, when set, enables reloading: it is called on every reload
	// trigger and must build the configuration the way the process did at
	// start (the same flags and environment, the config file read anew).
	// Nil means the configuration given to New is never replaced.
	Load func() (*config.Config, error)
	// Reload triggers a reload whenever it receives (cmd/extauthz sends on
	// SIGHUP). Nil means only the file watch triggers reloads.
	Reload <-chan struct{}
	// LogLevel, when set, is the level of Logger's handler: a reload sets it
	// to the new config's log_level. Nil means the level needs a restart.
	LogLevel *slog.LevelVar
	// TracerProvider makes the spans of each check (cmd/extauthz gives the
	// one otelenv.NewTracerProvider makes from the OTEL_* variables).
	// Nil means no tracing, at no cost per check.
	TracerProvider trace.TracerProvider
}

// Limits of the listeners. The check endpoints serve a proxy, not browsers:
// headers are bounded well below the proxies' own limits, and slow clients
// are cut off.
const (
	maxHeaderBytes    = 64 << 10 // admin listener
	readHeaderTimeout = 5 * time.Second
)

// Server is one running ext_authz process.
type Server struct {
	cfg     *config.Config // the configuration at start: listeners and their limits
	opts    Options
	log     *slog.Logger
	metrics *metrics
	health  *health.Server
	started time.Time
	// fetchLimiter bounds the key-set fetches in flight, of every provider
	// and generation: a start with many providers does not burst.
	fetchLimiter *jwks.FetchLimiter
	tracing      *tracing // nil when Options.TracerProvider is nil

	// gen is the configuration in force: its key caches and the decision
	// built on them. Every check dereferences it once (acquire), so a reload
	// swaps it atomically while checks keep running on the one they took.
	gen atomic.Pointer[generation]

	// fetchObs receives the fetches of every cache of every generation.
	fetchObs fetchObserver

	// statsMu guards retiring and retiredStats: the token cache counters of
	// generations replaced by reloads, so that the metrics never go back.
	statsMu      sync.Mutex
	retiring     []*generation // replaced, checks may still run on them
	retiredStats authz.CacheStats

	// healthMu serializes updateHealth: each provider's cache calls it from
	// its own goroutine, and an evaluation made before another provider
	// loaded must not overwrite SERVING, nor Ready be called twice.
	healthMu sync.Mutex
}

// generation is one loaded configuration.
type generation struct {
	// number counts the configurations loaded (1 at start); loadedAt is
	// when this one was.
	number   int64
	loadedAt time.Time
	cfg      *config.Config
	caches   []*jwks.Cache
	authz    *authz.Server
	// keys holds each cache's identity (cacheKey), so that the next
	// generation can take over the caches whose settings did not change.
	keys map[cacheKey]*jwks.Cache
	// inflight counts the checks running on this generation; a reload
	// waits for it to drop to zero before it stops the caches it removed.
	inflight atomic.Int64
}

// New builds the caches and the decision from cfg. It does no I/O.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg = withDefaults(cfg)
	s := &Server{cfg: cfg, opts: opts, log: opts.Logger, health: health.NewServer(), started: opts.Now(),
		fetchLimiter: jwks.NewFetchLimiter(jwks.DefaultFetchConcurrency)}
	if opts.TracerProvider != nil {
		s.tracing = newTracing(opts.TracerProvider)
	}
	s.metrics = newMetrics(func() []*jwks.Cache { return s.gen.Load().caches }, s.tokenCacheStats, opts.Now)
	s.fetchObs = fetchObserver{next: s.metrics, onFetch: s.updateHealth}
	g, _, err := s.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.gen.Store(g)
	s.metrics.reloaded(opts.Now(), true)
	s.updateHealth()
	return s, nil
}

// build makes a generation for cfg: the caches of prev whose settings are
// unchanged are taken over (their key sets stay loaded and refreshing), the
// others are new and returned in fresh, not yet running. It does no network
// I/O.
func (s *Server) build(cfg *config.Config, prev *generation) (g *generation, fresh []*jwks.Cache, err error) {
	client := s.opts.HTTPClient
	g = &generation{cfg: cfg, keys: make(map[cacheKey]*jwks.Cache, len(cfg.Providers)), number: 1, loadedAt: s.opts.Now()}
	if prev != nil {
		g.number = prev.number + 1
	}
	providers := make([]authz.Provider, 0, len(cfg.Providers))
	for _, p := range cfg.Providers {
		k := keyOf(cfg, p)
		c := prev.cache(k)
		if c == nil {
			c = g.keys[k]
		}
		if c == nil {
			if client == nil && cfg.JWKSCAFile != "" {
				if client, err = jwksClient(cfg.JWKSCAFile); err != nil {
					return nil, nil, err
				}
			}
			c, err = jwks.New(jwks.Config{
				Name:               p.Name,
				URL:                p.JWKSURL,
				Issuer:             p.Issuer,
				Discovery:          p.Discovery,
				DiscoveryURL:       p.DiscoveryURL,
				CacheDir:           cfg.JWKSCacheDir,
				CacheMaxAge:        cfg.JWKSCacheMaxAge,
				FetchLimiter:       s.fetchLimiter,
				Algorithms:         p.Algorithms,
				Client:             client,
				RefreshInterval:    cfg.JWKSRefreshInterval,
				MinRefreshInterval: cfg.JWKSMinRefreshInterval,
				FetchTimeout:       cfg.JWKSFetchTimeout,
				UnknownKIDWait:     cfg.JWKSUnknownKIDWait,
				MaxBodyBytes:       cfg.JWKSMaxBytes,
				MaxKeys:            cfg.JWKSMaxKeys,
				Logger:             s.log,
				Observer:           &s.fetchObs,
				Now:                s.opts.Now,
			})
			if err != nil {
				return nil, nil, fmt.Errorf("provider %s: %w", p.Name, err)
			}
			fresh = append(fresh, c)
		}
		if shared, ok := g.keys[k]; ok {
			c = shared // two providers of one key set (and one name)
		} else {
			g.keys[k] = c
			g.caches = append(g.caches, c)
		}
		providers = append(providers, authz.Provider{
			Name: p.Name, Issuer: p.Issuer, Audiences: p.Audiences, Algorithms: p.Algorithms, Keys: c, ForwardToken: p.ForwardToken, TokenSources: p.TokenSources,
			SenderConstraint: p.SenderConstraint, DPoP: p.DPoP, ClientCertFrom: p.ClientCertFrom, ClientCertHeader: p.ClientCertHeader,
		})
	}
	a, err := authz.New(authz.Config{
		Providers:           providers,
		Rules:               cfg.Rules,
		Policies:            cfg.Policies,
		MetadataClaims:      cfg.MetadataClaims,
		Shadow:              cfg.Shadow,
		DenyDetail:          cfg.DenyDetail,
		ClaimHeaders:        cfg.ClaimHeaders,
		ClockSkew:           skew(cfg.ClockSkew),
		Realm:               cfg.Realm,
		MaxTokenBytes:       cfg.MaxTokenBytes,
		TokenCacheSize:      tokenCacheSize(cfg.TokenCacheSize),
		DPoPReplayCacheSize: cfg.DPoPReplayCacheSize,
		ForwardAuthSource:   cfg.ForwardAuthSource,
		Logger:              s.log,
		Observer:            checkObserver{m: s.metrics},
		Now:                 s.opts.Now,
		Previous:            prev.authzServer(),
	})
	if err != nil {
		return nil, nil, err
	}
	g.authz = a
	return g, fresh, nil
}

// tokenCacheSize maps the config's "0 disables" onto authz's "negative
// disables".
func tokenCacheSize(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// tokenCacheStats sums the token cache counters of the generation in force,
// of the generations being retired and of those retired.
func (s *Server) tokenCacheStats() authz.CacheStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	sum := s.retiredStats
	gens := append([]*generation{s.gen.Load()}, s.retiring...)
	for i, g := range gens {
		st := g.authz.CacheStats()
		sum.Hits += st.Hits
		sum.NegativeHits += st.NegativeHits
		sum.Misses += st.Misses
		// A cache taken over by a reload is counted once.
		if !slices.ContainsFunc(gens[:i], func(o *generation) bool { return o.authz.SharesTokenCache(g.authz) }) {
			sum.Entries += st.Entries
		}
	}
	return sum
}

// retire moves g's counters into the retired sum, once no check runs on it.
func (s *Server) retire(g *generation) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := g.authz.CacheStats()
	s.retiredStats.Hits += st.Hits
	s.retiredStats.NegativeHits += st.NegativeHits
	s.retiredStats.Misses += st.Misses
	s.retiring = slices.DeleteFunc(s.retiring, func(o *generation) bool { return o == g })
}

// cacheKey is what makes a key cache: two providers with equal keys can
// share one, so a reload that leaves them unchanged keeps the loaded keys
// (no refetch, no readiness dip). Besides the provider's own name, URL and
// algorithms, it holds every setting the config table marks as one the key
// cache depends on, so that a new one cannot be left out here.
type cacheKey struct {
	name, url, algs string
	// With discovery the key set's URL comes from the issuer's document.
	issuer, discoveryURL string
	discovery            bool
	settings             string // config.KeySetSettings
}

func keyOf(cfg *config.Config, p config.Provider) cacheKey {
	return cacheKey{
		name: p.Name, url: p.JWKSURL, algs: strings.Join(p.Algorithms, ","),
		issuer: p.Issuer, discovery: p.Discovery, discoveryURL: p.DiscoveryURL,
		settings: config.KeySetSettings(cfg),
	}
}

// authzServer is g's decision server, nil for no generation (the first
// build).
func (g *generation) authzServer() *authz.Server {
	if g == nil {
		return nil
	}
	return g.authz
}

// cache returns g's cache for k, nil if g is nil or has none.
func (g *generation) cache(k cacheKey) *jwks.Cache {
	if g == nil {
		return nil
	}
	return g.keys[k]
}

// ready reports whether every cache of g has loaded a key set.
func (g *generation) ready() bool {
	for _, c := range g.caches {
		if !c.Ready() {
			return false
		}
	}
	return true
}

// acquire returns the generation in force and counts a check on it; the
// caller must call release. The second load makes the count reliable: a
// check that counted itself on a generation a reload had already replaced
// retries on the new one, so once a reload has swapped and seen the old
// count at zero, no check can still be using the old generation.
func (s *Server) acquire() *generation {
	for {
		g := s.gen.Load()
		g.inflight.Add(1)
		if s.gen.Load() == g {
			return g
		}
		g.inflight.Add(-1)
	}
}

func (g *generation) release() { g.inflight.Add(-1) }

// withDefaults returns a copy of cfg whose zero listener bounds are set to
// the documented defaults, for callers that build a config.Config by hand.
func withDefaults(cfg *config.Config) *config.Config {
	c := *cfg
	if c.GRPCMaxRecvBytes <= 0 {
		c.GRPCMaxRecvBytes = config.DefaultGRPCMaxRecvBytes
	}
	if c.GRPCMaxStreams <= 0 {
		c.GRPCMaxStreams = config.DefaultGRPCMaxStreams
	}
	if c.HTTPMaxHeaderBytes <= 0 {
		c.HTTPMaxHeaderBytes = config.DefaultHTTPMaxHeaderBytes
	}
	if c.HTTPReadTimeout <= 0 {
		c.HTTPReadTimeout = config.DefaultHTTPReadTimeout
	}
	return &c
}

// skew maps the config's "0 means none" onto authz's "0 means default".
func skew(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// fetchObserver forwards fetch outcomes to the metrics and re-evaluates health.
type fetchObserver struct {
	next    jwks.Observer
	onFetch func()
}

func (f *fetchObserver) ObserveFetch(provider string, err error, d time.Duration, keys int) {
	if f.next != nil {
		f.next.ObserveFetch(provider, err, d, keys)
	}
	if f.onFetch != nil {
		f.onFetch()
	}
}

// ObserveEvent implements jwks.EventObserver: the caches then report every
// outcome here (a 304, a set loaded from disk, a discovery document)
// instead of through ObserveFetch.
func (f *fetchObserver) ObserveEvent(e jwks.Event) {
	if eo, ok := f.next.(jwks.EventObserver); ok {
		eo.ObserveEvent(e)
	}
	if f.onFetch != nil {
		f.onFetch() // a set from disk makes the server ready at once
	}
}

// Authz returns the decision server of the configuration in force, for
// in-process use.
func (s *Server) Authz() *authz.Server { return s.gen.Load().authz }

// Ready reports whether every provider's key set has loaded.
func (s *Server) Ready() bool { return s.gen.Load().ready() }

const authService = "envoy.service.auth.v3.Authorization"

func (s *Server) updateHealth() {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	g := s.gen.Load()
	if g == nil {
		return // a fetch of a cache New is still building; New evaluates at its end
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if g.ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(authService, st)
	if st == healthpb.HealthCheckResponse_SERVING && s.opts.Ready != nil {
		s.opts.Ready()
		s.opts.Ready = nil
	}
}

// Run listens, fetches the key sets in the background and serves until ctx
// is done; then it reports NOT_SERVING, stops accepting, lets in-flight
// checks finish within the config's shutdown grace, and returns nil. A
// listener that cannot be opened or fails is returned as an error.
func (s *Server) Run(ctx context.Context) error {
	grpcLis, err := s.listen(s.opts.GRPCListener, "grpc-addr", s.cfg.GRPCAddr)
	if err != nil {
		return err
	}
	httpLis, err := s.listen(s.opts.HTTPListener, "http-addr", s.cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return err
	}
	adminLis, err := s.listen(s.opts.AdminListener, "admin-addr", s.cfg.AdminAddr)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}

	var tlsCfg *certReloader
	if s.cfg.TLSCertFile != "" {
		// Loaded at start so that a bad certificate stops the server at once.
		tlsCfg, err = newCertReloader(s.cfg.TLSCertFile, s.cfg.TLSKeyFile, s.cfg.TLSClientCAFile, s.log, s.opts.Now)
		if err != nil {
			grpcLis.Close()
			httpLis.Close()
			adminLis.Close()
			return err
		}
	}

	grpcOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.GRPCMaxRecvBytes),
		// Envoy multiplexes every check of a worker onto one HTTP/2
		// connection: the stream limit must be far above the default 100.
		grpc.MaxConcurrentStreams(uint32(s.cfg.GRPCMaxStreams)),
		// Serve streams on a pool of long-lived goroutines instead of a new
		// one per Check: a fresh goroutine grows its stack while verifying
		// (runtime.newstack/copystack took 17% of the CPU under load), a
		// pooled one keeps the grown stack. When every worker is busy,
		// grpc-go falls back to a new goroutine. Measured side by side with
		// 50 concurrent hits: about 50 us of CPU per check instead of 60.
		grpc.NumStreamWorkers(uint32(max(64, 8*runtime.GOMAXPROCS(0)))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if tlsCfg != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsCfg.config("h2"))))
	}
	if s.tracing != nil {
		grpcOpts = append(grpcOpts, grpc.ChainUnaryInterceptor(s.tracing.unary))
	}
	gs := grpc.NewServer(grpcOpts...)
	authv3.RegisterAuthorizationServer(gs, authzService{s: s})
	healthpb.RegisterHealthServer(gs, s.health)

	var check http.Handler = http.HandlerFunc(s.serveHTTP)
	if s.tracing != nil {
		check = s.tracing.middleware(check)
	}
	hs := &http.Server{
		Handler: check,
		// Every request line is a check: without this, net/http answers
		// "OPTIONS *" with 200 itself, with no decision, log or no-store.
		DisableGeneralOptionsHandler: true,
		ReadHeaderTimeout:            min(readHeaderTimeout, s.cfg.HTTPReadTimeout),
		ReadTimeout:                  s.cfg.HTTPReadTimeout,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  2 * time.Minute,
		MaxHeaderBytes:               s.cfg.HTTPMaxHeaderBytes,
		ErrorLog:                     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	serveHTTP := func() error { return hs.Serve(httpLis) }
	if tlsCfg != nil {
		hs.TLSConfig = tlsCfg.config("h2", "http/1.1")
		serveHTTP = func() error { return hs.ServeTLS(httpLis, "", "") }
	}
	as := &http.Server{
		Handler:           s.adminMux(),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	s.log.LogAttrs(ctx, slog.LevelInfo, "extauthz listening",
		slog.String("grpc", grpcLis.Addr().String()), slog.String("http", httpLis.Addr().String()),
		slog.String("admin", adminLis.Addr().String()), slog.Int("providers", len(s.gen.Load().caches)),
		slog.Bool("tls", tlsCfg != nil), slog.Bool("mtls", s.cfg.TLSClientCAFile != ""),
		slog.Bool("tracing", s.tracing != nil), slog.Bool("reload", s.opts.Load != nil))

	// The caches outlive ctx by the drain: checks still running during the
	// graceful stop may need a refresh.
	cacheCtx, stopCaches := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCaches()
	runner := &cacheRunner{stop: map[*jwks.Cache]context.CancelFunc{}}
	for _, c := range s.gen.Load().caches {
		runner.start(cacheCtx, c)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ignoreClosed(gs.Serve(grpcLis)) })
	g.Go(func() error { return ignoreClosed(serveHTTP()) })
	g.Go(func() error { return ignoreClosed(as.Serve(adminLis)) })
	if s.opts.Load != nil {
		g.Go(func() error { s.watch(gctx, cacheCtx, runner); return nil })
	}
	g.Go(func() error {
		<-gctx.Done()
		grace := s.gen.Load().cfg.ShutdownGrace
		s.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "extauthz shutting down", slog.Duration("grace", grace))
		s.health.Shutdown()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		_ = hs.Shutdown(shutCtx)
		select {
		case <-stopped:
		case <-shutCtx.Done():
			gs.Stop()
		}
		_ = as.Shutdown(shutCtx)
		_ = hs.Close()
		_ = as.Close()
		return nil
	})
	err = g.Wait()
	stopCaches()
	runner.wait()
	return err
}

// cacheRunner runs the caches' refresh loops, each with its own stop, so
// that a reload can stop the caches it removed.
type cacheRunner struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	stop map[*jwks.Cache]context.CancelFunc
}

// start runs c until ctx ends or halt stops it.
func (r *cacheRunner) start(ctx context.Context, c *jwks.Cache) {
	ctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.stop[c] = cancel
	r.mu.Unlock()
	r.wg.Go(func() { _ = c.Run(ctx) })
}

// halt stops the caches' refresh loops.
func (r *cacheRunner) halt(caches []*jwks.Cache) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range caches {
		if cancel, ok := r.stop[c]; ok {
			cancel()
			delete(r.stop, c)
		}
	}
}

func (r *cacheRunner) wait() { r.wg.Wait() }

// authzService is the Envoy Authorization service: each check runs on the
// generation in force when it arrived.
type authzService struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
}

var _ authv3.AuthorizationServer = authzService{}

func (a authzService) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	g := a.s.acquire()
	defer g.release()
	return g.authz.Check(ctx, req)
}

// serveHTTP is the forward-auth check on the generation in force.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	g := s.acquire()
	defer g.release()
	g.authz.ServeHTTP(w, r)
}

// listen returns l, or a new listener on addr, the value of the setting
// name: its error names the flag, "--grpc-addr :9191: address already in
// use", since the address alone does not say which of the three it is.
func (s *Server) listen(l net.Listener, name, addr string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		// "listen tcp :9191: bind: address already in use" repeats the
		// address and names a system call: keep the cause.
		cause := error(err)
		if oe, ok := errors.AsType[*net.OpError](cause); ok {
			cause = oe.Err
		}
		if se, ok := errors.AsType[*os.SyscallError](cause); ok {
			cause = se.Err
		}
		return nil, fmt.Errorf("--%s %s: %w", name, addr, cause)
	}
	return lis, nil
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		type provider struct {
			Name  string `json:"name"`
			Ready bool   `json:"ready"`
			Keys  int    `json:"keys"`
			Error string `json:"last_error,omitempty"`
			// Source is fetch or disk (the set stored in --jwks-cache-dir,
			// until the first fetch); Age how old the set in force is.
			Source     string  `json:"source,omitempty"`
			AgeSeconds float64 `json:"age_seconds,omitempty"`
			KeySetURL  string  `json:"key_set_url,omitempty"`
		}
		var body struct {
			Ready     bool       `json:"ready"`
			Providers []provider `json:"providers"`
		}
		body.Ready = true
		for _, c := range s.gen.Load().caches {
			st := c.Status()
			p := provider{Name: c.Name(), Ready: st.Loaded, Keys: st.Keys, Source: string(st.Source),
				AgeSeconds: st.Age.Seconds(), KeySetURL: st.KeySetURL}
			if st.LastError != nil {
				p.Error = st.LastError.Error()
			}
			body.Ready = body.Ready && st.Loaded
			body.Providers = append(body.Providers, p)
		}
		w.Header().Set("Content-Type", "application/json")
		if !body.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /statusz", s.serveStatus)
	if s.cfg.AdminPprof {
		// Registered on this mux only: importing net/http/pprof also adds
		// its handlers to http.DefaultServeMux, which no listener serves.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
