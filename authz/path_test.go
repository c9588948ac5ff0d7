package authz

import (
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/policy"
)

func TestReadings(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		strict  string
		lenient string
		ok      bool
	}{
		{name: "plain", target: "/a/b", strict: "/a/b", lenient: "/a/b", ok: true},
		{name: "root", target: "/", strict: "/", lenient: "/", ok: true},
		{name: "query dropped", target: "/a/b?x=1&y=/../c", strict: "/a/b", lenient: "/a/b", ok: true},
		{name: "empty query", target: "/a?", strict: "/a", lenient: "/a", ok: true},
		{name: "trailing slash kept", target: "/a/", strict: "/a/", lenient: "/a/", ok: true},
		{name: "dot segments", target: "/a/./b/../c", strict: "/a/c", lenient: "/a/c", ok: true},
		{name: "dot dot never above root", target: "/../../a", strict: "/a", lenient: "/a", ok: true},
		{name: "final dot dot", target: "/a/b/..", strict: "/a/", lenient: "/a/", ok: true},
		{name: "final dot", target: "/a/.", strict: "/a/", lenient: "/a/", ok: true},
		{name: "dotted names are not dot segments", target: "/a/.well-known/..x/x..", strict: "/a/.well-known/..x/x..", lenient: "/a/.well-known/..x/x..", ok: true},
		{name: "encoded dots", target: "/a/%2e%2e/c", strict: "/c", lenient: "/c", ok: true},
		{name: "encoded dots upper case", target: "/a/%2E%2E/c", strict: "/c", lenient: "/c", ok: true},
		{name: "half encoded dots", target: "/a/.%2e/c", strict: "/c", lenient: "/c", ok: true},
		{name: "unreserved decoded", target: "/%70ublic/%7Euser", strict: "/public/~user", lenient: "/public/~user", ok: true},
		{name: "encoded slash stays encoded in strict", target: "/a%2Fb", strict: "/a%2Fb", lenient: "/a/b", ok: true},
		{name: "lower-case escape upper-cased in strict", target: "/a%2fb", strict: "/a%2Fb", lenient: "/a/b", ok: true},
		{name: "encoded slash dot dot", target: "/a/..%2Fb", strict: "/a/..%2Fb", lenient: "/b", ok: true},
		{name: "double encoding", target: "/a/%252e%252e/b", strict: "/a/%252e%252e/b", lenient: "/b", ok: true},
		{name: "triple encoding", target: "/a/%25252e%25252e/b", strict: "/a/%25252e%25252e/b", lenient: "/b", ok: true},
		{name: "servlet parameter", target: "/a/..;/b", strict: "/a/..;/b", lenient: "/b", ok: true},
		{name: "parameter on a segment", target: "/a;jsessionid=1/b", strict: "/a;jsessionid=1/b", lenient: "/a/b", ok: true},
		{name: "encoded semicolon", target: "/a%3Bx/b", strict: "/a%3Bx/b", lenient: "/a/b", ok: true},
		{name: "backslashes", target: `/a\..\b`, strict: `/a\..\b`, lenient: "/b", ok: true},
		{name: "encoded backslashes", target: "/a%5C..%5Cb", strict: "/a%5C..%5Cb", lenient: "/b", ok: true},
		{name: "repeated slashes", target: "/a//b", strict: "/a//b", lenient: "/a/b", ok: true},
		{name: "repeated slashes and dot dot", target: "/a//../b", strict: "/a/b", lenient: "/b", ok: true},
		{name: "absolute form", target: "http://host:8080/a/../b?q", strict: "/b", lenient: "/b", ok: true},
		{name: "absolute form upper-case scheme", target: "HTTPS://host/a", strict: "/a", lenient: "/a", ok: true},
		{name: "absolute form without path", target: "http://host", strict: "/", lenient: "/", ok: true},
		{name: "no leading slash", target: "a/b", strict: "", lenient: "/a/b", ok: false},
		{name: "asterisk form", target: "*", strict: "", lenient: "/*", ok: false},
		{name: "empty", target: "", strict: "", lenient: "/", ok: false},
		{name: "encoded leading slash", target: "%2Fadmin", strict: "", lenient: "/admin", ok: false},
		{name: "space", target: "/a b", strict: "/a b", lenient: "/a b", ok: false},
		{name: "control character", target: "/a\x01b", strict: "/a\x01b", lenient: "/a\x01b", ok: false},
		{name: "DEL", target: "/a\x7f", strict: "/a\x7f", lenient: "/a\x7f", ok: false},
		{name: "broken escape", target: "/a/%zz", strict: "/a/%zz", lenient: "/a/%zz", ok: false},
		{name: "truncated escape", target: "/a/%2", strict: "/a/%2", lenient: "/a/%2", ok: false},
		{name: "lone percent", target: "/a%", strict: "/a%", lenient: "/a%", ok: false},
		{name: "non-ASCII bytes are fine", target: "/caf\xc3\xa9", strict: "/caf\xc3\xa9", lenient: "/caf\xc3\xa9", ok: true},
		// A request target never carries a fragment. nginx ends the path at
		// a raw "#" (and passes the raw target on); Go's server keeps it in
		// the path and http.FileServer then cleans "/x#/../admin" to
		// "/admin". Both readings must be considered.
		{name: "raw fragment", target: "/a#/../b", strict: "/a", lenient: "/b", ok: true},
		{name: "raw fragment without dots", target: "/a#frag", strict: "/a", lenient: "/a#frag", ok: true},
		{name: "query before fragment", target: "/a?q#/../b", strict: "/a", lenient: "/a", ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			strict, lenient, ok := readings(tc.target)
			if strict != tc.strict || lenient != tc.lenient || ok != tc.ok {
				t.Errorf("readings(%q) = %q, %q, %v; want %q, %q, %v",
					tc.target, strict, lenient, ok, tc.strict, tc.lenient, tc.ok)
			}
		})
	}
}

// policyRules are the rules of the path tests: a scoped rule inside a public
// one (first match wins), the demo rules, and a rule written with a trailing
// slash.
var policyRules = []Rule{
	{Path: "/public/secret", Scopes: []string{"secret"}},
	{Path: "/public", Public: true},
	{Path: "/admin", Scopes: []string{"admin"}},
	{Path: "/reports", Scopes: []string{"read", "reports"}},
	{Path: "/static/", Public: true},
}

func mustCompile(t testing.TB, rs []Rule) *ruleSet {
	t.Helper()
	env, err := policy.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	out, err := compileRules(rs, nil, env)
	if err != nil {
		t.Fatalf("compileRules: %v", err)
	}
	return out
}

func TestPolicyFor(t *testing.T) {
	rules := mustCompile(t, policyRules)
	tests := []struct {
		name   string
		target string
		public bool
		scopes []string
	}{
		// Normal paths.
		{name: "public root", target: "/public", public: true},
		{name: "public trailing slash", target: "/public/", public: true},
		{name: "below public", target: "/public/a/b.html", public: true},
		{name: "public with query", target: "/public?x=1", public: true},
		{name: "query cannot climb", target: "/public?next=/../admin", public: true},
		{name: "query holding encoded dots", target: "/public/x?a=%2e%2e%2Fadmin", public: true},
		{name: "sibling prefix is not below", target: "/publicity"},
		{name: "case-sensitive", target: "/Public"},
		{name: "case-sensitive below", target: "/PUBLIC/x"},
		{name: "unmatched path", target: "/protected"},
		{name: "root", target: "/"},
		{name: "scoped", target: "/admin", scopes: []string{"admin"}},
		{name: "below scoped", target: "/admin/users/1", scopes: []string{"admin"}},
		{name: "sibling of scoped", target: "/administrator"},
		{name: "two scopes", target: "/reports/q1", scopes: []string{"read", "reports"}},
		{name: "first match wins", target: "/public/secret", scopes: []string{"secret"}},
		{name: "first match wins below", target: "/public/secret/x", scopes: []string{"secret"}},
		{name: "sibling of first match", target: "/public/secretive", public: true},
		{name: "rule written with trailing slash", target: "/static", public: true},
		{name: "below rule written with trailing slash", target: "/static/app.js", public: true},
		{name: "sibling of rule written with trailing slash", target: "/staticky"},
		{name: "absolute form", target: "http://api.example.com/public/x", public: true},
		{name: "absolute form scoped", target: "HTTPS://api.example.com/admin", scopes: []string{"admin"}},
		{name: "absolute form without path", target: "http://api.example.com"},
		{name: "encoded unreserved is public", target: "/%70ublic/%7Euser", public: true},
		{name: "dot inside public stays public", target: "/public/./x", public: true},
		{name: "dot dot inside public stays public", target: "/public/x/../y", public: true},

		// Dot segments.
		{name: "dot dot out of public", target: "/public/../protected"},
		{name: "dot dot into scoped", target: "/public/../admin", scopes: []string{"admin"}},
		{name: "encoded dot dot", target: "/public/%2e%2e/protected"},
		{name: "encoded dot dot upper", target: "/public/%2E%2E/admin", scopes: []string{"admin"}},
		{name: "half encoded dot dot", target: "/public/.%2e/admin", scopes: []string{"admin"}},
		{name: "encoded prefix then dot dot", target: "/%70ublic/../protected"},
		{name: "two levels up", target: "/public/x/../../admin", scopes: []string{"admin"}},
		{name: "dot dot to root", target: "/public/.."},
		{name: "dot dot into first-match rule", target: "/public/x/../secret", scopes: []string{"secret"}},

		// When in doubt, not public.
		{name: "encoded slash", target: "/public/..%2Fadmin", scopes: []string{"admin"}},
		{name: "encoded slash lower", target: "/public/..%2fadmin", scopes: []string{"admin"}},
		{name: "encoded slashes only", target: "/public%2F..%2Fadmin", scopes: []string{"admin"}},
		{name: "encoded slash below public", target: "/public%2Fx"},
		{name: "brief example", target: "/x/..%2Fadmin", scopes: []string{"admin"}},
		{name: "double encoding", target: "/public/%252e%252e/admin", scopes: []string{"admin"}},
		{name: "double encoded slash", target: "/public/..%252Fadmin", scopes: []string{"admin"}},
		{name: "triple encoding", target: "/public/%25252e%25252e/admin", scopes: []string{"admin"}},
		{name: "quadruple encoding", target: "/public/%2525252e%2525252e/admin"},
		{name: "servlet parameter", target: "/public/..;/admin", scopes: []string{"admin"}},
		{name: "parameter on public segment", target: "/public;x/../admin", scopes: []string{"admin"}},
		{name: "parameter hides scoped rule", target: "/admin;jsessionid=1", scopes: []string{"admin"}},
		{name: "encoded parameter", target: "/admin%3Bx", scopes: []string{"admin"}},
		{name: "parameter hides first-match rule", target: "/public/secret;x", scopes: []string{"secret"}},
		{name: "encoded slash hides first-match rule", target: "/public/secret%2F", scopes: []string{"secret"}},
		{name: "no leading slash", target: "public/x"},
		{name: "bare word", target: "public"},
		{name: "empty", target: ""},
		{name: "asterisk", target: "*"},
		{name: "encoded leading slash", target: "%2Fadmin", scopes: []string{"admin"}},
		{name: "backslashes", target: `/public\..\admin`, scopes: []string{"admin"}},
		{name: "encoded backslashes", target: "/public%5C..%5Cadmin", scopes: []string{"admin"}},
		{name: "double slash prefix", target: "//public"},
		{name: "double slash before dot dot", target: "/public//../admin", scopes: []string{"admin"}},
		{name: "double slash scoped", target: "//admin", scopes: []string{"admin"}},
		{name: "space", target: "/public/a b"},
		{name: "tab", target: "/public/\t"},
		{name: "control character in scoped", target: "/admin/\x00", scopes: []string{"admin"}},
		{name: "broken escape", target: "/public/%zz"},
		{name: "truncated escape", target: "/public/%2"},
		{name: "broken escape in scoped", target: "/admin/%zz", scopes: []string{"admin"}},
		{name: "raw fragment then dot dot", target: "/public#/../admin", scopes: []string{"admin"}},
		{name: "raw fragment on scoped", target: "/admin#/../public", scopes: []string{"admin"}},

		// Readings beyond strict and lenient (found by FuzzPolicy).
		{name: "literal backslash, double decoding", target: `/0\0/%2e%252e/admin`, scopes: []string{"admin"}},
		{name: "literal backslash, double decoding, out of public", target: `/public/a\b/%252e%252e/%252e%252e/protected`},
		{name: "parameters dropped before decoding", target: "/admin;%2F..%2Fpublic", scopes: []string{"admin"}},
		{name: "parameters hiding encoded dot dot", target: "/public;%2F..%2F..%2Fadmin/x", scopes: []string{"admin"}},
		{name: "encoded unreserved and space stay public", target: "/public/my%20doc%2Epdf", public: true},
		{name: "parameter inside public stays public", target: "/public/a;v=1/b", public: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := policyFor(rules, tc.target)
			if got.public != tc.public || !sameSet(got.scopes, tc.scopes) {
				t.Errorf("policyFor(%q) = public %v, scopes %q; want public %v, scopes %q",
					tc.target, got.public, got.scopes, tc.public, tc.scopes)
			}
		})
	}
}

func TestPolicyForRootRule(t *testing.T) {
	tests := []struct {
		name   string
		rules  []Rule
		target string
		public bool
		scopes []string
	}{
		{name: "root public rule matches all", rules: []Rule{{Path: "/", Public: true}}, target: "/anything/at/all", public: true},
		{name: "root public rule after scoped", rules: []Rule{{Path: "/admin", Scopes: []string{"admin"}}, {Path: "/", Public: true}},
			target: "/public/..%2Fadmin", scopes: []string{"admin"}},
		{name: "root scoped rule", rules: []Rule{{Path: "/", Scopes: []string{"api"}}}, target: "/x", scopes: []string{"api"}},
		{name: "no rules", target: "/public"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := policyFor(mustCompile(t, tc.rules), tc.target)
			if got.public != tc.public || !sameSet(got.scopes, tc.scopes) {
				t.Errorf("policyFor(%q) = public %v, scopes %q; want public %v, scopes %q",
					tc.target, got.public, got.scopes, tc.public, tc.scopes)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// FuzzPolicy checks policyFor against the ways a backend may resolve a
// request target: whenever policyFor says "public", every backend reading
// (Go's path.Clean of the target with the query and maybe a raw fragment cut,
// with only unreserved characters decoded (RFC 3986 §6.2.2.2: "/%70ublic" is
// "/public"), or percent-decoded one to three times or until nothing
// changes, backslashes as
// slashes or not, ";" parameters dropped before decoding, after it or never)
// must land under a public rule, first match winning; and every scope of the
// rule a reading decoded at most three times lands on must be required (path.go
// decodes three times; a target still encoded after that is never public, but
// it gets only the scopes of its three-times-decoded reading).
func FuzzPolicy(f *testing.F) {
	for _, s := range []string{
		"/public", "/public/", "/public/x?y=/../admin", "/publicity", "/admin", "/public/secret/x",
		"/public/../protected", "/public/%2e%2e/protected", "/%70ublic/../protected", "/public/..%2Fadmin",
		"/public/%252e%252e/admin", "/public/%25252e%25252e/admin", "/public/..;/admin", `/public\..\admin`,
		"//public", "/public//../admin", "public/x", "http://h/public/../admin", "/public#/../admin",
		"/public/%2525252e%2525252e/admin", "/x/..%2Fadmin", "/public/.%2e/secret", "/static/../admin",
		`/0\0/%2e%252e/admin`, `/public/a\b/%252e%252e/%252e%252e/protected`, "/admin;%2F..%2Fpublic",
		"/public;%2F..%2F..%2Fadmin/x", "/public/my%20doc.pdf", "/.well-known/x",
	} {
		f.Add(s)
	}
	rules := mustCompile(f, policyRules)
	f.Fuzz(func(t *testing.T, target string) {
		pol := policyFor(rules, target) // must not panic
		if pol.tooLong {
			if pol.public || len(target) <= MaxSlowPathBytes {
				t.Fatalf("policyFor(%q): refused as too long but public %v, length %d", target, pol.public, len(target))
			}
			return // the request is refused outright
		}
		for _, br := range backendReadings(target) {
			p := br.path
			r := firstRule(rules, p)
			if pol.public && (r == nil || !r.public) {
				t.Fatalf("policyFor(%q) is public, but a backend may read it as %q, which is not", target, p)
			}
			if r != nil && br.decodes >= 0 {
				for _, s := range r.scopes {
					if !slices.Contains(pol.scopes, s) {
						t.Fatalf("policyFor(%q) requires %q, but a backend may read it as %q, which needs scope %q",
							target, pol.scopes, p, s)
					}
				}
			}
		}
	})
}

// backendReading is a cleaned path a backend may see, and how many times it
// was percent-decoded (-1: until nothing changed).
type backendReading struct {
	path    string
	decodes int
}

// backendReadings returns the cleaned paths backends may see for target,
// computed independently of path.go. A target with no leading slash gives
// "" (which no rule matches), as no backend serves it from a rule's tree.
func backendReadings(target string) []backendReading {
	var out []backendReading
	for _, cutFragment := range []bool{false, true} {
		p := target
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		if i := strings.IndexByte(p, '#'); cutFragment && i >= 0 {
			p = p[:i]
		}
		if lower := strings.ToLower(p); strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://") {
			rest := p[strings.Index(p, "//")+2:]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				p = rest[i:]
			} else {
				p = "/"
			}
		}
		for _, decodes := range []int{0, 1, 2, 3, -1} {
			for _, params := range []string{"never", "before", "after"} {
				for _, backslash := range []bool{false, true} {
					q := p
					if params == "before" {
						q = dropSegmentParams(q)
					}
					q = percentDecode(q, decodes)
					if params == "after" {
						q = dropSegmentParams(q)
					}
					if backslash {
						q = strings.ReplaceAll(q, `\`, "/")
					}
					if !strings.HasPrefix(q, "/") {
						out = append(out, backendReading{path: "", decodes: decodes})
						continue
					}
					out = append(out, backendReading{path: path.Clean(q), decodes: decodes})
				}
			}
		}
	}
	return out
}

// percentDecode decodes every valid %XX escape, n times (-1: until nothing
// changes), leaving invalid ones as they are. n == 0 decodes only the escapes
// of unreserved characters, once.
func percentDecode(s string, n int) string {
	if n == 0 {
		var b strings.Builder
		for j := 0; j < len(s); j++ {
			if s[j] == '%' && j+2 < len(s) {
				v, err := strconv.ParseUint(s[j+1:j+3], 16, 8)
				if c := byte(v); err == nil && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
					b.WriteByte(c)
					j += 2
					continue
				}
			}
			b.WriteByte(s[j])
		}
		return b.String()
	}
	for i := 0; n < 0 || i < n; i++ {
		var b strings.Builder
		for j := 0; j < len(s); j++ {
			if s[j] == '%' && j+2 < len(s) {
				if v, err := strconv.ParseUint(s[j+1:j+3], 16, 8); err == nil && s[j+1] != '+' && s[j+1] != '-' {
					b.WriteByte(byte(v))
					j += 2
					continue
				}
			}
			b.WriteByte(s[j])
		}
		if b.String() == s {
			break
		}
		s = b.String()
	}
	return s
}

func dropSegmentParams(s string) string {
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		seg, _, _ = strings.Cut(seg, ";")
		segs[i] = seg
	}
	return strings.Join(segs, "/")
}

// firstRule is the first rule whose path is p or a parent of p.
func firstRule(rules *ruleSet, p string) *rule {
	if p == "" {
		return nil
	}
	for i, r := range rules.list {
		if r.path == "/" || p == r.path || strings.HasPrefix(p, r.path+"/") {
			return &rules.list[i]
		}
	}
	return nil
}
