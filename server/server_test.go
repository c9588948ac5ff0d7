package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/server"
)

const authService = "envoy.service.auth.v3.Authorization"

func healthStatus(t *testing.T, h *harness, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health.Check(%q) = %v", service, err)
	}
	return resp.GetStatus()
}

// TestReadiness follows a server from start, while the key set is still
// being fetched, to ready: /healthz is always 200, /readyz and gRPC health
// turn from 503/NOT_SERVING to 200/SERVING, and checks are 503 meanwhile.
func TestReadiness(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	js.hold()
	h := start(t, testConfig(js))

	select {
	case <-js.waiting:
	case <-time.After(waitLong):
		t.Fatal("the server never fetched the key set")
	}
	if code, _ := h.get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz before ready = %d, want 200", code)
	}
	code, body := h.get("/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz before ready = %d, want 503", code)
	}
	var rz struct {
		Ready     bool
		Providers []struct {
			Name  string
			Ready bool
			Keys  int
		}
	}
	if err := json.Unmarshal([]byte(body), &rz); err != nil || rz.Ready || len(rz.Providers) != 1 || rz.Providers[0].Name != "test" || rz.Providers[0].Ready {
		t.Errorf("GET /readyz before ready = %s (%v), want ready false for provider test", body, err)
	}
	for _, svc := range []string{"", authService} {
		if got := healthStatus(t, h, svc); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health(%q) before ready = %v, want NOT_SERVING", svc, got)
		}
	}
	token := mint(t, k, claims("alice"))
	resp := h.mustCheck("/api", token)
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.Unavailable {
		t.Errorf("Check before ready: code %v, want Unavailable", got)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != http.StatusServiceUnavailable {
		t.Errorf("Check before ready: HTTP %d, want 503", got)
	}
	if n := h.readyCalls.Load(); n != 0 {
		t.Errorf("Options.Ready called %d times before ready", n)
	}
	if h.srv.Ready() {
		t.Error("Server.Ready() = true before the key set loaded")
	}

	js.release()
	h.waitReady()
	_, body = h.get("/readyz")
	if err := json.Unmarshal([]byte(body), &rz); err != nil || !rz.Ready || len(rz.Providers) != 1 || !rz.Providers[0].Ready || rz.Providers[0].Keys != 1 {
		t.Errorf("GET /readyz when ready = %s (%v), want ready with 1 key", body, err)
	}
	for _, svc := range []string{"", authService} {
		eventually(t, "health "+svc+" SERVING", func() bool {
			return healthStatus(t, h, svc) == healthpb.HealthCheckResponse_SERVING
		})
	}
	if code, _ := h.get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz when ready = %d, want 200", code)
	}
	if n := h.readyCalls.Load(); n != 1 {
		t.Errorf("Options.Ready called %d times, want 1", n)
	}
	if !h.srv.Ready() {
		t.Error("Server.Ready() = false once loaded")
	}
	if resp := h.mustCheck("/api", token); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("Check when ready = %v, want OK", resp.GetStatus())
	}
}

// TestReadinessWaitsForEveryProvider: with two providers, the server is ready
// only once both key sets loaded.
func TestReadinessWaitsForEveryProvider(t *testing.T) {
	a := newJWKS(t, signer{key(0), "a"})
	b := newJWKS(t, signer{key(1), "b"})
	b.hold()
	h := start(t, testConfig(a, b))
	eventually(t, "provider a to load", func() bool {
		_, body := h.get("/readyz")
		return strings.Contains(body, `{"name":"test","ready":true,"keys":1,`)
	})
	if code, _ := h.get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with one of two providers loaded = %d, want 503", code)
	}
	if got := healthStatus(t, h, ""); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health with one of two providers loaded = %v, want NOT_SERVING", got)
	}
	b.release()
	h.waitReady()
	eventually(t, "health SERVING", func() bool { return healthStatus(t, h, "") == healthpb.HealthCheckResponse_SERVING })
	if n := h.readyCalls.Load(); n != 1 {
		t.Errorf("Options.Ready called %d times, want 1", n)
	}
}

func TestCheckGRPC(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	h := start(t, testConfig(js))
	h.waitReady()

	expired := claims("alice")
	expired["iat"] = time.Now().Add(-3 * time.Hour).Unix()
	expired["exp"] = time.Now().Add(-2 * time.Hour).Unix()
	wrongAud := claims("alice")
	wrongAud["aud"] = "https://other.test"
	wrongIss := claims("alice")
	wrongIss["iss"] = "https://evil.test"
	admin := claims("root")
	admin["scope"] = "read admin"
	hmac := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("alice"))
	hmac.Header["kid"] = "k0"
	hmacToken, err := hmac.SignedString([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		path     string
		token    string
		wantCode codes.Code
		wantHTTP int    // for denials
		reason   string // the status message of a denial
		wantSub  string // x-jwt-sub on allow; "" for none
	}{
		{name: "valid", path: "/api", token: mint(t, k, claims("alice")), wantCode: codes.OK, wantSub: "alice"},
		{name: "valid with scope", path: "/admin/x", token: mint(t, k, admin), wantCode: codes.OK, wantSub: "root"},
		{name: "public without token", path: "/public/page", wantCode: codes.OK},
		{name: "no token", path: "/api", wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "missing_token"},
		{name: "expired", path: "/api", token: mint(t, k, expired), wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "expired"},
		{name: "wrong audience", path: "/api", token: mint(t, k, wrongAud), wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "wrong_audience"},
		{name: "wrong issuer", path: "/api", token: mint(t, k, wrongIss), wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "unknown_issuer"},
		{name: "other key under a known kid", path: "/api", token: mint(t, signer{key(1), "k0"}, claims("alice")), wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "bad_signature"},
		{name: "hmac", path: "/api", token: hmacToken, wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "bad_algorithm"},
		{name: "garbage", path: "/api", token: "not.a.jwt", wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "malformed"},
		{name: "missing scope", path: "/admin", token: mint(t, k, claims("alice")), wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "insufficient_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.mustCheck(tc.path, tc.token)
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.wantCode {
				t.Fatalf("code = %v (%s), want %v", got, resp.GetStatus().GetMessage(), tc.wantCode)
			}
			if tc.wantCode == codes.OK {
				if resp.GetOkResponse() == nil {
					t.Fatal("allow without an OkHttpResponse")
				}
				sub, ok := okHeader(resp, "x-jwt-sub")
				if sub != tc.wantSub || ok != (tc.wantSub != "") {
					t.Errorf("x-jwt-sub = %q, %v; want %q", sub, ok, tc.wantSub)
				}
				return
			}
			d := resp.GetDeniedResponse()
			if d == nil {
				t.Fatal("denial without a DeniedHttpResponse")
			}
			if got := int(d.GetStatus().GetCode()); got != tc.wantHTTP {
				t.Errorf("HTTP status = %d, want %d", got, tc.wantHTTP)
			}
			if got := resp.GetStatus().GetMessage(); got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
			var body struct{ Error string }
			if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body.Error == "" {
				t.Errorf("body = %q, want {\"error\": ...}", d.GetBody())
			}
			if got := deniedHeader(resp, "www-authenticate"); !strings.HasPrefix(got, `Bearer realm="test"`) {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge of realm test", got)
			}
		})
	}

	t.Run("no http attributes", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		_, err := h.authz.Check(ctx, &authv3.CheckRequest{})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Check(empty) = %v, want InvalidArgument", err)
		}
	})
}

func TestCheckHTTP(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	h := start(t, testConfig(js))
	h.waitReady()
	token := mint(t, k, claims("alice"))

	tests := []struct {
		name    string
		headers map[string]string
		want    int
		wantSub string
	}{
		{name: "nginx valid", headers: map[string]string{"X-Original-URI": "/api/x", "X-Original-Method": "POST", "Authorization": "Bearer " + token}, want: 200, wantSub: "alice"},
		{name: "caddy valid", headers: map[string]string{"X-Forwarded-Uri": "/api/x", "X-Forwarded-Method": "GET", "Authorization": "Bearer " + token}, want: 200, wantSub: "alice"},
		{name: "no token", headers: map[string]string{"X-Original-URI": "/api/x"}, want: 401},
		{name: "public", headers: map[string]string{"X-Original-URI": "/public"}, want: 200},
		{name: "bad token", headers: map[string]string{"X-Original-URI": "/api", "Authorization": "Bearer " + token + "x"}, want: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+h.httpAddr+"/auth", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := h.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			if got := resp.Header.Get("X-Jwt-Sub"); got != tc.wantSub {
				t.Errorf("X-Jwt-Sub = %q, want %q", got, tc.wantSub)
			}
			if tc.want != 200 {
				var body struct{ Error string }
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
					t.Errorf("body: %v, want {\"error\": ...}", err)
				}
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	js.hold()
	h := start(t, testConfig(js))
	select {
	case <-js.waiting:
	case <-time.After(waitLong):
		t.Fatal("the server never fetched the key set")
	}
	fams := h.scrape()
	if v, ok := metricValue(fams, "extauthz_jwks_seconds_since_last_success", map[string]string{"provider": "test"}); !ok || !math.IsInf(v, 1) {
		t.Errorf("extauthz_jwks_seconds_since_last_success before the first fetch = %v, %v; want +Inf", v, ok)
	}
	if v, ok := metricValue(fams, "extauthz_jwks_ready", map[string]string{"provider": "test"}); !ok || v != 0 {
		t.Errorf("extauthz_jwks_ready before ready = %v, %v; want 0", v, ok)
	}
	js.release()
	h.waitReady()

	token := mint(t, k, claims("alice"))
	for range 3 {
		h.mustCheck("/api", token)
	}
	h.mustCheck("/api", "")
	h.mustCheck("/api", token+"x")

	fams = h.scrape()
	tests := []struct {
		name   string
		labels map[string]string
		check  func(v float64) bool
		want   string
	}{
		{name: "extauthz_checks_total", labels: map[string]string{"provider": "test", "reason": "allowed", "result": "allow"}, check: func(v float64) bool { return v == 3 }, want: "3"},
		{name: "extauthz_checks_total", labels: map[string]string{"provider": "", "reason": "missing_token", "result": "deny"}, check: func(v float64) bool { return v == 1 }, want: "1"},
		{name: "extauthz_checks_total", labels: map[string]string{"provider": "test", "reason": "bad_signature", "result": "deny"}, check: func(v float64) bool { return v == 1 }, want: "1"},
		{name: "extauthz_check_duration_seconds", labels: map[string]string{"result": "allow"}, check: func(v float64) bool { return v == 3 }, want: "3 observations"},
		{name: "extauthz_check_duration_seconds", labels: map[string]string{"result": "deny"}, check: func(v float64) bool { return v == 2 }, want: "2 observations"},
		{name: "extauthz_jwks_fetches_total", labels: map[string]string{"provider": "test", "result": "success"}, check: func(v float64) bool { return v >= 1 }, want: ">= 1"},
		{name: "extauthz_jwks_fetch_duration_seconds", labels: map[string]string{"provider": "test"}, check: func(v float64) bool { return v >= 1 }, want: ">= 1 observation"},
		{name: "extauthz_jwks_keys", labels: map[string]string{"provider": "test"}, check: func(v float64) bool { return v == 1 }, want: "1"},
		{name: "extauthz_jwks_ready", labels: map[string]string{"provider": "test"}, check: func(v float64) bool { return v == 1 }, want: "1"},
		{name: "extauthz_jwks_last_fetch_failed", labels: map[string]string{"provider": "test"}, check: func(v float64) bool { return v == 0 }, want: "0"},
		{name: "extauthz_jwks_seconds_since_last_success", labels: map[string]string{"provider": "test"}, check: func(v float64) bool { return v >= 0 && v < waitLong.Seconds()*3 }, want: "a few seconds"},
	}
	for _, tc := range tests {
		v, ok := metricValue(fams, tc.name, tc.labels)
		if !ok || !tc.check(v) {
			t.Errorf("%s%v = %v (found %v), want %s", tc.name, tc.labels, v, ok, tc.want)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "extauthz_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s is not prefixed extauthz_ (nor a standard go_/process_ metric)", name)
		}
	}
	// Labels come from closed sets: never a kid or a subject.
	for _, name := range []string{"extauthz_checks_total", "extauthz_jwks_fetches_total", "extauthz_jwks_keys"} {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "alice" || l.GetValue() == "k0" {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// TestKeyRotation: the issuer publishes a new key and withdraws the old one.
// A token of the new kid makes the server refresh at once and is allowed; a
// token of the withdrawn key is refused after that refresh.
func TestKeyRotation(t *testing.T) {
	old, next := signer{key(0), "2026-01"}, signer{key(1), "2026-02"}
	js := newJWKS(t, old)
	h := start(t, testConfig(js))
	h.waitReady()
	oldToken := mint(t, old, claims("alice"))
	if resp := h.mustCheck("/api", oldToken); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check(old key) before rotation = %v, want OK", resp.GetStatus())
	}
	fetches := js.hits.Load()

	js.publish(t, next)
	newToken := mint(t, next, claims("bob"))
	resp := h.mustCheck("/api", newToken)
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check(new kid) after rotation = %v, want OK after an unknown-kid refresh", resp.GetStatus())
	}
	if sub, _ := okHeader(resp, "x-jwt-sub"); sub != "bob" {
		t.Errorf("x-jwt-sub = %q, want bob", sub)
	}
	if got := js.hits.Load(); got <= fetches {
		t.Errorf("JWKS fetches = %d, want more than %d (an unknown-kid refresh)", got, fetches)
	}
	resp = h.mustCheck("/api", oldToken)
	if got := resp.GetStatus().GetMessage(); codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated || got != "unknown_kid" {
		t.Errorf("Check(withdrawn key) = %v, want Unauthenticated unknown_kid", resp.GetStatus())
	}
	if resp := h.mustCheck("/api", newToken); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("Check(new kid) again = %v, want OK", resp.GetStatus())
	}
}

// TestJWKSDown: once loaded, keys keep working when the JWKS endpoint fails;
// the failure shows in the metrics, and readiness does not flap.
func TestJWKSDown(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	h := start(t, testConfig(js))
	h.waitReady()
	token := mint(t, k, claims("alice"))

	for _, how := range []string{"503", "closed"} {
		t.Run(how, func(t *testing.T) {
			if how == "503" {
				js.down.Store(true)
			} else {
				js.Close()
			}
			// An unknown kid makes the server try to refresh, and fail.
			resp := h.mustCheck("/api", mint(t, signer{key(1), "new-" + how}, claims("alice")))
			if got := resp.GetStatus().GetMessage(); got != "unknown_kid" {
				t.Errorf("Check(unknown kid) with JWKS down = %q, want unknown_kid", got)
			}
			eventually(t, "a failed fetch in the metrics", func() bool {
				v, _ := metricValue(h.scrape(), "extauthz_jwks_last_fetch_failed", map[string]string{"provider": "test"})
				return v == 1
			})
			if resp := h.mustCheck("/api", token); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				t.Errorf("Check(cached key) with JWKS down = %v, want OK", resp.GetStatus())
			}
			fams := h.scrape()
			if v, _ := metricValue(fams, "extauthz_jwks_fetches_total", map[string]string{"provider": "test", "result": "error"}); v < 1 {
				t.Errorf("extauthz_jwks_fetches_total{result=error} = %v, want >= 1", v)
			}
			if v, _ := metricValue(fams, "extauthz_jwks_keys", map[string]string{"provider": "test"}); v != 1 {
				t.Errorf("extauthz_jwks_keys = %v, want 1 (the cached set)", v)
			}
			if code, _ := h.get("/readyz"); code != http.StatusOK {
				t.Errorf("GET /readyz with JWKS down after loading = %d, want 200", code)
			}
			if got := healthStatus(t, h, ""); got != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health with JWKS down after loading = %v, want SERVING", got)
			}
		})
	}
}

// TestGracefulShutdown cancels Run's context while checks are in flight: a
// slow one on each port (an unknown kid waiting on a held JWKS refresh, one
// provider per port) and a stream of fast ones. Health turns NOT_SERVING;
// the slow checks still get their decision once the refresh completes;
// every other check got a decision or was refused as Unavailable; and Run
// returns nil.
func TestGracefulShutdown(t *testing.T) {
	ka, kb := signer{key(0), "a"}, signer{key(1), "b"}
	ja, jb := newJWKS(t, ka), newJWKS(t, kb)
	h := start(t, testConfig(ja, jb))
	h.waitReady()
	token := mint(t, ka, claims("alice"))
	unknownA := mint(t, signer{key(2), "unknown"}, claims("alice"))
	cb := claims("alice")
	cb["iss"] = testIssuer + "/test1" // provider b
	unknownB := mint(t, signer{key(2), "unknown"}, cb)

	// A health watcher sees the switch to NOT_SERVING.
	watchCtx, stopWatch := context.WithTimeout(context.Background(), waitLong)
	defer stopWatch()
	watch, err := h.health.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: authService})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := watch.Recv()
		if err != nil {
			t.Fatalf("health Watch = %v", err)
		}
		if m.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}
	watched := make(chan healthpb.HealthCheckResponse_ServingStatus, 1)
	go func() {
		defer stopWatch() // a watch is a stream: end it, or the drain waits for it
		m, err := watch.Recv()
		if err != nil {
			close(watched)
			return
		}
		watched <- m.GetStatus()
	}()

	// The slow checks: each waits for a refresh that the test holds.
	ja.hold()
	jb.hold()
	type result struct {
		resp *authv3.CheckResponse
		err  error
	}
	slowGRPC := make(chan result, 1)
	go func() {
		resp, err := h.check("/api", unknownA)
		slowGRPC <- result{resp, err}
	}()
	slowHTTP := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.httpAddr+"/", nil)
		req.Header.Set("X-Original-URI", "/api")
		req.Header.Set("Authorization", "Bearer "+unknownB)
		resp, err := h.http.Do(req)
		if err != nil {
			slowHTTP <- -1
			return
		}
		resp.Body.Close()
		slowHTTP <- resp.StatusCode
	}()
	for _, j := range []*jwksServer{ja, jb} {
		select {
		case <-j.waiting:
		case <-time.After(waitLong):
			t.Fatal("an unknown kid did not trigger a refresh")
		}
	}

	// The fast checks.
	var (
		wg       sync.WaitGroup
		answered atomic.Int64
		mu       sync.Mutex
		bad      []string
	)
	for range 8 {
		wg.Go(func() {
			for {
				resp, err := h.check("/api", token)
				if err != nil {
					if status.Code(err) != codes.Unavailable {
						mu.Lock()
						bad = append(bad, "error "+err.Error())
						mu.Unlock()
					}
					return
				}
				if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
					mu.Lock()
					bad = append(bad, "decision "+resp.GetStatus().String())
					mu.Unlock()
				}
				answered.Add(1)
			}
		})
	}
	eventually(t, "fast checks to flow", func() bool { return answered.Load() >= 50 })

	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()

	select {
	case st, ok := <-watched:
		if !ok || st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health Watch after shutdown began = %v (open %v), want NOT_SERVING", st, ok)
		}
	case <-time.After(waitLong):
		t.Error("health never reported NOT_SERVING on shutdown")
	}
	select {
	case <-slowGRPC:
		t.Fatal("the slow gRPC check returned before its refresh completed")
	case <-slowHTTP:
		t.Fatal("the slow HTTP check returned before its refresh completed")
	case err := <-stopped:
		t.Fatalf("Run returned (%v) with checks in flight", err)
	default:
	}
	ja.release()
	jb.release()

	select {
	case r := <-slowGRPC:
		if r.err != nil {
			t.Errorf("in-flight gRPC check = %v, want a decision", r.err)
		} else if got := r.resp.GetStatus().GetMessage(); got != "unknown_kid" {
			t.Errorf("in-flight gRPC check decided %q, want unknown_kid", got)
		}
	case <-time.After(waitLong):
		t.Error("in-flight gRPC check never returned")
	}
	select {
	case code := <-slowHTTP:
		if code != http.StatusUnauthorized {
			t.Errorf("in-flight HTTP check = %d, want 401", code)
		}
	case <-time.After(waitLong):
		t.Error("in-flight HTTP check never returned")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Run did not return")
	}
	wg.Wait()
	for _, b := range bad {
		t.Errorf("a check during shutdown failed with: %s", b)
	}
	if !strings.Contains(h.logs.String(), "extauthz shutting down") {
		t.Error("no shutdown log line")
	}
}

// TestShutdownGraceBoundsDrain: a stream that never ends (a health watch
// nobody cancels) does not keep Run from returning once the grace is over.
func TestShutdownGraceBoundsDrain(t *testing.T) {
	js := newJWKS(t, signer{key(0), "k0"})
	cfg := testConfig(js)
	cfg.ShutdownGrace = 500 * time.Millisecond
	h := start(t, cfg)
	h.waitReady()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	watch, err := h.health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := h.stop(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if d := time.Since(begin); d > waitLong/2 {
		t.Errorf("Run took %v to return with a %v grace", d, cfg.ShutdownGrace)
	}
}

// TestListenErrors: an address that cannot be listened on is Run's error,
// and the listeners already opened are closed.
func TestListenErrors(t *testing.T) {
	for _, which := range []string{"grpc", "http", "admin"} {
		t.Run(which, func(t *testing.T) {
			js := newJWKS(t, signer{key(0), "k0"})
			busy := listen(t)
			defer busy.Close()
			cfg := testConfig(js)
			var opts server.Options
			opts.Logger = discardLogger()
			// The ports before the busy one are given as listeners, so the
			// test can see that Run closes them.
			var given []net.Listener
			switch which {
			case "grpc":
				cfg.GRPCAddr = busy.Addr().String()
			case "http":
				opts.GRPCListener = listen(t)
				given = append(given, opts.GRPCListener)
				cfg.HTTPAddr = busy.Addr().String()
			case "admin":
				opts.GRPCListener, opts.HTTPListener = listen(t), listen(t)
				given = append(given, opts.GRPCListener, opts.HTTPListener)
				cfg.AdminAddr = busy.Addr().String()
			}
			srv, err := server.New(cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Run(t.Context()) }()
			select {
			case err = <-done:
			case <-time.After(waitLong):
				t.Fatal("Run did not return for a busy port")
			}
			// The flag too: the address alone does not say which port it is.
			if want := "--" + which + "-addr " + busy.Addr().String() + ": address already in use"; !errors.Is(err, syscall.EADDRINUSE) || err.Error() != want {
				t.Errorf("Run = %v, want EADDRINUSE as %q", err, want)
			}
			for _, l := range given {
				if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("listener %s after Run failed: Accept = %v, want net.ErrClosed", l.Addr(), err)
				}
			}
		})
	}
}

// TestDenialLog: one log line per denial with its reason, and never the
// token, whatever the reason, on either port.
func TestDenialLog(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	h := start(t, testConfig(js))
	h.waitReady()

	wrongAud := claims("alice")
	wrongAud["aud"] = "https://other.test"
	expired := claims("alice")
	expired["iat"] = time.Now().Add(-3 * time.Hour).Unix()
	expired["exp"] = time.Now().Add(-2 * time.Hour).Unix()
	tokens := map[string]string{
		"wrong_audience": mint(t, k, wrongAud),
		"expired":        mint(t, k, expired),
		"bad_signature":  mint(t, k, claims("alice")) + "x",
		"unknown_kid":    mint(t, signer{key(1), "nope"}, claims("alice")),
		"allowed":        mint(t, k, claims("alice")),
	}
	for reason, tok := range tokens {
		resp := h.mustCheck("/api", tok)
		if got := resp.GetStatus().GetMessage(); reason != "allowed" && got != reason {
			t.Errorf("Check = %q, want %q", got, reason)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.httpAddr+"/", nil)
		req.Header.Set("X-Original-URI", "/api")
		req.Header.Set("Authorization", "Bearer "+tok)
		hr, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		hr.Body.Close()
	}

	// Every decision is logged before the response is written, so the log
	// is complete now.
	logs := h.logs.String()
	denials := map[string]int{}
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["msg"] == "check denied" {
			r, _ := rec["reason"].(string)
			denials[r]++
		}
	}
	for reason := range tokens {
		want := 2
		if reason == "allowed" {
			want = 0
		}
		if denials[reason] != want {
			t.Errorf("%d denial lines with reason %s, want %d (one per check)", denials[reason], reason, want)
		}
	}
	for reason, tok := range tokens {
		parts := strings.Split(strings.TrimSuffix(tok, "x"), ".")
		for i, p := range append(parts, tok) {
			if strings.Contains(logs, p) {
				t.Errorf("the log holds part %d of the %s token", i, reason)
			}
		}
	}
}

// TestAdminPprof pins that the runtime profiles are served on the admin
// address only when asked for, and never on the check listeners.
func TestAdminPprof(t *testing.T) {
	for _, tc := range []struct {
		name string
		on   bool
	}{{"off by default", false}, {"on with --admin-pprof", true}} {
		on := tc.on
		t.Run(tc.name, func(t *testing.T) {
			js := newJWKS(t, signer{key(0), "k0"})
			cfg := testConfig(js)
			cfg.AdminPprof = on
			h := start(t, cfg)
			h.waitReady()
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline"} {
				if code, _ := h.get(path); code != want {
					t.Errorf("GET admin %s = %d, want %d", path, code, want)
				}
			}
			// The forward-auth port treats every path as a check.
			resp, err := h.http.Get("http://" + h.httpAddr + "/debug/pprof/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET check /debug/pprof/ = %d, want 401 (a check without a token)", resp.StatusCode)
			}
		})
	}
}
