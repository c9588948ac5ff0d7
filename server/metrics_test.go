package server_test

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/server"
)

// TestBuildInfoMetric: extauthz_build_info is 1, labelled with the binary's
// version, Go version and revision, the ones ReadBuildInfo returns (and
// --version prints).
func TestBuildInfoMetric(t *testing.T) {
	js := newJWKS(t, signer{key(0), "k0"})
	h := start(t, testConfig(js))
	b := server.ReadBuildInfo()
	if b.Version == "" || b.GoVersion != runtime.Version() {
		t.Errorf("ReadBuildInfo = %+v, want a version ((devel) at least) and Go %s", b, runtime.Version())
	}
	labels := map[string]string{"version": b.Version, "goversion": b.GoVersion, "revision": b.Revision}
	if v, ok := metricValue(h.scrape(), "extauthz_build_info", labels); !ok || v != 1 {
		t.Errorf("extauthz_build_info%v = %v, %v; want 1", labels, v, ok)
	}
}

// TestReloadMetrics: the token cache counters add up across reloads (the
// counters never go back, whether a reload takes the cache over or starts a
// new one), and the reload metrics record the start and each reload.
func TestReloadMetrics(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	path := filepath.Join(t.TempDir(), "config.yaml")
	watch := "config_watch_interval: 20ms\ntoken_cache_size: 100\n"
	writeFile(t, path, fileConfig(false, watch, js))
	before := time.Now()
	h := reloadable(t, path, nil)
	h.waitReady()

	lookups := func(result string) float64 {
		t.Helper()
		v, ok := metricValue(h.scrape(), "extauthz_token_cache_lookups_total", map[string]string{"result": result})
		if !ok {
			t.Fatalf("no extauthz_token_cache_lookups_total{result=%q}", result)
		}
		return v
	}
	fams := h.scrape()
	if v, _ := metricValue(fams, "extauthz_config_last_reload_success_timestamp_seconds", nil); v < float64(before.Unix())-1 || v > float64(time.Now().Unix())+1 {
		t.Errorf("last reload success timestamp %v, want the start (%v)", v, before.Unix())
	}
	for _, result := range []string{"success", "error"} {
		if v, ok := metricValue(fams, "extauthz_config_reloads_total", map[string]string{"result": result}); !ok || v != 0 {
			t.Errorf("extauthz_config_reloads_total{result=%s} at start = %v, %v; want 0, present", result, v, ok)
		}
	}

	token := mint(t, k, claims("alice"))
	for range 3 {
		if resp := h.mustCheck("/api", token); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("Check = %v, want OK", resp.GetStatus())
		}
	}
	if hits, misses := lookups("hit"), lookups("miss"); hits != 2 || misses != 1 {
		t.Errorf("token cache hits %v, misses %v; want 2, 1", hits, misses)
	}
	if v, _ := metricValue(h.scrape(), "extauthz_token_cache_entries", nil); v != 1 {
		t.Errorf("extauthz_token_cache_entries = %v, want 1", v)
	}

	// A reload that changes only rules takes the cache over: the token is
	// not verified again, and the cache's entries are counted once.
	writeFile(t, path, fileConfig(true, watch, js))
	h.waitReloads("success", 1)
	if hits, misses := lookups("hit"), lookups("miss"); hits != 2 || misses != 1 {
		t.Errorf("after the reload: token cache hits %v, misses %v; want still 2, 1", hits, misses)
	}
	h.mustCheck("/admin", token)
	h.mustCheck("/admin", token)
	if hits, misses := lookups("hit"), lookups("miss"); hits != 4 || misses != 1 {
		t.Errorf("after checks on the new generation: hits %v, misses %v; want 4, 1 (the cache taken over)", hits, misses)
	}
	if v, _ := metricValue(h.scrape(), "extauthz_token_cache_entries", nil); v != 1 {
		t.Errorf("extauthz_token_cache_entries after the take-over = %v, want 1", v)
	}

	// A reload that changes what a cached result holds (claim headers)
	// starts an empty cache: the token is verified once more.
	writeFile(t, path, fileConfig(true, watch+"claim_headers:\n  x-user: sub\n", js))
	h.waitReloads("success", 2)
	h.mustCheck("/admin", token)
	h.mustCheck("/admin", token)
	if hits, misses := lookups("hit"), lookups("miss"); hits != 5 || misses != 2 {
		t.Errorf("after a reload with new claim headers: hits %v, misses %v; want 5, 2", hits, misses)
	}
}
