package authz

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/standin"
)

// spoofedHeaders are what a client sends to become someone else: every
// spelling of the claim headers that reaches a backend as the same thing.
var spoofedHeaders = [][2]string{
	{"x-jwt-sub", "admin"},
	{"X-JWT-Sub", "admin"},
	{"x_jwt_sub", "admin"},
	{"X_JWT_SUB", "admin"},
	{"x-jwt_sub", "admin"},
	{"x-jwt-payload", "forged"},
	{"x_jwt_payload", "forged"},
	{"x-user", "admin"},
	{"x_user", "admin"},
	{"x-email", "admin@example.com"},
	{"x_email", "admin@example.com"},
}

// TestSpoofing sends forged claim headers on every kind of route, with no
// token, bad tokens and good ones, through the real gRPC adapter, and applies
// the CheckResponse the way Envoy does (standin.ApplyOK). The upstream must
// see only the verified value of each claim header, or nothing, under every
// spelling a backend may merge (x_jwt_sub is HTTP_X_JWT_SUB to CGI, WSGI
// and PHP, like x-jwt-sub).
func TestSpoofing(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{claims: with(claimsA(), "email", "user@example.com")})
	admin := mint(t, tokenSpec{claims: with(claimsA(), "scope", "admin")})
	noSub := mint(t, tokenSpec{claims: with(claimsA(), "sub", nil)})
	crlfSub := mint(t, tokenSpec{claims: with(claimsA(), "sub", "x\r\nx-jwt-sub: admin")})
	expired := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
	evil := mint(t, tokenSpec{key: k.keyEvil, claims: with(claimsA(), "sub", "admin")})
	none := rawToken(t, map[string]any{"alg": "none", "kid": kidA}, with(claimsA(), "sub", "admin"), "")

	configs := []struct {
		name    string
		headers map[string]string // nil: the defaults
	}{
		{name: "default claim headers"},
		{name: "custom claim headers", headers: map[string]string{"x-jwt-sub": "sub", "x_user": "sub", "x-email": "email", "x-jwt-payload": PayloadClaim}},
	}
	tests := []struct {
		name  string
		path  string
		token string
		allow bool
		// verified claims the upstream may see: claim -> value; missing
		// claims must not reach it at all.
		claims map[string]string
	}{
		{name: "public, no token", path: "/public", allow: true},
		{name: "public, bad signature", path: "/public", token: evil, allow: true},
		{name: "public, alg none", path: "/public", token: none, allow: true},
		{name: "public, expired", path: "/public/x", token: expired, allow: true},
		{name: "public, garbage", path: "/public", token: "garbage", allow: true},
		{name: "public, good token", path: "/public", token: valid, allow: true,
			claims: map[string]string{"sub": subject, "email": "user@example.com", PayloadClaim: payloadOf(valid)}},
		{name: "public, token without sub", path: "/public", token: noSub, allow: true,
			claims: map[string]string{PayloadClaim: payloadOf(noSub)}},
		{name: "protected, good token", path: "/protected", token: valid, allow: true,
			claims: map[string]string{"sub": subject, "email": "user@example.com", PayloadClaim: payloadOf(valid)}},
		{name: "protected, token without sub", path: "/protected", token: noSub, allow: true,
			claims: map[string]string{PayloadClaim: payloadOf(noSub)}},
		{name: "protected, sub with a line break", path: "/protected", token: crlfSub, allow: true,
			claims: map[string]string{PayloadClaim: payloadOf(crlfSub)}},
		{name: "scoped, good token", path: "/admin/x", token: admin, allow: true,
			claims: map[string]string{"sub": subject, PayloadClaim: payloadOf(admin)}},
		{name: "protected, no token", path: "/protected"},
		{name: "protected, bad signature", path: "/protected", token: evil},
		{name: "protected, alg none", path: "/protected", token: none},
		{name: "protected, expired", path: "/protected", token: expired},
		{name: "scoped, lacking the scope", path: "/admin", token: valid},
		{name: "out of public by dot dot", path: "/public/%2e%2e/protected"},
		{name: "out of public by encoded slash", path: "/public/..%2Fadmin", token: valid},
	}
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			w := newWorld(t, func(c *Config) { c.ClaimHeaders = cfg.headers })
			client := startGRPC(t, w.srv)
			headerClaims := cfg.headers
			if headerClaims == nil {
				headerClaims = DefaultClaimHeaders()
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					req := httptest.NewRequestWithContext(t.Context(), "GET", "http://api.example.com"+tc.path, nil)
					for _, h := range spoofedHeaders {
						req.Header.Add(h[0], h[1])
					}
					if tc.token != "" {
						req.Header.Set("Authorization", "Bearer "+tc.token)
					}
					resp, err := client.Check(t.Context(), standin.BuildCheckRequest(req))
					if err != nil {
						t.Fatalf("Check: %v", err)
					}
					ok := resp.GetOkResponse()
					if allowed := codes.Code(resp.GetStatus().GetCode()) == codes.OK; allowed != tc.allow {
						t.Fatalf("allowed = %v (%v), want %v", allowed, resp.GetStatus(), tc.allow)
					}
					if !tc.allow {
						if ok != nil {
							t.Errorf("a denial carries an OkHttpResponse: %v", ok)
						}
						return // Envoy answers the client; nothing reaches the upstream.
					}
					checkOverwrites(t, ok)

					upstream := req.Header.Clone()
					if err := standin.ApplyOK(upstream, ok); err != nil {
						t.Fatalf("ApplyOK: %v", err)
					}
					for name, claim := range headerClaims {
						got := valuesLike(upstream, name)
						want, verified := tc.claims[claim]
						switch {
						case verified && !slices.Equal(got, []string{want}):
							t.Errorf("upstream %s (any spelling) = %q, want only the verified %q", name, got, want)
						case !verified && len(got) > 0:
							t.Errorf("upstream %s (any spelling) = %q, want nothing", name, got)
						}
					}
					for _, h := range spoofedHeaders {
						for _, v := range upstream.Values(h[0]) {
							if v == h[1] && isClaimHeaderLike(headerClaims, h[0]) {
								t.Errorf("the client's %s: %s reached the upstream", h[0], v)
							}
						}
					}
					if got := upstream.Get("Authorization"); got != req.Header.Get("Authorization") {
						t.Errorf("Authorization changed to %q", got)
					}
				})
			}
		})
	}
}

// valuesLike returns every value of every header a backend may read as
// name: any case, "_" for "-".
func valuesLike(h http.Header, name string) []string {
	var out []string
	for k, vv := range h {
		if lookAlike(k) == lookAlike(name) {
			out = append(out, vv...)
		}
	}
	return out
}

func isClaimHeaderLike(claims map[string]string, name string) bool {
	for h := range claims {
		if lookAlike(h) == lookAlike(name) {
			return true
		}
	}
	return false
}

// checkOverwrites asserts the structural anti-spoofing rules of an
// OkHttpResponse: no name is both set and removed, and every set header
// overwrites on every Envoy release (append false, which older releases
// read, and append_action OVERWRITE_IF_EXISTS_OR_ADD, which newer ones read
// when append is unset).
func checkOverwrites(t *testing.T, ok *authv3.OkHttpResponse) {
	t.Helper()
	removed := map[string]bool{}
	for _, r := range ok.GetHeadersToRemove() {
		removed[strings.ToLower(r)] = true
	}
	for _, o := range ok.GetHeaders() {
		name := strings.ToLower(o.GetHeader().GetKey())
		if removed[name] {
			t.Errorf("%s is in both headers and headers_to_remove", name)
		}
		//nolint:staticcheck // The deprecated field is what older Envoys read.
		if a := o.GetAppend(); a == nil || a.GetValue() {
			t.Errorf("%s: append = %v, want false", name, a)
		}
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s: append_action = %v, want OVERWRITE_IF_EXISTS_OR_ADD", name, o.GetAppendAction())
		}
	}
	if len(ok.GetResponseHeadersToAdd()) > 0 || len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		t.Errorf("unexpected mutations: %v", ok)
	}
}

// TestSpoofHarnessCatchesAppend proves that the applier used above would
// catch a server that forgot to overwrite: an option with append unset and
// the zero append_action keeps the client's value next to the new one.
func TestSpoofHarnessCatchesAppend(t *testing.T) {
	tests := []struct {
		name      string
		opt       *corev3.HeaderValueOption
		remove    []string
		wantSpoof bool
	}{
		{name: "zero append_action appends", opt: &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-jwt-sub", Value: subject}}, wantSpoof: true},
		{name: "set then removed", opt: &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-jwt-sub", Value: subject},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}, remove: []string{"x-jwt-sub"}},
		{name: "what CheckResponse sends", opt: CheckResponse(Decision{Reason: Allowed, Headers: []Header{{Name: "x-jwt-sub", Value: subject}}}).GetOkResponse().GetHeaders()[0]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			h.Add("x-jwt-sub", "admin")
			if err := standin.ApplyOK(h, &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{tc.opt}, HeadersToRemove: tc.remove}); err != nil {
				t.Fatalf("ApplyOK: %v", err)
			}
			if spoofed := slices.Contains(h.Values("x-jwt-sub"), "admin"); spoofed != tc.wantSpoof {
				t.Errorf("client value survives = %v, want %v (headers %v)", spoofed, tc.wantSpoof, h)
			}
		})
	}
}

// TestSpoofingForwardAuth is the same rule for the HTTP forward-auth mode:
// the claim headers of the answer are exactly the verified ones, and every
// other configured claim header is named in x-envoy-auth-headers-to-remove.
func TestSpoofingForwardAuth(t *testing.T) {
	valid := mint(t, tokenSpec{})
	noSub := mint(t, tokenSpec{claims: with(claimsA(), "sub", nil)})
	tests := []struct {
		name       string
		path       string
		token      string
		wantSub    string
		wantRemove string
	}{
		{name: "public, no token", path: "/public", wantRemove: "x-jwt-payload,x-jwt-sub"},
		{name: "public, good token", path: "/public", token: valid, wantSub: subject},
		{name: "protected, good token", path: "/protected", token: valid, wantSub: subject},
		{name: "protected, token without sub", path: "/protected", token: noSub, wantRemove: "x-jwt-sub"},
	}
	w := newWorld(t, nil)
	ts := startHTTP(t, w.srv)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{"X-Original-Uri": {tc.path}}
			for _, h := range spoofedHeaders {
				hdr.Add(h[0], h[1])
			}
			if tc.token != "" {
				hdr.Set("Authorization", "Bearer "+tc.token)
			}
			got := doHTTP(t, ts, "GET", "/auth", hdr)
			if got.status != 200 {
				t.Fatalf("status = %d", got.status)
			}
			if v := got.header.Values("X-Jwt-Sub"); (tc.wantSub == "" && len(v) > 0) || (tc.wantSub != "" && !slices.Equal(v, []string{tc.wantSub})) {
				t.Errorf("X-Jwt-Sub = %q, want %q", v, tc.wantSub)
			}
			if v := got.header.Get("X-Envoy-Auth-Headers-To-Remove"); v != tc.wantRemove {
				t.Errorf("X-Envoy-Auth-Headers-To-Remove = %q, want %q", v, tc.wantRemove)
			}
			for k := range got.header {
				if lookAlike(k) == "x-jwt-sub" && k != "X-Jwt-Sub" {
					t.Errorf("answer carries %s", k)
				}
			}
		})
	}
}
