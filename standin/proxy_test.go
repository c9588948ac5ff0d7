package standin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/extauthz/extauthz/certbind"
)

// fakeAuthz is an AuthorizationServer whose answer is a function of the
// request. It records every CheckRequest it gets.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	answer func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)

	mu   sync.Mutex
	reqs []*authv3.CheckRequest
}

func (f *fakeAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	return f.answer(ctx, req)
}

func (f *fakeAuthz) calls() []*authv3.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), f.reqs...)
}

// startAuthz serves f over bufconn and returns a client connection to it.
func startAuthz(t *testing.T, f *fakeAuthz) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// recorded is what the upstream received.
type recorded struct {
	Method string
	Host   string
	URI    string
	Header http.Header
	Body   string
}

// upstream records every request and answers 200 "upstream" with x-upstream: 1.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	reqs []recorded
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, recorded{Method: r.Method, Host: r.Host, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(body)})
		u.mu.Unlock()
		u.hits.Add(1)
		w.Header().Set("X-Upstream", "1")
		w.Header().Set("X-Resp-Existing", "upstream")
		_, _ = io.WriteString(w, "upstream")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t *testing.T) recorded {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatalf("upstream got no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startProxy runs a Proxy over a real HTTP listener, so requests carry real
// remote and local addresses. Unless the test sets one, the check timeout is
// a generous 10s: Envoy's 200ms default is too tight for a loaded machine
// running the race detector (TestProxyDefaultTimeout covers the default).
func startProxy(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(body)
}

func newClientRequest(t *testing.T, method, url string, header http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for k, vv := range header {
		for _, v := range vv {
			req.Header.Add(k, v)
		}
	}
	return req
}

func okResponse(ok *authv3.OkHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

func TestProxyAllow(t *testing.T) {
	f := &fakeAuthz{answer: func(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		if req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"] != "Bearer good" {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)}}, nil
		}
		return okResponse(&authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{
				opt("x-jwt-sub", "alice", overwriteOrAdd),
				opt("x-jwt-payload", "e30", overwriteOrAdd),
			},
			HeadersToRemove:      []string{"authorization", "x-jwt-email"},
			QueryParametersToSet: []*corev3.QueryParameter{{Key: "tenant", Value: "t1"}},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				opt("x-resp-added", "1", appendOrAdd),
				opt("x-resp-existing", "authz", overwriteIfExist),
			},
		}), nil
	}}
	up := startUpstream(t)
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL + "/base"})

	req := newClientRequest(t, http.MethodGet, px.URL+"/protected/x?b=2", http.Header{
		"Authorization": {"Bearer good"},
		"X-Jwt-Sub":     {"admin"},
		"X-Jwt-Email":   {"root@example.com"},
		"X-Request-Id":  {"rid-1"},
	})
	res, body := do(t, req)

	if res.StatusCode != http.StatusOK || body != "upstream" {
		t.Fatalf("response = %d %q, want 200 %q", res.StatusCode, body, "upstream")
	}
	if got := res.Header.Get("X-Resp-Added"); got != "1" {
		t.Errorf("client x-resp-added = %q, want %q", got, "1")
	}
	if got := res.Header.Values("X-Resp-Existing"); !reflect.DeepEqual(got, []string{"authz"}) {
		t.Errorf("client x-resp-existing = %q, want [authz]", got)
	}

	got := up.last(t)
	pxHost := strings.TrimPrefix(px.URL, "http://")
	for _, c := range []struct{ what, got, want string }{
		{"upstream Host", got.Host, pxHost},
		{"upstream URI", got.URI, "/base/protected/x?b=2&tenant=t1"},
		{"upstream x-request-id", got.Header.Get("X-Request-Id"), "rid-1"},
		{"upstream x-forwarded-proto", got.Header.Get("X-Forwarded-Proto"), "http"},
		{"upstream x-jwt-payload", got.Header.Get("X-Jwt-Payload"), "e30"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if v := got.Header.Values("X-Jwt-Sub"); !reflect.DeepEqual(v, []string{"alice"}) {
		t.Errorf("upstream x-jwt-sub = %q, want [alice]", v)
	}
	for _, h := range []string{"Authorization", "X-Jwt-Email"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("upstream got %s = %q, want it removed", h, v)
		}
	}

	calls := f.calls()
	if len(calls) != 1 {
		t.Fatalf("Check calls = %d, want 1", len(calls))
	}
	hr := calls[0].GetAttributes().GetRequest().GetHttp()
	for _, c := range []struct{ what, got, want string }{
		{"check path", hr.GetPath(), "/protected/x?b=2"},
		{"check host", hr.GetHost(), pxHost},
		{"check :authority", hr.GetHeaders()[":authority"], pxHost},
		{"check :path", hr.GetHeaders()[":path"], "/protected/x?b=2"},
		{"check x-jwt-sub (as sent by the client)", hr.GetHeaders()["x-jwt-sub"], "admin"},
		{"check protocol", hr.GetProtocol(), "HTTP/1.1"},
		{"check destination", calls[0].GetAttributes().GetDestination().GetAddress().GetSocketAddress().GetAddress(), "127.0.0.1"},
		{"check source", calls[0].GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(), "127.0.0.1"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

// TestProxySpoofedClaimNeverReachesUpstream drives the client's spoofed
// x-jwt-sub: admin through each way an ext_authz server can answer it.
func TestProxySpoofedClaimNeverReachesUpstream(t *testing.T) {
	tests := []struct {
		name string
		ok   *authv3.OkHttpResponse
		want []string
	}{
		{
			name: "overwritten with OVERWRITE_IF_EXISTS_OR_ADD",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", overwriteOrAdd)}},
			want: []string{"alice"},
		},
		{
			name: "overwritten with append false",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{optAppend("x-jwt-sub", "alice", false, appendOrAdd)}},
			want: []string{"alice"},
		},
		{
			name: "removed",
			ok:   &authv3.OkHttpResponse{HeadersToRemove: []string{"x-jwt-sub"}},
			want: nil,
		},
		{
			name: "set then removed leaves nothing",
			ok: &authv3.OkHttpResponse{
				Headers:         []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", overwriteOrAdd)},
				HeadersToRemove: []string{"X-Jwt-Sub"},
			},
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(tc.ok), nil
			}}
			up := startUpstream(t)
			px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL})
			res, _ := do(t, newClientRequest(t, http.MethodGet, px.URL+"/protected", http.Header{"X-Jwt-Sub": {"admin"}}))
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			if got := up.last(t).Header.Values("X-Jwt-Sub"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("upstream x-jwt-sub = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProxyDenied(t *testing.T) {
	tests := []struct {
		name       string
		resp       *authv3.CheckResponse
		wantStatus int
		wantHeader map[string]string
		wantBody   string
	}{
		{
			name: "401 with www-authenticate and JSON body",
			resp: &authv3.CheckResponse{
				Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
					Headers: []*corev3.HeaderValueOption{
						opt("www-authenticate", `Bearer error="invalid_token"`, overwriteOrAdd),
						opt("content-type", "application/json", overwriteOrAdd),
					},
					Body: `{"error":"invalid_token"}`,
				}},
			},
			wantStatus: http.StatusUnauthorized,
			wantHeader: map[string]string{"Www-Authenticate": `Bearer error="invalid_token"`, "Content-Type": "application/json"},
			wantBody:   `{"error":"invalid_token"}`,
		},
		{
			name:       "no denied response is a bare 403",
			resp:       &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}},
			wantStatus: http.StatusForbidden,
			wantHeader: map[string]string{"Content-Type": ""},
		},
		{
			name: "denied response without status is 403",
			resp: &authv3.CheckResponse{
				Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Body: "forbidden",
				}},
			},
			wantStatus: http.StatusForbidden,
			wantHeader: map[string]string{"Content-Type": "text/plain"},
			wantBody:   "forbidden",
		},
		{
			name: "non-OK status wins over an ok_response",
			resp: &authv3.CheckResponse{
				Status:       &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
			},
			wantStatus: http.StatusForbidden,
		},
		{
			name: "invalid denial headers give 500",
			resp: &authv3.CheckResponse{
				Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Headers: []*corev3.HeaderValueOption{opt("bad header", "v", overwriteOrAdd)},
				}},
			},
			wantStatus: http.StatusInternalServerError,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return tc.resp, nil
			}}
			up := startUpstream(t)
			px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL})
			res, body := do(t, newClientRequest(t, http.MethodGet, px.URL+"/admin", nil))

			if res.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tc.wantStatus)
			}
			for k, want := range tc.wantHeader {
				if got := res.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if body != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			if n := up.hits.Load(); n != 0 {
				t.Errorf("upstream hits = %d, want 0", n)
			}
		})
	}
}

func TestProxyCheckFailure(t *testing.T) {
	slow := func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		<-ctx.Done() // Outlive the proxy's timeout; the proxy cancels us.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	rpcError := func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return nil, status.Error(codes.Internal, "boom")
	}
	errorResponse := func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unavailable)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
				Headers: []*corev3.HeaderValueOption{opt("retry-after", "1", overwriteOrAdd)},
				Body:    "keys unavailable",
			}},
		}, nil
	}
	errorResponseWithStatus := func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unavailable)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway},
			}},
		}, nil
	}

	tests := []struct {
		name        string
		answer      func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
		unreachable bool
		cfg         Config
		wantStatus  int
		wantBody    string
		wantHeader  map[string]string
		wantUpHits  int64
		wantUpAllow string // x-envoy-auth-failure-mode-allowed upstream
	}{
		{name: "rpc error is 403", answer: rpcError, wantStatus: http.StatusForbidden},
		{name: "slow server times out to 403", answer: slow, cfg: Config{Timeout: 50 * time.Millisecond}, wantStatus: http.StatusForbidden},
		{name: "unreachable server is 403", unreachable: true, wantStatus: http.StatusForbidden},
		{name: "status on error is configurable", answer: rpcError, cfg: Config{StatusOnError: http.StatusServiceUnavailable}, wantStatus: http.StatusServiceUnavailable},
		{
			name: "error response uses status on error with its headers and body", answer: errorResponse,
			cfg:        Config{StatusOnError: http.StatusServiceUnavailable},
			wantStatus: http.StatusServiceUnavailable, wantBody: "keys unavailable",
			wantHeader: map[string]string{"Retry-After": "1", "Content-Type": "text/plain"},
		},
		{name: "error response status wins", answer: errorResponseWithStatus, wantStatus: http.StatusBadGateway},
		{
			name: "failure mode allow forwards on rpc error", answer: rpcError,
			cfg:        Config{FailureModeAllow: true},
			wantStatus: http.StatusOK, wantBody: "upstream", wantUpHits: 1,
		},
		{
			name: "failure mode allow forwards on timeout, with the header", answer: slow,
			cfg:        Config{FailureModeAllow: true, FailureModeAllowHeaderAdd: true, Timeout: 50 * time.Millisecond},
			wantStatus: http.StatusOK, wantBody: "upstream", wantUpHits: 1, wantUpAllow: "true",
		},
		{
			name: "failure mode allow forwards on error response", answer: errorResponse,
			cfg:        Config{FailureModeAllow: true},
			wantStatus: http.StatusOK, wantBody: "upstream", wantUpHits: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t)
			cfg := tc.cfg
			cfg.Upstream = up.URL
			if tc.unreachable {
				// A port that was just free: nothing listens there.
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatalf("listen: %v", err)
				}
				cfg.AuthzTarget = lis.Addr().String()
				_ = lis.Close()
			} else {
				cfg.AuthzConn = startAuthz(t, &fakeAuthz{answer: tc.answer})
			}
			px := startProxy(t, cfg)
			start := time.Now()
			res, body := do(t, newClientRequest(t, http.MethodGet, px.URL+"/protected", http.Header{"X-Jwt-Sub": {"admin"}}))

			if res.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tc.wantStatus)
			}
			if body != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			for k, want := range tc.wantHeader {
				if got := res.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if n := up.hits.Load(); n != tc.wantUpHits {
				t.Fatalf("upstream hits = %d, want %d", n, tc.wantUpHits)
			}
			if tc.wantUpHits > 0 {
				last := up.last(t)
				if got := last.Header.Get("X-Envoy-Auth-Failure-Mode-Allowed"); got != tc.wantUpAllow {
					t.Errorf("upstream x-envoy-auth-failure-mode-allowed = %q, want %q", got, tc.wantUpAllow)
				}
				// Unchecked means unmodified: the client's header goes through.
				if got := last.Header.Get("X-Jwt-Sub"); got != "admin" {
					t.Errorf("upstream x-jwt-sub = %q, want the unmodified %q", got, "admin")
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("request took %v; the check timeout should bound it", d)
			}
		})
	}
}

func TestProxyDefaultTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f := &fakeAuthz{answer: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	up := startUpstream(t)
	p, err := New(Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	px := httptest.NewServer(p)
	t.Cleanup(px.Close)
	start := time.Now()
	res, _ := do(t, newClientRequest(t, http.MethodGet, px.URL+"/", nil))
	elapsed := time.Since(start)
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("status = %d, want 403", res.StatusCode)
	}
	if elapsed < DefaultTimeout || elapsed > 10*DefaultTimeout {
		t.Errorf("answered after %v, want about DefaultTimeout (%v)", elapsed, DefaultTimeout)
	}
	if up.hits.Load() != 0 {
		t.Errorf("upstream called on timeout")
	}
}

func TestProxyInvalidMutationIs500(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-jwt-sub", "a\r\nx-admin: 1", overwriteOrAdd)}}), nil
	}}
	up := startUpstream(t)
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL})
	res, _ := do(t, newClientRequest(t, http.MethodGet, px.URL+"/", nil))
	if res.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", res.StatusCode)
	}
	if up.hits.Load() != 0 {
		t.Errorf("upstream called despite an invalid mutation")
	}
}

func TestProxyDisabledPathPrefixes(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		wantCheck bool
	}{
		{name: "prefix skips the check", path: "/.well-known/jwks.json", wantCheck: false},
		{name: "second prefix", path: "/oauth2/m2m/token", wantCheck: false},
		{name: "prefix needs its slash", path: "/oauth2x", wantCheck: true},
		{name: "other paths are checked", path: "/protected", wantCheck: true},
		{name: "dot-dot out of the prefix is checked", path: "/oauth2/../protected", wantCheck: true},
		{name: "escapes are checked", path: "/oauth2/%2e%2e/protected", wantCheck: true},
		{name: "double slash is checked", path: "/oauth2//x", wantCheck: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
			}}
			up := startUpstream(t)
			px := startProxy(t, Config{
				AuthzConn: startAuthz(t, f), Upstream: up.URL,
				DisabledPathPrefixes: []string{"/.well-known/", "/oauth2/"},
			})
			req := newClientRequest(t, http.MethodGet, px.URL, nil)
			req.URL.Opaque = tc.path // Send the path exactly as written.
			res, _ := do(t, req)

			checked := len(f.calls()) == 1
			if checked != tc.wantCheck {
				t.Errorf("checked = %v, want %v", checked, tc.wantCheck)
			}
			wantStatus, wantHits := http.StatusOK, int64(1)
			if tc.wantCheck {
				wantStatus, wantHits = http.StatusForbidden, 0
			}
			if res.StatusCode != wantStatus || up.hits.Load() != wantHits {
				t.Errorf("status %d, upstream hits %d; want %d, %d", res.StatusCode, up.hits.Load(), wantStatus, wantHits)
			}
		})
	}
}

func TestProxyEnvoyYAMLSettings(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(nil), nil
	}}
	up := startUpstream(t)
	px := startProxy(t, Config{
		AuthzConn: startAuthz(t, f), Upstream: up.URL,
		NormalizePath: true, UseRemoteAddress: true, DropHeadersWithUnderscores: true,
		DisallowedHeaders: []string{"Cookie"},
	})

	t.Run("dot-dot resolved before the check and upstream", func(t *testing.T) {
		req := newClientRequest(t, http.MethodGet, px.URL, http.Header{
			"Cookie": {"s=1"}, "X_jwt_sub": {"admin"}, "X-Forwarded-For": {"10.0.0.1"},
		})
		req.URL.Opaque = "/public/../admin?x=1"
		res, _ := do(t, req)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200", res.StatusCode)
		}
		calls := f.calls()
		hr := calls[len(calls)-1].GetAttributes().GetRequest().GetHttp()
		if hr.GetPath() != "/admin?x=1" {
			t.Errorf("check path = %q, want %q", hr.GetPath(), "/admin?x=1")
		}
		if _, ok := hr.GetHeaders()["cookie"]; ok {
			t.Errorf("cookie sent to ext_authz")
		}
		if _, ok := hr.GetHeaders()["x_jwt_sub"]; ok {
			t.Errorf("underscore header sent to ext_authz")
		}
		if got := hr.GetHeaders()["x-forwarded-for"]; got != "10.0.0.1,127.0.0.1" {
			t.Errorf("check x-forwarded-for = %q, want %q", got, "10.0.0.1,127.0.0.1")
		}
		last := up.last(t)
		if last.URI != "/admin?x=1" {
			t.Errorf("upstream URI = %q, want %q", last.URI, "/admin?x=1")
		}
		if _, ok := last.Header["X_jwt_sub"]; ok {
			t.Errorf("underscore header forwarded upstream")
		}
		if last.Header.Get("Cookie") != "s=1" {
			t.Errorf("upstream cookie = %q, want it forwarded", last.Header.Get("Cookie"))
		}
	})
	t.Run("escaped slash redirected, not checked", func(t *testing.T) {
		before := len(f.calls())
		req := newClientRequest(t, http.MethodGet, px.URL, nil)
		req.URL.Opaque = "/public%2F..%2Fadmin"
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusTemporaryRedirect || res.Header.Get("Location") != "/public/../admin" {
			t.Errorf("response = %d Location %q, want 307 %q", res.StatusCode, res.Header.Get("Location"), "/public/../admin")
		}
		if len(f.calls()) != before {
			t.Errorf("redirected request was checked")
		}
	})
}

func TestProxyHeaderLimits(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(nil), nil
	}}
	up := startUpstream(t)
	p, err := New(Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{name: "100 headers pass", header: manyHeaders(MaxHeaderCount), want: http.StatusOK},
		{name: "101 headers refused", header: manyHeaders(MaxHeaderCount + 1), want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "61 KiB refused", header: http.Header{"X-Big": {strings.Repeat("a", MaxHeaderBytes+1)}}, want: http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.calls())
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header = tc.header
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Errorf("status = %d, want %d", rec.Code, tc.want)
			}
			if checked := len(f.calls()) > before; checked != (tc.want == http.StatusOK) {
				t.Errorf("checked = %v for status %d", checked, tc.want)
			}
		})
	}
}

func manyHeaders(n int) http.Header {
	h := http.Header{}
	for i := range n {
		h.Set(fmt.Sprintf("X-H-%d", i), "v")
	}
	return h
}

func TestProxyUpstreamDown(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(nil), nil
	}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	dead := "http://" + lis.Addr().String()
	_ = lis.Close()
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: dead})
	res, body := do(t, newClientRequest(t, http.MethodGet, px.URL+"/", nil))
	if res.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(body, "upstream connect error") {
		t.Errorf("response = %d %q, want 503 upstream connect error", res.StatusCode, body)
	}
}

// TestProxyConcurrent sends many requests at once, each with its own token
// and its own spoofed claim, and checks that every upstream request carries
// exactly the claim of its own token. Run with -race.
func TestProxyConcurrent(t *testing.T) {
	f := &fakeAuthz{answer: func(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		sub := strings.TrimPrefix(req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"], "Bearer ")
		if sub == "deny" {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
		}
		return okResponse(&authv3.OkHttpResponse{
			Headers:         []*corev3.HeaderValueOption{opt("x-jwt-sub", sub, overwriteOrAdd)},
			HeadersToRemove: []string{"authorization"},
		}), nil
	}}
	var mismatches atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got, want := r.Header.Values("X-Jwt-Sub"), []string{r.URL.Query().Get("sub")}; !reflect.DeepEqual(got, want) {
			mismatches.Add(1)
		}
		_, _ = io.WriteString(w, r.Header.Get("X-Jwt-Sub"))
	}))
	t.Cleanup(up.Close)
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Logger: slog.New(slog.DiscardHandler)})

	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			sub := fmt.Sprintf("user-%d", i)
			if i%5 == 0 {
				sub = "deny"
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, px.URL+"/p?sub="+sub, nil)
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("Authorization", "Bearer "+sub)
			req.Header.Set("X-Jwt-Sub", "admin")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			switch {
			case sub == "deny" && res.StatusCode != http.StatusForbidden:
				errs <- fmt.Errorf("%s: status %d, want 403", sub, res.StatusCode)
			case sub != "deny" && (res.StatusCode != http.StatusOK || string(body) != sub):
				errs <- fmt.Errorf("%s: got %d %q", sub, res.StatusCode, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m := mismatches.Load(); m != 0 {
		t.Errorf("%d upstream requests carried a claim that was not their own", m)
	}
}

func TestProxyServe(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(nil), nil
	}}
	up := startUpstream(t)
	p, err := New(Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, lis) }()

	res, body := do(t, newClientRequest(t, http.MethodGet, "http://"+lis.Addr().String()+"/x", nil))
	if res.StatusCode != http.StatusOK || body != "upstream" {
		t.Errorf("response = %d %q, want 200 upstream", res.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after ctx is done", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
}

func TestNew(t *testing.T) {
	conn := startAuthz(t, &fakeAuthz{})
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "conn and upstream", cfg: Config{AuthzConn: conn, Upstream: "http://127.0.0.1:1"}},
		{name: "target", cfg: Config{AuthzTarget: "127.0.0.1:9191", Upstream: "https://backend"}},
		{name: "neither conn nor target", cfg: Config{Upstream: "http://x"}, wantErr: true},
		{name: "both conn and target", cfg: Config{AuthzConn: conn, AuthzTarget: "x:1", Upstream: "http://x"}, wantErr: true},
		{name: "no upstream", cfg: Config{AuthzConn: conn}, wantErr: true},
		{name: "relative upstream", cfg: Config{AuthzConn: conn, Upstream: "/x"}, wantErr: true},
		{name: "ftp upstream", cfg: Config{AuthzConn: conn, Upstream: "ftp://x"}, wantErr: true},
		{name: "negative timeout", cfg: Config{AuthzConn: conn, Upstream: "http://x", Timeout: -1}, wantErr: true},
		{name: "status on error 1xx", cfg: Config{AuthzConn: conn, Upstream: "http://x", StatusOnError: 100}, wantErr: true},
		{name: "status on error 600", cfg: Config{AuthzConn: conn, Upstream: "http://x", StatusOnError: 600}, wantErr: true},
		{name: "relative disabled prefix", cfg: Config{AuthzConn: conn, Upstream: "http://x", DisabledPathPrefixes: []string{"oauth2/"}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				if err := p.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
		})
	}
}

func TestProxyClientGone(t *testing.T) {
	entered := make(chan struct{})
	f := &fakeAuthz{answer: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		close(entered)
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	up := startUpstream(t)
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Timeout: 10 * time.Second, FailureModeAllow: true})
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, px.URL+"/", nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	go func() { <-entered; cancel() }()
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("request error = %v, want context.Canceled", err)
	}
	// Even with failure mode allow, an abandoned request is not forwarded.
	time.Sleep(100 * time.Millisecond)
	if up.hits.Load() != 0 {
		t.Errorf("upstream called for a request whose client went away")
	}
}

// TestProxyAuthorizationToUpstream: the extauthz server's OkHttpResponse
// names authorization in headers_to_remove unless the token's provider has
// forward_token: true. The stand-in, like Envoy, removes it before the
// upstream only when told to, after the check has seen it.
func TestProxyAuthorizationToUpstream(t *testing.T) {
	tests := []struct {
		name     string
		remove   []string
		wantAuth []string
	}{
		{name: "removed by default", remove: []string{"authorization"}},
		{name: "removed in any case, among others", remove: []string{"x-jwt-email", "Authorization"}},
		{name: "kept with forward_token", wantAuth: []string{"Bearer tok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(&authv3.OkHttpResponse{
					Headers:         []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", overwriteOrAdd)},
					HeadersToRemove: tc.remove,
				}), nil
			}}
			up := startUpstream(t)
			px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL})
			res, _ := do(t, newClientRequest(t, http.MethodGet, px.URL+"/protected", http.Header{"Authorization": {"Bearer tok"}}))
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			if got := f.calls()[0].GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]; got != "Bearer tok" {
				t.Errorf("check authorization = %q, want the client's token", got)
			}
			got := up.last(t)
			if v := got.Header.Values("Authorization"); !reflect.DeepEqual(v, tc.wantAuth) {
				t.Errorf("upstream Authorization = %q, want %q", v, tc.wantAuth)
			}
			if v := got.Header.Get("X-Jwt-Sub"); v != "alice" {
				t.Errorf("upstream x-jwt-sub = %q, want alice", v)
			}
		})
	}
}

// TestProxyIncludePeerCertificate: over TLS with a client certificate, the
// CheckRequest carries it in source.certificate (Envoy's
// include_peer_certificate), in Envoy's URL encoding; without the setting,
// or without a certificate, it carries none.
func TestProxyIncludePeerCertificate(t *testing.T) {
	up := startUpstream(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, tc := range []struct {
		name    string
		include bool
		present bool
	}{{"included", true, true}, {"not asked for", false, true}, {"no certificate", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(&authv3.OkHttpResponse{}), nil
			}}
			p, err := New(Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Timeout: 10 * time.Second,
				Logger: testLogger(t), IncludePeerCertificate: tc.include})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			srv := httptest.NewUnstartedServer(p)
			srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			client := srv.Client()
			if tc.present {
				client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{clientCert}
			}
			resp, err := client.Get(srv.URL + "/protected")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			calls := f.calls()
			if len(calls) != 1 {
				t.Fatalf("%d checks, want 1", len(calls))
			}
			got := calls[0].GetAttributes().GetSource().GetCertificate()
			if !tc.include || !tc.present {
				if got != "" {
					t.Errorf("source.certificate = %q, want none", got)
				}
				return
			}
			if strings.ContainsAny(got, "\n +/=") {
				t.Errorf("source.certificate %q is not URL-encoded as Envoy sends it", got)
			}
			if x5t, err := certbind.FromPEM(got); err != nil || x5t != certbind.Thumbprint(der) {
				t.Errorf("source.certificate reads as %q, %v; want the client certificate's %q", x5t, err, certbind.Thumbprint(der))
			}
		})
	}
}
