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
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	caches  []*jwks.Cache
	authz   *authz.Server
	metrics *metrics
	health  *health.Server

	// healthMu serializes updateHealth: each provider's cache calls it from
	// its own goroutine, and an evaluation made before another provider
	// loaded must not overwrite SERVING, nor Ready be called twice.
	healthMu sync.Mutex
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
	s := &Server{cfg: cfg, opts: opts, log: opts.Logger, health: health.NewServer()}
	if opts.HTTPClient == nil && cfg.JWKSCAFile != "" {
		c, err := jwksClient(cfg.JWKSCAFile)
		if err != nil {
			return nil, err
		}
		opts.HTTPClient = c
	}
	var fetchObs fetchObserver
	providers := make([]authz.Provider, 0, len(cfg.Providers))
	for _, p := range cfg.Providers {
		c, err := jwks.New(jwks.Config{
			Name:               p.Name,
			URL:                p.JWKSURL,
			Algorithms:         p.Algorithms,
			Client:             opts.HTTPClient,
			RefreshInterval:    cfg.JWKSRefreshInterval,
			MinRefreshInterval: cfg.JWKSMinRefreshInterval,
			FetchTimeout:       cfg.JWKSFetchTimeout,
			UnknownKIDWait:     cfg.JWKSUnknownKIDWait,
			MaxBodyBytes:       cfg.JWKSMaxBytes,
			MaxKeys:            cfg.JWKSMaxKeys,
			Logger:             s.log,
			Observer:           &fetchObs,
			Now:                opts.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", p.Name, err)
		}
		s.caches = append(s.caches, c)
		providers = append(providers, authz.Provider{
			Name: p.Name, Issuer: p.Issuer, Audiences: p.Audiences, Algorithms: p.Algorithms, Keys: c,
		})
	}
	s.metrics = newMetrics(s.caches, opts.Now)
	fetchObs.next = s.metrics
	fetchObs.onFetch = s.updateHealth
	rules := make([]authz.Rule, len(cfg.Rules))
	for i, r := range cfg.Rules {
		rules[i] = authz.Rule(r)
	}
	a, err := authz.New(authz.Config{
		Providers:         providers,
		Rules:             rules,
		ClaimHeaders:      cfg.ClaimHeaders,
		ClockSkew:         skew(cfg.ClockSkew),
		Realm:             cfg.Realm,
		MaxTokenBytes:     cfg.MaxTokenBytes,
		ForwardAuthSource: cfg.ForwardAuthSource,
		Logger:            s.log,
		Observer:          s.metrics,
		Now:               opts.Now,
	})
	if err != nil {
		return nil, err
	}
	s.authz = a
	s.updateHealth()
	return s, nil
}

// withDefaults returns a copy of cfg whose zero listener bounds are set to
// the documented defaults, for callers that build a config.Config by hand.
func withDefaults(cfg *config.Config) *config.Config {
	c := *cfg
	if c.GRPCMaxRecvBytes <= 0 {
		c.GRPCMaxRecvBytes = 1 << 20
	}
	if c.GRPCMaxStreams <= 0 {
		c.GRPCMaxStreams = 1024
	}
	if c.HTTPMaxHeaderBytes <= 0 {
		c.HTTPMaxHeaderBytes = 64 << 10
	}
	if c.HTTPReadTimeout <= 0 {
		c.HTTPReadTimeout = 10 * time.Second
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

// Authz returns the decision server, for in-process use.
func (s *Server) Authz() *authz.Server { return s.authz }

// Ready reports whether every provider's key set has loaded.
func (s *Server) Ready() bool {
	for _, c := range s.caches {
		if !c.Ready() {
			return false
		}
	}
	return true
}

const authService = "envoy.service.auth.v3.Authorization"

func (s *Server) updateHealth() {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s.Ready() {
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
	grpcLis, err := s.listen(s.opts.GRPCListener, s.cfg.GRPCAddr)
	if err != nil {
		return err
	}
	httpLis, err := s.listen(s.opts.HTTPListener, s.cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return err
	}
	adminLis, err := s.listen(s.opts.AdminListener, s.cfg.AdminAddr)
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
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if tlsCfg != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsCfg.config("h2"))))
	}
	gs := grpc.NewServer(grpcOpts...)
	authv3.RegisterAuthorizationServer(gs, s.authz)
	healthpb.RegisterHealthServer(gs, s.health)

	hs := &http.Server{
		Handler:           s.authz,
		ReadHeaderTimeout: min(readHeaderTimeout, s.cfg.HTTPReadTimeout),
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    s.cfg.HTTPMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
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
		slog.String("admin", adminLis.Addr().String()), slog.Int("providers", len(s.caches)),
		slog.Bool("tls", tlsCfg != nil), slog.Bool("mtls", s.cfg.TLSClientCAFile != ""))

	cacheCtx, stopCaches := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCaches()
	var caches errgroup.Group
	for _, c := range s.caches {
		caches.Go(func() error { return c.Run(cacheCtx) })
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ignoreClosed(gs.Serve(grpcLis)) })
	g.Go(func() error { return ignoreClosed(serveHTTP()) })
	g.Go(func() error { return ignoreClosed(as.Serve(adminLis)) })
	g.Go(func() error {
		<-gctx.Done()
		s.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "extauthz shutting down", slog.Duration("grace", s.cfg.ShutdownGrace))
		s.health.Shutdown()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownGrace)
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
	_ = caches.Wait()
	return err
}

func (s *Server) listen(l net.Listener, addr string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
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
		}
		var body struct {
			Ready     bool       `json:"ready"`
			Providers []provider `json:"providers"`
		}
		body.Ready = true
		for _, c := range s.caches {
			st := c.Status()
			p := provider{Name: c.Name(), Ready: st.Loaded, Keys: st.Keys}
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
	return mux
}

// NewLogger returns the process logger for a level and format as config
// validates them.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
