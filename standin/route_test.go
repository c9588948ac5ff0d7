package standin

import (
	"context"
	"maps"
	"net/http"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// TestProxyContextExtensions: each request's CheckRequest carries the
// context_extensions of the first route whose path_separated_prefix
// matches its path (query and fragment left out), and none when no route
// matches, as Envoy sends a route's ExtAuthzPerRoute check_settings.
func TestProxyContextExtensions(t *testing.T) {
	routes := []Route{
		{PathSeparatedPrefix: "/admin", ContextExtensions: map[string]string{"policy": "admin"}},
		{PathSeparatedPrefix: "/admin/reports", ContextExtensions: map[string]string{"policy": "never"}}, // shadowed
		{PathSeparatedPrefix: "/api/v1", ContextExtensions: map[string]string{"policy": "api", "tenant": "t1"}},
		{PathSeparatedPrefix: "/public"},
	}
	tests := []struct {
		name      string
		target    string
		normalize bool
		want      map[string]string
	}{
		{name: "exact prefix", target: "/admin", want: map[string]string{"policy": "admin"}},
		{name: "below the prefix", target: "/admin/users", want: map[string]string{"policy": "admin"}},
		{name: "first match wins", target: "/admin/reports/1", want: map[string]string{"policy": "admin"}},
		{name: "query is not the path", target: "/admin?x=/public", want: map[string]string{"policy": "admin"}},
		{name: "prefix needs a separator", target: "/administrator"},
		{name: "case-sensitive", target: "/ADMIN"},
		{name: "several extensions", target: "/api/v1/items", want: map[string]string{"policy": "api", "tenant": "t1"}},
		{name: "route without extensions", target: "/public/x"},
		{name: "no route", target: "/other"},
		{name: "query naming a route", target: "/other?/admin"},
		// Envoy routes on the path as the connection manager left it:
		// without normalize_path, the dot segments are not resolved.
		{name: "raw dot segments", target: "/public/../admin"},
		{name: "normalised dot segments", target: "/public/../admin", normalize: true, want: map[string]string{"policy": "admin"}},
		{name: "normalised dot segment", target: "/./admin/x", normalize: true, want: map[string]string{"policy": "admin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(nil), nil
			}}
			up := startUpstream(t)
			px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Routes: routes, NormalizePath: tc.normalize})
			req := newClientRequest(t, http.MethodGet, px.URL, nil)
			req.URL.Opaque = tc.target
			if res, _ := do(t, req); res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			calls := f.calls()
			if len(calls) != 1 {
				t.Fatalf("Check calls = %d, want 1", len(calls))
			}
			if got := calls[0].GetAttributes().GetContextExtensions(); !maps.Equal(got, tc.want) {
				t.Errorf("context_extensions = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestProxyRoutesAreCopied: New copies the routes, so a caller changing its
// map afterwards changes nothing.
func TestProxyRoutesAreCopied(t *testing.T) {
	f := &fakeAuthz{answer: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(nil), nil
	}}
	ext := map[string]string{"policy": "admin"}
	routes := []Route{{PathSeparatedPrefix: "/admin", ContextExtensions: ext}}
	up := startUpstream(t)
	px := startProxy(t, Config{AuthzConn: startAuthz(t, f), Upstream: up.URL, Routes: routes})
	ext["policy"] = "changed"
	routes[0].PathSeparatedPrefix = "/other"
	do(t, newClientRequest(t, http.MethodGet, px.URL+"/admin", nil))
	if got := f.calls()[0].GetAttributes().GetContextExtensions()["policy"]; got != "admin" {
		t.Errorf("policy = %q, want %q", got, "admin")
	}
}

func TestRouteValidation(t *testing.T) {
	conn := startAuthz(t, &fakeAuthz{})
	for _, prefix := range []string{"", "/", "admin", "/admin/", "/a?b", "/a#b"} {
		t.Run(prefix, func(t *testing.T) {
			_, err := New(Config{AuthzConn: conn, Upstream: "http://x", Routes: []Route{{PathSeparatedPrefix: prefix}}})
			if err == nil {
				t.Errorf("New accepted path_separated_prefix %q", prefix)
			}
		})
	}
}
