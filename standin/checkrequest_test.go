package standin

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// newRequest is a server-side request from 192.0.2.1:1234 to 198.51.100.7:8080.
func newRequest(method, target string, header http.Header) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for k, vv := range header {
		for _, v := range vv {
			r.Header.Add(k, v)
		}
	}
	ctx := context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 8080})
	return r.WithContext(ctx)
}

func TestBuildCheckRequestHeaders(t *testing.T) {
	tests := []struct {
		name   string
		method string
		target string
		header http.Header
		tls    bool
		// want is the exact headers map, except x-request-id, which is
		// checked against wantRequestID ("" means "a fresh UUID").
		want          map[string]string
		wantRequestID string
	}{
		{
			name:   "pseudo-headers, lower-cased keys, query kept",
			method: http.MethodGet,
			target: "http://api.example.com/protected/x?a=1&b=%20",
			header: http.Header{"Authorization": {"Bearer abc"}, "X-Custom": {"v"}},
			want: map[string]string{
				":authority":        "api.example.com",
				":method":           "GET",
				":path":             "/protected/x?a=1&b=%20",
				":scheme":           "http",
				"authorization":     "Bearer abc",
				"x-custom":          "v",
				"x-forwarded-proto": "http",
			},
		},
		{
			name:   "repeated headers joined with a comma, request id kept",
			method: http.MethodPost,
			target: "/p",
			header: http.Header{"Accept": {"a/b", "c/d"}, "X-Request-Id": {"client-id"}},
			want: map[string]string{
				":authority":        "example.com",
				":method":           "POST",
				":path":             "/p",
				":scheme":           "http",
				"accept":            "a/b,c/d",
				"x-forwarded-proto": "http",
			},
			wantRequestID: "client-id",
		},
		{
			name:   "connection manager strips hop-by-hop and x-envoy control headers",
			method: http.MethodGet,
			target: "/p",
			header: http.Header{
				"Connection":                {"keep-alive, x-drop"},
				"Keep-Alive":                {"timeout=5"},
				"Proxy-Connection":          {"keep-alive"},
				"Upgrade":                   {"h2c"},
				"X-Envoy-Internal":          {"true"},
				"X-Envoy-Retry-On":          {"5xx"},
				"X-Envoy-Original-Url":      {"http://x/"},
				"X-Forwarded-Client-Cert":   {"By=spoofed"},
				"X-Envoy-Auth-Partial-Body": {"true"},
				"Referer":                   {"/relative"},
			},
			want: map[string]string{
				":authority":        "example.com",
				":method":           "GET",
				":path":             "/p",
				":scheme":           "http",
				"x-forwarded-proto": "http",
			},
		},
		{
			name:   "websocket upgrade keeps connection and upgrade",
			method: http.MethodGet,
			target: "/ws",
			header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Referer": {"https://example.com/page"}},
			want: map[string]string{
				":authority":        "example.com",
				":method":           "GET",
				":path":             "/ws",
				":scheme":           "http",
				"connection":        "Upgrade",
				"upgrade":           "websocket",
				"referer":           "https://example.com/page",
				"x-forwarded-proto": "http",
			},
		},
		{
			name:   "client x-forwarded-proto decides :scheme",
			method: http.MethodGet,
			target: "/p",
			header: http.Header{"X-Forwarded-Proto": {"HTTPS"}},
			want: map[string]string{
				":authority":        "example.com",
				":method":           "GET",
				":path":             "/p",
				":scheme":           "https",
				"x-forwarded-proto": "HTTPS",
			},
		},
		{
			name:   "invalid x-forwarded-proto leaves :scheme to the connection",
			method: http.MethodGet,
			target: "/p",
			header: http.Header{"X-Forwarded-Proto": {"gopher"}},
			tls:    true,
			want: map[string]string{
				":authority":        "example.com",
				":method":           "GET",
				":path":             "/p",
				":scheme":           "https",
				"x-forwarded-proto": "gopher",
			},
		},
		{
			name:   "invalid UTF-8 becomes !",
			method: http.MethodGet,
			target: "/p",
			header: http.Header{"X-Name": {"a\xffb"}},
			want: map[string]string{
				":authority":        "example.com",
				":method":           "GET",
				":path":             "/p",
				":scheme":           "http",
				"x-name":            "a!b",
				"x-forwarded-proto": "http",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(tc.method, tc.target, tc.header)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			got := BuildCheckRequest(r).GetAttributes().GetRequest().GetHttp().GetHeaders()

			rid := got["x-request-id"]
			delete(got, "x-request-id")
			if tc.wantRequestID == "" && !uuidPattern.MatchString(rid) {
				t.Errorf("x-request-id = %q, want a fresh UUID", rid)
			}
			if tc.wantRequestID != "" && rid != tc.wantRequestID {
				t.Errorf("x-request-id = %q, want %q", rid, tc.wantRequestID)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("headers = %v\nwant      %v", got, tc.want)
			}
		})
	}
}

func TestBuildCheckRequestAttributes(t *testing.T) {
	before := time.Now()
	r := newRequest(http.MethodPut, "http://api.example.com:8443/a/b?c=d", http.Header{
		"X-Envoy-Downstream-Service-Cluster": {"frontend"},
	})
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0
	req := BuildCheckRequest(r)
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()

	for _, c := range []struct{ field, got, want string }{
		{"method", h.GetMethod(), "PUT"},
		{"path", h.GetPath(), "/a/b?c=d"},
		{"host", h.GetHost(), "api.example.com:8443"},
		{"scheme", h.GetScheme(), "http"},
		{"protocol", h.GetProtocol(), "HTTP/1.0"},
		{"query", h.GetQuery(), ""},
		{"source.service", attrs.GetSource().GetService(), "frontend"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if _, err := strconv.ParseUint(h.GetId(), 10, 64); err != nil {
		t.Errorf("id = %q, want a decimal stream id: %v", h.GetId(), err)
	}
	if h.GetSize() != 0 {
		t.Errorf("size = %d, want 0 (no body received before the check)", h.GetSize())
	}
	wantSource := &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "192.0.2.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1234},
	}}}
	if got := attrs.GetSource().GetAddress(); !proto.Equal(got, wantSource) {
		t.Errorf("source.address = %v, want %v", got, wantSource)
	}
	wantDest := &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
	}}}
	if got := attrs.GetDestination().GetAddress(); !proto.Equal(got, wantDest) {
		t.Errorf("destination.address = %v, want %v", got, wantDest)
	}
	if ts := attrs.GetRequest().GetTime().AsTime(); ts.Before(before) || ts.After(time.Now()) {
		t.Errorf("request.time = %v, want between %v and now", ts, before)
	}
	// The request must marshal: proto3 strings have to be valid UTF-8.
	if _, err := proto.Marshal(req); err != nil {
		t.Errorf("marshal CheckRequest: %v", err)
	}
}

func TestConnManagerOptions(t *testing.T) {
	tests := []struct {
		name       string
		cm         connManager
		remote     string
		header     http.Header
		want       map[string][]string // exact values; nil means absent
		freshReqID bool
	}{
		{
			name:   "default keeps client forwarding headers",
			remote: "203.0.113.5:4000",
			header: http.Header{"X-Forwarded-For": {"10.0.0.1"}, "X-Request-Id": {"mine"}, "X-Envoy-Downstream-Service-Cluster": {"c"}},
			want: map[string][]string{
				"X-Forwarded-For":                    {"10.0.0.1"},
				"X-Request-Id":                       {"mine"},
				"X-Envoy-External-Address":           nil,
				"X-Envoy-Downstream-Service-Cluster": {"c"},
			},
		},
		{
			name:   "edge appends the peer, overwrites proto and request id",
			cm:     connManager{useRemoteAddress: true},
			remote: "203.0.113.5:4000",
			header: http.Header{
				"X-Forwarded-For":                    {"10.0.0.1", "10.0.0.2"},
				"X-Forwarded-Proto":                  {"https"},
				"X-Request-Id":                       {"mine"},
				"X-Envoy-External-Address":           {"10.9.9.9"},
				"X-Envoy-Downstream-Service-Cluster": {"c"},
				"X-Envoy-Decorator-Operation":        {"op"},
			},
			want: map[string][]string{
				"X-Forwarded-For":                    {"10.0.0.1,10.0.0.2,203.0.113.5"},
				"X-Forwarded-Proto":                  {"http"},
				"X-Envoy-External-Address":           {"203.0.113.5"},
				"X-Envoy-Downstream-Service-Cluster": nil,
				"X-Envoy-Decorator-Operation":        nil,
				":scheme":                            {"http"},
			},
			freshReqID: true,
		},
		{
			name:   "edge appends its own address for a loopback peer",
			cm:     connManager{useRemoteAddress: true},
			remote: "127.0.0.1:4000",
			want: map[string][]string{
				"X-Forwarded-For":          {"198.51.100.7"},
				"X-Envoy-External-Address": {"127.0.0.1"},
			},
			freshReqID: true,
		},
		{
			name:   "headers with underscores dropped",
			cm:     connManager{dropUnderscores: true},
			remote: "203.0.113.5:4000",
			header: http.Header{"X_jwt_sub": {"admin"}, "X-Ok": {"1"}},
			want:   map[string][]string{"X_jwt_sub": nil, "X-Ok": {"1"}},
		},
		{
			name:   "headers with underscores kept by default",
			remote: "203.0.113.5:4000",
			header: http.Header{"X_jwt_sub": {"admin"}},
			want:   map[string][]string{"X_jwt_sub": {"admin"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(http.MethodGet, "/p", nil)
			r.RemoteAddr = tc.remote
			r.Header = tc.header.Clone()
			if r.Header == nil {
				r.Header = http.Header{}
			}
			h := tc.cm.requestHeaders(r, "/p")
			for k, want := range tc.want {
				if got := h[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if tc.freshReqID && !uuidPattern.MatchString(h.Get("X-Request-Id")) {
				t.Errorf("x-request-id = %q, want a fresh UUID", h.Get("X-Request-Id"))
			}
		})
	}
}

func TestBuildCheckRequestDisallowed(t *testing.T) {
	r := newRequest(http.MethodGet, "/p", http.Header{"Cookie": {"s=1"}, "Authorization": {"Bearer x"}})
	h := connManager{}.requestHeaders(r, "/p")
	got := buildCheckRequest(r, h, time.Now(), map[string]bool{"cookie": true}, nil).GetAttributes().GetRequest().GetHttp().GetHeaders()
	if _, ok := got["cookie"]; ok {
		t.Errorf("cookie sent to ext_authz despite disallowed_headers")
	}
	if got["authorization"] != "Bearer x" {
		t.Errorf("authorization = %q, want %q", got["authorization"], "Bearer x")
	}
	if h.Get("Cookie") != "s=1" {
		t.Errorf("cookie removed from the forwarded headers; disallowed_headers only hides it from ext_authz")
	}
}
