package authz

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
)

// manyRules returns n rules of mixed shapes: a path per rule, every third
// with methods, every fifth with hosts, every seventh public, the others
// with a scope.
func manyRules(n int) []Rule {
	rules := make([]Rule, 0, n)
	for i := range n {
		r := Rule{Path: fmt.Sprintf("/svc%d/items", i)}
		switch {
		case i%7 == 0:
			r.Public = true
		default:
			r.Scopes = []string{fmt.Sprintf("scope%d", i%13)}
		}
		if i%3 == 0 {
			r.Methods = []string{"GET", "HEAD"}
		}
		if i%5 == 0 {
			r.Hosts = []string{"api.example.com", "*.tenants.example.com"}
		}
		rules = append(rules, r)
	}
	return rules
}

// TestIndexedRoutesMatchTheScan: the index (from indexFrom rules) answers
// exactly as a scan of the rules, for every target, method and host.
func TestIndexedRoutesMatchTheScan(t *testing.T) {
	rules := manyRules(200)
	indexed := mustCompile(t, rules)
	scan := *indexed
	scan.byPath, scan.byFold = nil, nil
	for i := 0; i < 220; i += 3 {
		for _, target := range []string{fmt.Sprintf("/svc%d/items", i), fmt.Sprintf("/svc%d/items/x/y", i), fmt.Sprintf("/SVC%d/Items.json", i),
			fmt.Sprintf("/public/../svc%d/items", i), "/", "/svc"} {
			for _, method := range []string{"GET", "POST", "get"} {
				for _, host := range []string{"api.example.com", "a.tenants.example.com", "other.example.com"} {
					a, b := indexed.routeFor(target, method, host), scan.routeFor(target, method, host)
					if a.public != b.public || a.deny != b.deny || !sameSet(a.scopes, b.scopes) || a.rule != b.rule {
						t.Fatalf("%s %s %s: indexed %+v, scanned %+v", method, host, target, a, b)
					}
				}
			}
		}
	}
}

// FuzzRoute checks routing with method and host rules against an
// independent reading: for every backend reading of the path, as sent and
// lower-cased (matched with the rule paths lower-cased), and for the method
// as sent and upper-cased, the first rule whose path, methods and hosts
// match must be honoured: its scopes required, its deny applied, and the
// route public only if it is public.
func FuzzRoute(f *testing.F) {
	rules := []Rule{
		{Path: "/messages", Methods: []string{"GET", "HEAD"}, Scopes: []string{"read"}},
		{Path: "/messages", Methods: []string{"POST", "DELETE"}, Scopes: []string{"write"}},
		{Path: "/Admin", Hosts: []string{"admin.example.com"}, Scopes: []string{"admin"}},
		{Path: "/internal", Deny: true},
		{Path: "/docs", Methods: []string{"GET"}, Public: true},
		{Path: "/", Hosts: []string{"*.tenants.example.com"}, Scopes: []string{"tenant"}},
	}
	for _, s := range [][3]string{
		{"/messages", "POST", "api.example.com"}, {"/public/%2e%2e/messages", "post", "x"}, {"/admin", "GET", "ADMIN.example.com:443"},
		{"/INTERNAL.json", "GET", ""}, {"/docs/../messages", "DELETE", "a.tenants.example.com"}, {"/Docs", "GET", "a.b.tenants.example.com"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	rs := mustCompile(f, rules)
	f.Fuzz(func(t *testing.T, target, method, host string) {
		rt := rs.routeFor(target, method, host)
		if rt.tooLong {
			return
		}
		for _, br := range backendReadings(target) {
			for _, fold := range []bool{false, true} {
				for _, m := range []string{method, strings.ToUpper(method)} {
					r := oracleFirst(rules, br.path, fold, m, host)
					if r == nil {
						if rt.public {
							t.Fatalf("%s %q on %q is public, but a backend reading %q meets no rule", method, target, host, br.path)
						}
						continue
					}
					if rt.public && !r.Public {
						t.Fatalf("%s %q on %q is public, but a backend reading %q meets %s", method, target, host, br.path, r.Path)
					}
					if r.Deny && !rt.deny {
						t.Fatalf("%s %q on %q is not denied, but a backend reading %q meets the deny rule %s", method, target, host, br.path, r.Path)
					}
					if br.decodes >= 0 {
						for _, s := range r.Scopes {
							if !slices.Contains(rt.scopes, s) {
								t.Fatalf("%s %q on %q requires %q, but a backend reading %q meets %s, which needs %q", method, target, host, rt.scopes, br.path, r.Path, s)
							}
						}
					}
				}
			}
		}
	})
}

// oracleFirst is the first rule a backend reading p meets, by a linear scan
// written apart from route.go.
func oracleFirst(rules []Rule, p string, fold bool, method, host string) *Rule {
	if p == "" {
		return nil
	}
	h := strings.ToLower(host)
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(h, ".")
	for i, r := range rules {
		rp := r.Path
		if fold {
			p, rp = strings.ToLower(p), strings.ToLower(rp)
		}
		if !(rp == "/" || p == rp || strings.HasPrefix(p, rp+"/")) {
			continue
		}
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, method) {
			continue
		}
		if len(r.Hosts) > 0 && !slices.ContainsFunc(r.Hosts, func(want string) bool {
			if rest, ok := strings.CutPrefix(want, "*."); ok {
				label, tail, ok := strings.Cut(h, ".")
				return ok && label != "" && tail == rest
			}
			return h == want
		}) {
			continue
		}
		return &rules[i]
	}
	return nil
}

// BenchmarkRoutes measures a cache-hit check against 1, 100 and 10,000
// rules of mixed shapes: with the index, the cost of matching does not grow
// with the number of rules.
func BenchmarkRoutes(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			w := newCacheWorld(b, func(c *Config) { c.Rules = manyRules(n) })
			tok := mint(b, tokenSpec{claims: with(claimsA(), "scope", "read:messages scope0 scope1 scope2 scope3 scope4 scope5 scope6 scope7 scope8 scope9 scope10 scope11 scope12")})
			mid := n / 2
			if mid%7 == 0 {
				mid++
			}
			r := Request{Method: "GET", Path: fmt.Sprintf("/svc%d/items/42", mid), Host: "api.example.com", Authorization: bearer(tok)}
			if d := w.srv.Decide(b.Context(), r); d.Reason != Allowed {
				b.Fatalf("%s: %s", r.Path, d.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.srv.Decide(b.Context(), r)
			}
		})
	}
}

// BenchmarkCondition measures what a CEL condition adds to a cache hit.
func BenchmarkConditionHit(b *testing.B) {
	for _, when := range []string{"", `claims.tenant == request.headers["x-tenant-id"]`} {
		name := "without"
		if when != "" {
			name = "with"
		}
		b.Run(name, func(b *testing.B) {
			w := newCacheWorld(b, func(c *Config) { c.Rules = []Rule{{Path: "/t", When: when}} })
			tok := mint(b, tokenSpec{claims: with(claimsA(), "tenant", "t1")})
			r := Request{Method: "GET", Path: "/t/x", Host: "api.example.com", Authorization: bearer(tok), Headers: map[string]string{"x-tenant-id": "t1"}}
			if d := w.srv.Decide(b.Context(), r); d.Reason != Allowed {
				b.Fatal(d.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.srv.Decide(b.Context(), r)
			}
		})
	}
}
