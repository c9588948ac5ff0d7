package jwks

import (
	"cmp"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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

// Config configures a [Cache]. The zero value of every field but URL (or,
// with Discovery, Issuer) means its documented default.
type Config struct {
	// Name names the provider in logs and metrics. Defaults to URL's host
	// (with Discovery, Issuer's host; host and port, never the user info).
	Name string
	// URL is the JWKS endpoint. Required unless Discovery is set, and then
	// empty; http or https. User info (https://user:password@host/...) is
	// sent as HTTP Basic authentication, and is masked wherever the cache
	// shows the URL: its log lines, its errors, [StatusError].
	URL string
	// Issuer is the provider's issuer identifier, as its tokens' "iss"
	// says. Required with Discovery; otherwise unused.
	Issuer string
	// Discovery finds the key set through OpenID Connect Discovery 1.0:
	// each refresh fetches the discovery document (at DiscoveryURL, or
	// Issuer with a trailing "/" removed and
	// "/.well-known/openid-configuration" appended), requires its "issuer"
	// to equal Issuer exactly (section 4.3), and fetches the key set from
	// its "jwks_uri", both under the bounds and rules of a key set fetch
	// (FetchTimeout each, size, no redirects, the Client's TLS settings). A
	// discovery document that fails keeps the last good one in force; until
	// there is one, the cache is not ready. A jwks_uri that would downgrade
	// an https discovery document to http is refused.
	Discovery bool
	// DiscoveryURL is where the discovery document is when the provider
	// does not serve it at the well-known location. Needs Discovery; http
	// or https, user info sent and masked as for URL.
	DiscoveryURL string
	// Algorithms are the signing algorithms tokens may use; keys that fit
	// none of them are skipped. Defaults to [DefaultAlgorithm] (RS256).
	Algorithms []string
	// Client performs the fetches. Set it for a custom CA or client
	// certificates. Redirects are refused whatever its CheckRedirect says:
	// a key set is only taken from the configured URL. Defaults to a client
	// cloned from http.DefaultTransport.
	Client *http.Client
	// RefreshInterval is the longest time between scheduled refreshes once
	// a key set is loaded, the cap of the retry backoff and of a
	// Retry-After. A response's Cache-Control max-age (less its Age) sets
	// the next refresh sooner, never sooner than MinRefreshInterval
	// (no-cache and no-store count as 0). Each scheduled refresh is moved
	// by a fresh random jitter of up to 10% either way, so that replicas
	// started together do not fetch in step, and never sooner than
	// MinRefreshInterval. Defaults to [DefaultRefreshInterval] (15m).
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two fetches triggered by
	// unknown kids (a scheduled fetch made while unknown kids are being
	// looked up counts as one; one made before does not, so that a poll just
	// before a key rotation never holds back the new key), the first retry
	// delay after a failed fetch, and the least time between scheduled
	// refreshes. Defaults to [DefaultMinRefreshInterval] (10s).
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
	// [DefaultMaxBodyBytes] (1 MiB). A discovery document is bounded by
	// [MaxDiscoveryBytes].
	MaxBodyBytes int64
	// MaxKeys bounds the number of keys in a set; a larger set is refused.
	// Defaults to [DefaultMaxKeys] (100).
	MaxKeys int
	// CacheDir, when set, keeps the last good key set (and discovery
	// document) on disk, so that a restart while the provider is down still
	// verifies tokens: it is written after each successful refresh, and
	// loaded by Run before its first fetch when it is younger than
	// CacheMaxAge and passes every check (see the package documentation).
	// The directory is created (0700) if missing; it must be writable by
	// this process only. A directory that cannot be read or written is a
	// warning, never an error. Empty means no disk cache.
	CacheDir string
	// CacheMaxAge is the age past which a stored key set is not loaded.
	// Defaults to [DefaultCacheMaxAge] (24h).
	CacheMaxAge time.Duration
	// FetchLimiter bounds the refreshes that run at once across the caches
	// that share it. Nil means no bound.
	FetchLimiter *FetchLimiter
	// Logger receives fetch failures (Warn) and key set changes (Info).
	// Defaults to slog.Default().
	Logger *slog.Logger
	// Observer receives the outcome of every refresh. Nil means none. If it
	// also implements [EventObserver], it receives events instead.
	Observer Observer
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Observer receives the outcome of each refresh, for metrics.
type Observer interface {
	// ObserveFetch is called after every refresh with its error (nil on
	// success, a 304 Not Modified included; with Discovery, a discovery
	// document that failed is the refresh's error even when the key set
	// was then fetched from the last good one), its duration (not counting
	// a wait for a FetchLimiter slot) and the number of usable keys it
	// brought (for a 304, those of the set it confirmed; 0 on error). It is
	// not called for a key set loaded from disk.
	ObserveFetch(provider string, err error, d time.Duration, keys int)
}

// EventObserver is an [Observer] that tells the outcomes ObserveFetch cannot:
// a 304, the discovery document apart from the key set, a key set loaded
// from disk. When Config.Observer implements it, the cache calls
// ObserveEvent, once per document fetched and once for a stored key set
// loaded, and never ObserveFetch.
type EventObserver interface {
	Observer
	ObserveEvent(Event)
}

// Event is one fetch of one document, or the load of a stored key set.
type Event struct {
	Provider string
	Document Document
	Result   Result
	// Err is the fetch's error, nil unless Result is ResultError.
	Err error
	// Duration is the fetch's, zero for ResultDisk.
	Duration time.Duration
	// Keys is, for DocumentKeySet, the number of usable keys the event put
	// or confirmed in force (0 on error).
	Keys int
	// Age is, for ResultDisk, how old the stored key set was.
	Age time.Duration
}

// Document names what an [Event] is about; its values are metric labels.
type Document string

const (
	DocumentKeySet    Document = "jwks"
	DocumentDiscovery Document = "discovery"
)

// Result is an [Event]'s outcome; its values are metric labels.
type Result string

const (
	// ResultSuccess: a 200 whose document was accepted.
	ResultSuccess Result = "success"
	// ResultNotModified: a 304, which confirms the document in force.
	ResultNotModified Result = "not_modified"
	// ResultError: the fetch failed; the document in force stays.
	ResultError Result = "error"
	// ResultDisk: not a fetch; Run loaded the stored key set at start.
	ResultDisk Result = "disk"
)

// Source says where the key set in force came from.
type Source string

const (
	SourceNone  Source = ""      // no key set loaded
	SourceFetch Source = "fetch" // fetched from the provider
	SourceDisk  Source = "disk"  // loaded from Config.CacheDir at start
)

// Status is a snapshot of a cache's state, for metrics and readiness.
type Status struct {
	Loaded      bool
	Keys        int
	LastSuccess time.Time // zero until the first successful fetch
	LastError   error     // error of the latest refresh, nil if it succeeded
	// Source is where the key set in force came from.
	Source Source
	// FetchedAt is when the provider last served or confirmed (304) the
	// key set in force; for a set loaded from disk, the time its file
	// records. Zero when none is loaded.
	FetchedAt time.Time
	// Age is how old the key set in force is (Now - FetchedAt), zero when
	// none is loaded.
	Age time.Duration
	// KeySetURL is where the key set is fetched from, user info masked: the
	// configured URL, or the discovery document's jwks_uri (empty until
	// one is known).
	KeySetURL string
	// NextRefresh is when the next scheduled refresh starts; zero before
	// Run's first fetch ends.
	NextRefresh time.Time
	// RetryAfter is the time before which the provider asked (with
	// Retry-After on a 429 or 503) not to be fetched; zero if it never did.
	RetryAfter time.Time
}

// Cache holds one provider's key set. It is safe for concurrent use. Its
// lookups work once [Cache.Run] has loaded a key set.
type Cache struct {
	// keyInfo and firstSeen describe the set in force (Keys); guarded by mu.
	keyInfo   []KeyInfo
	firstSeen map[string]time.Time

	cfg       Config
	discURL   string // the discovery document's URL, "" without discovery
	storeID   string // what the disk file is for (store.go)
	storeName string // the disk file's name in CacheDir
	store     *jwkset.MemoryJWKSet
	kf        keyfunc.Keyfunc
	kick      chan struct{}
	loaded    atomic.Bool
	keys      atomic.Int64
	version   atomic.Uint64
	// jitter moves a scheduled refresh (export_test.go replaces it).
	jitter func(time.Duration) time.Duration

	// Owned by Run's goroutine.
	keySet  resource   // the key set's location and validators
	discRes resource   // the discovery document's
	disc    *Discovery // the discovery document in force, nil if none
	discDoc []byte     // its raw bytes, kept for the disk cache
	body    []byte     // the raw key set in force, kept for the disk cache

	mu sync.Mutex
	// lastUnknown is the start of the latest fetch that counts against the
	// unknown-kid rate limit: one an unknown kid asked for, or a scheduled
	// one made while unknown kids were being asked for (lastAsked).
	lastUnknown time.Time
	lastAsked   time.Time  // the latest lookup of an unknown kid
	inflight    *fetchCall // the fetch in progress or requested, if any
	lastOK      time.Time
	lastErr     error
	origin      Source
	fetchedAt   time.Time
	keySetShown string
	nextRefresh time.Time
	notBefore   time.Time // no fetch before this (Retry-After)
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// New validates cfg and returns a Cache. It does no I/O (network or disk)
// and starts no goroutine: call [Cache.Run].
func New(cfg Config) (*Cache, error) {
	var discURL, nameFrom string
	if cfg.Discovery {
		if cfg.URL != "" {
			return nil, fmt.Errorf("jwks: URL %q is set with Discovery: the key set is the discovery document's jwks_uri", redact.URL(cfg.URL))
		}
		if err := CheckIssuer(cfg.Issuer); err != nil {
			return nil, err
		}
		if cfg.DiscoveryURL != "" {
			if err := CheckURL(cfg.DiscoveryURL); err != nil {
				return nil, fmt.Errorf("jwks: discovery URL: %w", err)
			}
		}
		discURL = DiscoveryLocation(cfg.Issuer, cfg.DiscoveryURL)
		nameFrom = cfg.Issuer
	} else {
		if cfg.DiscoveryURL != "" {
			return nil, fmt.Errorf("jwks: discovery URL %q is set without Discovery", redact.URL(cfg.DiscoveryURL))
		}
		if err := CheckURL(cfg.URL); err != nil {
			return nil, err
		}
		nameFrom = cfg.URL
	}
	u, _ := url.Parse(nameFrom) // checked
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
	def(&cfg.CacheMaxAge, DefaultCacheMaxAge)
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
	c := &Cache{cfg: cfg, discURL: discURL, kick: make(chan struct{}, 1), jitter: jitter}
	if discURL != "" {
		c.discRes = resource{url: discURL, shown: redact.URL(discURL)}
		c.warnPlainHTTP(discURL, "discovery document")
	} else {
		c.keySet = resource{url: cfg.URL, shown: redact.URL(cfg.URL)}
		c.keySetShown = c.keySet.shown
		c.warnPlainHTTP(cfg.URL, "key set")
	}
	c.storeID = storeSource(&cfg, discURL)
	c.storeName = storeName(c.storeID)

	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if cfg.Client != nil {
		cl := *cfg.Client
		client = &cl
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.cfg.Client = client

	c.store = jwkset.NewMemoryStorage()
	kf, err := keyfunc.New(keyfunc.Options{Storage: c.store})
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	c.kf = kf
	return c, nil
}

// jitter returns d moved by up to 10% either way, at random.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// warnPlainHTTP warns of a document fetched over plain HTTP from another
// host.
func (c *Cache) warnPlainHTTP(raw, what string) {
	u, err := url.Parse(raw)
	if err != nil {
		return
	}
	if host := u.Hostname(); u.Scheme == "http" && host != "localhost" && !isLoopback(host) {
		// Allowed (a private network without TLS, the compose demo), but
		// anyone on the path could publish a key and sign any token.
		c.cfg.Logger.Warn("jwks: "+what+" fetched over plain HTTP from another host; anyone on that network path can publish a key: use https",
			"provider", c.cfg.Name, "url", redact.URL(raw))
	}
}

func (c *Cache) log() *slog.Logger { return c.cfg.Logger.With(slog.String("provider", c.cfg.Name)) }

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
	st := Status{
		Loaded: c.loaded.Load(), Keys: int(c.keys.Load()), LastSuccess: c.lastOK, LastError: c.lastErr,
		Source: c.origin, FetchedAt: c.fetchedAt, KeySetURL: c.keySetShown, NextRefresh: c.nextRefresh, RetryAfter: c.notBefore,
	}
	if c.origin != SourceNone {
		st.Age = max(c.cfg.Now().Sub(c.fetchedAt), 0)
	}
	return st
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
	errRetryAfter  = errors.New("the provider asked not to be fetched yet (Retry-After)")
	errWaitTimeout = errors.New("refresh still in flight")
)

// refreshUnknown asks Run for a refresh if the rate limit and the
// provider's Retry-After allow one, and waits a bounded time for the shared
// in-flight fetch. It never waits on the rate limit itself.
func (c *Cache) refreshUnknown(ctx context.Context) error {
	c.mu.Lock()
	call := c.inflight
	if call == nil {
		now := c.cfg.Now()
		c.lastAsked = now
		if now.Before(c.notBefore) {
			c.mu.Unlock()
			return errRetryAfter
		}
		if now.Sub(c.lastUnknown) < c.cfg.MinRefreshInterval {
			c.mu.Unlock()
			return errRateLimited
		}
		call = &fetchCall{done: make(chan struct{})}
		c.inflight = call
		// lastUnknown is set here, not when Run starts the fetch, so that a
		// flood of unknown kids arriving before then asks for one fetch only.
		c.lastUnknown = now
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
// nil. With Config.CacheDir it first loads the stored key set, if a good
// one is there, then fetches at once either way. Until a set loads it
// retries with a backoff that starts at MinRefreshInterval and doubles up
// to RefreshInterval; once loaded it refreshes every RefreshInterval, or
// sooner as the key set's Cache-Control says (never sooner than
// MinRefreshInterval), each scheduled refresh moved by a random jitter of
// up to 10% either way, retrying failures the same way, never before a
// Retry-After, and serves refresh requests from unknown kids. Call it once.
func (c *Cache) Run(ctx context.Context) error {
	c.loadStored(ctx)
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := c.cfg.MinRefreshInterval
	// The first refresh counts as scheduled even when an unknown kid (on a
	// set loaded from disk) asked for it: it fetches the discovery document.
	first := true
	for {
		scheduled := first
		select {
		case <-ctx.Done():
			c.finish(ctx.Err())
			return nil
		case <-timer.C:
			scheduled = true
		case <-c.kick:
		}
		first = false
		out := c.refresh(ctx, scheduled)
		next := out.fresh
		if out.err != nil {
			next, backoff = backoff, min(2*backoff, c.cfg.RefreshInterval)
		} else {
			backoff = c.cfg.MinRefreshInterval
		}
		next = max(c.jitter(next), c.cfg.MinRefreshInterval)
		if ra := out.retryAfter; ra > 0 {
			// The jitter is added to a Retry-After, never taken off it.
			next = max(next, ra+(c.jitter(ra)-ra).Abs())
		}
		c.mu.Lock()
		c.nextRefresh = c.cfg.Now().Add(next)
		c.mu.Unlock()
		timer.Reset(next)
		c.report(out)
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

// outcome is what a refresh tells Run's schedule.
type outcome struct {
	err error
	// fresh is, after a success, the delay to the next scheduled refresh:
	// the key set's freshness clamped to [MinRefreshInterval,
	// RefreshInterval], or RefreshInterval.
	fresh time.Duration
	// retryAfter is the delay a 429 or 503 asked for, capped at
	// RefreshInterval; no fetch starts before it.
	retryAfter time.Duration
	// For the Observer: the events, the refresh's duration and the keys it
	// brought.
	events []Event
	d      time.Duration
	keys   int
}

// keySetResult is the outcome of the key set's part of a refresh.
type keySetResult struct {
	event      Event
	parsed     ParseResult // of a 200
	fresh      time.Duration
	retryAfter time.Duration
	err        error
}

// refresh fetches the discovery document (on a scheduled refresh, or while
// none is in force) and the key set, and puts what is good in force. It runs
// on Run's goroutine only.
func (c *Cache) refresh(ctx context.Context, scheduled bool) outcome {
	c.mu.Lock()
	if c.inflight == nil {
		c.inflight = &fetchCall{done: make(chan struct{})}
	}
	// A scheduled refresh spends the unknown-kid budget only while unknown
	// kids are being asked for (a flood, or a rotation already under way):
	// a poll made before a rotation must not hold back the new key's first
	// tokens, and a flood still gets one fetch a MinRefreshInterval.
	if now := c.cfg.Now(); scheduled && now.Sub(c.lastAsked) < c.cfg.MinRefreshInterval {
		c.lastUnknown = now
	}
	c.mu.Unlock()

	var (
		out     outcome
		events  []Event
		discErr error
		ks      keySetResult
		ksDone  bool
	)
	start := time.Now()
	release, err := c.cfg.FetchLimiter.acquire(ctx)
	if err != nil {
		out.err = fmt.Errorf("%w: %w", ErrFetch, err)
	} else {
		start = time.Now() // the wait for a slot is not the fetch's
		if c.discURL != "" && (scheduled || c.disc == nil) {
			var ev Event
			ev, out.retryAfter, discErr = c.refreshDiscovery(ctx)
			events = append(events, ev)
		}
		// A 429 or 503 with Retry-After holds every fetch of the provider,
		// and a key set cannot be fetched before a document names it.
		if out.retryAfter == 0 && (c.discURL == "" || c.disc != nil) {
			ks, ksDone = c.refreshKeySet(ctx), true
			events = append(events, ks.event)
			out.retryAfter = max(out.retryAfter, ks.retryAfter)
		}
		release()
		out.err = cmp.Or(discErr, ks.err)
		out.fresh = ks.fresh
	}
	d := time.Since(start)
	ok := ksDone && ks.err == nil

	c.mu.Lock()
	now := c.cfg.Now()
	c.lastErr = out.err
	if ok {
		c.lastOK = now
		c.origin, c.fetchedAt = SourceFetch, now
	}
	if out.retryAfter > 0 {
		c.notBefore = now.Add(out.retryAfter)
	}
	// A kick still queued was sent by the request this fetch answers. Drop
	// it here, while c.inflight is set and so no new request can kick: a
	// request made once c.inflight is cleared below kicks anew, and Run must
	// see that kick, or its waiters wait on a fetch that never starts.
	select {
	case <-c.kick:
	default:
	}
	c.inflight.err = out.err
	close(c.inflight.done)
	c.inflight = nil
	c.mu.Unlock()

	log := c.log()
	if ctx.Err() == nil {
		// (Shutting down is not worth a warning.)
		failed := out.err
		if discErr != nil && c.disc != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "jwks: discovery document fetch failed; keeping the last good one",
				slog.String("error", discErr.Error()), slog.Duration("duration", d))
			failed = ks.err
		}
		if failed != nil {
			level := slog.LevelWarn
			if !c.loaded.Load() {
				level = slog.LevelError
			}
			log.LogAttrs(ctx, level, "jwks fetch failed; keeping the current key set",
				slog.String("error", failed.Error()), slog.Bool("loaded", c.loaded.Load()), slog.Duration("duration", d))
		}
	}
	switch {
	case !ok:
	case ks.event.Result == ResultNotModified:
		log.LogAttrs(ctx, slog.LevelDebug, "jwks not modified", slog.Int("keys", ks.event.Keys), slog.Duration("duration", d))
	default:
		log.LogAttrs(ctx, slog.LevelInfo, "jwks loaded",
			slog.Int("keys", len(ks.parsed.Keys)), slog.Int("skipped", len(ks.parsed.Skipped)), slog.Duration("duration", d))
		for _, s := range ks.parsed.Skipped {
			log.LogAttrs(ctx, slog.LevelWarn, "jwks key skipped", slog.String("why", s))
		}
	}
	if ok {
		c.save(ctx, now)
	}
	out.events, out.d = events, d
	if out.err == nil {
		out.keys = ks.event.Keys
	}
	return out
}

// report passes a refresh's outcome to the Observer.
func (c *Cache) report(out outcome) {
	if c.cfg.Observer == nil {
		return
	}
	if eo, ok := c.cfg.Observer.(EventObserver); ok {
		for _, ev := range out.events {
			eo.ObserveEvent(ev)
		}
		return
	}
	c.cfg.Observer.ObserveFetch(c.cfg.Name, out.err, out.d, out.keys)
}

// observe passes ev to an EventObserver.
func (c *Cache) observe(ev Event) {
	if eo, ok := c.cfg.Observer.(EventObserver); ok {
		eo.ObserveEvent(ev)
	}
}

// refreshDiscovery fetches the discovery document and puts it in force if
// it is good. The error wraps [ErrFetch].
func (c *Cache) refreshDiscovery(ctx context.Context) (ev Event, retryAfter time.Duration, err error) {
	ev = Event{Provider: c.cfg.Name, Document: DocumentDiscovery, Result: ResultError}
	start := time.Now()
	defer func() { ev.Duration, ev.Err = time.Since(start), err }()
	resp, err := c.get(ctx, &c.discRes, MaxDiscoveryBytes, "application/json")
	if err != nil {
		return ev, resp.retryAfter, err
	}
	if resp.notModified {
		c.discRes.freshen(resp.header)
		ev.Result = ResultNotModified
		return ev, 0, nil
	}
	d, err := c.checkDiscovery(resp.body)
	if err != nil {
		return ev, 0, fmt.Errorf("%w: %s: %w", ErrFetch, c.discRes.shown, err)
	}
	c.discRes.keep(resp.header)
	c.useDiscovery(ctx, d, resp.body)
	ev.Result = ResultSuccess
	return ev, 0, nil
}

// checkDiscovery parses a discovery document and checks it for this
// provider: its issuer, and no downgrade to plain HTTP.
func (c *Cache) checkDiscovery(doc []byte) (Discovery, error) {
	d, err := ParseDiscovery(doc)
	if err != nil {
		return Discovery{}, err
	}
	if d.Issuer != c.cfg.Issuer {
		return Discovery{}, fmt.Errorf("%w: it names %q, the configured issuer is %q", ErrIssuerMismatch, truncate(d.Issuer), c.cfg.Issuer)
	}
	if scheme(c.discURL) == "https" && scheme(d.JWKSURI) != "https" {
		return Discovery{}, fmt.Errorf("%w: jwks_uri %q is plain HTTP, the document came over HTTPS", ErrDiscovery, truncate(d.JWKSURI))
	}
	return d, nil
}

// scheme is raw's scheme, lower case (url.Parse lowers it); raw was checked.
func scheme(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// useDiscovery puts a checked discovery document in force: a new jwks_uri
// is fetched without validators from then on, while the set in force stays
// until it answers.
func (c *Cache) useDiscovery(ctx context.Context, d Discovery, raw []byte) {
	c.disc = &d
	if c.cfg.CacheDir != "" {
		c.discDoc = raw
	}
	if d.JWKSURI == c.keySet.url {
		return
	}
	c.keySet = resource{url: d.JWKSURI, shown: redact.URL(d.JWKSURI)}
	c.mu.Lock()
	c.keySetShown = c.keySet.shown
	c.mu.Unlock()
	c.log().LogAttrs(ctx, slog.LevelInfo, "jwks: key set location from discovery", slog.String("jwks_uri", c.keySet.shown))
	c.warnPlainHTTP(d.JWKSURI, "key set")
}

// refreshKeySet fetches the key set and puts it in force if it is good. The
// error wraps [ErrFetch].
func (c *Cache) refreshKeySet(ctx context.Context) (r keySetResult) {
	r.event = Event{Provider: c.cfg.Name, Document: DocumentKeySet, Result: ResultError}
	start := time.Now()
	defer func() { r.event.Duration, r.event.Err = time.Since(start), r.err }()
	resp, err := c.get(ctx, &c.keySet, c.cfg.MaxBodyBytes, "application/jwk-set+json, application/json")
	if err != nil {
		r.err, r.retryAfter = err, resp.retryAfter
		return r
	}
	if resp.notModified {
		c.keySet.freshen(resp.header)
		r.event.Result, r.event.Keys = ResultNotModified, int(c.keys.Load())
		r.fresh = c.freshness(resp.header)
		return r
	}
	res, err := Parse(resp.body, c.cfg.Algorithms, c.cfg.MaxKeys)
	if err != nil {
		r.err = fmt.Errorf("%w: %s: %w", ErrFetch, c.keySet.shown, err)
		return r
	}
	if err := c.store.KeyReplaceAll(ctx, res.Keys); err != nil {
		r.err = fmt.Errorf("%w: %w", ErrFetch, err)
		return r
	}
	c.keySet.keep(resp.header)
	if c.cfg.CacheDir != "" {
		c.body = resp.body
	}
	c.keys.Store(int64(len(res.Keys)))
	c.noteKeys(res.Keys, c.cfg.Now())
	c.version.Add(1)
	c.loaded.Store(true)
	r.parsed = res
	r.event.Result, r.event.Keys = ResultSuccess, len(res.Keys)
	r.fresh = c.freshness(resp.header)
	return r
}

// freshness is the delay to the next scheduled refresh after a response
// with header h confirmed the key set in force.
func (c *Cache) freshness(h http.Header) time.Duration {
	d, ok := freshness(c.keySet.cacheControl, h)
	if !ok {
		return c.cfg.RefreshInterval
	}
	return min(max(d, c.cfg.MinRefreshInterval), c.cfg.RefreshInterval)
}
