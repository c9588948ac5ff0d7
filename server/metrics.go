package server

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/jwks"
)

// metrics adapts the authz and jwks observers to Prometheus, on a registry of
// its own (no globals). Labels come from closed sets: provider names from the
// config and authz.Reason values; never a kid or a subject.
type metrics struct {
	reg     *prometheus.Registry
	checks  *prometheus.CounterVec
	latency *prometheus.HistogramVec
	// bound holds the checks counter of each (provider, reason) seen, and
	// allowLatency/denyLatency the two latency series: a check looks its
	// series up in a sync.Map instead of hashing label values every time.
	// The label sets are closed (configured providers, the reason enum).
	bound                     sync.Map // checkSeries -> prometheus.Counter
	allowLatency, denyLatency prometheus.Observer
	fetches                   *prometheus.CounterVec
	discoveries               *prometheus.CounterVec
	fetchTime                 *prometheus.HistogramVec

	reloads        *prometheus.CounterVec
	lastReloadOK   prometheus.Gauge
	lastReloadTime prometheus.Gauge
}

func newMetrics(caches func() []*jwks.Cache, tokenCache func() authz.CacheStats, now func() time.Time) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_checks_total",
			Help: "Authorization decisions, by provider (empty when no provider was identified), reason and result (allow or deny).",
		}, []string{"provider", "reason", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extauthz_check_duration_seconds",
			Help:    "Time to make one decision, token verification included, by result.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3},
		}, []string{"result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_jwks_fetches_total",
			Help: "JWKS fetches by provider and result: success, not_modified (a 304 confirmed the set in force) or error.",
		}, []string{"provider", "result"}),
		discoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_oidc_discovery_fetches_total",
			Help: "OpenID Connect discovery document fetches by provider and result: success, not_modified or error.",
		}, []string{"provider", "result"}),
		fetchTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extauthz_jwks_fetch_duration_seconds",
			Help:    "Duration of JWKS fetches by provider.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"provider"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_config_reloads_total",
			Help: "Configuration reloads (SIGHUP or a changed config file) by result: success, or error when the new configuration was refused and the previous one kept.",
		}, []string{"result"}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "extauthz_config_last_reload_successful",
			Help: "1 if the latest configuration load (at start or reload) succeeded, 0 if it was refused.",
		}),
		lastReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "extauthz_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the latest successful configuration load (the start, then each accepted reload).",
		}),
	}
	// Both results exist from the start, so that rate() and alerts see a
	// series before the first reload.
	m.allowLatency, m.denyLatency = m.latency.WithLabelValues("allow"), m.latency.WithLabelValues("deny")
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("error")
	build := ReadBuildInfo()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "extauthz_build_info",
		Help:        "Always 1; the labels name the running binary: its module version ((devel) when the build recorded none), Go version and VCS revision.",
		ConstLabels: prometheus.Labels{"version": build.Version, "goversion": build.GoVersion, "revision": build.Revision},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(buildInfo, m.checks, m.latency, m.fetches, m.discoveries, m.fetchTime, m.reloads, m.lastReloadOK, m.lastReloadTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&cacheCollector{caches: caches, now: now}, tokenCacheCollector(tokenCache))
	return m
}

// BuildInfo describes the running binary, as the Go toolchain recorded it.
type BuildInfo struct {
	// Version is the main module's version: v1.2.3 for a binary built by
	// go install ...@v1.2.3, a pseudo-version for a build in a Git checkout
	// with VCS stamping, "(devel)" when the build recorded none (go build
	// with -buildvcs=false, as the Dockerfile builds, or outside a checkout).
	Version string
	// GoVersion is the toolchain that built it, go1.26.8.
	GoVersion string
	// Revision is the VCS revision it was built from, with "-dirty" when the
	// tree had uncommitted changes; "" when the build recorded none.
	Revision string
}

// ReadBuildInfo returns the running binary's [BuildInfo], from
// runtime/debug.ReadBuildInfo. It is what cmd/extauthz --version prints and
// logs at start, and the labels of extauthz_build_info.
func ReadBuildInfo() BuildInfo {
	b := BuildInfo{Version: "(devel)", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "" {
		b.Revision += "-dirty"
	}
	return b
}

// ObserveCheck implements authz.Observer.
func (m *metrics) ObserveCheck(_ context.Context, e authz.Event) {
	provider, reason, d := e.Provider, e.Reason, e.Duration
	k := checkSeries{provider, reason, e.Shadow}
	c, ok := m.bound.Load(k)
	if !ok {
		result := "deny"
		switch {
		case reason.Allow():
			result = "allow"
		case e.Shadow:
			result = "shadow_deny" // decided as a denial, let through (shadow mode)
		}
		c, _ = m.bound.LoadOrStore(k, m.checks.WithLabelValues(provider, string(reason), result))
	}
	c.(prometheus.Counter).Inc()
	if reason.Allow() {
		m.allowLatency.Observe(d.Seconds())
	} else {
		m.denyLatency.Observe(d.Seconds())
	}
}

type checkSeries struct {
	provider string
	reason   authz.Reason
	shadow   bool
}

// reloaded records a configuration load: the initial one (counted as no
// reload) or a reload.
func (m *metrics) reloaded(at time.Time, initial bool) {
	if !initial {
		m.reloads.WithLabelValues("success").Inc()
	}
	m.lastReloadOK.Set(1)
	m.lastReloadTime.Set(float64(at.UnixNano()) / 1e9)
}

// reloadFailed records a refused reload.
func (m *metrics) reloadFailed() {
	m.reloads.WithLabelValues("error").Inc()
	m.lastReloadOK.Set(0)
}

// ObserveFetch implements jwks.Observer.
func (m *metrics) ObserveFetch(provider string, err error, d time.Duration, _ int) {
	result := "success"
	if err != nil {
		result = "error"
	}
	m.fetches.WithLabelValues(provider, result).Inc()
	m.fetchTime.WithLabelValues(provider).Observe(d.Seconds())
}

// ObserveEvent implements jwks.EventObserver: key-set fetches by result
// (success, not_modified, error), discovery-document fetches apart; a set
// loaded from disk is no fetch (extauthz_jwks_key_set_from_disk says it).
func (m *metrics) ObserveEvent(e jwks.Event) {
	switch {
	case e.Result == jwks.ResultDisk:
	case e.Document == jwks.DocumentKeySet:
		m.fetches.WithLabelValues(e.Provider, string(e.Result)).Inc()
		m.fetchTime.WithLabelValues(e.Provider).Observe(e.Duration.Seconds())
	case e.Document == jwks.DocumentDiscovery:
		m.discoveries.WithLabelValues(e.Provider, string(e.Result)).Inc()
	}
}

// cacheCollector reports each cache's state at scrape time.
type cacheCollector struct {
	caches func() []*jwks.Cache // of the generation in force
	now    func() time.Time
}

var (
	descKeys  = prometheus.NewDesc("extauthz_jwks_keys", "Usable keys in the provider's current key set.", []string{"provider"}, nil)
	descReady = prometheus.NewDesc("extauthz_jwks_ready", "1 once the provider's key set has loaded, else 0.", []string{"provider"}, nil)
	descAge   = prometheus.NewDesc("extauthz_jwks_seconds_since_last_success",
		"Seconds since the provider's last successful JWKS fetch (+Inf before the first).", []string{"provider"}, nil)
	descFailing  = prometheus.NewDesc("extauthz_jwks_last_fetch_failed", "1 when the provider's latest JWKS fetch failed.", []string{"provider"}, nil)
	descFromDisk = prometheus.NewDesc("extauthz_jwks_key_set_from_disk",
		"1 while the provider's key set in force is the one stored in --jwks-cache-dir (loaded at start, no fetch yet).", []string{"provider"}, nil)
	descSetAge = prometheus.NewDesc("extauthz_jwks_key_set_age_seconds",
		"Age of the provider's key set in force: since the provider last served or confirmed it (for a set from disk, since it was stored).", []string{"provider"}, nil)
)

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descKeys
	ch <- descReady
	ch <- descAge
	ch <- descFailing
	ch <- descFromDisk
	ch <- descSetAge
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cache := range c.caches() {
		st := cache.Status()
		name := cache.Name()
		age := math.Inf(1)
		if !st.LastSuccess.IsZero() {
			age = c.now().Sub(st.LastSuccess).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(st.Keys), name)
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b2f(st.Loaded), name)
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, age, name)
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, b2f(st.LastError != nil), name)
		ch <- prometheus.MustNewConstMetric(descFromDisk, prometheus.GaugeValue, b2f(st.Source == jwks.SourceDisk), name)
		if st.Loaded {
			ch <- prometheus.MustNewConstMetric(descSetAge, prometheus.GaugeValue, st.Age.Seconds(), name)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var (
	descTokenLookups = prometheus.NewDesc("extauthz_token_cache_lookups_total",
		"Verified-token cache lookups by result: hit (a verified token answered without an RSA verification), negative_hit (a failed token answered from the cache), miss (the token was verified).",
		[]string{"result"}, nil)
	descTokenEntries = prometheus.NewDesc("extauthz_token_cache_entries", "Verification results held in the token cache, positive and negative.", nil, nil)
)

// tokenCacheCollector reports the verified-token cache's counters at scrape
// time. stats sums every generation's cache, so that the counters do not
// restart when a reload builds a new cache.
type tokenCacheCollector func() authz.CacheStats

func (tokenCacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTokenLookups
	ch <- descTokenEntries
}

func (stats tokenCacheCollector) Collect(ch chan<- prometheus.Metric) {
	st := stats()
	ch <- prometheus.MustNewConstMetric(descTokenLookups, prometheus.CounterValue, float64(st.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(descTokenLookups, prometheus.CounterValue, float64(st.NegativeHits), "negative_hit")
	ch <- prometheus.MustNewConstMetric(descTokenLookups, prometheus.CounterValue, float64(st.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(descTokenEntries, prometheus.GaugeValue, float64(st.Entries))
}
