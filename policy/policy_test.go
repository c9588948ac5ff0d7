package policy

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustEnv(t testing.TB) *Env {
	t.Helper()
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestCompileRefuses(t *testing.T) {
	env := mustEnv(t)
	tests := []struct {
		name string
		r    Rule
		want string
	}{
		{name: "public and deny", r: Rule{Path: "/x", Public: true, Deny: true}, want: "both public and deny"},
		{name: "public and scopes", r: Rule{Path: "/x", Public: true, Scopes: []string{"a"}}, want: "public and require scopes"},
		{name: "public and claims", r: Rule{Path: "/x", Public: true, Claims: map[string]any{"a": "b"}}, want: "public rule cannot require claims"},
		{name: "public and when", r: Rule{Path: "/x", Public: true, When: "true"}, want: "public rule cannot have a when"},
		{name: "deny and scopes", r: Rule{Path: "/x", Deny: true, Scopes: []string{"a"}}, want: "deny rule"},
		{name: "deny and claims", r: Rule{Path: "/x", Deny: true, Claims: map[string]any{"a": "b"}}, want: "deny rule"},
		{name: "lower-case method", r: Rule{Path: "/x", Methods: []string{"get"}}, want: "upper-case HTTP method"},
		{name: "method with a space", r: Rule{Path: "/x", Methods: []string{"GET POST"}}, want: "upper-case HTTP method"},
		{name: "host with a port", r: Rule{Path: "/x", Hosts: []string{"api.example.com:443"}}, want: "without a port"},
		{name: "two wildcards", r: Rule{Path: "/x", Hosts: []string{"*.*.example.com"}}, want: "not a host name"},
		{name: "empty host", r: Rule{Path: "/x", Hosts: []string{""}}, want: "not a host name"},
		{name: "claim object", r: Rule{Path: "/x", Claims: map[string]any{"a": map[string]any{"b": 1}}}, want: "not a string, number or boolean"},
		{name: "claim empty list", r: Rule{Path: "/x", Claims: map[string]any{"a": []any{}}}, want: "empty list"},
		{name: "bad scope", r: Rule{Path: "/x", Scopes: []string{"a b"}}, want: "not a valid scope token"},
		{name: "CEL syntax", r: Rule{Path: "/x", When: "claims.tenant =="}, want: "when:"},
		{name: "CEL unknown variable", r: Rule{Path: "/x", When: "user.name == 'x'"}, want: "undeclared reference"},
		{name: "CEL not bool", r: Rule{Path: "/x", When: "scopes.size()"}, want: "not bool"},
		{name: "where named", r: Rule{Path: "/x", Public: true, Deny: true, Where: "rules.yaml:7"}, want: "rules.yaml:7: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.r, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Compile(Rule{Path: "/x", When: "true"}, nil); err == nil {
		t.Errorf("a condition compiled without an environment")
	}
}

func TestMatches(t *testing.T) {
	c, err := Compile(Rule{Path: "/x", Methods: []string{"GET", "HEAD"}, Hosts: []string{"api.example.com", "*.tenants.example.com", "Admin.Example.com."}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, host string
		want         bool
	}{
		{"GET", "api.example.com", true},
		{"HEAD", "API.EXAMPLE.COM:8443", true},
		{"GET", "api.example.com.", true},
		{"GET", "admin.example.com", true},
		{"GET", "a.tenants.example.com", true},
		{"GET", "a.b.tenants.example.com", false},
		{"GET", "tenants.example.com", false},
		{"GET", ".tenants.example.com", false},
		{"GET", "evil-api.example.com", false},
		{"GET", "api.example.com.evil.com", false},
		{"POST", "api.example.com", false},
		{"get", "api.example.com", false},
		{"GET", "", false},
		{"GET", "[::1]:80", false},
	}
	for _, tc := range tests {
		if got := c.Matches(tc.method, tc.host); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.method, tc.host, got, tc.want)
		}
	}
	any, _ := Compile(Rule{Path: "/y"}, nil)
	if !any.Matches("WHATEVER", "") || any.HasConditions() {
		t.Errorf("a rule without methods or hosts must match everything")
	}
}

// claimsOf decodes JSON claims as the verifier does (numbers as
// json.Number) and normalises them.
func claimsOf(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return Normalize(m).(map[string]any)
}

func TestAuthorize(t *testing.T) {
	env := mustEnv(t)
	keycloak := claimsOf(t, `{"sub":"alice","realm_access":{"roles":["user","ops"]},"email_verified":true,"tenant":"t1","level":3,
		"https://example.com/roles":["admin"],"flag":"true"}`)
	tests := []struct {
		name   string
		r      Rule
		in     Input
		want   Verdict
		errHas string
	}{
		{name: "no requirements", r: Rule{}, in: Input{Claims: keycloak}, want: Satisfied},
		{name: "deny", r: Rule{Deny: true}, in: Input{Claims: keycloak}, want: Refused},
		{name: "scope granted", r: Rule{Scopes: []string{"read"}}, in: Input{Scopes: []string{"read", "x"}}, want: Satisfied},
		{name: "scope missing", r: Rule{Scopes: []string{"read", "write"}}, in: Input{Scopes: []string{"read"}}, want: MissingScope},
		{name: "array claim contains one", r: Rule{Claims: map[string]any{"realm_access.roles": []any{"admin", "ops"}}}, in: Input{Claims: keycloak}, want: Satisfied},
		{name: "array claim contains none", r: Rule{Claims: map[string]any{"realm_access.roles": []any{"admin"}}}, in: Input{Claims: keycloak}, want: Refused},
		{name: "namespaced claim", r: Rule{Claims: map[string]any{"https://example.com/roles": "admin"}}, in: Input{Claims: keycloak}, want: Satisfied},
		{name: "bool claim", r: Rule{Claims: map[string]any{"email_verified": true}}, in: Input{Claims: keycloak}, want: Satisfied},
		{name: "string true is not true", r: Rule{Claims: map[string]any{"flag": true}}, in: Input{Claims: keycloak}, want: Refused},
		{name: "true is not string true", r: Rule{Claims: map[string]any{"email_verified": "true"}}, in: Input{Claims: keycloak}, want: Refused},
		{name: "number claim", r: Rule{Claims: map[string]any{"level": 3}}, in: Input{Claims: keycloak}, want: Satisfied},
		{name: "number is not its string", r: Rule{Claims: map[string]any{"level": "3"}}, in: Input{Claims: keycloak}, want: Refused},
		{name: "missing claim", r: Rule{Claims: map[string]any{"nope": "x"}}, in: Input{Claims: keycloak}, want: Refused},
		{name: "no claims at all", r: Rule{Claims: map[string]any{"sub": "alice"}}, in: Input{}, want: Refused},
		{name: "all claims must hold", r: Rule{Claims: map[string]any{"sub": "alice", "tenant": "t2"}}, in: Input{Claims: keycloak}, want: Refused},
		{name: "CEL tenant equals header", r: Rule{When: `claims.tenant == request.headers["x-tenant-id"]`},
			in: Input{Claims: keycloak, Request: Request{Headers: map[string]string{"x-tenant-id": "t1"}}}, want: Satisfied},
		{name: "CEL tenant differs", r: Rule{When: `claims.tenant == request.headers["x-tenant-id"]`},
			in: Input{Claims: keycloak, Request: Request{Headers: map[string]string{"x-tenant-id": "t2"}}}, want: Refused},
		{name: "CEL missing header is an error", r: Rule{When: `claims.tenant == request.headers["x-tenant-id"]`},
			in: Input{Claims: keycloak}, want: Failed, errHas: "no such key"},
		{name: "CEL path segment", r: Rule{When: `request.path.startsWith("/tenants/" + claims.tenant + "/")`},
			in: Input{Claims: keycloak, Request: Request{Path: "/tenants/t1/x"}}, want: Satisfied},
		{name: "CEL number", r: Rule{When: `claims.level >= 3`}, in: Input{Claims: keycloak}, want: Satisfied},
		{name: "CEL source principal", r: Rule{When: `source.principal == "spiffe://cluster.local/ns/a/sa/b"`},
			in: Input{Source: Source{Principal: "spiffe://cluster.local/ns/a/sa/b"}}, want: Satisfied},
		{name: "CEL context", r: Rule{When: `context.team == "payments"`}, in: Input{Context: map[string]string{"team": "payments"}}, want: Satisfied},
		{name: "CEL scopes", r: Rule{When: `"admin" in scopes`}, in: Input{Scopes: []string{"admin"}}, want: Satisfied},
		{name: "CEL dyn not bool", r: Rule{When: `claims.tenant`}, in: Input{Claims: keycloak}, want: Failed, errHas: "bool"},
		{name: "CEL over the cost limit", r: Rule{When: `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`},
			in: Input{}, want: Failed, errHas: "cost"},
		{name: "scope checked before claims", r: Rule{Scopes: []string{"x"}, Claims: map[string]any{"sub": "bob"}}, in: Input{Claims: keycloak}, want: MissingScope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compile(tc.r, env)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Authorize(&tc.in)
			if got != tc.want {
				t.Errorf("Authorize = %v (%v), want %v", got, err, tc.want)
			}
			if tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Errorf("error %v, want one containing %q", err, tc.errHas)
			}
		})
	}
}

func TestNeedsClaims(t *testing.T) {
	env := mustEnv(t)
	for _, tc := range []struct {
		r    Rule
		want bool
	}{
		{Rule{Scopes: []string{"a"}}, false},
		{Rule{Methods: []string{"GET"}}, false},
		{Rule{Claims: map[string]any{"a": "b"}}, true},
		{Rule{When: "true"}, true},
	} {
		c, err := Compile(tc.r, env)
		if err != nil {
			t.Fatal(err)
		}
		if c.NeedsClaims != tc.want {
			t.Errorf("%+v: NeedsClaims %v, want %v", tc.r, c.NeedsClaims, tc.want)
		}
	}
}

// BenchmarkCondition measures one tenant-isolation condition, the cost a
// CEL rule adds to a check.
func BenchmarkCondition(b *testing.B) {
	env := mustEnv(b)
	c, err := Compile(Rule{When: `claims.tenant == request.headers["x-tenant-id"]`}, env)
	if err != nil {
		b.Fatal(err)
	}
	in := &Input{Claims: claimsOf(b, `{"sub":"alice","tenant":"t1"}`), Request: Request{Headers: map[string]string{"x-tenant-id": "t1"}}}
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := c.Authorize(in); v != Satisfied {
			b.Fatal(v)
		}
	}
}

// BenchmarkClaims measures a roles requirement without CEL.
func BenchmarkClaims(b *testing.B) {
	c, err := Compile(Rule{Claims: map[string]any{"realm_access.roles": []any{"admin", "ops"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := &Input{Claims: claimsOf(b, `{"realm_access":{"roles":["user","ops"]}}`)}
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := c.Authorize(in); v != Satisfied {
			b.Fatal(v)
		}
	}
}
