package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/server"
)

// fileConfig renders a config file: the providers of the JWKS servers (the
// first is "test" with the test issuer, the others as testConfig names
// them), /api public or not, and extra lines.
func fileConfig(apiPublic bool, extra string, jwks ...*jwksServer) string {
	var b strings.Builder
	b.WriteString("providers:\n")
	for i, j := range jwks {
		name, iss := "test", testIssuer
		if i > 0 {
			name = "test" + string(rune('0'+i))
			iss = testIssuer + "/" + name
		}
		fmt.Fprintf(&b, "  - name: %s\n    issuer: %s\n    audiences: [%s]\n    jwks_url: %s\n", name, iss, testAudience, j.url())
	}
	b.WriteString("rules:\n")
	if apiPublic {
		b.WriteString("  - path: /api\n    public: true\n")
	}
	b.WriteString("  - path: /admin\n    scopes: [admin]\n")
	b.WriteString(`grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
admin_addr: 127.0.0.1:0
jwks_refresh_interval: 1h
jwks_min_refresh_interval: 1ms
jwks_fetch_timeout: 20s
jwks_unknown_kid_wait: 20s
shutdown_grace: 20s
log_level: debug
`)
	b.WriteString(extra)
	return b.String()
}

// writeFile replaces path's content atomically, as kubectl cp, editors and
// config management do (a rename; a half-written file is never seen).
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// reloadable starts a server on the config file path, reloading it as
// cmd/extauthz does: the same arguments, the file read anew.
func reloadable(t *testing.T, path string, signal <-chan struct{}, opts ...func(*server.Options)) *harness {
	t.Helper()
	load := func() (*config.Config, error) {
		return config.Load([]string{"--config", path}, func(string) (string, bool) { return "", false }, io.Discard)
	}
	cfg, err := load()
	if err != nil {
		t.Fatalf("config.Load = %v", err)
	}
	return start(t, cfg, append([]func(*server.Options){func(o *server.Options) {
		o.Load = load
		o.Reload = signal
	}}, opts...)...)
}

// reloads returns extauthz_config_reloads_total{result}.
func (h *harness) reloads(result string) float64 {
	h.t.Helper()
	v, _ := metricValue(h.scrape(), "extauthz_config_reloads_total", map[string]string{"result": result})
	return v
}

// waitReloads waits until extauthz_config_reloads_total{result} reaches n.
func (h *harness) waitReloads(result string, n float64) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("%v reloads with result %s", n, result), func() bool { return h.reloads(result) >= n })
}

// reloadLines returns the log lines about reloads.
func reloadLines(logs string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "reload") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReloadUnderLoad rewrites the config file while checks run
// concurrently over gRPC and HTTP: /api turns protected, public, protected
// again, with a bad file in between. No check fails, every answer is the
// decision of one of the files, readiness never dips, the bad file is
// refused with its line number, and the final behaviour is the final file's.
func TestReloadUnderLoad(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	path := filepath.Join(t.TempDir(), "config.yaml")
	watch := "config_watch_interval: 20ms\n"
	writeFile(t, path, fileConfig(true, watch, js))
	h := reloadable(t, path, nil)
	h.waitReady()
	fetches := js.hits.Load()

	const workers = 4
	var (
		stop                 atomic.Bool
		allowed, denied, bad atomic.Int64
		rpcErrors            atomic.Int64
		notReady             atomic.Int64
		firstProblem         sync.Once
		problem              atomic.Value
		wg                   sync.WaitGroup
	)
	report := func(format string, args ...any) {
		firstProblem.Do(func() { problem.Store(fmt.Sprintf(format, args...)) })
	}
	for i := range workers {
		wg.Go(func() {
			for n := 0; !stop.Load() && n < 1_000_000; n++ {
				if i == 0 {
					// The HTTP forward-auth check, as nginx asks it.
					req, _ := http.NewRequest(http.MethodGet, "http://"+h.httpAddr+"/check", nil)
					req.Header.Set("X-Original-URI", "/api/items")
					req.Header.Set("X-Original-Method", "GET")
					resp, err := h.http.Do(req)
					if err != nil {
						rpcErrors.Add(1)
						report("HTTP check: %v", err)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode == http.StatusOK:
						allowed.Add(1)
					case resp.StatusCode == http.StatusUnauthorized && strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer "):
						denied.Add(1)
					default:
						bad.Add(1)
						report("HTTP check: status %d", resp.StatusCode)
					}
					continue
				}
				resp, err := h.check("/api/items", "")
				if err != nil {
					rpcErrors.Add(1)
					report("gRPC check: %v", err)
					continue
				}
				switch code := codes.Code(resp.GetStatus().GetCode()); {
				case code == codes.OK && resp.GetOkResponse() != nil:
					allowed.Add(1)
				case code == codes.Unauthenticated && resp.GetDeniedResponse().GetStatus().GetCode() == http.StatusUnauthorized &&
					strings.HasPrefix(deniedHeader(resp, "www-authenticate"), "Bearer "):
					denied.Add(1)
				default:
					bad.Add(1)
					report("gRPC check: %v", resp)
				}
			}
		})
	}
	// Readiness, sampled throughout.
	wg.Go(func() {
		for !stop.Load() {
			if code, _ := h.get("/readyz"); code != http.StatusOK {
				notReady.Add(1)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: authService})
			cancel()
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				notReady.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	began := time.Now()
	steps := []struct {
		name    string
		content string
		result  string // the reload result it must produce
	}{
		{name: "protected", content: fileConfig(false, watch, js), result: "success"},
		{name: "bad", content: strings.Replace(fileConfig(false, watch, js), "path: /admin", "path: no-slash", 1), result: "error"},
		{name: "public", content: fileConfig(true, watch, js), result: "success"},
		{name: "protected again", content: fileConfig(false, watch, js), result: "success"},
		{name: "public again", content: fileConfig(true, watch, js), result: "success"},
		{name: "protected, final", content: fileConfig(false, watch, js), result: "success"},
	}
	want := map[string]float64{"success": 0, "error": 0}
	for _, step := range steps {
		time.Sleep(400 * time.Millisecond) // checks run on each generation for a while
		writeFile(t, path, step.content)
		want[step.result]++
		h.waitReloads(step.result, want[step.result])
	}
	time.Sleep(400 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(began)

	total := allowed.Load() + denied.Load() + bad.Load() + rpcErrors.Load()
	t.Logf("%d checks in %v during %d reloads (%d allowed, %d denied): %d RPC errors, %d malformed answers, %d readiness dips",
		total, elapsed.Round(time.Millisecond), len(steps), allowed.Load(), denied.Load(), rpcErrors.Load(), bad.Load(), notReady.Load())
	if p := problem.Load(); p != nil {
		t.Errorf("first problem: %s", p)
	}
	if rpcErrors.Load() != 0 || bad.Load() != 0 {
		t.Errorf("%d errors and %d malformed answers, want none", rpcErrors.Load(), bad.Load())
	}
	if allowed.Load() == 0 || denied.Load() == 0 {
		t.Errorf("allowed %d, denied %d: want both generations to have answered", allowed.Load(), denied.Load())
	}
	if notReady.Load() != 0 {
		t.Errorf("readiness dipped %d times during the reloads, want never", notReady.Load())
	}
	if got, want := h.reloads("success"), want["success"]; got != want {
		t.Errorf("successful reloads = %v, want %v", got, want)
	}
	if got := h.reloads("error"); got != 1 {
		t.Errorf("refused reloads = %v, want 1", got)
	}
	// The final file protects /api.
	resp := h.mustCheck("/api/items", "")
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.Unauthenticated {
		t.Errorf("final Check(/api/items) without a token: %v, want Unauthenticated", got)
	}
	if resp := h.mustCheck("/api/items", mint(t, k, claims("alice"))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("final Check(/api/items) with a token: %v, want OK", resp.GetStatus())
	}
	// The bad file was refused with its place, and logged once.
	logs := h.logs.String()
	if n := strings.Count(logs, "config reload refused"); n != 1 {
		t.Errorf("%d 'config reload refused' log lines, want 1", n)
	}
	if !strings.Contains(logs, path+":") || !strings.Contains(logs, "no-slash") {
		t.Errorf("the refusal does not name %s:LINE and the bad path:\n%s", path, reloadLines(logs))
	}
	if v, _ := metricValue(h.scrape(), "extauthz_config_last_reload_successful", nil); v != 1 {
		t.Errorf("extauthz_config_last_reload_successful = %v, want 1 after the last good file", v)
	}
	// Only the rules changed: the key set was never fetched again.
	if got := js.hits.Load(); got != fetches {
		t.Errorf("JWKS fetched %d times during reloads of rules only, want 0", got-fetches)
	}
}

// TestReloadKeyCaches: a reload that adds a provider loads its key set
// before the swap (readiness stays), one that removes it drops it, and the
// untouched provider's key set is never fetched again.
func TestReloadKeyCaches(t *testing.T) {
	k0, k1 := signer{key(0), "k0"}, signer{key(1), "k1"}
	js0, js1 := newJWKS(t, k0), newJWKS(t, k1)
	path := filepath.Join(t.TempDir(), "config.yaml")
	watch := "config_watch_interval: 20ms\n"
	writeFile(t, path, fileConfig(false, watch, js0))
	h := reloadable(t, path, nil)
	h.waitReady()
	before := js0.hits.Load()

	other := claims("bob")
	other["iss"] = testIssuer + "/test1"
	token1 := mint(t, k1, other)
	if resp := h.mustCheck("/api", token1); codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Fatalf("Check with the second issuer before it is configured: %v, want Unauthenticated", resp.GetStatus())
	}

	writeFile(t, path, fileConfig(false, watch, js0, js1))
	h.waitReloads("success", 1)
	if js1.hits.Load() == 0 {
		t.Error("the new provider's key set was not fetched before the swap")
	}
	if !h.srv.Ready() {
		t.Error("not ready right after adding a provider")
	}
	if resp := h.mustCheck("/api", token1); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("Check with the added provider's token: %v, want OK", resp.GetStatus())
	}
	if v, ok := metricValue(h.scrape(), "extauthz_jwks_keys", map[string]string{"provider": "test1"}); !ok || v != 1 {
		t.Errorf("extauthz_jwks_keys{provider=test1} = %v, %v; want 1", v, ok)
	}

	writeFile(t, path, fileConfig(false, watch, js0))
	h.waitReloads("success", 2)
	if resp := h.mustCheck("/api", token1); codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Errorf("Check with the removed provider's token: %v, want Unauthenticated", resp.GetStatus())
	}
	if _, ok := metricValue(h.scrape(), "extauthz_jwks_keys", map[string]string{"provider": "test1"}); ok {
		t.Error("extauthz_jwks_keys still reports the removed provider")
	}
	if resp := h.mustCheck("/api", mint(t, k0, claims("alice"))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("Check with the kept provider's token: %v, want OK", resp.GetStatus())
	}
	if got := js0.hits.Load(); got != before {
		t.Errorf("the kept provider's key set was fetched %d more times, want 0", got-before)
	}

	// A changed JWKS setting makes a new cache for the same provider.
	writeFile(t, path, fileConfig(false, watch+"jwks_max_keys: 50\n", js0))
	h.waitReloads("success", 3)
	if js0.hits.Load() == before {
		t.Error("jwks_max_keys changed but the key set was not fetched anew")
	}
}

// TestReloadRefusesUnloadableKeys: a new provider whose key set does not load
// is refused like a bad file, so that a reload never takes a ready server out
// of readiness; the previous configuration keeps serving.
func TestReloadRefusesUnloadableKeys(t *testing.T) {
	k0 := signer{key(0), "k0"}
	js0, js1 := newJWKS(t, k0), newJWKS(t, signer{key(1), "k1"})
	js1.down.Store(true)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, fileConfig(false, "config_watch_interval: 20ms\n", js0))
	h := reloadable(t, path, nil)
	h.waitReady()

	writeFile(t, path, fileConfig(true, "config_watch_interval: 20ms\n", js0, js1))
	h.waitReloads("error", 1)
	if code, _ := h.get("/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz after the refused reload = %d, want 200", code)
	}
	if resp := h.mustCheck("/api", ""); codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Errorf("the refused file's public /api is in force: %v", resp.GetStatus())
	}
	if logs := h.logs.String(); !strings.Contains(logs, "config reload refused") || !strings.Contains(logs, "test1") {
		t.Errorf("no refusal naming provider test1 in the logs:\n%s", reloadLines(logs))
	}
	if v, _ := metricValue(h.scrape(), "extauthz_config_last_reload_successful", nil); v != 0 {
		t.Errorf("extauthz_config_last_reload_successful = %v, want 0", v)
	}

	// Once the provider's JWKS answers, the same file loads on SIGHUP-less
	// retry: touching it is not a change, so rewrite it.
	js1.down.Store(false)
	writeFile(t, path, fileConfig(true, "config_watch_interval: 20ms\n# retry\n", js0, js1))
	h.waitReloads("success", 1)
	if resp := h.mustCheck("/api", ""); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("after the good reload, /api is %v, want public", resp.GetStatus())
	}
}

// TestReloadSignal: with the file watch off, a receive on Options.Reload (what
// cmd/extauthz sends on SIGHUP) reloads; the log level follows the file, and
// settings that need a restart are named in a warning and not applied.
func TestReloadSignal(t *testing.T) {
	js := newJWKS(t, signer{key(0), "k0"})
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, fileConfig(false, "config_watch_interval: 0s\n", js))
	hup := make(chan struct{})
	var level slog.LevelVar
	h := reloadable(t, path, hup, func(o *server.Options) { o.LogLevel = &level })
	h.waitReady()

	writeFile(t, path, strings.Replace(fileConfig(true, "config_watch_interval: 0s\n", js), "log_level: debug", "log_level: warn", 1)+
		"grpc_max_streams: 7\n")
	// Not watched: nothing happens until the signal.
	time.Sleep(200 * time.Millisecond)
	if resp := h.mustCheck("/api", ""); codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Fatalf("the file was reloaded without a signal: %v", resp.GetStatus())
	}
	select {
	case hup <- struct{}{}:
	case <-time.After(waitLong):
		t.Fatal("the server does not take reload signals")
	}
	h.waitReloads("success", 1)
	if resp := h.mustCheck("/api", ""); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("after the signal, /api is %v, want public", resp.GetStatus())
	}
	if got := level.Level(); got != slog.LevelWarn {
		t.Errorf("log level after reload = %v, want WARN", got)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "need a restart") || !strings.Contains(logs, "grpc_max_streams") {
		t.Errorf("no warning naming grpc_max_streams as needing a restart:\n%s", reloadLines(logs))
	}
	if strings.Contains(logs, `"settings":["grpc_addr`) {
		t.Errorf("grpc_addr reported as changed although it is the same:\n%s", reloadLines(logs))
	}
}

// TestReloadConfigMapSwap follows the kubelet's update of a mounted ConfigMap:
// config.yaml is a symlink into ..data, itself a symlink to a timestamped
// directory, and an update swaps ..data atomically.
func TestReloadConfigMapSwap(t *testing.T) {
	js := newJWKS(t, signer{key(0), "k0"})
	dir := t.TempDir()
	version := func(name, content string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	watch := "config_watch_interval: 20ms\n"
	version("..2026_11_28_01", fileConfig(false, watch, js))
	if err := os.Symlink("..data/config.yaml", filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	h := reloadable(t, filepath.Join(dir, "config.yaml"), nil)
	h.waitReady()

	version("..2026_11_28_02", fileConfig(true, watch, js))
	h.waitReloads("success", 1)
	if resp := h.mustCheck("/api", ""); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("after the ConfigMap update, /api is %v, want public", resp.GetStatus())
	}
	// The same content again (a resync) is no change.
	version("..2026_11_28_03", fileConfig(true, watch, js))
	time.Sleep(200 * time.Millisecond)
	if got := h.reloads("success") + h.reloads("error"); got != 1 {
		t.Errorf("%v reloads after an update with the same content, want still 1", got)
	}
	if !bytes.Contains([]byte(h.logs.String()), []byte(`"trigger":"file"`)) {
		t.Error("the reload log line does not name its trigger")
	}
}
