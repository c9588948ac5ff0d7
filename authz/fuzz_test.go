package authz

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzDecide feeds arbitrary Authorization values and paths to Decide. The
// invariants: it never panics; it never allows a non-public path, and never
// sets a claim header, unless the token's RS256 signature verifies with the
// configured key and its claims hold, as checked independently with
// golang-jwt; it is public only if every backend reading of the path is
// public; a path any backend reads as /admin needs the admin scope; and every
// answer is well-formed.
func FuzzDecide(f *testing.F) {
	k := testKeys()
	valid := mint(f, tokenSpec{})
	adminTok := mint(f, tokenSpec{claims: with(claimsA(), "scope", "read admin")})
	hs256 := mint(f, tokenSpec{method: jwt.SigningMethodHS256, key: publicPEM(k.keyA)})
	none := rawToken(f, map[string]any{"alg": "none", "typ": "JWT", "kid": kidA}, claimsA(), "")
	expired := mint(f, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
	evil := mint(f, tokenSpec{key: k.keyEvil})
	huge := mint(f, tokenSpec{claims: with(claimsA(), "pad", strings.Repeat("x", 9000))})
	for _, s := range [][2]string{
		{"Bearer " + valid, "/protected"},
		{"Bearer " + valid, "/admin"},
		{"Bearer " + adminTok, "/admin/x"},
		{"bearer " + valid, "/public/..%2Fadmin"},
		{"Bearer " + valid, "/public"},
		{"Bearer " + none, "/protected"},
		{"Bearer " + hs256, "/protected"},
		{"Bearer " + expired, "/public"},
		{"Bearer " + evil, "/protected"},
		{"Bearer " + huge, "/protected"},
		{"Bearer " + strings.Repeat("A", 64<<10), "/protected"},
		{"Bearer ", "/protected"},
		{"Bearer", "/public"},
		{"", "/protected"},
		{"", "/public"},
		{"Basic dXNlcjpwYXNz", "/public/%2e%2e/admin"},
		{"Bearer " + valid + "," + valid, "/protected"},
	} {
		f.Add(s[0], s[1])
	}
	srv, err := New(Config{
		Providers: []Provider{{Name: "a", Issuer: issuerA, Audiences: []string{audience}, Keys: newFakeKeys(kidA, &k.keyA.PublicKey)}},
		Rules:     []Rule{{Path: "/public", Public: true}, {Path: "/admin", Scopes: []string{"admin"}}},
		Logger:    discardLogger(),
		Now:       fixedNow,
	})
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	rules := srv.rules

	f.Fuzz(func(t *testing.T, auth, path string) {
		var authz []string
		if auth != "" {
			authz = []string{auth}
		}
		d := srv.Decide(t.Context(), Request{Path: path, Authorization: authz})

		claims, verified := oracleVerify(auth)
		readings := backendReadings(path)
		switch d.Reason {
		case Allowed:
			if !verified {
				t.Fatalf("allowed %q on %q, but the token does not verify", auth, path)
			}
		case Public:
			for _, br := range readings {
				if r := firstRule(rules, br.path); r == nil || !r.public {
					t.Fatalf("public %q, but a backend may read it as %q", path, br.path)
				}
			}
		}
		if d.Allowed() {
			for _, br := range readings {
				if r := firstRule(rules, br.path); br.decodes >= 0 && r != nil && slices.Contains(r.scopes, "admin") && !oracleHasScope(claims, "admin") {
					t.Fatalf("allowed %q without the admin scope, but a backend may read it as %q", path, br.path)
				}
			}
			if len(d.Headers) > 0 && !verified {
				t.Fatalf("claim headers %q set from a token that does not verify", d.Headers)
			}
			if sub, ok := claims["sub"].(string); verified && ok && !strings.ContainsFunc(sub, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) &&
				headerValue(d.Headers, "x-jwt-sub") != sub {
				t.Fatalf("x-jwt-sub = %q, want %q", headerValue(d.Headers, "x-jwt-sub"), sub)
			}
			for _, h := range d.Headers {
				if slices.Contains(d.Remove, h.Name) {
					t.Fatalf("%q both set and removed", h.Name)
				}
				if strings.ContainsAny(h.Value, "\r\n\x00") {
					t.Fatalf("header %q = %q", h.Name, h.Value)
				}
			}
			if d.Body != "" || d.WWWAuthenticate != "" {
				t.Fatalf("allow with a body or challenge: %+v", d)
			}
			return
		}
		if s := d.Status(); s != 400 && s != 401 && s != 403 && s != 503 {
			t.Fatalf("deny status %d (%s)", s, d.Reason)
		}
		var body map[string]string
		if err := json.Unmarshal([]byte(d.Body), &body); err != nil || body["error"] == "" {
			t.Fatalf("deny body %q: %v", d.Body, err)
		}
		if d.Headers != nil || d.Remove != nil {
			t.Fatalf("deny with headers: %+v", d)
		}
		if strings.ContainsAny(d.WWWAuthenticate, "\r\n") || (d.Status() == 401 && !strings.HasPrefix(d.WWWAuthenticate, `Bearer realm="`)) {
			t.Fatalf("challenge %q", d.WWWAuthenticate)
		}
	})
}

// oracleVerify verifies the bearer token in auth the way the issue says,
// with golang-jwt alone: RS256 only, key A, issuer A, audience, exp
// required, exp/nbf/iat with 60s of leeway at testNow.
func oracleVerify(auth string) (jwt.MapClaims, bool) {
	fields := strings.Fields(auth)
	if len(fields) != 2 || !strings.EqualFold(fields[0], "bearer") {
		return nil, false
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(fields[1], claims, func(*jwt.Token) (any, error) { return &testKeys().keyA.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(issuerA),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(60*time.Second),
		jwt.WithTimeFunc(fixedNow),
	)
	return claims, err == nil
}

func oracleHasScope(c jwt.MapClaims, scope string) bool {
	for _, name := range []string{"scope", "scp"} {
		switch v := c[name].(type) {
		case string:
			if slices.Contains(strings.Fields(v), scope) {
				return true
			}
		case []any:
			if slices.Contains(v, any(scope)) {
				return true
			}
		}
	}
	return false
}
