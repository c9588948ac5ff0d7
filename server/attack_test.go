package server_test

// The attack catalogue of SECURITY.md, for the running process: bounds on
// what a request may be, a hanging or flooded identity provider, and cached
// tokens whose key is withdrawn. Every attack is made over real loopback
// sockets against server.Run; after each, the process must keep serving.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
)

// httpCheck asks the forward-auth port about path (as nginx does) with the
// given extra headers, and returns the status.
func (h *harness) httpCheck(path string, header map[string]string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.httpAddr+"/auth", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Original-URI", path)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// stillServing asserts that a valid token is allowed over both check ports.
func (h *harness) stillServing(t *testing.T, token, after string) {
	t.Helper()
	resp, err := h.check("/api", token)
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("after %s: gRPC check = %v, %v; want OK", after, resp.GetStatus(), err)
	}
	if code, err := h.httpCheck("/api", map[string]string{"Authorization": "Bearer " + token}); err != nil || code != http.StatusOK {
		t.Errorf("after %s: HTTP check = %d, %v; want 200", after, code, err)
	}
}

// TestAttackBounds: a request over a bound gets a clear denial, and the
// process keeps serving.
func TestAttackBounds(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	cfg := testConfig(js)
	cfg.GRPCMaxRecvBytes = 64 << 10
	cfg.HTTPMaxHeaderBytes = 16 << 10
	cfg.HTTPReadTimeout = 500 * time.Millisecond
	h := start(t, cfg)
	h.waitReady()
	token := mint(t, k, claims("alice"))
	h.stillServing(t, token, "start")

	escaped := "/public" + strings.Repeat("/%2e", authz.MaxSlowPathBytes/4+1)
	grpcTests := []struct {
		name     string
		req      *authv3.CheckRequest
		wantCode codes.Code // of the RPC: an error, or the CheckResponse's status
		wantMsg  string     // the CheckResponse's status message (the reason)
	}{
		{name: "gRPC: CheckRequest over grpc_max_recv_bytes", req: withHeader(checkRequest("/api", token), "x-pad", strings.Repeat("p", 100<<10)),
			wantCode: codes.ResourceExhausted},
		{name: "gRPC: many headers over grpc_max_recv_bytes", req: withHeaders(checkRequest("/api", token), 5000),
			wantCode: codes.ResourceExhausted},
		{name: "gRPC: token over max_token_bytes", req: checkRequest("/api", strings.Repeat("a", 9000)),
			wantCode: codes.Unauthenticated, wantMsg: "token_too_large"},
		{name: "gRPC: escaped path over the slow-path bound", req: checkRequest(escaped, token),
			wantCode: codes.InvalidArgument, wantMsg: "path_too_long"},
	}
	for _, tc := range grpcTests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), waitLong)
			defer cancel()
			resp, err := h.authz.Check(ctx, tc.req)
			switch {
			case err != nil && status.Code(err) != tc.wantCode:
				t.Errorf("Check = %v, want code %v", err, tc.wantCode)
			case err == nil && (codes.Code(resp.GetStatus().GetCode()) != tc.wantCode || resp.GetStatus().GetMessage() != tc.wantMsg):
				t.Errorf("Check = %v, want %v %q", resp.GetStatus(), tc.wantCode, tc.wantMsg)
			case err == nil && resp.GetOkResponse() != nil:
				t.Errorf("an oversized request was allowed")
			}
			h.stillServing(t, token, tc.name)
		})
	}

	httpTests := []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{name: "HTTP: header block over http_max_header_bytes", path: "/api", header: map[string]string{"Authorization": "Bearer " + token, "X-Pad": strings.Repeat("p", 40<<10)}, want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "HTTP: token over max_token_bytes", path: "/api", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("a", 9000)}, want: http.StatusUnauthorized},
		{name: "HTTP: escaped path over the slow-path bound", path: escaped, header: map[string]string{"Authorization": "Bearer " + token}, want: http.StatusRequestURITooLong},
		{name: "HTTP: escaped public path over the slow-path bound", path: escaped, want: http.StatusRequestURITooLong},
	}
	for _, tc := range httpTests {
		t.Run(tc.name, func(t *testing.T) {
			code, err := h.httpCheck(tc.path, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
			h.stillServing(t, token, tc.name)
		})
	}

	t.Run("slow clients are cut off", func(t *testing.T) {
		// Connections that send half a header block and stall: each is
		// closed after http_read_timeout, and checks are answered meanwhile.
		const conns = 20
		var wg sync.WaitGroup
		closed := make(chan time.Duration, conns)
		for range conns {
			c, err := net.Dial("tcp", h.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := io.WriteString(c, "GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: /api\r\n"); err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				start := time.Now()
				_ = c.SetReadDeadline(time.Now().Add(waitLong))
				_, _ = io.Copy(io.Discard, c) // returns when the server closes
				closed <- time.Since(start)
			})
		}
		h.stillServing(t, token, "stalled connections")
		wg.Wait()
		close(closed)
		for d := range closed {
			if d > 5*time.Second {
				t.Errorf("a stalled connection was held %v, want about the 500ms read timeout", d)
			}
		}
		h.stillServing(t, token, "stalled connections were closed")
	})

	t.Run("many requests on one connection", func(t *testing.T) {
		// Pipelined HTTP/1.1 checks are answered in order, each on its own.
		c, err := net.Dial("tcp", h.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitLong))
		var req strings.Builder
		paths := []string{"/api", "/public", "/admin", "/api"}
		for i, p := range paths {
			auth := ""
			if i == 3 {
				auth = "Authorization: Bearer " + token + "\r\n"
			}
			fmt.Fprintf(&req, "GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: %s\r\n%s\r\n", p, auth)
		}
		if _, err := io.WriteString(c, req.String()); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		var got []int
		for range paths {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got = append(got, resp.StatusCode)
		}
		if want := []int{401, 200, 401, 200}; !slices.Equal(got, want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
	})
}

func withHeader(r *authv3.CheckRequest, k, v string) *authv3.CheckRequest {
	r.GetAttributes().GetRequest().GetHttp().GetHeaders()[k] = v
	return r
}

func withHeaders(r *authv3.CheckRequest, n int) *authv3.CheckRequest {
	for i := range n {
		r = withHeader(r, fmt.Sprintf("x-pad-%d", i), strings.Repeat("p", 16))
	}
	return r
}

// TestAttackHangingJWKS: the identity provider accepts the refresh and never
// answers. A check for an unknown kid is still answered within the
// configured unknown-kid wait (100ms; median of several under 500ms, inside
// Envoy's 200ms budget), over gRPC and HTTP; a check for a known kid does
// not wait; a check whose deadline passes first is never an allow.
func TestAttackHangingJWKS(t *testing.T) {
	const (
		wait  = 100 * time.Millisecond
		tries = 7
	)
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	cfg := testConfig(js)
	cfg.JWKSUnknownKIDWait = wait
	cfg.JWKSFetchTimeout = time.Minute
	h := start(t, cfg)
	h.waitReady()
	known := mint(t, k, claims("alice"))
	h.stillServing(t, known, "start")

	js.hold()
	var unknownGRPC, unknownHTTP, knownGRPC []time.Duration
	for i := range tries {
		tok := mint(t, signer{key(1), fmt.Sprintf("rotated-%d", i)}, claims("mallory"))
		start := time.Now()
		resp, err := h.check("/api", tok)
		unknownGRPC = append(unknownGRPC, time.Since(start))
		if err != nil || resp.GetStatus().GetMessage() != "unknown_kid" {
			t.Errorf("unknown kid over gRPC = %v, %v; want a denial for unknown_kid", resp.GetStatus(), err)
		}
		start = time.Now()
		code, err := h.httpCheck("/api", map[string]string{"Authorization": "Bearer " + tok})
		unknownHTTP = append(unknownHTTP, time.Since(start))
		if err != nil || code != http.StatusUnauthorized {
			t.Errorf("unknown kid over HTTP = %d, %v; want 401", code, err)
		}
		start = time.Now()
		resp, err = h.check("/api", known)
		knownGRPC = append(knownGRPC, time.Since(start))
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Errorf("known kid during the hang = %v, %v; want OK", resp.GetStatus(), err)
		}
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"gRPC", unknownGRPC}, {"HTTP", unknownHTTP}} {
		if med := median(m.ds); med > 500*time.Millisecond {
			t.Errorf("unknown kid over %s while the JWKS hangs: median %v (%v), want under 500ms", m.name, med, m.ds)
		}
	}
	if med := median(knownGRPC); med >= wait {
		t.Errorf("known kid while the JWKS hangs: median %v (%v), want under %v (no wait)", med, knownGRPC, wait)
	}

	t.Run("deadline shorter than the wait", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		tok := mint(t, signer{key(1), "rotated-deadline"}, claims("mallory"))
		resp, err := h.authz.Check(ctx, checkRequest("/api", tok))
		if err == nil && codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			t.Fatalf("allowed")
		}
		if err != nil && status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("Check = %v, want a denial or DeadlineExceeded", err)
		}
	})
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestAttackUnknownKIDFlood: hundreds of checks, each with a kid of its own,
// cost the identity provider one fetch per jwks_min_refresh_interval, and
// the known key keeps working throughout.
func TestAttackUnknownKIDFlood(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	cfg := testConfig(js)
	cfg.JWKSMinRefreshInterval = time.Hour
	cfg.JWKSRefreshInterval = 2 * time.Hour
	cfg.JWKSUnknownKIDWait = 100 * time.Millisecond
	h := start(t, cfg)
	h.waitReady()
	known := mint(t, k, claims("alice"))
	before := js.hits.Load()

	const n, workers = 300, 10
	toks := make(chan string, n)
	for i := range n {
		toks <- mint(t, signer{key(1 + i%2), fmt.Sprintf("flood-%d", i)}, claims("mallory"))
	}
	close(toks)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for range workers {
		wg.Go(func() {
			for tok := range toks {
				resp, err := h.check("/api", tok)
				if err != nil || resp.GetStatus().GetMessage() != "unknown_kid" {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%v %v", resp.GetStatus(), err))
					mu.Unlock()
				}
			}
		})
	}
	for range 20 {
		if resp := h.mustCheck("/api", known); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Errorf("known kid during the flood = %v", resp.GetStatus())
		}
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d flood checks were not unknown_kid denials, first: %s", len(bad), bad[0])
	}
	if got := js.hits.Load() - before; got > 1 {
		t.Errorf("the flood made %d JWKS fetches, want at most 1 per jwks_min_refresh_interval", got)
	}
	h.stillServing(t, known, "the flood")
}

// TestAttackWithdrawnKeyCachedToken: a token the verified-token cache holds
// as valid stops working once the provider withdraws its key (the server
// tests elsewhere run without the cache).
func TestAttackWithdrawnKeyCachedToken(t *testing.T) {
	old, next := signer{key(0), "2026-01"}, signer{key(1), "2026-02"}
	js := newJWKS(t, old)
	cfg := testConfig(js)
	cfg.TokenCacheSize = 1000
	h := start(t, cfg)
	h.waitReady()
	oldToken := mint(t, old, claims("alice"))
	for range 3 {
		if resp := h.mustCheck("/api", oldToken); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("Check(old key) = %v, want OK", resp.GetStatus())
		}
	}
	if st := h.srv.Authz().CacheStats(); st.Hits < 2 {
		t.Fatalf("cache stats %+v: the token was not answered from the cache", st)
	}

	js.publish(t, next) // the old key is withdrawn
	newToken := mint(t, next, claims("bob"))
	if resp := h.mustCheck("/api", newToken); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check(new key) = %v, want OK after the unknown-kid refresh", resp.GetStatus())
	}
	for _, p := range []string{"/api", "/admin", "/public/../api"} {
		resp := h.mustCheck(p, oldToken)
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			t.Errorf("Check(%s, withdrawn key) = OK: the cached result outlived its key", p)
		}
	}
	if code, err := h.httpCheck("/api", map[string]string{"Authorization": "Bearer " + oldToken}); err != nil || code != http.StatusUnauthorized {
		t.Errorf("HTTP check with the withdrawn key = %d, %v; want 401", code, err)
	}
}

// TestAttackCancelledCheck: a check Envoy has given up on (its deadline
// passed or the stream was cancelled) is never answered with an allow, even
// for a token the cache holds as valid.
func TestAttackCancelledCheck(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	cfg := testConfig(js)
	cfg.TokenCacheSize = 1000
	h := start(t, cfg)
	h.waitReady()
	token := mint(t, k, claims("alice"))
	h.mustCheck("/api", token) // cached

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	resp, err := h.authz.Check(ctx, checkRequest("/api", token))
	if err == nil {
		t.Errorf("cancelled Check = %v, want an error (Envoy's status_on_error)", resp.GetStatus())
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context not cancelled")
	}
	h.stillServing(t, token, "a cancelled check")
}

// TestAttackJWKSURLCredentials: JWKS URLs with user info (key sets behind
// Basic authentication) are fetched with those credentials, and the
// credentials appear nowhere the server shows its state: not in /readyz's
// last_error, not in /metrics, not in the log lines, whether the endpoint
// refuses connections (net/http's own error names the URL) or answers with an
// error status.
func TestAttackJWKSURLCredentials(t *testing.T) {
	const (
		user  = "reader-7f3a"
		pass  = "s3cr3t-pw-91c"
		token = "tok3n-5be2e0"
	)
	k := signer{key(0), "k0"}
	good := newJWKS(t, k)
	var gotUser, gotPass atomic.Pointer[string]
	basic := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		gotUser.Store(&u)
		gotPass.Store(&p)
		if u != user || p != pass {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		good.ServeHTTP(w, r)
	}))
	t.Cleanup(basic.Close)
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "who are you", http.StatusUnauthorized)
	}))
	t.Cleanup(denied.Close)
	refused := listen(t)
	refusedAddr := refused.Addr().String()
	refused.Close()

	cfg := testConfig()
	provider := func(name, base, userinfo string) config.Provider {
		return config.Provider{
			Name: name, Issuer: testIssuer + "/" + name, Audiences: []string{testAudience}, Algorithms: []string{"RS256"},
			JWKSURL: strings.Replace(base, "://", "://"+userinfo+"@", 1) + "/.well-known/jwks.json",
		}
	}
	cfg.Providers = []config.Provider{
		provider("basic", basic.URL, user+":"+pass),
		provider("refused", "http://"+refusedAddr, user+":"+pass),
		provider("refused-token", "http://"+refusedAddr, token),
		provider("denied", denied.URL, user+":"+pass),
		provider("denied-token", denied.URL, token),
	}
	h := start(t, cfg)

	type readyz struct {
		Providers []struct {
			Name      string `json:"name"`
			Ready     bool   `json:"ready"`
			Keys      int    `json:"keys"`
			LastError string `json:"last_error"`
		} `json:"providers"`
	}
	var body string
	eventually(t, "/readyz to show every provider's first fetch", func() bool {
		_, body = h.get("/readyz")
		var rz readyz
		if err := json.Unmarshal([]byte(body), &rz); err != nil || len(rz.Providers) != len(cfg.Providers) {
			return false
		}
		for _, p := range rz.Providers {
			if p.Ready == (p.LastError != "") || p.Ready != (p.Name == "basic") {
				return false
			}
		}
		return true
	})
	if !strings.Contains(body, "answered HTTP 401") || !strings.Contains(body, refusedAddr) {
		t.Errorf("GET /readyz = %s, want the 401 and the refused address among the errors", body)
	}
	if u, p := gotUser.Load(), gotPass.Load(); u == nil || *u != user || *p != pass {
		t.Errorf("Basic credentials received by the JWKS endpoint: got %v:%v, want %s:%s", u, p, user, pass)
	}
	_, metrics := h.get("/metrics")
	eventually(t, "the fetch failures to be logged", func() bool {
		return strings.Count(h.logs.String(), "jwks fetch failed") >= 4
	})
	for where, s := range map[string]string{"/readyz": body, "/metrics": metrics, "the logs": h.logs.String()} {
		for _, secret := range []string{user, pass, token} {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows %q: %s", where, secret, lineWith(s, secret))
			}
		}
	}
}

// lineWith returns the first line of s that holds sub, so that a failure
// shows the offending log line rather than the whole log.
func lineWith(s, sub string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			return strings.TrimSuffix(line, "\n")
		}
	}
	return ""
}
