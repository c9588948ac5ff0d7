package authz

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startHTTP serves srv's forward-auth handler on a real loopback socket.
func startHTTP(t testing.TB, srv *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

type httpResult struct {
	status int
	header http.Header
	body   string
}

func doHTTP(t *testing.T, ts *httptest.Server, method, target string, header http.Header) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+target, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for k, vv := range header {
		for _, v := range vv {
			req.Header.Add(k, v)
		}
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestServeHTTP(t *testing.T) {
	valid := mint(t, tokenSpec{})
	expired := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	const (
		missing = `{"error":"Missing or invalid Authorization header"}`
		realm   = `Bearer realm="extauthz"`
	)
	tests := []struct {
		name       string
		method     string
		target     string // the forward-auth request's own target
		header     http.Header
		setup      func(w world)
		mutate     func(c *Config)
		status     int
		wantHeader map[string]string // "" means absent
		body       string
	}{
		{name: "nginx: X-Original-URI public", target: "/auth", header: h("X-Original-URI", "/public/x", "X-Original-Method", "GET"),
			status: 200, wantHeader: map[string]string{"X-Envoy-Auth-Headers-To-Remove": "x-jwt-payload,x-jwt-sub", "X-Jwt-Sub": "", "Cache-Control": "no-store"}},
		{name: "nginx: X-Original-URI protected, own path public", target: "/public", header: h("X-Original-URI", "/protected"),
			status: 401, wantHeader: map[string]string{"Www-Authenticate": realm, "Content-Type": "application/json"}, body: missing},
		{name: "nginx: X-Original-URI with a query", target: "/auth", header: h("X-Original-URI", "/public?next=/../admin"), status: 200},
		{name: "nginx: X-Original-URI climbing out of public", target: "/auth", header: h("X-Original-URI", "/public/%2e%2e/admin"),
			status: 401, body: missing},
		{name: "nginx: absolute X-Original-URI", target: "/auth", header: h("X-Original-URI", "http://api.example.com/public"), status: 200},
		{name: "caddy: X-Forwarded-Uri public", target: "/auth", header: h("X-Forwarded-Uri", "/public", "X-Forwarded-Method", "POST"), status: 200},
		{name: "caddy: X-Forwarded-Uri protected, own path public", target: "/public", header: h("X-Forwarded-Uri", "/admin"),
			status: 401, body: missing},
		{name: "X-Original-URI and X-Forwarded-Uri disagree", target: "/auth", header: h("X-Original-URI", "/protected", "X-Forwarded-Uri", "/public"),
			status: 400, body: `{"error":"Conflicting original-request headers"}`},
		{name: "client adds X-Original-URI behind Caddy", target: "/auth", header: h("X-Original-URI", "/public", "X-Forwarded-Uri", "/admin", "X-Forwarded-Method", "GET"),
			status: 400},
		{name: "X-Original-URI and X-Forwarded-Uri agree", target: "/auth", header: h("X-Original-URI", "/public", "X-Forwarded-Uri", "/public"), status: 200},
		{name: "X-Original-URI repeated", target: "/auth", header: h("X-Original-URI", "/public", "X-Original-URI", "/admin"), status: 400},
		{name: "X-Original-Method without its URI", target: "/public", header: h("X-Original-Method", "GET"), status: 400},
		{name: "methods disagree", target: "/auth", header: h("X-Original-URI", "/public", "X-Original-Method", "GET", "X-Forwarded-Uri", "/public", "X-Forwarded-Method", "POST"),
			status: 400},
		{name: "pinned to x-forwarded: X-Original-URI ignored", target: "/auth", header: h("X-Original-URI", "/public", "X-Forwarded-Uri", "/admin"),
			mutate: func(c *Config) { c.ForwardAuthSource = SourceForwarded }, status: 401, body: missing},
		{name: "pinned to x-original: X-Forwarded-Uri ignored", target: "/auth", header: h("X-Original-URI", "/admin", "X-Forwarded-Uri", "/public"),
			mutate: func(c *Config) { c.ForwardAuthSource = SourceOriginal }, status: 401, body: missing},
		{name: "pinned to request: both headers ignored", target: "/protected", header: h("X-Original-URI", "/public", "X-Forwarded-Uri", "/public"),
			mutate: func(c *Config) { c.ForwardAuthSource = SourceRequest }, status: 401, body: missing},
		{name: "X-Forwarded-Uri used when X-Original-URI is empty", target: "/auth", header: h("X-Original-URI", "", "X-Forwarded-Uri", "/public"), status: 200},
		{name: "envoy HTTP mode: own path public", target: "/public/a?b=c", status: 200},
		{name: "envoy HTTP mode: own path protected", target: "/protected", status: 401, body: missing},
		{name: "envoy HTTP mode: own path climbing out of public", target: "/public/..%2Fadmin", status: 401, body: missing},
		{name: "valid token", target: "/auth", header: h("X-Original-URI", "/protected", "Authorization", "Bearer "+valid),
			status: 200, wantHeader: map[string]string{"X-Jwt-Sub": subject, "X-Jwt-Payload": payloadOf(valid), "X-Envoy-Auth-Headers-To-Remove": "", "Www-Authenticate": ""}},
		{name: "valid token on public", target: "/auth", header: h("X-Original-URI", "/public", "Authorization", "bearer "+valid),
			status: 200, wantHeader: map[string]string{"X-Jwt-Sub": subject, "X-Envoy-Auth-Headers-To-Remove": ""}},
		{name: "valid token without sub", target: "/auth", header: h("X-Original-URI", "/protected", "Authorization", "Bearer "+mint(t, tokenSpec{claims: with(claimsA(), "sub", nil)})),
			status: 200, wantHeader: map[string]string{"X-Jwt-Sub": "", "X-Envoy-Auth-Headers-To-Remove": "x-jwt-sub"}},
		{name: "expired token", target: "/auth", header: h("X-Original-URI", "/protected", "Authorization", "Bearer "+expired),
			status: 401, wantHeader: map[string]string{"Www-Authenticate": `Bearer realm="extauthz", error="invalid_token", error_description="Token has expired"`,
				"Content-Type": "application/json", "X-Jwt-Sub": "", "Cache-Control": "no-store"},
			body: `{"error":"Token has expired"}`},
		{name: "expired token on public", target: "/auth", header: h("X-Original-URI", "/public", "Authorization", "Bearer "+expired),
			status: 200, wantHeader: map[string]string{"X-Jwt-Sub": "", "X-Envoy-Auth-Headers-To-Remove": "x-jwt-payload,x-jwt-sub"}},
		{name: "insufficient scope", target: "/auth", header: h("X-Original-URI", "/admin", "Authorization", "Bearer "+valid),
			status: 403, wantHeader: map[string]string{"Www-Authenticate": `Bearer realm="extauthz", error="insufficient_scope", error_description="Insufficient scope", scope="admin"`},
			body: `{"error":"Insufficient scope"}`},
		{name: "keys unavailable", target: "/auth", header: h("X-Original-URI", "/protected", "Authorization", "Bearer "+valid),
			setup: func(w world) { w.keysA.notReady.Store(true) }, status: 503,
			wantHeader: map[string]string{"Www-Authenticate": "", "Content-Type": "application/json"}, body: `{"error":"Signing keys are not available yet"}`},
		{name: "two authorization headers", target: "/auth", header: h("X-Original-URI", "/protected", "Authorization", "Bearer "+valid, "Authorization", "Bearer "+valid),
			status: 400, wantHeader: map[string]string{"Www-Authenticate": `Bearer realm="extauthz", error="invalid_request", error_description="Multiple Authorization headers or tokens"`},
			body: `{"error":"Multiple Authorization headers or tokens"}`},
		{name: "HEAD check", method: http.MethodHead, target: "/protected", status: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.mutate)
			if tc.setup != nil {
				tc.setup(w)
			}
			ts := startHTTP(t, w.srv)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			got := doHTTP(t, ts, method, tc.target, tc.header)
			if got.status != tc.status {
				t.Errorf("status = %d, want %d (body %q)", got.status, tc.status, got.body)
			}
			for k, v := range tc.wantHeader {
				if g := got.header.Get(k); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
			if tc.status != 200 && method != http.MethodHead {
				if got.body != tc.body && tc.body != "" {
					t.Errorf("body = %q, want %q", got.body, tc.body)
				}
				var m map[string]string
				if err := json.Unmarshal([]byte(got.body), &m); err != nil || m["error"] == "" {
					t.Errorf("deny body %q is not {\"error\": ...}: %v", got.body, err)
				}
				if ct := got.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
			if tc.status == 200 && got.body != "" {
				t.Errorf("allow has a body %q", got.body)
			}
		})
	}
}

// TestServeHTTPMethod checks that the method reported for the original
// request (here as seen in the decision log) comes from the same source as
// its URI.
func TestServeHTTPMethod(t *testing.T) {
	tests := []struct {
		name   string
		method string
		header map[string]string
		want   string
		path   string
	}{
		{name: "X-Original-Method", method: "GET", header: map[string]string{"X-Original-URI": "/protected", "X-Original-Method": "DELETE"}, want: "DELETE", path: "/protected"},
		// Not the check request's own method: nginx's auth_request
		// subrequest is always a GET (TestMethodRulesNeedTheMethod).
		{name: "X-Original-URI without a method", method: "PUT", header: map[string]string{"X-Original-URI": "/protected"}, want: "", path: "/protected"},
		{name: "X-Forwarded-Method", method: "GET", header: map[string]string{"X-Forwarded-Uri": "/p", "X-Forwarded-Method": "PATCH"}, want: "PATCH", path: "/p"},
		{name: "both families agree", method: "GET",
			header: map[string]string{"X-Original-URI": "/o", "X-Original-Method": "PATCH", "X-Forwarded-Uri": "/o", "X-Forwarded-Method": "PATCH"}, want: "PATCH", path: "/o"},
		{name: "own method and path", method: "POST", want: "POST", path: "/own"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf, logger := newLogBuffer()
			w := newWorld(t, func(c *Config) { c.Logger = logger })
			ts := startHTTP(t, w.srv)
			hdr := http.Header{}
			for k, v := range tc.header {
				hdr.Set(k, v)
			}
			if got := doHTTP(t, ts, tc.method, "/own?q=1", hdr); got.status != 401 {
				t.Fatalf("status = %d, want 401", got.status)
			}
			recs := buf.records(t)
			if len(recs) != 1 || recs[0]["method"] != tc.want || recs[0]["path"] != tc.path {
				t.Errorf("records %v; want one with method %s, path %s", recs, tc.want, tc.path)
			}
		})
	}
}

func TestServeHTTPPanic(t *testing.T) {
	buf, logger := newLogBuffer()
	w := newWorld(t, func(c *Config) { c.Logger = logger })
	ts := startHTTP(t, w.srv)
	valid := mint(t, tokenSpec{})
	hdr := http.Header{"X-Original-Uri": {"/public"}, "Authorization": {"Bearer " + valid}}

	w.keysA.panics.Store(true)
	got := doHTTP(t, ts, "GET", "/auth", hdr)
	if got.status != 500 || got.body != `{"error":"Internal error"}` || got.header.Get("Content-Type") != "application/json" {
		t.Errorf("after a panic: %d %q %q; want 500 with a JSON error", got.status, got.header.Get("Content-Type"), got.body)
	}
	if got.header.Get("X-Jwt-Sub") != "" || got.header.Get("X-Envoy-Auth-Headers-To-Remove") != "" {
		t.Errorf("a panic leaked allow headers: %v", got.header)
	}
	if !strings.Contains(buf.String(), "panic") {
		t.Errorf("panic not logged")
	}
	if strings.Contains(buf.String(), strings.Split(valid, ".")[2]) {
		t.Errorf("panic log holds the token")
	}

	w.keysA.panics.Store(false)
	if got := doHTTP(t, ts, "GET", "/auth", hdr); got.status != 200 || got.header.Get("X-Jwt-Sub") != subject {
		t.Errorf("after recovery: %d, x-jwt-sub %q; want 200, %q", got.status, got.header.Get("X-Jwt-Sub"), subject)
	}
}

// TestServeHTTPRecorder covers the handler without a network: the response
// writer receives exactly one status.
func TestServeHTTPRecorder(t *testing.T) {
	w := newWorld(t, nil)
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(t.Context(), "GET", "/auth", nil)
	req.Header.Set("X-Original-URI", "/public")
	w.srv.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("X-Envoy-Auth-Headers-To-Remove") != "x-jwt-payload,x-jwt-sub" {
		t.Errorf("ServeHTTP = %d %v", rec.Code, rec.Header())
	}
}
