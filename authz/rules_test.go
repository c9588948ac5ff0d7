package authz

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// policyRules are the example rules.
var policyRules2 = []Rule{
	{Path: "/messages", Methods: []string{"GET", "HEAD"}, Scopes: []string{"read:messages"}},
	{Path: "/messages", Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, Scopes: []string{"write:messages"}},
	{Path: "/admin", Hosts: []string{"admin.example.com"}, Claims: map[string]any{"realm_access.roles": []any{"admin", "ops"}, "email_verified": true}},
	{Path: "/tenants", When: `request.path.startsWith("/tenants/" + claims.tenant + "/") && claims.tenant == request.headers["x-tenant-id"]`},
	{Path: "/internal", Deny: true},
	{Path: "/roles", Claims: map[string]any{"https://example.com/roles": "editor"}},
	{Path: "/broken", When: `claims.missing == "x"`},
	{Path: "/public", Public: true},
}

var namedPolicies = map[string]Rule{
	"admin":   {Scopes: []string{"admin"}},
	"service": {When: `source.principal == "spiffe://cluster.local/ns/shop/sa/checkout"`},
	"writers": {Methods: []string{"POST"}, Scopes: []string{"write:messages"}},
}

// policyWorld is a world with the example rules whose provider A is
// cacheable, so that a repeated check answers from the token cache.
func policyWorld(t testing.TB, mutate func(*Config)) world {
	cw := newCacheWorld(t, func(c *Config) {
		c.Rules = policyRules2
		c.Policies = namedPolicies
		c.MetadataClaims = []string{"tenant", "realm_access.roles"}
		c.ForwardAuthSource = SourceOriginal
		for i := range c.Providers {
			c.Providers[i].ForwardToken = false
		}
		if mutate != nil {
			mutate(c)
		}
	})
	return world{srv: cw.srv}
}

func tokenWith(t testing.TB, kv ...any) string {
	return mint(t, tokenSpec{claims: with(claimsA(), kv...)})
}

// TestPolicyRules: every rule kind and denial, through Decide, Check (gRPC)
// and ServeHTTP (forward auth, nginx's header family).
func TestPolicyRules(t *testing.T) {
	w := policyWorld(t, nil)
	reader := tokenWith(t, "scope", "read:messages")
	writer := tokenWith(t, "scope", "write:messages")
	keycloakAdmin := tokenWith(t, "realm_access", map[string]any{"roles": []string{"user", "ops"}}, "email_verified", true)
	keycloakUser := tokenWith(t, "realm_access", map[string]any{"roles": []string{"user"}}, "email_verified", true)
	unverified := tokenWith(t, "realm_access", map[string]any{"roles": []string{"admin"}}, "email_verified", "true")
	tenant1 := tokenWith(t, "tenant", "t1")
	auth0Editor := tokenWith(t, "https://example.com/roles", []string{"viewer", "editor"})
	tests := []struct {
		name, method, path, host, token string
		headers                         map[string]string
		want                            Reason
	}{
		{name: "read by GET", method: "GET", path: "/messages", token: reader, want: Allowed},
		{name: "read by HEAD", method: "HEAD", path: "/messages/1", token: reader, want: Allowed},
		{name: "write needs write", method: "POST", path: "/messages", token: reader, want: InsufficientScope},
		{name: "write with write", method: "DELETE", path: "/messages/1", token: writer, want: Allowed},
		{name: "read with write only", method: "GET", path: "/messages", token: writer, want: InsufficientScope},
		{name: "lower-case post is read as POST too", method: "post", path: "/messages", token: reader, want: InsufficientScope},
		{name: "method rule through dot segments", method: "POST", path: "/public/%2e%2e/messages", token: reader, want: InsufficientScope},
		{name: "method rule through case", method: "POST", path: "/MESSAGES", token: reader, want: InsufficientScope},
		{name: "method rule through a suffix", method: "POST", path: "/messages.json", token: reader, want: InsufficientScope},
		{name: "OPTIONS meets neither method rule", method: "OPTIONS", path: "/messages", token: reader, want: Allowed},
		{name: "Keycloak role on the admin host", method: "GET", path: "/admin", host: "admin.example.com:443", token: keycloakAdmin, want: Allowed},
		{name: "Keycloak user on the admin host", method: "GET", path: "/admin", host: "ADMIN.example.com", token: keycloakUser, want: PolicyDenied},
		{name: "string true is not true", method: "GET", path: "/admin/x", host: "admin.example.com", token: unverified, want: PolicyDenied},
		{name: "host rule through dot segments", method: "GET", path: "/public/../admin", host: "admin.example.com", token: keycloakUser, want: PolicyDenied},
		{name: "host rule through case", method: "GET", path: "/Admin", host: "admin.example.com", token: keycloakUser, want: PolicyDenied},
		{name: "another host is not the admin host", method: "GET", path: "/admin", host: "api.example.com", token: keycloakUser, want: Allowed},
		{name: "tenant in path and header", method: "GET", path: "/tenants/t1/orders", token: tenant1, headers: map[string]string{"x-tenant-id": "t1"}, want: Allowed},
		{name: "another tenant's path", method: "GET", path: "/tenants/t2/orders", token: tenant1, headers: map[string]string{"x-tenant-id": "t1"}, want: PolicyDenied},
		{name: "another tenant's header", method: "GET", path: "/tenants/t1/orders", token: tenant1, headers: map[string]string{"x-tenant-id": "t2"}, want: PolicyDenied},
		{name: "tenant through dot segments", method: "GET", path: "/tenants/t1/../t2/orders", token: tenant1, headers: map[string]string{"x-tenant-id": "t1"}, want: PolicyDenied},
		{name: "no tenant header: an evaluation error", method: "GET", path: "/tenants/t1/orders", token: tenant1, want: PolicyError},
		{name: "deny with a token", method: "GET", path: "/internal", token: writer, want: PolicyDenied},
		{name: "deny without a token", method: "GET", path: "/internal/x", want: PolicyDenied},
		{name: "deny through case", method: "GET", path: "/INTERNAL", want: PolicyDenied},
		{name: "Auth0 namespaced role", method: "GET", path: "/roles", token: auth0Editor, want: Allowed},
		{name: "Auth0 namespaced role missing", method: "GET", path: "/roles", token: reader, want: PolicyDenied},
		{name: "condition on a missing claim", method: "GET", path: "/broken", token: reader, want: PolicyError},
		{name: "missing token on a claims rule", method: "GET", path: "/roles", want: MissingToken},
		{name: "public", method: "GET", path: "/public", want: Public},
	}
	ts := startHTTP(t, w.srv)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == "" {
				host = "api.example.com"
			}
			r := Request{Method: tc.method, Path: tc.path, Host: host, Headers: tc.headers}
			if tc.token != "" {
				r.Authorization = bearer(tc.token)
			}
			for i := range 2 { // the second from the token cache
				if d := w.srv.Decide(t.Context(), r); d.Reason != tc.want {
					t.Errorf("Decide #%d = %q, want %q", i+1, d.Reason, tc.want)
				}
			}
			if st := w.srv.CacheStats(); tc.token != "" && tc.want != PolicyDenied && st.Hits == 0 && tc.path != "/internal" {
				t.Errorf("no cache hit: %+v", st)
			}
			extra := []string{":authority", host}
			for k, v := range tc.headers {
				extra = append(extra, k, v)
			}
			req := checkRequest(tc.path, nil)
			req.Attributes.Request.Http.Method, req.Attributes.Request.Http.Host = tc.method, host
			req.Attributes.Request.Http.Headers = map[string]string{":path": tc.path}
			for i := 0; i+1 < len(extra); i += 2 {
				req.Attributes.Request.Http.Headers[extra[i]] = extra[i+1]
			}
			if tc.token != "" {
				req.Attributes.Request.Http.Headers["authorization"] = "Bearer " + tc.token
			}
			resp := mustCheck(t, w.srv, req)
			if got := reasonOfResponse(resp); got != tc.want {
				t.Errorf("Check = %q, want %q", got, tc.want)
			}
			if tc.want.Allow() {
				return
			}
			if got := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue(); got != string(tc.want) {
				t.Errorf("dynamic metadata reason %q, want %q", got, tc.want)
			}
			h := http.Header{"X-Original-Uri": {tc.path}, "X-Original-Method": {tc.method}, "X-Original-Host": {host}}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			if tc.token != "" {
				h.Set("Authorization", "Bearer "+tc.token)
			}
			res := doHTTP(t, ts, "GET", "/_extauthz", h)
			if res.status != tc.want.Status() {
				t.Errorf("ServeHTTP = %d, want %d", res.status, tc.want.Status())
			}
			if tc.want == PolicyDenied || tc.want == PolicyError {
				if res.body != `{"error":"Access denied"}` || res.header.Get("Www-Authenticate") != `Bearer realm="extauthz", error="insufficient_scope"` {
					t.Errorf("ServeHTTP body %q, challenge %q", res.body, res.header.Get("Www-Authenticate"))
				}
			}
		})
	}
}

func mustCheck(t *testing.T, srv *Server, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := srv.Check(t.Context(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func reasonOfResponse(resp *authv3.CheckResponse) Reason {
	if resp.GetOkResponse() != nil {
		if resp.GetDynamicMetadata() == nil {
			return Public // no token, so no metadata
		}
		return Allowed
	}
	return Reason(resp.GetStatus().GetMessage())
}

// TestNamedPolicies: Envoy's route chooses a policy by
// context_extensions["policy"]; the path rules are not consulted; an
// unknown name is a 500 with one ERROR line per name and minute.
func TestNamedPolicies(t *testing.T) {
	buf, logger := newLogBuffer()
	w := policyWorld(t, func(c *Config) { c.Logger = logger })
	admin := tokenWith(t, "scope", "admin")
	reader := tokenWith(t, "scope", "read:messages")
	writer := tokenWith(t, "scope", "write:messages")
	tests := []struct {
		name, policy, method, path, token, principal string
		want                                         Reason
	}{
		{name: "admin policy", policy: "admin", path: "/anything", token: admin, want: Allowed},
		{name: "admin policy without the scope", policy: "admin", path: "/anything", token: reader, want: InsufficientScope},
		{name: "path rules not consulted", policy: "admin", path: "/internal", token: admin, want: Allowed},
		{name: "service by principal", policy: "service", path: "/pay", token: reader, principal: "spiffe://cluster.local/ns/shop/sa/checkout", want: Allowed},
		{name: "another service", policy: "service", path: "/pay", token: reader, principal: "spiffe://cluster.local/ns/shop/sa/cart", want: PolicyDenied},
		{name: "policy's method", policy: "writers", method: "POST", path: "/m", token: writer, want: Allowed},
		{name: "another method is denied", policy: "writers", method: "GET", path: "/m", token: writer, want: PolicyDenied},
		{name: "unknown policy", policy: "nope", path: "/public", token: admin, want: UnknownPolicy},
		{name: "unknown policy again", policy: "nope", path: "/public", want: UnknownPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			req := checkRequest(tc.path, map[string]string{"authorization": "Bearer " + tc.token})
			if tc.token == "" {
				req = checkRequest(tc.path, nil)
			}
			req.Attributes.Request.Http.Method = method
			req.Attributes.ContextExtensions = map[string]string{"policy": tc.policy}
			req.Attributes.Source = &authv3.AttributeContext_Peer{Principal: tc.principal}
			resp := mustCheck(t, w.srv, req)
			if got := reasonOfResponse(resp); got != tc.want {
				t.Errorf("Check = %q, want %q", got, tc.want)
			}
			if tc.want == UnknownPolicy && (resp.GetDeniedResponse().GetStatus().GetCode() != 500 || resp.GetDeniedResponse().GetBody() != `{"error":"Unknown policy"}`) {
				t.Errorf("unknown policy answered %v", resp.GetDeniedResponse())
			}
		})
	}
	if n := strings.Count(buf.String(), `"policy":"nope"`); n != 1 {
		t.Errorf("%d ERROR lines for the unknown policy, want 1 (once per name per minute):\n%s", n, buf.String())
	}
}

// TestDynamicMetadata: an allowed CheckResponse carries sub, iss, provider,
// scope and the metadata claims, for Envoy's other filters.
func TestDynamicMetadata(t *testing.T) {
	w := policyWorld(t, nil)
	tok := tokenWith(t, "scope", "read:messages extra", "tenant", "t1", "realm_access", map[string]any{"roles": []string{"a", "b"}})
	withHost := func(r *authv3.CheckRequest) *authv3.CheckRequest {
		r.Attributes.Request.Http.Host = "api.example.com"
		return r
	}
	for i := range 2 {
		resp := mustCheck(t, w.srv, withHost(checkRequest("/messages", map[string]string{"authorization": "Bearer " + tok})))
		f := resp.GetDynamicMetadata().GetFields()
		if f["sub"].GetStringValue() != subject || f["iss"].GetStringValue() != issuerA || f["provider"].GetStringValue() != "a" ||
			f["scope"].GetStringValue() != "read:messages extra" || f["tenant"].GetStringValue() != "t1" ||
			len(f["realm_access.roles"].GetListValue().GetValues()) != 2 {
			t.Errorf("#%d: dynamic metadata %v", i+1, resp.GetDynamicMetadata())
		}
	}
	resp := mustCheck(t, w.srv, withHost(checkRequest("/public", nil)))
	if resp.GetDynamicMetadata() != nil {
		t.Errorf("an anonymous public allow carries metadata %v", resp.GetDynamicMetadata())
	}
}

// TestForwardToken: by default the token is removed before the upstream on
// allow (gRPC headers_to_remove, HTTP X-Envoy-Auth-Headers-To-Remove); with
// forward_token it stays.
func TestForwardToken(t *testing.T) {
	for _, forward := range []bool{false, true} {
		w := newWorld(t, func(c *Config) {
			c.ForwardAuthSource = SourceRequest
			for i := range c.Providers {
				c.Providers[i].ForwardToken = forward
			}
		})
		tok := mint(t, tokenSpec{})
		resp := mustCheck(t, w.srv, checkRequest("/protected", map[string]string{"authorization": "Bearer " + tok}))
		removed := false
		for _, h := range resp.GetOkResponse().GetHeadersToRemove() {
			removed = removed || h == "authorization"
		}
		res := doHTTP(t, startHTTP(t, w.srv), "GET", "/protected", http.Header{"Authorization": bearer(tok)})
		httpRemoved := strings.Contains(res.header.Get("X-Envoy-Auth-Headers-To-Remove"), "authorization")
		if removed == forward || httpRemoved == forward {
			t.Errorf("forward_token %v: gRPC removes authorization %v, HTTP %v", forward, removed, httpRemoved)
		}
		// On a public path, an unverified token (another API's, say) is
		// not forwarded either; without one, nothing is named.
		for _, tc := range []struct {
			auth string
			want bool
		}{{"Bearer " + mint(t, tokenSpec{key: testKeys().keyEvil}), !forward}, {"", false}} {
			hs := map[string]string{}
			if tc.auth != "" {
				hs["authorization"] = tc.auth
			}
			resp := mustCheck(t, w.srv, checkRequest("/public", hs))
			if got := slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization"); got != tc.want {
				t.Errorf("forward_token %v, public, token %v: removes authorization %v", forward, tc.auth != "", got)
			}
		}
	}
}

// TestMethodAndHostMustBeKnown: with method or host rules, a forward-auth
// check whose front does not say the original method or host is denied
// (400), never judged as the subrequest's GET or the server's own host.
func TestMethodAndHostMustBeKnown(t *testing.T) {
	w := policyWorld(t, nil)
	ts := startHTTP(t, w.srv)
	tok := tokenWith(t, "scope", "read:messages")
	for _, tc := range []struct {
		name string
		h    http.Header
		body string
	}{
		{name: "no method", h: http.Header{"X-Original-Uri": {"/messages"}, "X-Original-Host": {"api.example.com"}}, body: msgNoMethod},
		{name: "no host", h: http.Header{"X-Original-Uri": {"/messages"}, "X-Original-Method": {"POST"}}, body: msgNoHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.h.Set("Authorization", "Bearer "+tok)
			res := doHTTP(t, ts, "GET", "/_extauthz", tc.h)
			if res.status != 400 || !strings.Contains(res.body, tc.body) {
				t.Errorf("status %d body %q, want 400 %q", res.status, res.body, tc.body)
			}
		})
	}
}

// TestPolicyConfigErrors: refused combinations and bad conditions stop New.
func TestPolicyConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{name: "public with claims", cfg: func(c *Config) { c.Rules = []Rule{{Path: "/x", Public: true, Claims: map[string]any{"a": "b"}}} }, want: "public rule cannot require claims"},
		{name: "public with when", cfg: func(c *Config) { c.Rules = []Rule{{Path: "/x", Public: true, When: "true"}} }, want: "public rule cannot have a when"},
		{name: "bad CEL", cfg: func(c *Config) { c.Rules = []Rule{{Path: "/x", When: "claims.a ==", Where: "f.yaml:3"}} }, want: "f.yaml:3: when:"},
		{name: "policy with a path", cfg: func(c *Config) { c.Policies = map[string]Rule{"p": {Path: "/x"}} }, want: "has no path"},
		{name: "shadowed rule", cfg: func(c *Config) { c.Rules = []Rule{{Path: "/a"}, {Path: "/a/b", Scopes: []string{"s"}}} }, want: "never used"},
		{name: "method rule does not shadow", cfg: func(c *Config) {
			c.Rules = []Rule{{Path: "/a", Methods: []string{"GET"}}, {Path: "/a", Scopes: []string{"s"}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(newFakeKeys(), newFakeKeys())
			tc.cfg(&cfg)
			_, err := New(cfg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("New = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestTakeOverKeepsClaimsForRules: a reload that adds the first rule reading
// claims does not take over entries verified without them (the condition
// would see no claims on a cache hit); one that keeps such rules does.
func TestTakeOverKeepsClaimsForRules(t *testing.T) {
	k := testKeys()
	keysA := &versionedFake{fakeKeys: newFakeKeys(kidA, &k.keyA.PublicKey)}
	keysB := newFakeKeys(kidB, &k.keyB.PublicKey)
	build := func(prev *Server, when string) *Server {
		cfg := baseConfig(keysA, keysB)
		cfg.Rules = []Rule{{Path: "/tenant", When: when}}
		cfg.Previous = prev
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	r := Request{Path: "/tenant", Host: "api.example.com", Authorization: bearer(mint(t, tokenSpec{}))}
	first := build(nil, "")
	if d := first.Decide(t.Context(), r); d.Reason != Allowed {
		t.Fatal(d.Reason)
	}
	cel := `claims.sub == "` + subject + `"`
	if same := build(first, ""); !same.SharesTokenCache(first) {
		t.Fatalf("a reload changing nothing dropped the cache")
	}
	next := build(first, cel)
	if next.SharesTokenCache(first) {
		t.Errorf("the first claims-reading rule took over a cache without claims")
	}
	if d := next.Decide(t.Context(), r); d.Reason != Allowed {
		t.Errorf("after the reload: %q, want allowed", d.Reason)
	}
	again := build(next, cel)
	if !again.SharesTokenCache(next) {
		t.Errorf("a reload keeping the claims-reading rules dropped the cache")
	}
	if d := again.Decide(t.Context(), r); d.Reason != Allowed || again.CacheStats().Hits == 0 {
		t.Errorf("from the taken-over cache: %q (%+v), want allowed from a hit", d.Reason, again.CacheStats())
	}
}
