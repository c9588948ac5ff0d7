package main

// The extauthz-policy target's config: 50 path rules with methods, hosts,
// claims, CEL conditions and deny, and two named policies, written into the
// target's run directory.

import (
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// policyRule is one rule of the config file's rules: or policies: (README
// "### Policies").
type policyRule struct {
	Path    string         `yaml:"path,omitempty"`
	Methods []string       `yaml:"methods,omitempty,flow"`
	Hosts   []string       `yaml:"hosts,omitempty,flow"`
	Public  bool           `yaml:"public,omitempty"`
	Deny    bool           `yaml:"deny,omitempty"`
	Scopes  []string       `yaml:"scopes,omitempty,flow"`
	Claims  map[string]any `yaml:"claims,omitempty"`
	When    string         `yaml:"when,omitempty"`
}

// policyFile is the part of extauthz's --config file the target sets; the
// identity comes from the same flags as the extauthz target's.
type policyFile struct {
	Rules    []policyRule          `yaml:"rules"`
	Policies map[string]policyRule `yaml:"policies"`
}

// The shape of the policy config, which the report states and the harness
// test checks.
const (
	policyRules = 50
	// policyAllowRule is the index of the rule that allows the harness's
	// requests (GET /protected on api.example.com with the bench tokens):
	// late in the list, so that every request is matched against the rules
	// before it at "/" and "/protected" (which the server indexes by path),
	// and with a CEL condition, so that one is evaluated on every request.
	policyAllowRule = 47
	// policyAllowWhen is that rule's condition. Its last term is what makes
	// the live probe's HEAD request, which the rule matches, a denial by the
	// condition alone.
	policyAllowWhen = `claims.sub != "" && "read:messages" in scopes && request.method == "GET"`
)

// policyProbes are requests with the hit token that the policy config
// denies with a 403, which the probe sends before and after each run: the
// first is refused by the allowing rule's condition alone, so the running
// server is seen to evaluate it.
var policyProbes = []probeRequest{
	{Method: "HEAD", Path: benchPath, Host: benchHost, Why: fmt.Sprintf("rules[%d] matches HEAD and its condition asks GET", policyAllowRule)},
	{Method: "POST", Path: benchPath, Host: benchHost, Why: "an earlier rule asks write:messages of POST"},
}

// policyServices are the generated /api/v1/<service> rules' services.
var policyServices = []string{"orders", "users", "invoices", "catalog", "search", "inventory", "shipping", "reviews"}

// policyConfig is the config of the extauthz-policy target: a gateway's
// rules in the order they would be written, the harness's path last among
// them. Rules tried for the harness's requests before the allowing one
// match by path but not by method or host.
func policyConfig() policyFile {
	rules := []policyRule{
		{Path: "/healthz", Public: true},
		{Path: "/public", Public: true},
		{Path: "/", Methods: []string{"TRACE", "CONNECT"}, Deny: true},
		{Path: "/", Hosts: []string{"legacy.example.com"}, Deny: true},
		{Path: "/internal", Deny: true},
		{Path: "/admin/audit", When: `has(claims.roles) && "auditor" in claims.roles`},
		{Path: "/admin", Scopes: []string{"admin"}, Claims: map[string]any{"email_verified": true}},
		{Path: "/messages", Methods: []string{"GET", "HEAD"}, Scopes: []string{"read:messages"}},
		{Path: "/messages", Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, Scopes: []string{"write:messages"}},
		{Path: "/tenants", When: `claims.tenant == request.headers["x-tenant-id"] && request.path.startsWith("/tenants/" + claims.tenant + "/")`},
		{Path: "/payments", When: `source.principal == "spiffe://cluster.local/ns/shop/sa/checkout"`},
		{Path: "/billing", Claims: map[string]any{"https://example.com/roles": "billing"}},
		{Path: "/reports", Methods: []string{"GET"}, Hosts: []string{"reports.example.com"}, When: `request.scheme == "https" && claims.sub.startsWith("svc-")`},
	}
	for i, svc := range policyServices {
		base := "/api/v1/" + svc
		write := policyRule{Path: base, Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, Scopes: []string{"write:" + svc}}
		if i%2 == 0 {
			write.When = `"content-type" in request.headers && request.headers["content-type"].startsWith("application/json")`
		} else {
			write.Hosts = []string{"*.partner.example.com"}
			write.Claims = map[string]any{"partner": true}
		}
		rules = append(rules,
			policyRule{Path: base + "/admin", Scopes: []string{"admin:" + svc}},
			policyRule{Path: base, Methods: []string{"GET", "HEAD"}, Scopes: []string{"read:" + svc}},
			write,
		)
	}
	rules = append(rules,
		policyRule{Path: benchPath, Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, Scopes: []string{"write:messages"}, When: `claims.sub != "" && "write:messages" in scopes`},
		policyRule{Path: benchPath, Methods: []string{"OPTIONS"}, Public: true},
		policyRule{Path: benchPath, Hosts: []string{"admin.example.com"}, Scopes: []string{"admin"}},
		policyRule{Path: benchPath, Hosts: []string{"*.internal.example.com"}, Deny: true},
		policyRule{Path: benchPath, Hosts: []string{"partner.example.com"}, Claims: map[string]any{"partner": true}},
		policyRule{Path: benchPath + "/export", Methods: []string{"GET"}, Scopes: []string{"export"}, When: `claims.sub != "" && request.scheme == "https"`},
		policyRule{Path: "/", Methods: []string{"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"}, Deny: true},
		policyRule{Path: "/", Hosts: []string{"old-api.example.com"}, When: `request.path.startsWith("/v0/") && claims.sub != ""`},
		policyRule{Path: benchPath, Methods: []string{"GET"}, Hosts: []string{"beta.example.com"}, When: `"beta" in claims && claims.beta == true`},
		policyRule{Path: benchPath + "/admin", Scopes: []string{"admin"}},
		policyRule{Path: benchPath, Methods: []string{benchMethod, "HEAD"}, Hosts: []string{benchHost, "www.example.com"},
			Scopes: []string{scope}, Claims: map[string]any{"iss": issuer}, When: policyAllowWhen},
		policyRule{Path: "/static", Public: true},
		policyRule{Path: "/metrics", Deny: true},
	)
	return policyFile{Rules: rules, Policies: map[string]policyRule{
		"admin":    {Scopes: []string{"admin"}},
		"checkout": {When: `source.principal == "spiffe://cluster.local/ns/shop/sa/checkout"`},
	}}
}

// conditions counts the rules with a CEL condition.
func (f policyFile) conditions() int {
	n := 0
	for _, r := range f.Rules {
		if r.When != "" {
			n++
		}
	}
	return n
}

// writePolicyConfig writes the config into dir and returns its path.
func writePolicyConfig(dir string) (string, error) {
	f := policyConfig()
	if len(f.Rules) != policyRules || f.Rules[policyAllowRule].When != policyAllowWhen {
		return "", fmt.Errorf("policy config: %d rules, rule %d's condition %q; want %d and %q", len(f.Rules), policyAllowRule, f.Rules[policyAllowRule].When, policyRules, policyAllowWhen)
	}
	raw, err := yaml.Marshal(f)
	if err != nil {
		return "", fmt.Errorf("policy config: %w", err)
	}
	path := filepath.Join(dir, "policy.yaml")
	head := fmt.Sprintf("# Written by the load harness (bench/policy.go): %d rules, %d with a CEL condition; rules[%d] allows the harness's requests.\n",
		len(f.Rules), f.conditions(), policyAllowRule)
	return path, os.WriteFile(path, append([]byte(head), raw...), 0o644)
}
