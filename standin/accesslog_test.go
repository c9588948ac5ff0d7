package standin

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/internal/testutil"
)

// subFormat is the part of envoy/envoy.yaml's access log format these tests
// rely on: the subject and the denial reason from ext_authz's dynamic
// metadata.
const subFormat = `%REQ(:METHOD)% %PATH(NQ)% %RESPONSE_CODE% sub=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub)% reason=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%` + "\n"

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// accessLines waits until the access log holds n lines (an entry is written
// once the response is done, which the client may see first) and returns
// them.
func accessLines(t *testing.T, log *testutil.Buffer, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := strings.SplitAfter(log.String(), "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) >= n || time.Now().After(deadline) {
			if len(lines) != n {
				t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), n, log.String())
			}
			return lines
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProxyAccessLogDynamicMetadata: a CheckResponse's dynamic_metadata is
// in the access log under envoy.filters.http.ext_authz, whether the check
// allowed (sub), denied (reason) or failed, and a request that was not
// checked has none.
func TestProxyAccessLogDynamicMetadata(t *testing.T) {
	f := &fakeAuthz{answer: func(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		switch req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"] {
		case "Bearer alice":
			resp := okResponse(nil)
			resp.DynamicMetadata = mustStruct(t, map[string]any{"sub": "alice", "iss": "https://issuer", "scope": "read"})
			return resp, nil
		case "Bearer broken":
			return &authv3.CheckResponse{
				Status:          &rpcstatus.Status{Code: int32(codes.Unavailable)},
				HttpResponse:    &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}},
				DynamicMetadata: mustStruct(t, map[string]any{"reason": "jwks_unavailable"}),
			}, nil
		}
		return &authv3.CheckResponse{
			Status:          &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
			HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}}},
			DynamicMetadata: mustStruct(t, map[string]any{"reason": "missing_token"}),
		}, nil
	}}
	up := startUpstream(t)
	var log testutil.Buffer
	px := startProxy(t, Config{
		AuthzConn: startAuthz(t, f), Upstream: up.URL,
		DisabledPathPrefixes: []string{"/open/"},
		AccessLog:            &log, AccessLogFormat: subFormat,
	})

	steps := []struct {
		auth, target, want string
	}{
		{auth: "Bearer alice", target: "/protected?access_token=secret", want: "GET /protected 200 sub=alice reason=-\n"},
		{target: "/protected", want: "GET /protected 401 sub=- reason=missing_token\n"},
		{auth: "Bearer broken", target: "/protected", want: "GET /protected 403 sub=- reason=jwks_unavailable\n"},
		{target: "/open/x", want: "GET /open/x 200 sub=- reason=-\n"},
	}
	for i, st := range steps {
		h := http.Header{}
		if st.auth != "" {
			h.Set("Authorization", st.auth)
		}
		do(t, newClientRequest(t, http.MethodGet, px.URL+st.target, h))
		if got := accessLines(t, &log, i+1)[i]; got != st.want {
			t.Errorf("access log line for %s %s = %q, want %q", st.auth, st.target, got, st.want)
		}
	}
}

// TestProxyAccessLogFormat renders every operator the stand-in knows.
func TestProxyAccessLogFormat(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		resp := okResponse(nil)
		resp.DynamicMetadata = mustStruct(t, map[string]any{
			"sub":    "alice-in-wonderland",
			"n":      12,
			"ok":     true,
			"nested": map[string]any{"inner": "bar", "b": "<&>"},
			"list":   []any{"a", "b"},
		})
		return resp, nil
	}}
	up := startUpstream(t)
	var log testutil.Buffer
	format := strings.Join([]string{
		`[%START_TIME%]`,
		`"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"`,
		`%RESPONSE_CODE%`,
		`%DURATION%`,
		`path=%PATH% nq=%PATH(NQ)% orig=%PATH(WQ:ORIG)% p=%PATH(NQ:PATH)%`,
		`ua=%REQ(USER-AGENT):5% host=%REQUEST_HEADER(:AUTHORITY)% missing=%REQ(X-MISSING)%`,
		`sub=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub):5%`,
		`n=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:n)%`,
		`ok=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:ok)%`,
		`inner=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:nested:inner)%`,
		`nested=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:nested):3%`,
		`list=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:list)%`,
		`unknown=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:nope)%`,
		`other=%DYNAMIC_METADATA(com.example.other)%`,
		`duration=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:ext_authz_duration)%`,
	}, " ") + "\n"
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, AccessLog: &log, AccessLogFormat: format})

	do(t, newClientRequest(t, http.MethodGet, px.URL+"/a/b?c=d", http.Header{"User-Agent": {"curl/8.0"}}))
	line := accessLines(t, &log, 1)[0]
	host := strings.TrimPrefix(px.URL, "http://")
	want := regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /a/b\?c=d HTTP/1\.1" 200 \d+ ` +
		regexp.QuoteMeta(`path=/a/b?c=d nq=/a/b orig=- p=/a/b ua=curl/ host=`+host+` missing=- sub=alice n=12 ok=true inner=bar `+
			`nested={"b":"<&>","inner":"bar"} list=["a","b"] unknown=- other=- duration=`) + `\d+` + "\n$")
	if !want.MatchString(line) {
		t.Errorf("access log line\n%q\ndoes not match\n%s", line, want)
	}
}

// TestProxyAccessLogDeprecatedOkMetadata: OkHttpResponse.dynamic_metadata,
// deprecated, still replaces the response's own, as in Envoy.
func TestProxyAccessLogDeprecatedOkMetadata(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		resp := okResponse(&authv3.OkHttpResponse{DynamicMetadata: mustStruct(t, map[string]any{"sub": "from-ok-response"})}) //nolint:staticcheck // the deprecated field is the point
		resp.DynamicMetadata = mustStruct(t, map[string]any{"sub": "outer", "iss": "x"})
		return resp, nil
	}}
	up := startUpstream(t)
	var log testutil.Buffer
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, AccessLog: &log,
		AccessLogFormat: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub)% iss=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:iss)%\n"})
	do(t, newClientRequest(t, http.MethodGet, px.URL+"/", nil))
	if got := accessLines(t, &log, 1)[0]; got != "from-ok-response iss=-\n" {
		t.Errorf("access log = %q, want %q", got, "from-ok-response iss=-\n")
	}
}

// TestProxyAccessLogLocalReplies: requests the stand-in answers itself are
// logged with the status it sent, and an abandoned one with 0.
func TestProxyAccessLogLocalReplies(t *testing.T) {
	entered := make(chan struct{}, 1)
	f := &fakeAuthz{answer: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	up := startUpstream(t)
	var log testutil.Buffer
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, NormalizePath: true,
		AccessLog: &log, AccessLogFormat: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\n"})

	req := newClientRequest(t, http.MethodGet, px.URL, nil)
	req.URL.Opaque = "/a%2Fb"
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := accessLines(t, &log, 1)[0]; got != "GET /a%2Fb 307\n" {
		t.Errorf("redirect logged as %q", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, px.URL+"/gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { <-entered; cancel() }()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request succeeded; want it cancelled")
	}
	if got := accessLines(t, &log, 2)[1]; got != "GET /gone 0\n" {
		t.Errorf("abandoned request logged as %q, want %q", got, "GET /gone 0\n")
	}
}

func TestAccessLogFormatRejected(t *testing.T) {
	conn := startAuthz(t, &fakeAuthz{})
	var log testutil.Buffer
	for _, format := range []string{
		"%BYTES_SENT%",         // not modelled
		"%RESPONSE_FLAGS%",     // not modelled
		"%START_TIME(%s)%",     // custom time formats are not modelled
		"%REQ%",                // no header
		"%REQ()%",              // no header
		"100% done",            // a lone %
		"%DYNAMIC_METADATA()%", // no namespace
		"%PATH(XQ)%",
		"%PATH(NQ:SOMEWHERE)%",
		"%REQ(:PATH):0%",
	} {
		t.Run(format, func(t *testing.T) {
			if _, err := New(Config{AuthzConn: conn, Upstream: "http://x", AccessLog: &log, AccessLogFormat: format}); err == nil {
				t.Errorf("New accepted access log format %q", format)
			}
		})
	}
	if _, err := New(Config{AuthzConn: conn, Upstream: "http://x", AccessLogFormat: "%PROTOCOL%\n"}); err == nil {
		t.Error("New accepted AccessLogFormat without AccessLog")
	}
	p, err := New(Config{AuthzConn: conn, Upstream: "http://x", AccessLog: &log})
	if err != nil {
		t.Fatalf("New with the default access log format: %v", err)
	}
	p.Close()
}
