package authz

import (
	"context"
	"net"
	"slices"
	"strings"
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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// startGRPC serves srv over an in-memory bufconn listener and returns a
// client for it. Everything stops when the test ends.
func startGRPC(t testing.TB, srv *Server) authv3.AuthorizationClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest is the CheckRequest Envoy sends for path with headers (keys
// lower-cased, as Envoy sends them).
func checkRequest(path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: headers},
	}}}
}

// wantOK is the OK CheckResponse for an allow, spelled out from the
// ext_authz contract rather than built with CheckResponse.
func wantOK(set []Header, remove ...string) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{HeadersToRemove: remove}
	for _, h := range set {
		ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			Append:       wrapperspb.Bool(false),
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

// wantDenied is the CheckResponse of a denial.
func wantDenied(code codes.Code, reason Reason, httpStatus int, body, challenge string) *authv3.CheckResponse {
	hs := []*corev3.HeaderValueOption{{
		Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}}
	if challenge != "" {
		hs = append(hs, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: "www-authenticate", Value: challenge},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: string(reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: hs,
			Body:    body,
		}},
	}
}

func TestCheck(t *testing.T) {
	valid := mint(t, tokenSpec{})
	expired := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
	allowHeaders := []Header{{Name: "x-jwt-payload", Value: payloadOf(valid)}, {Name: "x-jwt-sub", Value: subject}}
	tests := []struct {
		name  string
		req   *authv3.CheckRequest
		setup func(w world)
		want  *authv3.CheckResponse
	}{
		{name: "allow", req: checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid, "x-jwt-sub": "admin"}),
			want: wantOK(allowHeaders)},
		{name: "allow with a query", req: checkRequest("/protected?x=1", map[string]string{"authorization": "Bearer " + valid}),
			want: wantOK(allowHeaders)},
		{name: "public, anonymous, look-alike removed", req: checkRequest("/public", map[string]string{"x-jwt-sub": "admin", "x_jwt_sub": "admin"}),
			want: wantOK(nil, "x-jwt-payload", "x-jwt-sub", "x_jwt_sub")},
		{name: "public, valid token", req: checkRequest("/public/x", map[string]string{"authorization": "Bearer " + valid}),
			want: wantOK(allowHeaders)},
		{name: "public, expired token", req: checkRequest("/public", map[string]string{"authorization": "Bearer " + expired}),
			want: wantOK(nil, "x-jwt-payload", "x-jwt-sub")},
		{name: "path from :path", req: checkRequest("", map[string]string{":path": "/public"}),
			want: wantOK(nil, "x-jwt-payload", "x-jwt-sub")},
		{name: "path field wins over :path", req: checkRequest("/protected", map[string]string{":path": "/public"}),
			want: wantDenied(codes.Unauthenticated, MissingToken, 401, `{"error":"Missing or invalid Authorization header"}`, `Bearer realm="extauthz"`)},
		{name: "missing token", req: checkRequest("/protected", map[string]string{"x-jwt-sub": "admin"}),
			want: wantDenied(codes.Unauthenticated, MissingToken, 401, `{"error":"Missing or invalid Authorization header"}`, `Bearer realm="extauthz"`)},
		{name: "dot dot out of public", req: checkRequest("/public/%2e%2e/protected", nil),
			want: wantDenied(codes.Unauthenticated, MissingToken, 401, `{"error":"Missing or invalid Authorization header"}`, `Bearer realm="extauthz"`)},
		{name: "expired", req: checkRequest("/protected", map[string]string{"authorization": "Bearer " + expired}),
			want: wantDenied(codes.Unauthenticated, Expired, 401, `{"error":"Token has expired"}`,
				`Bearer realm="extauthz", error="invalid_token", error_description="Token has expired"`)},
		{name: "insufficient scope", req: checkRequest("/admin", map[string]string{"authorization": "Bearer " + valid}),
			want: wantDenied(codes.PermissionDenied, InsufficientScope, 403, `{"error":"Insufficient scope"}`,
				`Bearer realm="extauthz", error="insufficient_scope", error_description="Insufficient scope", scope="admin"`)},
		{name: "keys unavailable", req: checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid}),
			setup: func(w world) { w.keysA.notReady.Store(true) },
			want:  wantDenied(codes.Unavailable, KeysUnavailable, 503, `{"error":"Signing keys are not available yet"}`, "")},
		{name: "upper-case authorization key", req: checkRequest("/protected", map[string]string{"Authorization": "Bearer " + valid}),
			want: wantOK(allowHeaders)},
		{name: "two authorization keys", req: checkRequest("/protected", map[string]string{"Authorization": "Bearer " + valid, "authorization": "Bearer " + valid}),
			want: wantDenied(codes.InvalidArgument, InvalidRequest, 400, `{"error":"Multiple Authorization headers or tokens"}`,
				`Bearer realm="extauthz", error="invalid_request", error_description="Multiple Authorization headers or tokens"`)},
		{name: "authorization joined by Envoy", req: checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid + ",Bearer " + valid}),
			want: wantDenied(codes.InvalidArgument, InvalidRequest, 400, `{"error":"Multiple Authorization headers or tokens"}`,
				`Bearer realm="extauthz", error="invalid_request", error_description="Multiple Authorization headers or tokens"`)},
		{name: "header_map with raw values", req: headerMapRequest(
			&corev3.HeaderValue{Key: ":path", RawValue: []byte("/protected")},
			&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + valid)},
			&corev3.HeaderValue{Key: "x_jwt_sub", RawValue: []byte("admin")}),
			want: wantOK(allowHeaders, "x_jwt_sub")},
		{name: "header_map with values", req: headerMapRequest(
			&corev3.HeaderValue{Key: ":path", Value: "/protected"},
			&corev3.HeaderValue{Key: "Authorization", Value: "Bearer " + valid}),
			want: wantOK(allowHeaders)},
		{name: "header_map public", req: headerMapRequest(&corev3.HeaderValue{Key: ":path", RawValue: []byte("/public")}),
			want: wantOK(nil, "x-jwt-payload", "x-jwt-sub")},
		{name: "header_map with two authorization headers", req: headerMapRequest(
			&corev3.HeaderValue{Key: ":path", RawValue: []byte("/protected")},
			&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + valid)},
			&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + valid)}),
			want: wantDenied(codes.InvalidArgument, InvalidRequest, 400, `{"error":"Multiple Authorization headers or tokens"}`,
				`Bearer realm="extauthz", error="invalid_request", error_description="Multiple Authorization headers or tokens"`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			if tc.setup != nil {
				tc.setup(w)
			}
			client := startGRPC(t, w.srv)
			got, err := client.Check(t.Context(), tc.req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !proto.Equal(withoutMetadata(t, got), tc.want) {
				t.Errorf("Check =\n%v\nwant\n%v", got, tc.want)
			}
			checkWire(t, got)
		})
	}
}

// headerMapRequest is a CheckRequest in the header_map form Envoy uses with
// encode_raw_headers: true.
func headerMapRequest(hs ...*corev3.HeaderValue) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", HeaderMap: &corev3.HeaderMap{Headers: hs}},
	}}}
}

// checkWire asserts what must hold of every CheckResponse: OK goes with an
// OkHttpResponse and anything else with a DeniedHttpResponse; headers are
// sorted by name; the denied HTTP status matches the gRPC code.
func checkWire(t *testing.T, r *authv3.CheckResponse) {
	t.Helper()
	code := codes.Code(r.GetStatus().GetCode())
	switch {
	case code == codes.OK && r.GetOkResponse() == nil:
		t.Errorf("OK status without an OkHttpResponse")
	case code != codes.OK && r.GetDeniedResponse() == nil:
		t.Errorf("status %v without a DeniedHttpResponse", code)
	}
	var keys []string
	for _, h := range r.GetOkResponse().GetHeaders() {
		keys = append(keys, h.GetHeader().GetKey())
	}
	if !slices.IsSorted(keys) || !slices.IsSorted(r.GetOkResponse().GetHeadersToRemove()) {
		t.Errorf("headers %q / headers_to_remove %q not sorted", keys, r.GetOkResponse().GetHeadersToRemove())
	}
	if d := r.GetDeniedResponse(); d != nil {
		wantHTTP := map[codes.Code]int{codes.Unauthenticated: 401, codes.PermissionDenied: 403, codes.Unavailable: 503, codes.Internal: 500, codes.InvalidArgument: 400}[code]
		if got := int(d.GetStatus().GetCode()); got != wantHTTP && !(code == codes.InvalidArgument && got == 414) {
			t.Errorf("gRPC %v with HTTP %d, want %d", code, d.GetStatus().GetCode(), wantHTTP)
		}
	}
}

func TestCheckManyClaimHeadersSorted(t *testing.T) {
	w := newWorld(t, func(c *Config) {
		c.ClaimHeaders = map[string]string{"x-z": "sub", "x-a": "sub", "x-m": "iss", "x-b": "aud", "x-y": "missing", "x-c": "nope"}
	})
	client := startGRPC(t, w.srv)
	got, err := client.Check(t.Context(), checkRequest("/protected", map[string]string{"authorization": "Bearer " + mint(t, tokenSpec{})}))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	want := wantOK([]Header{{Name: "x-a", Value: subject}, {Name: "x-b", Value: audience}, {Name: "x-m", Value: issuerA}, {Name: "x-z", Value: subject}}, "x-c", "x-y")
	if !proto.Equal(withoutMetadata(t, got), want) {
		t.Errorf("Check =\n%v\nwant\n%v", got, want)
	}
}

func TestCheckInvalidArgument(t *testing.T) {
	tests := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{name: "empty request", req: &authv3.CheckRequest{}},
		{name: "no request attributes", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}},
		{name: "no http attributes", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}},
	}
	w := newWorld(t, nil)
	client := startGRPC(t, w.srv)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(t.Context(), tc.req)
			if status.Code(err) != codes.InvalidArgument || resp != nil {
				t.Errorf("Check = %v, %v; want nil, InvalidArgument", resp, err)
			}
		})
	}
}

func TestCheckContext(t *testing.T) {
	valid := mint(t, tokenSpec{})
	req := checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid})

	t.Run("cancelled before the call", func(t *testing.T) {
		w := newWorld(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		resp, err := w.srv.Check(ctx, req)
		if status.Code(err) != codes.Canceled || resp != nil {
			t.Errorf("Check = %v, %v; want nil, Canceled", resp, err)
		}
	})
	t.Run("cancelled public request", func(t *testing.T) {
		w := newWorld(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		resp, err := w.srv.Check(ctx, checkRequest("/public", nil))
		if status.Code(err) != codes.Canceled || resp != nil {
			t.Errorf("Check = %v, %v; want nil, Canceled", resp, err)
		}
	})
	t.Run("deadline passes during verification", func(t *testing.T) {
		w := newWorld(t, nil)
		w.keysA.block.Store(true)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		resp, err := w.srv.Check(ctx, req)
		if status.Code(err) != codes.DeadlineExceeded || resp != nil {
			t.Errorf("Check = %v, %v; want nil, DeadlineExceeded", resp, err)
		}
	})
	t.Run("over the wire", func(t *testing.T) {
		w := newWorld(t, nil)
		client := startGRPC(t, w.srv)
		w.keysA.block.Store(true)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if resp, err := client.Check(ctx, req); status.Code(err) != codes.DeadlineExceeded || resp != nil {
			t.Errorf("Check = %v, %v; want nil, DeadlineExceeded", resp, err)
		}
		// The server is still there.
		w.keysA.block.Store(false)
		resp, err := client.Check(t.Context(), req)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Errorf("Check after a timeout = %v, %v; want OK", resp, err)
		}
	})
}

func TestCheckPanic(t *testing.T) {
	buf, logger := newLogBuffer()
	w := newWorld(t, func(c *Config) { c.Logger = logger })
	client := startGRPC(t, w.srv)
	valid := mint(t, tokenSpec{})
	req := checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid})

	w.keysA.panics.Store(true)
	for _, p := range []string{"/protected", "/public"} {
		resp, err := client.Check(t.Context(), checkRequest(p, map[string]string{"authorization": "Bearer " + valid}))
		if err != nil {
			t.Fatalf("Check %s: %v", p, err)
		}
		want := wantDenied(codes.Internal, Internal, 500, `{"error":"Internal error"}`, "")
		if !proto.Equal(withoutMetadata(t, resp), want) {
			t.Errorf("Check %s after a panic =\n%v\nwant\n%v", p, resp, want)
		}
	}
	var panics int
	for _, r := range buf.records(t) {
		if r["level"] == "ERROR" && strings.Contains(r["msg"].(string), "panic") {
			panics++
		}
	}
	if panics != 2 {
		t.Errorf("%d panic records logged, want 2", panics)
	}
	if strings.Contains(buf.String(), strings.Split(valid, ".")[2]) {
		t.Errorf("the panic log holds the token")
	}

	w.keysA.panics.Store(false)
	resp, err := client.Check(t.Context(), req)
	if err != nil || !proto.Equal(withoutMetadata(t, resp), wantOK([]Header{{Name: "x-jwt-payload", Value: payloadOf(valid)}, {Name: "x-jwt-sub", Value: subject}})) {
		t.Errorf("Check after the panics = %v, %v; want an allow", resp, err)
	}
}

// TestCheckResponseHeaderOptions: every claim header option overwrites,
// whichever field a given Envoy release reads, and denial headers overwrite.
func TestCheckResponseHeaderOptions(t *testing.T) {
	allow := CheckResponse(Decision{Reason: Allowed, Headers: []Header{{Name: "x-a", Value: "1"}, {Name: "x-b", Value: "2"}}, Remove: []string{"x-c"}})
	for _, o := range allow.GetOkResponse().GetHeaders() {
		//nolint:staticcheck // The deprecated field is what older Envoys read.
		if o.GetAppend() == nil || o.GetAppend().GetValue() || o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("option %v does not overwrite for every Envoy", o)
		}
	}
	if got := allow.GetOkResponse().GetHeadersToRemove(); !slices.Equal(got, []string{"x-c"}) {
		t.Errorf("headers_to_remove = %q", got)
	}
	deny := CheckResponse(Decision{Reason: Expired, WWWAuthenticate: "Bearer x", Body: "{}"})
	for _, o := range deny.GetDeniedResponse().GetHeaders() {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("denied option %v appends", o)
		}
	}
	if deny.GetOkResponse() != nil || deny.GetStatus().GetMessage() != "expired" {
		t.Errorf("deny = %v", deny)
	}
}

// withoutMetadata checks the dynamic_metadata of r (on a denial, the reason;
// on an allow with a token, sub, iss, provider and scope) and returns a copy
// of r without it, for comparisons that spell out the rest.
func withoutMetadata(t *testing.T, r *authv3.CheckResponse) *authv3.CheckResponse {
	t.Helper()
	if r == nil {
		return nil
	}
	md := r.GetDynamicMetadata().GetFields()
	if d := r.GetDeniedResponse(); d != nil {
		if got := md["reason"].GetStringValue(); got != r.GetStatus().GetMessage() {
			t.Errorf("denial metadata reason %q, want %q", got, r.GetStatus().GetMessage())
		}
	} else if md != nil {
		for _, k := range []string{"iss", "provider", "scope"} {
			if _, ok := md[k]; !ok {
				t.Errorf("allow metadata %v lacks %q", md, k)
			}
		}
	}
	c := proto.Clone(r).(*authv3.CheckResponse)
	c.DynamicMetadata = nil
	return c
}
