package jwks

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/internal/redact"
)

// Config configures a [Cache]. The zero value of every field but URL means
// its documented default.
type Config struct {
	// Name names the provider in logs and metrics. Defaults to URL's host
	// (host and port, never the user info).
	Name string
	// URL is the JWKS endpoint. Required; http or https. User info
	// (https://user:password@host/...) is sent as HTTP Basic
	// authentication, and is masked wherever the cache shows the URL: its
	// log lines, its errors, [StatusError].
	URL string
	// Algorithms are the signing algorithms tokens may use; keys that fit
	// none of them are skipped. Defaults to [DefaultAlgorithm] (RS256).
	Algorithms []string
	// Client performs the fetches. Set it for a custom CA or client
	// certificates. Redirects are refused whatever its CheckRedirect says:
	// a key set is only taken from the configured URL. Defaults to a client
	// cloned from http.DefaultTransport.
	Client *http.Client
	// RefreshInterval is the time between scheduled refreshes once a key set
	// is loaded, and the cap of the retry backoff. Defaults to
	// [DefaultRefreshInterval] (15m).
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between the start of a fetch and
	// one triggered by an unknown kid, and the first retry delay after a
	// failed fetch. Defaults to [DefaultMinRefreshInterval] (10s).
	MinRefreshInterval time.Duration
	// FetchTimeout bounds one fetch, connection to last byte. Defaults to
	// [DefaultFetchTimeout] (5s).
	FetchTimeout time.Duration
	// UnknownKIDWait is the longest a lookup for an unknown kid waits for the
	// shared in-flight fetch before it gives up. Keep it well under the
	// proxy's ext_authz timeout (Envoy's default is 200ms). Defaults to
	// [DefaultUnknownKIDWait] (100ms).
	UnknownKIDWait time.Duration
	// MaxBodyBytes bounds the JWKS response body. Defaults to
	// [DefaultMaxBodyBytes] (1 MiB).
	MaxBodyBytes int64
	// MaxKeys bounds the number of keys in a set; a larger set is refused.
	// Defaults to [DefaultMaxKeys] (100).
	MaxKeys int
	// Logger receives fetch failures (Warn) and key set changes (Info).
	// Defaults to slog.Default().
	Logger *slog.Logger
	// Observer receives the outcome of every fetch. Nil means none.
	Observer Observer
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Observer receives the outcome of each fetch, for metrics.
type Observer interface {
	// ObserveFetch is called after every fetch with its error (nil on
	// success), its duration and the number of usable keys it brought.
	ObserveFetch(provider string, err error, d time.Duration, keys int)
}

// Status is a snapshot of a cache's state, for metrics and readiness.
type Status struct {
	Loaded      bool
	Keys        int
	LastSuccess time.Time // zero until the first successful fetch
	LastError   error     // error of the latest fetch, nil if it succeeded
}

// Cache holds one provider's key set. It is safe for concurrent use. Its
// lookups work once [Cache.Run] has loaded a key set.
type Cache struct {
	cfg     Config
	url     string // cfg.URL as shown: its user info masked
	store   *jwkset.MemoryJWKSet
	kf      keyfunc.Keyfunc
	kick    chan struct{}
	loaded  atomic.Bool
	keys    atomic.Int64
	version atomic.Uint64

	mu        sync.Mutex
	lastFetch time.Time  // start of the latest fetch
	inflight  *fetchCall // the fetch in progress or requested, if any
	lastOK    time.Time
	lastErr   error
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// New validates cfg and returns a Cache. It does no I/O and starts no
// goroutine: call [Cache.Run].
func New(cfg Config) (*Cache, error) {
	if err := CheckURL(cfg.URL); err != nil {
		return nil, err
	}
	shown := redact.URL(cfg.URL)
	u, _ := url.Parse(cfg.URL) // checked
	if cfg.Name == "" {
		cfg.Name = u.Host // the parser leaves the user info out of Host
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{DefaultAlgorithm}
	}
	for _, a := range cfg.Algorithms {
		if err := CheckAlgorithm(a); err != nil {
			return nil, err
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RefreshInterval, DefaultRefreshInterval)
	def(&cfg.MinRefreshInterval, DefaultMinRefreshInterval)
	def(&cfg.FetchTimeout, DefaultFetchTimeout)
	def(&cfg.UnknownKIDWait, DefaultUnknownKIDWait)
	if err := CheckRefreshIntervals(cfg.RefreshInterval, cfg.MinRefreshInterval); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if host := u.Hostname(); u.Scheme == "http" && host != "localhost" && !isLoopback(host) {
		// Allowed (a private network without TLS, the compose demo), but
		// anyone on the path could publish a key and sign any token.
		cfg.Logger.Warn("jwks: key set fetched over plain HTTP from another host; anyone on that network path can publish a key: use https",
			"provider", cfg.Name, "url", shown)
	}
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if cfg.Client != nil {
		c := *cfg.Client
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.Client = client

	store := jwkset.NewMemoryStorage()
	kf, err := keyfunc.New(keyfunc.Options{Storage: store})
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return &Cache{cfg: cfg, url: shown, store: store, kf: kf, kick: make(chan struct{}, 1)}, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name returns the provider name the cache reports under.
func (c *Cache) Name() string { return c.cfg.Name }

// Ready reports whether a key set has been loaded.
func (c *Cache) Ready() bool { return c.loaded.Load() }

// Version changes every time a refresh replaces the key set. Callers that
// cache verification results compare it to notice rotations.
func (c *Cache) Version() uint64 { return c.version.Load() }

// Status returns a snapshot of the cache's state.
func (c *Cache) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Loaded: c.loaded.Load(), Keys: int(c.keys.Load()), LastSuccess: c.lastOK, LastError: c.lastErr}
}

// HasKey reports whether the current key set holds a key with this kid.
func (c *Cache) HasKey(ctx context.Context, kid string) bool {
	_, ok := c.PublicKey(ctx, kid)
	return ok
}

// PublicKey returns the public key the current set lists under kid. It never
// fetches.
func (c *Cache) PublicKey(ctx context.Context, kid string) (crypto.PublicKey, bool) {
	jwk, err := c.store.KeyRead(ctx, kid)
	if err != nil {
		return nil, false
	}
	key := jwk.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	return key, true
}

// Key returns the key that verifies t (a jwt.Keyfunc with the request's
// context): by kid and alg from the current set, after at most one
// rate-limited refresh for an unknown kid.
func (c *Cache) Key(ctx context.Context, t *jwt.Token) (any, error) {
	if !c.loaded.Load() {
		return nil, ErrNotReady
	}
	key, err := c.kf.KeyfuncCtx(ctx)(t)
	if err == nil || !errors.Is(err, jwkset.ErrKeyNotFound) {
		return key, err
	}
	if ferr := c.refreshUnknown(ctx); ferr != nil {
		// A fetch that finished between the miss above and refreshUnknown's
		// check (which then found no fetch in flight and the rate limit
		// spent) may have brought the key: look once more before failing.
		key, err = c.kf.KeyfuncCtx(ctx)(t)
		if err == nil || !errors.Is(err, jwkset.ErrKeyNotFound) {
			return key, err
		}
		return nil, fmt.Errorf("%w (%w)", ErrKeyNotFound, ferr)
	}
	key, err = c.kf.KeyfuncCtx(ctx)(t)
	if errors.Is(err, jwkset.ErrKeyNotFound) {
		return nil, ErrKeyNotFound
	}
	return key, err
}

var (
	errRateLimited = errors.New("refresh rate limited")
	errWaitTimeout = errors.New("refresh still in flight")
)

// refreshUnknown asks Run for a refresh if the rate limit allows one, and
// waits a bounded time for the shared in-flight fetch. It never waits on the
// rate limit itself.
func (c *Cache) refreshUnknown(ctx context.Context) error {
	c.mu.Lock()
	call := c.inflight
	if call == nil {
		if c.cfg.Now().Sub(c.lastFetch) < c.cfg.MinRefreshInterval {
			c.mu.Unlock()
			return errRateLimited
		}
		call = &fetchCall{done: make(chan struct{})}
		c.inflight = call
		// lastFetch is set here too, so that a flood of unknown kids arriving
		// before Run starts the fetch still asks for one fetch only.
		c.lastFetch = c.cfg.Now()
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()

	t := time.NewTimer(c.cfg.UnknownKIDWait)
	defer t.Stop()
	select {
	case <-call.done:
		return call.err
	case <-t.C:
		return errWaitTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run loads the key set and keeps it fresh until ctx is done, then returns
// nil. Until the first set loads it retries with a backoff that starts at
// MinRefreshInterval and doubles up to RefreshInterval; once loaded it
// refreshes every RefreshInterval, retrying failures the same way, and
// serves refresh requests from unknown kids. Call it once.
func (c *Cache) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := c.cfg.MinRefreshInterval
	for {
		select {
		case <-ctx.Done():
			c.finish(ctx.Err())
			return nil
		case <-timer.C:
		case <-c.kick:
		}
		err := c.refresh(ctx)
		next := c.cfg.RefreshInterval
		if err != nil {
			next, backoff = backoff, min(2*backoff, c.cfg.RefreshInterval)
		} else {
			backoff = c.cfg.MinRefreshInterval
		}
		timer.Reset(next)
	}
}

// finish releases waiters of a requested fetch that will never run.
func (c *Cache) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight != nil {
		c.inflight.err = err
		close(c.inflight.done)
		c.inflight = nil
	}
}

func (c *Cache) refresh(ctx context.Context) error {
	c.mu.Lock()
	if c.inflight == nil {
		c.inflight = &fetchCall{done: make(chan struct{})}
	}
	c.lastFetch = c.cfg.Now()
	c.mu.Unlock()

	start := time.Now()
	res, err := c.fetch(ctx)
	d := time.Since(start)
	if err == nil {
		if err = c.store.KeyReplaceAll(ctx, res.Keys); err == nil {
			c.keys.Store(int64(len(res.Keys)))
			c.version.Add(1)
			c.loaded.Store(true)
		}
	}

	c.mu.Lock()
	c.lastErr = err
	if err == nil {
		c.lastOK = c.cfg.Now()
	}
	// A kick still queued was sent by the request this fetch answers. Drop
	// it here, while c.inflight is set and so no new request can kick: a
	// request made once c.inflight is cleared below kicks anew, and Run must
	// see that kick, or its waiters wait on a fetch that never starts.
	select {
	case <-c.kick:
	default:
	}
	c.inflight.err = err
	close(c.inflight.done)
	c.inflight = nil
	c.mu.Unlock()

	log := c.cfg.Logger.With(slog.String("provider", c.cfg.Name))
	switch {
	case err != nil && ctx.Err() != nil:
		// Shutting down: not worth a warning.
	case err != nil:
		level := slog.LevelWarn
		if !c.loaded.Load() {
			level = slog.LevelError
		}
		log.LogAttrs(ctx, level, "jwks fetch failed; keeping the current key set",
			slog.String("error", err.Error()), slog.Bool("loaded", c.loaded.Load()), slog.Duration("duration", d))
	default:
		log.LogAttrs(ctx, slog.LevelInfo, "jwks loaded",
			slog.Int("keys", len(res.Keys)), slog.Int("skipped", len(res.Skipped)), slog.Duration("duration", d))
		for _, s := range res.Skipped {
			log.LogAttrs(ctx, slog.LevelWarn, "jwks key skipped", slog.String("why", s))
		}
	}
	if c.cfg.Observer != nil {
		c.cfg.Observer.ObserveFetch(c.cfg.Name, err, d, len(res.Keys))
	}
	return err
}

func (c *Cache) fetch(ctx context.Context) (ParseResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	// The request carries the real URL, user info included (net/http sends
	// it as Basic authentication); every error below shows c.url instead.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		return ParseResult{}, fmt.Errorf("%w: %w", ErrFetch, c.maskURL(err))
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "extauthz-jwks")
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return ParseResult{}, fmt.Errorf("%w: %w", ErrFetch, c.maskURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ParseResult{}, fmt.Errorf("%w: %w", ErrFetch, &StatusError{URL: c.url, Code: resp.StatusCode})
	}
	if resp.ContentLength > c.cfg.MaxBodyBytes {
		return ParseResult{}, fmt.Errorf("%w: %w: %d bytes announced, limit %d", ErrFetch, ErrBodyTooLarge, resp.ContentLength, c.cfg.MaxBodyBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return ParseResult{}, fmt.Errorf("%w: read %s: %w", ErrFetch, c.url, c.maskURL(err))
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return ParseResult{}, fmt.Errorf("%w: %w: limit %d", ErrFetch, ErrBodyTooLarge, c.cfg.MaxBodyBytes)
	}
	res, err := Parse(body, c.cfg.Algorithms, c.cfg.MaxKeys)
	if err != nil {
		return res, fmt.Errorf("%w: %s: %w", ErrFetch, c.url, err)
	}
	return res, nil
}

// maskURL masks the user info in the URL that net/http and net/url put into
// their errors: a *url.Error reads `Get "URL": ...`, and net/http masks only
// the password there, not a user name.
func (c *Cache) maskURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = c.url
	}
	return err
}
