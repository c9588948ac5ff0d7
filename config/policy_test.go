package config

import (
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestLoadPolicies: the rule language's keys, named policies, metadata
// claims and forward_token reach the Config.
func TestLoadPolicies(t *testing.T) {
	path := writeConfig(t, `issuer: https://i.example.com
audience: a
metadata_claims: [email, tenant]
rules:
  - path: /messages
    methods: [GET, HEAD]
    scopes: [read:messages]
  - path: /admin
    hosts: [admin.example.com]
    claims:
      realm_access.roles: [admin, ops]
      email_verified: true
    when: 'claims.tenant == request.headers["x-tenant-id"]'
  - path: /internal
    deny: true
policies:
  admin:
    scopes: [admin]
`)
	cfg, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Path: "/messages", Methods: []string{"GET", "HEAD"}, Scopes: []string{"read:messages"}},
		{Path: "/admin", Hosts: []string{"admin.example.com"}, Claims: map[string]any{"realm_access.roles": []any{"admin", "ops"}, "email_verified": true},
			When: `claims.tenant == request.headers["x-tenant-id"]`},
		{Path: "/internal", Deny: true},
	}
	if !reflect.DeepEqual(cfg.Rules, want) {
		t.Errorf("rules = %+v, want %+v", cfg.Rules, want)
	}
	if p := cfg.Policies["admin"]; !reflect.DeepEqual(p.Scopes, []string{"admin"}) || len(cfg.Policies) != 1 {
		t.Errorf("policies = %+v", cfg.Policies)
	}
	if !reflect.DeepEqual(cfg.MetadataClaims, []string{"email", "tenant"}) {
		t.Errorf("metadata claims = %q", cfg.MetadataClaims)
	}

	path = writeConfig(t, "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    forward_token: true\n  - issuer: https://b.example.com\n    audiences: [b]\n")
	cfg, err = Load([]string{"--config", path}, env{}.lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Providers[0].ForwardToken || cfg.Providers[1].ForwardToken {
		t.Errorf("forward_token = %v, %v; want true, false (the default)", cfg.Providers[0].ForwardToken, cfg.Providers[1].ForwardToken)
	}
}

// TestLoadPolicyErrors: every mistake in a rule or policy stops Load (so the
// start, and a reload) with the file line and what is wrong.
func TestLoadPolicyErrors(t *testing.T) {
	single := "issuer: https://i.example.com\naudience: a\n"
	tests := []struct {
		name  string
		body  string
		line  int
		wants []string
	}{
		{name: "unknown rule field", body: single + "rules:\n  - path: /a\n    method: [GET]\n", line: 5, wants: []string{"method"}},
		{name: "bad CEL", body: single + "rules:\n  - path: /ok\n  - path: /a\n    when: 'claims.tenant =='\n", line: 5, wants: []string{"rules[1]", "when:"}},
		{name: "CEL not bool", body: single + "rules:\n  - path: /a\n    when: 'scopes.size()'\n", line: 4, wants: []string{"rules[0]", "not bool"}},
		{name: "public with claims", body: single + "rules:\n  - path: /a\n    public: true\n    claims: {sub: x}\n", line: 4, wants: []string{"public", "claims"}},
		{name: "public with when", body: single + "rules:\n  - path: /a\n    public: true\n    when: 'true'\n", line: 4, wants: []string{"public", "when"}},
		{name: "deny with scopes", body: single + "rules:\n  - path: /a\n    deny: true\n    scopes: [x]\n", line: 4, wants: []string{"deny"}},
		{name: "lower-case method", body: single + "rules:\n  - path: /a\n    methods: [get]\n", line: 4, wants: []string{"get"}},
		{name: "host with port", body: single + "rules:\n  - path: /a\n    hosts: [\"a.example.com:443\"]\n", line: 4, wants: []string{"port"}},
		{name: "claim object", body: single + "rules:\n  - path: /a\n    claims: {a: {b: c}}\n", line: 4, wants: []string{"claims"}},
		{name: "shadowed rule", body: single + "rules:\n  - path: /a\n  - path: /a/b\n    scopes: [x]\n", line: 5, wants: []string{"rules[1]", "never used"}},
		{name: "policy with a path", body: single + "policies:\n  p:\n    path: /a\n", line: 4, wants: []string{"policies.p", "no path"}},
		{name: "policy bad CEL", body: single + "policies:\n  ok:\n    scopes: [a]\n  bad:\n    when: 'nope('\n", line: 6, wants: []string{"policies.bad", "when:"}},
		{name: "unknown policy field", body: single + "policies:\n  p:\n    scope: [a]\n", line: 5, wants: []string{"scope"}},
		{name: "empty metadata claim", body: single + "metadata_claims: [sub, \"\"]\n", line: 3, wants: []string{"metadata_claims[1]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			_, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
			if err == nil {
				t.Fatal("Load = nil error")
			}
			msg := err.Error()
			if at := path + ":" + strconv.Itoa(tc.line) + ":"; !strings.Contains(msg, at) {
				t.Errorf("error %q does not name %q", msg, at)
			}
			for _, w := range tc.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestLoadRealmError: a realm that cannot stand in a challenge is a file
// error with its line, as every other (authz.New used to find it, with no
// location).
func TestLoadRealmError(t *testing.T) {
	path := writeConfig(t, "issuer: https://i.example.com\naudience: a\nrealm: 'say \"hi\"'\n")
	_, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
	if err == nil || !strings.Contains(err.Error(), path+":3:") || !strings.Contains(err.Error(), "realm") {
		t.Errorf("Load = %v, want an error naming %s:3 and realm", err, path)
	}
}

// TestLoadShadowAndDenyDetail: --enforce=false, a rule's enforce: false and
// --deny-detail reach the Config.
func TestLoadShadowAndDenyDetail(t *testing.T) {
	path := writeConfig(t, "issuer: https://i.example.com\naudience: a\nrules:\n  - path: /new\n    scopes: [x]\n    enforce: false\n  - path: /old\n    scopes: [x]\n")
	cfg, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Rules[0].Shadow || cfg.Rules[1].Shadow || cfg.Shadow || cfg.DenyDetail {
		t.Errorf("rules %+v, shadow %v, deny detail %v", cfg.Rules, cfg.Shadow, cfg.DenyDetail)
	}
	cfg, err = Load([]string{"--config", path, "--enforce=false", "--deny-detail"}, env{}.lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Shadow || !cfg.DenyDetail {
		t.Errorf("--enforce=false --deny-detail: shadow %v, deny detail %v", cfg.Shadow, cfg.DenyDetail)
	}
}

// TestLoadDiscovery: discovery per provider (file) and --oidc-discovery
// (flags); jwks_url with discovery, and discovery_url without it, are
// refused with the file line.
func TestLoadDiscovery(t *testing.T) {
	cfg := load(t, []string{"--issuer", "https://i.example.com", "--audience", "a", "--oidc-discovery"}, env{})
	if p := cfg.Providers[0]; !p.Discovery || p.JWKSURL != "" {
		t.Errorf("--oidc-discovery: %+v", p)
	}
	cfg = load(t, []string{"--oidc-discovery"}, env{"AUTHACTION_DOMAIN": "tenant.example.com", "AUTHACTION_AUDIENCE": "a"})
	if p := cfg.Providers[0]; !p.Discovery || p.JWKSURL != "" || p.Issuer != "https://tenant.example.com" {
		t.Errorf("--oidc-discovery with the guide's variables: %+v", p)
	}
	path := writeConfig(t, "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    discovery: true\n    discovery_url: https://a.example.com/custom/openid-configuration\n")
	cfg = load(t, []string{"--config", path}, env{})
	if p := cfg.Providers[0]; !p.Discovery || p.DiscoveryURL == "" || p.JWKSURL != "" {
		t.Errorf("file discovery: %+v", p)
	}
	for _, tc := range []struct{ name, body, want string }{
		{name: "jwks_url and discovery", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    discovery: true\n    jwks_url: https://a.example.com/k\n", want: "exclude each other"},
		{name: "discovery_url alone", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    discovery_url: https://a.example.com/d\n", want: "needs discovery: true"},
		{name: "issuer not a URL", body: "providers:\n  - issuer: tenant\n    audiences: [a]\n    discovery: true\n", want: "providers[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			_, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
			if err == nil || !strings.Contains(err.Error(), path+":2:") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load = %v, want %q at %s:2", err, tc.want, path)
			}
		})
	}
}

// TestLoadTokenSources: a provider's token_sources reach the Config; a
// location naming two places is a file error.
func TestLoadTokenSources(t *testing.T) {
	path := writeConfig(t, "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    token_sources:\n      - header: authorization\n        prefix: \"Bearer \"\n      - cookie: access_token\n      - query: access_token\n")
	cfg := load(t, []string{"--config", path}, env{})
	if srcs := cfg.Providers[0].TokenSources; len(srcs) != 3 || srcs[1].Cookie != "access_token" || srcs[2].Query != "access_token" {
		t.Errorf("token sources = %+v", srcs)
	}
	path = writeConfig(t, "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    token_sources:\n      - header: x\n        cookie: y\n")
	if _, err := Load([]string{"--config", path}, env{}.lookup, io.Discard); err == nil || !strings.Contains(err.Error(), path+":2:") || !strings.Contains(err.Error(), "token_sources") {
		t.Errorf("Load = %v, want a token_sources error at line 2", err)
	}
}
