package server

import (
	"context"
	"math"
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
	reg       *prometheus.Registry
	checks    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	fetches   *prometheus.CounterVec
	fetchTime *prometheus.HistogramVec
}

func newMetrics(caches []*jwks.Cache, now func() time.Time) *metrics {
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
			Help: "JWKS fetches by provider and result (success or error).",
		}, []string{"provider", "result"}),
		fetchTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extauthz_jwks_fetch_duration_seconds",
			Help:    "Duration of JWKS fetches by provider.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"provider"}),
	}
	m.reg.MustRegister(m.checks, m.latency, m.fetches, m.fetchTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&cacheCollector{caches: caches, now: now})
	return m
}

// ObserveCheck implements authz.Observer.
func (m *metrics) ObserveCheck(_ context.Context, provider string, reason authz.Reason, d time.Duration) {
	result := "deny"
	if reason.Allow() {
		result = "allow"
	}
	m.checks.WithLabelValues(provider, string(reason), result).Inc()
	m.latency.WithLabelValues(result).Observe(d.Seconds())
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

// cacheCollector reports each cache's state at scrape time.
type cacheCollector struct {
	caches []*jwks.Cache
	now    func() time.Time
}

var (
	descKeys  = prometheus.NewDesc("extauthz_jwks_keys", "Usable keys in the provider's current key set.", []string{"provider"}, nil)
	descReady = prometheus.NewDesc("extauthz_jwks_ready", "1 once the provider's key set has loaded, else 0.", []string{"provider"}, nil)
	descAge   = prometheus.NewDesc("extauthz_jwks_seconds_since_last_success",
		"Seconds since the provider's last successful JWKS fetch (+Inf before the first).", []string{"provider"}, nil)
	descFailing = prometheus.NewDesc("extauthz_jwks_last_fetch_failed", "1 when the provider's latest JWKS fetch failed.", []string{"provider"}, nil)
)

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descKeys
	ch <- descReady
	ch <- descAge
	ch <- descFailing
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cache := range c.caches {
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
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
