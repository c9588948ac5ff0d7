package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/config"
)

// readmeCase is one request against a README policy example.
type readmeCase struct {
	name       string
	method     string
	path       string
	host       string
	claims     jwt.MapClaims // nil: no token
	headers    map[string]string
	context    map[string]string
	principal  string
	wantStatus int // 200 for an allow
	wantReason string
}

// TestREADMEPolicies: every example of the README's Policies section,
// loaded from the README as a config file (with a provider added), behaves
// as the README says through the running server's gRPC check.
func TestREADMEPolicies(t *testing.T) {
	examples := readmeExamples(t)
	with := func(kv ...any) jwt.MapClaims {
		c := claims("alice")
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	cases := map[string][]readmeCase{
		"read-write": {
			{name: "read with read", method: "GET", path: "/messages/1", claims: with("scope", "read:messages"), wantStatus: 200},
			{name: "write with read", method: "POST", path: "/messages", claims: with("scope", "read:messages"), wantStatus: 403, wantReason: "insufficient_scope"},
			{name: "write with write", method: "PATCH", path: "/messages/1", claims: with("scope", "write:messages"), wantStatus: 200},
			{name: "write through dot segments", method: "DELETE", path: "/x/%2e%2e/messages", claims: with("scope", "read:messages"), wantStatus: 403, wantReason: "insufficient_scope"},
		},
		"roles": {
			{name: "Keycloak ops", path: "/admin", claims: with("realm_access", map[string]any{"roles": []string{"ops"}}, "email_verified", true), wantStatus: 200},
			{name: "Keycloak user", path: "/admin", claims: with("realm_access", map[string]any{"roles": []string{"user"}}, "email_verified", true), wantStatus: 403, wantReason: "policy_denied"},
			{name: "Keycloak unverified email", path: "/admin", claims: with("realm_access", map[string]any{"roles": []string{"admin"}}, "email_verified", "true"), wantStatus: 403, wantReason: "policy_denied"},
			{name: "Auth0 billing", path: "/billing/x", claims: with("https://example.com/roles", []string{"viewer", "billing"}), wantStatus: 200},
			{name: "Auth0 viewer", path: "/billing", claims: with("https://example.com/roles", []string{"viewer"}), wantStatus: 403, wantReason: "policy_denied"},
			{name: "no token", path: "/admin", wantStatus: 401, wantReason: "missing_token"},
		},
		"tenant": {
			{name: "own tenant", path: "/tenants/t1/orders", claims: with("tenant", "t1"), headers: map[string]string{"x-tenant-id": "t1"}, wantStatus: 200},
			{name: "other tenant's path", path: "/tenants/t2/orders", claims: with("tenant", "t1"), headers: map[string]string{"x-tenant-id": "t1"}, wantStatus: 403, wantReason: "policy_denied"},
			{name: "other tenant's header", path: "/tenants/t1/orders", claims: with("tenant", "t1"), headers: map[string]string{"x-tenant-id": "t2"}, wantStatus: 403, wantReason: "policy_denied"},
			{name: "dot segments into another tenant", path: "/tenants/t1/../t2/orders", claims: with("tenant", "t1"), headers: map[string]string{"x-tenant-id": "t1"}, wantStatus: 403, wantReason: "policy_denied"},
			{name: "no header", path: "/tenants/t1/orders", claims: with("tenant", "t1"), wantStatus: 403, wantReason: "policy_error"},
		},
		"per-route": {
			{name: "admin route with admin", path: "/anything", context: map[string]string{"policy": "admin"}, claims: with("scope", "admin"), wantStatus: 200},
			{name: "admin route without admin", path: "/anything", context: map[string]string{"policy": "admin"}, claims: with("scope", "read"), wantStatus: 403, wantReason: "insufficient_scope"},
			{name: "a route naming no such policy", path: "/anything", context: map[string]string{"policy": "admni"}, claims: with("scope", "admin"), wantStatus: 500, wantReason: "unknown_policy"},
			{name: "other routes: the path rules", path: "/anything", claims: with("scope", "read"), wantStatus: 200},
		},
		"istio-service": {
			{name: "checkout", path: "/payments", principal: "spiffe://cluster.local/ns/shop/sa/checkout", claims: with(), wantStatus: 200},
			{name: "cart", path: "/payments", principal: "spiffe://cluster.local/ns/shop/sa/cart", claims: with(), wantStatus: 403, wantReason: "policy_denied"},
			{name: "outside the mesh", path: "/payments", claims: with(), wantStatus: 403, wantReason: "policy_denied"},
		},
		"deny": {
			{name: "with a token", path: "/internal/x", claims: with("scope", "admin"), wantStatus: 403, wantReason: "policy_denied"},
			{name: "without", path: "/INTERNAL", wantStatus: 403, wantReason: "policy_denied"},
		},
	}
	for name := range cases {
		if _, ok := examples[name]; !ok {
			t.Errorf("README has no policy example %q", name)
		}
	}
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	for name, body := range examples {
		t.Run(name, func(t *testing.T) {
			tcs, ok := cases[name]
			if !ok {
				t.Fatalf("README example %q has no test cases here", name)
			}
			file := filepath.Join(t.TempDir(), "policy.yaml")
			provider := "issuer: " + testIssuer + "\naudience: " + testAudience + "\njwks_url: " + js.url() + "\n"
			if err := os.WriteFile(file, []byte(provider+body), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load([]string{"--config", file, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
				func(string) (string, bool) { return "", false }, nil)
			if err != nil {
				t.Fatalf("the README example does not load: %v", err)
			}
			h := start(t, cfg)
			h.waitReady()
			for _, tc := range tcs {
				t.Run(tc.name, func(t *testing.T) {
					method, host := tc.method, tc.host
					if method == "" {
						method = "GET"
					}
					if host == "" {
						host = "api.example.com"
					}
					hs := map[string]string{":path": tc.path, ":method": method, ":authority": host}
					for k, v := range tc.headers {
						hs[k] = v
					}
					if tc.claims != nil {
						hs["authorization"] = "Bearer " + mint(t, k, tc.claims)
					}
					req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
						Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
							Method: method, Path: tc.path, Host: host, Headers: hs}},
						ContextExtensions: tc.context,
						Source:            &authv3.AttributeContext_Peer{Principal: tc.principal},
					}}
					ctx, cancel := context.WithTimeout(context.Background(), waitLong)
					defer cancel()
					resp, err := h.authz.Check(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					status := 200
					if d := resp.GetDeniedResponse(); d != nil {
						status = int(d.GetStatus().GetCode())
					}
					if status != tc.wantStatus || tc.wantReason != "" && resp.GetStatus().GetMessage() != tc.wantReason {
						t.Errorf("%d %q, want %d %q", status, resp.GetStatus().GetMessage(), tc.wantStatus, tc.wantReason)
					}
				})
			}
		})
	}
}

// readmeExamples returns the YAML blocks of the README that follow an
// "<!-- example: NAME -->" line, by name.
func readmeExamples(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	lines := strings.Split(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		name, ok := strings.CutPrefix(lines[i], "<!-- example: ")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, " -->")
		if i+1 >= len(lines) || lines[i+1] != "```yaml" {
			t.Fatalf("README example %q is not followed by a yaml block", name)
		}
		var body strings.Builder
		for i += 2; i < len(lines) && lines[i] != "```"; i++ {
			body.WriteString(lines[i] + "\n")
		}
		out[name] = body.String()
	}
	if len(out) == 0 {
		t.Fatal("README has no policy examples")
	}
	return out
}
