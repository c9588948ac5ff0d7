package authz

// The attack catalogue of SECURITY.md, for what this package decides: one
// test per attack that the rest of the package's tests do not already
// prove. Where an attack still succeeds, its subtest states the expected
// outcome, fails that check, and skips with "KNOWN VULNERABILITY" and the
// evidence instead of failing the build; it passes by itself once the code
// is fixed (and then logs that the skip can go).

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
)

// knownVulnerability skips t with the issue and the evidence when problem is
// not empty (the attack worked); otherwise the subtest passes.
func knownVulnerability(t *testing.T, issue, problem string) {
	t.Helper()
	if problem == "" {
		return
	}
	t.Skipf("KNOWN VULNERABILITY: %s\nevidence: %s", issue, problem)
}

var b64 = base64.RawURLEncoding.EncodeToString

// signRaw signs a handmade header and payload (raw bytes, so they may hold
// duplicate members or be no JSON at all) with RS256.
func signRaw(t testing.TB, header, payload string, key *rsa.PrivateKey) string {
	t.Helper()
	si := b64([]byte(header)) + "." + b64([]byte(payload))
	sig, err := jwt.SigningMethodRS256.Sign(si, key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return si + "." + b64(sig)
}

// claimsJSON is claimsA() as JSON.
func claimsJSON(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAttackTokens: hostile tokens that TestDecideReasons does not already
// cover. Every one is denied, for the stated reason.
func TestAttackTokens(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{})
	parts := strings.Split(valid, ".")
	payload := claimsJSON(t, claimsA())
	// without is the payload without claim, open for one more member.
	without := func(t testing.TB, claim string) string {
		p := claimsJSON(t, with(claimsA(), claim, nil))
		return p[:len(p)-1]
	}
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	t.Cleanup(ts.Close)

	deep := strings.Repeat("[", 2000) + strings.Repeat("]", 2000)
	nested := mint(t, tokenSpec{}) // the inner token of a nested JWT
	tests := []struct {
		name string
		auth []string
		want Reason
	}{
		// Refused before any key lookup (TestDecideReasons has the variants).
		{name: "alg none, before any key lookup", auth: bearer(b64([]byte(`{"alg":"none","kid":"a1"}`)) + "." + parts[1] + "."), want: BadAlgorithm},
		{name: "HS256 with the public key, before any key lookup", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodHS256, key: publicPEM(k.keyA)})), want: BadAlgorithm},

		// kid: absent (TestDecideReasons "no kid"), unknown, path-like, huge.
		{name: "kid path traversal", auth: bearer(mint(t, tokenSpec{kid: "../../../../etc/passwd"})), want: UnknownKID},
		{name: "kid file URL", auth: bearer(mint(t, tokenSpec{kid: "file:///etc/passwd"})), want: UnknownKID},
		{name: "kid http URL", auth: bearer(mint(t, tokenSpec{kid: ts.URL + "/key.pem"})), want: UnknownKID},
		{name: "kid with NUL", auth: bearer(mint(t, tokenSpec{kid: kidA + "\x00"})), want: UnknownKID},
		{name: "kid SQL", auth: bearer(mint(t, tokenSpec{kid: "' OR '1'='1"})), want: UnknownKID},
		{name: "kid empty string", auth: bearer(mint(t, tokenSpec{header: map[string]any{"kid": ""}})), want: UnknownKID},
		{name: "kid huge", auth: bearer(mint(t, tokenSpec{kid: strings.Repeat("k", 5000)})), want: UnknownKID},
		{name: "kid huge over the token bound", auth: bearer(mint(t, tokenSpec{kid: strings.Repeat("k", 9000)})), want: TokenTooLarge},
		{name: "kid array", auth: bearer(mint(t, tokenSpec{header: map[string]any{"kid": []string{kidA}}})), want: UnknownKID},

		// An iss naming the attacker's server: no discovery, no fetch.
		{name: "iss of the attacker's server", auth: bearer(mint(t, tokenSpec{key: k.keyEvil, claims: with(claimsA(), "iss", ts.URL)})), want: UnknownIssuer},
		{name: "iss of the attacker's discovery document", auth: bearer(mint(t, tokenSpec{key: k.keyEvil, claims: with(claimsA(), "iss", ts.URL+"/.well-known/openid-configuration")})), want: UnknownIssuer},

		// Header keys pointing elsewhere, beside a key the set really has.
		{name: "jku to another host", auth: bearer(mint(t, tokenSpec{key: k.keyEvil, header: map[string]any{"jku": ts.URL}})), want: BadSignature},
		{name: "x5u to another host", auth: bearer(mint(t, tokenSpec{key: k.keyEvil, header: map[string]any{"x5u": ts.URL}})), want: BadSignature},

		// crit: RFC 7515 §4.1.11 (TestDecideReasons covers a crit list).
		{name: "crit b64 false", auth: bearer(mint(t, tokenSpec{header: map[string]any{"b64": false, "crit": []string{"b64"}}})), want: Malformed},
		{name: "crit as a string", auth: bearer(mint(t, tokenSpec{header: map[string]any{"crit": "exp"}})), want: Malformed},
		{name: "crit null", auth: bearer(mint(t, tokenSpec{header: map[string]any{"crit": nil}})), want: Malformed},

		// Other serialisations and nesting.
		{name: "JWS JSON serialization", auth: bearer(`{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`), want: InvalidRequest},
		{name: "flattened JWS JSON serialization", auth: bearer(`{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`), want: InvalidRequest},
		{name: "JSON serialization of one member", auth: bearer(`{"payload":"` + parts[1] + `"}`), want: Malformed},
		{name: "JWE compact serialization", auth: bearer(parts[0] + ".." + parts[1] + "." + parts[2] + ".tag"), want: Malformed},
		{name: "nested JWT (cty JWT)", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1","cty":"JWT"}`, nested, k.keyA)), want: Malformed},
		{name: "payload a JSON string", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, `"`+nested+`"`, k.keyA)), want: Malformed},
		{name: "payload JSON null", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, `null`, k.keyA)), want: Malformed},

		// Duplicate members: a token one parser could read two ways is
		// refused before any key is asked (review_test.go has more).
		{name: "duplicate alg, none last", auth: bearer(b64([]byte(`{"alg":"RS256","kid":"a1","alg":"none"}`)) + "." + parts[1] + "."), want: Malformed},
		{name: "duplicate alg, RS256 last, unsigned", auth: bearer(b64([]byte(`{"alg":"none","kid":"a1","alg":"RS256"}`)) + "." + parts[1] + "." + parts[2]), want: Malformed},
		{name: "duplicate kid, forged key last", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1","kid":"evil"}`, payload, k.keyEvil)), want: Malformed},
		{name: "duplicate iss, ours last, forged key", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, `{"iss":"https://evil.example.com",`+payload[1:], k.keyEvil)), want: Malformed},
		{name: "duplicate iss, evil last, our key", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, payload[:len(payload)-1]+`,"iss":"https://evil.example.com"}`, k.keyA)), want: Malformed},
		{name: "duplicate aud, ours first", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, payload[:len(payload)-1]+`,"aud":"https://elsewhere.example.com"}`, k.keyA)), want: Malformed},
		{name: "duplicate exp, far future first", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, `{"exp":9999999999,`+claimsJSON(t, with(claimsA(), "exp", testNow.Add(-time.Hour).Unix()))[1:], k.keyA)), want: Malformed},

		// Deeply nested JSON, parsed before the signature is checked: bounded
		// by the token size.
		{name: "deeply nested claim, forged", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, `{"x":`+deep+`,`+payload[1:], k.keyEvil)), want: BadSignature},
		{name: "deeply nested header", auth: bearer(b64([]byte(`{"alg":"RS256","kid":"a1","x":`+deep+`}`)) + "." + parts[1] + "." + parts[2]), want: BadSignature},
		{name: "nesting beyond the token bound", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, `{"x":`+strings.Repeat("[", 9000)+strings.Repeat("]", 9000)+`}`, k.keyEvil)), want: TokenTooLarge},
		{name: "claim set over the token bound", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "pad", strings.Repeat("p", 7000))})), want: TokenTooLarge},

		// exp, nbf, iat, aud, iss of the wrong type (TestDecideReasons has
		// strings and a bool).
		{name: "exp null", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, without(t, "exp")+`,"exp":null}`, k.keyA)), want: InvalidClaims},
		{name: "exp array", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", []int64{testNow.Add(time.Hour).Unix()})})), want: InvalidClaims},
		{name: "exp object", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", map[string]any{"$date": 1})})), want: InvalidClaims},
		{name: "exp bool", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", true)})), want: InvalidClaims},
		{name: "exp numeric string", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", "99999999999")})), want: InvalidClaims},
		{name: "exp negative", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", -1)})), want: InvalidClaims},
		{name: "exp hugely negative", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, without(t, "exp")+`,"exp":-1e300}`, k.keyA)), want: InvalidClaims},
		{name: "nbf null", auth: bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, without(t, "nbf")+`,"nbf":null}`, k.keyA)), want: InvalidClaims},
		{name: "nbf array", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "nbf", []int{1})})), want: InvalidClaims},
		{name: "iat string", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "iat", "yesterday")})), want: InvalidClaims},
		{name: "aud object", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "aud", map[string]any{"aud": audience})})), want: InvalidClaims},
		{name: "aud list of lists", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "aud", []any{[]string{audience}})})), want: InvalidClaims},
		{name: "aud list without ours", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "aud", []string{audience2, "https://api.example.com/"})})), want: WrongAudience},
		{name: "aud prefix of ours", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "aud", "https://api.example")})), want: WrongAudience},
		{name: "aud ours with a trailing space", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "aud", audience+" ")})), want: WrongAudience},
		{name: "iss array", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "iss", []string{issuerA})})), want: UnknownIssuer},
		{name: "iss with a trailing space", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "iss", issuerA+" ")})), want: UnknownIssuer},
		{name: "expired one second past the skew", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-61*time.Second).Unix())})), want: Expired},
		{name: "expired exactly at the skew", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-60*time.Second).Unix())})), want: Expired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf, logger := newLogBuffer()
			w := newWorld(t, func(c *Config) { c.Logger = logger })
			start := time.Now()
			d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/protected", Authorization: tc.auth})
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("Decide took %v", elapsed)
			}
			if d.Reason != tc.want {
				t.Errorf("Decide = %q, want %q", d.Reason, tc.want)
			}
			if d.Allowed() {
				t.Fatalf("a hostile token was allowed")
			}
			switch tc.want {
			case BadAlgorithm, Malformed, TokenTooLarge, InvalidRequest, UnknownIssuer:
				if n := w.keysA.calls.Load() + w.keysB.calls.Load(); n != 0 {
					t.Errorf("the key sources were asked %d times for a token refused before any lookup", n)
				}
			}
			// The log line stays bounded whatever the token holds.
			for _, r := range buf.records(t) {
				if kid, _ := r["kid"].(string); len(kid) > 300 {
					t.Errorf("logged kid of %d bytes", len(kid))
				}
			}
			if n := len(buf.String()); n > 4096 {
				t.Errorf("one decision logged %d bytes", n)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("a URL from a token header was fetched %d times", n)
	}
}

// TestAttackBearerScheme: look-alikes of "Bearer" are not the scheme, and a
// token is never read from anywhere but the Authorization header.
func TestAttackBearerScheme(t *testing.T) {
	valid := mint(t, tokenSpec{})
	tests := []struct {
		name string
		auth string
		want Reason
	}{
		{name: "Cyrillic e in Bearer", auth: "B\u0435arer " + valid, want: MissingToken},
		{name: "Cyrillic a in Bearer", auth: "Be\u0430rer " + valid, want: MissingToken},
		{name: "fullwidth Bearer", auth: "\uff22\uff45\uff41\uff52\uff45\uff52 " + valid, want: MissingToken},
		{name: "overlong UTF-8 e in Bearer", auth: "B\xc1\xa5arer " + valid, want: MissingToken},
		{name: "zero-width space before Bearer", auth: "\u200bBearer " + valid, want: MissingToken},
		{name: "zero-width space after Bearer", auth: "Bearer\u200b " + valid, want: MissingToken},
		{name: "no-break space as separator", auth: "Bearer\u00a0" + valid, want: MissingToken},
		{name: "em space as separator", auth: "Bearer\u2003" + valid, want: MissingToken},
		{name: "no-break space before the token", auth: "Bearer \u00a0" + valid, want: Malformed},
		{name: "NUL after Bearer", auth: "Bearer\x00 " + valid, want: MissingToken},
		{name: "colon after Bearer", auth: "Bearer:" + valid, want: MissingToken},
		{name: "equals after Bearer", auth: "Bearer=" + valid, want: MissingToken},
		{name: "percent-encoded space", auth: "Bearer%20" + valid, want: MissingToken},
		{name: "other scheme Token", auth: "Token " + valid, want: MissingToken},
		{name: "other scheme JWT", auth: "JWT " + valid, want: MissingToken},
		// The DPoP scheme is read (RFC 9449 §7.1): a plain token with it
		// is refused, never taken as a bearer token.
		{name: "DPoP scheme, plain token", auth: "DPoP " + valid, want: DPoPBindingMismatch},
		{name: "DPoP scheme, lower case", auth: "dpop " + valid, want: DPoPBindingMismatch},
		{name: "DPoP scheme, Cyrillic o", auth: "DPоP " + valid, want: MissingToken},
		{name: "Bearer twice", auth: "Bearer Bearer " + valid, want: InvalidRequest},
		{name: "two tokens, comma", auth: "Bearer " + valid + ", " + valid, want: InvalidRequest},
		{name: "two tokens, two schemes", auth: "Bearer " + valid + ", Bearer " + valid, want: InvalidRequest},
		{name: "token with a newline", auth: "Bearer " + valid[:20] + "\n" + valid[20:], want: BadSignature},
		{name: "token with NUL", auth: "Bearer " + valid + "\x00", want: Malformed},
		{name: "token quoted", auth: `Bearer "` + valid + `"`, want: Malformed},
		{name: "the genuine article", auth: "Bearer " + valid, want: Allowed},
	}
	w := newWorld(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: []string{tc.auth}})
			if d.Reason != tc.want {
				t.Errorf("Decide(%q...) = %q, want %q", tc.auth[:min(len(tc.auth), 12)], d.Reason, tc.want)
			}
		})
	}
}

// TestAttackQueryToken: RFC 6750 §2.3 (access_token in the query) is not
// supported: a token there is never read, alone or beside a header.
func TestAttackQueryToken(t *testing.T) {
	valid := mint(t, tokenSpec{})
	bad := mint(t, tokenSpec{key: testKeys().keyEvil})
	tests := []struct {
		name string
		path string
		auth []string
		want Reason
	}{
		{name: "query only", path: "/protected?access_token=" + valid, want: MissingToken},
		{name: "query only, scoped path", path: "/admin?access_token=" + mint(t, tokenSpec{claims: with(claimsA(), "scope", "admin")}), want: MissingToken},
		{name: "fragment only", path: "/protected#access_token=" + valid, want: MissingToken},
		{name: "path parameter", path: "/protected;access_token=" + valid, want: MissingToken},
		{name: "bad header, good query", path: "/protected?access_token=" + valid, auth: bearer(bad), want: BadSignature},
		{name: "good header, bad query", path: "/protected?access_token=" + bad, auth: bearer(valid), want: Allowed},
		{name: "good header, garbage query", path: "/protected?access_token=x&access_token=y", auth: bearer(valid), want: Allowed},
	}
	w := newWorld(t, nil)
	h := httptest.NewServer(w.srv)
	t.Cleanup(h.Close)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := w.srv.Decide(t.Context(), Request{Path: tc.path, Authorization: tc.auth})
			if d.Reason != tc.want {
				t.Errorf("Decide = %q, want %q", d.Reason, tc.want)
			}
			// The same through the forward-auth endpoint, as nginx asks.
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.URL+"/auth", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Original-URI", tc.path)
			for _, a := range tc.auth {
				req.Header.Add("Authorization", a)
			}
			resp, err := h.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want.Status() {
				t.Errorf("forward auth: %d, want %d", resp.StatusCode, tc.want.Status())
			}
		})
	}
}

// TestAttackForwardAuthHeaders: duplicate and conflicting Authorization
// headers over a real HTTP connection (Go merges spellings of one name), and
// two tokens in one.
func TestAttackForwardAuthHeaders(t *testing.T) {
	valid := mint(t, tokenSpec{})
	other := mint(t, tokenSpec{claims: with(claimsA(), "sub", "admin")})
	tests := []struct {
		name   string
		header http.Header // keys sent verbatim
		want   int
	}{
		{name: "one header", header: http.Header{"Authorization": {"Bearer " + valid}}, want: 200},
		{name: "two headers, same token", header: http.Header{"Authorization": {"Bearer " + valid, "Bearer " + valid}}, want: 400},
		{name: "two headers, two identities", header: http.Header{"Authorization": {"Bearer " + valid, "Bearer " + other}}, want: 400},
		{name: "two spellings", header: http.Header{"Authorization": {"Bearer " + valid}, "authorization": {"Bearer " + other}}, want: 400},
		{name: "upper-case spelling", header: http.Header{"AUTHORIZATION": {"Bearer " + valid}}, want: 200},
		{name: "empty second header", header: http.Header{"Authorization": {"Bearer " + valid, ""}}, want: 400},
		{name: "Basic then Bearer", header: http.Header{"Authorization": {"Basic eDp5", "Bearer " + valid}}, want: 400},
		{name: "two tokens in one header", header: http.Header{"Authorization": {"Bearer " + valid + " " + other}}, want: 400},
		{name: "two tokens comma-joined", header: http.Header{"Authorization": {"Bearer " + valid + ",Bearer " + other}}, want: 400},
		{name: "token in Proxy-Authorization", header: http.Header{"Proxy-Authorization": {"Bearer " + valid}}, want: 401},
		{name: "token in a cookie", header: http.Header{"Cookie": {"access_token=" + valid}}, want: 401},
		{name: "token in X-Forwarded-Access-Token", header: http.Header{"X-Forwarded-Access-Token": {valid}}, want: 401},
	}
	w := newWorld(t, nil)
	h := httptest.NewServer(w.srv)
	t.Cleanup(h.Close)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.URL+"/protected", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := h.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != 200 && resp.Header.Get("X-Jwt-Sub") != "" {
				t.Errorf("a denial carries X-Jwt-Sub %q", resp.Header.Get("X-Jwt-Sub"))
			}
			// No cache between the proxy and the check may reuse one
			// client's answer (and its identity) for another.
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		})
	}
}

// TestAttackPathTricks: paths some backend would resolve into a protected or
// scoped path are never public and need that path's scopes (TestPolicyFor
// has the systematic list; these are further tricks).
func TestAttackPathTricks(t *testing.T) {
	rules := mustCompile(t, policyRules)
	admin := []string{"admin"}
	tests := []struct {
		name   string
		target string
		scopes []string // required at least
	}{
		{name: "NUL before dot dot", target: "/public%00/../admin", scopes: admin},
		{name: "encoded backslash dot dot", target: "/public/%2e%2e%5cadmin", scopes: admin},
		{name: "double encoded slash and dots", target: "/public/%252e%252e%252fadmin", scopes: admin},
		{name: "half double encoded dots", target: "/public/.%252e/admin", scopes: admin},
		{name: "two encoded levels up", target: "/public/x/..%2F..%2Fadmin", scopes: admin},
		{name: "double encoded backslash", target: "/public/..%255cadmin", scopes: admin},
		{name: "double encoded percent", target: "/public/%25%32%65%25%32%65/admin", scopes: admin},
		{name: "encoded slash then dot dot", target: "/public/%2F../admin", scopes: admin},
		{name: "parameter on a dot segment", target: "/public/.;/../admin", scopes: admin},
		{name: "servlet session parameter", target: "/public/..;jsessionid=x/admin", scopes: admin},
		{name: "double slashes around dot dot", target: "/public//..//admin", scopes: admin},
		{name: "triple slash", target: "///admin", scopes: admin},
		{name: "dot segment prefix", target: "/./admin", scopes: admin},
		{name: "encoded question mark", target: "/public%3F/../admin", scopes: admin},
		{name: "encoded hash", target: "/public%23/../admin", scopes: admin},
		{name: "IIS %u escape", target: "/public/%u002e%u002e/admin"},
		{name: "IIS %u fullwidth dots", target: "/public/%uff0e%uff0e/admin"},
		{name: "parameter on public then slash", target: "/public;/admin"},
		{name: "missing leading slash", target: "public/../admin"},
		{name: "missing leading slash, scoped", target: "admin"},
		{name: "backslash leading", target: `\public`},
		{name: "absolute form to another host", target: "http://evil.example.com/admin", scopes: admin},
		{name: "absolute form with credentials", target: "http://user:pass@api/admin", scopes: admin},
		{name: "scheme-relative", target: "//evil.example.com/public"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol := policyFor(rules, tc.target)
			if pol.public {
				t.Errorf("policyFor(%q) is public", tc.target)
			}
			for _, s := range tc.scopes {
				if !slices.Contains(pol.scopes, s) {
					t.Errorf("policyFor(%q) = scopes %q, want %q among them", tc.target, pol.scopes, s)
				}
			}
		})
	}
	// And end to end: a valid token without the admin scope never gets
	// through, whichever trick is used.
	w := newWorld(t, nil)
	valid := mint(t, tokenSpec{})
	for _, tc := range tests {
		if len(tc.scopes) == 0 {
			continue
		}
		if d := w.srv.Decide(t.Context(), Request{Path: tc.target, Authorization: bearer(valid)}); d.Reason != InsufficientScope {
			t.Errorf("Decide(%q) with a token lacking admin = %q, want %q", tc.target, d.Reason, InsufficientScope)
		}
	}
}

// TestAttackPathKnownGaps: readings of a path that backends in use make but
// policyFor does not consider. Each would let a path that a backend resolves
// to /admin pass with any valid token (no admin scope), or let a path out of
// /public pass with none.
func TestAttackPathKnownGaps(t *testing.T) {
	rules := mustCompile(t, policyRules)
	tests := []struct {
		name     string
		target   string
		scope    string // the scope the backend's reading needs; "" when only "not public" is asked
		backends string
	}{
		{name: "upper case", target: "/ADMIN", scope: "admin", backends: "case-insensitive routers: Express (default), ASP.NET Core, IIS and any Windows file system"},
		{name: "mixed case below", target: "/Admin/users", scope: "admin", backends: "case-insensitive routers: Express (default), ASP.NET Core, IIS"},
		{name: "upper case after dot dot", target: "/public/../ADMIN", scope: "admin", backends: "case-insensitive routers"},
		{name: "format suffix", target: "/admin.json", scope: "admin", backends: "Rails routes' optional (.:format), Spring MVC suffix pattern matching (default before 5.3)"},
		{name: "trailing dot", target: "/admin.", scope: "admin", backends: "IIS and Windows file systems, which drop trailing dots"},
		{name: "trailing space", target: "/admin%20", scope: "admin", backends: "IIS and Windows file systems, which drop trailing spaces"},
		{name: "NUL truncation", target: "/admin%00.html", scope: "admin", backends: "C and old PHP backends that end a path at NUL"},
		{name: "NUL after dot dot", target: "/public/..%00/admin", backends: "backends that end a segment at NUL"},
		{name: "space after dot dot", target: "/public/..%20/admin", backends: "Windows file systems (trailing space dropped from '.. ')"},
		{name: "overlong UTF-8 dots", target: "/public/%c0%ae%c0%ae/admin", backends: "overlong UTF-8 decoders (Tomcat CVE-2008-2938, IIS CVE-2000-0884)"},
		{name: "overlong UTF-8 slash", target: "/public/..%c0%afadmin", backends: "overlong UTF-8 decoders"},
		{name: "fullwidth letter", target: "/%EF%BD%81dmin", scope: "admin", backends: "NFKC-normalising routers and IIS best-fit mapping (U+FF41 is a)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol := policyFor(rules, tc.target)
			var problem string
			switch {
			case pol.public:
				problem = "policyFor(" + tc.target + ") is public"
			case tc.scope != "" && !slices.Contains(pol.scopes, tc.scope):
				problem = fmt.Sprintf("policyFor(%q) requires scopes %q, not %q", tc.target, pol.scopes, tc.scope)
			}
			knownVulnerability(t, "a path that "+tc.backends+" resolve to a rule's path is matched only by its literal reading", problem)
		})
	}
}

// TestAttackNumericDateOverflow: exp, nbf and iat beyond what an int64 of
// seconds holds. golang-jwt converts the float with int64(), whose result is
// platform-dependent on overflow (the minimum int64 on amd64, the maximum on
// arm64); such a token must be refused on every platform.
func TestAttackNumericDateOverflow(t *testing.T) {
	k := testKeys()
	payload := claimsJSON(t, with(claimsA(), "exp", nil, "nbf", nil, "iat", nil))
	future := testNow.Add(time.Hour).Unix()
	past := testNow.Add(-time.Minute).Unix()
	tok := func(exp, nbf, iat string) []string {
		return bearer(signRaw(t, `{"alg":"RS256","kid":"a1"}`, payload[:len(payload)-1]+`,"exp":`+exp+`,"nbf":`+nbf+`,"iat":`+iat+`}`, k.keyA))
	}
	num := jsonInt
	tests := []struct {
		name string
		auth []string
	}{
		{name: "exp 1e19", auth: tok("1e19", num(past), num(past))},
		{name: "exp 1e300", auth: tok("1e300", num(past), num(past))},
		{name: "exp 1e400", auth: tok("1e400", num(past), num(past))},
		{name: "nbf 1e19", auth: tok(num(future), "1e19", num(past))},
		{name: "nbf 1e300", auth: tok(num(future), "1e300", num(past))},
		{name: "nbf 9223372036854775808", auth: tok(num(future), "9223372036854775808", num(past))},
		{name: "iat 1e19", auth: tok(num(future), num(past), "1e19")},
		{name: "iat 1e400", auth: tok(num(future), num(past), "1e400")},
	}
	w := newWorld(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: tc.auth})
			problem := ""
			if d.Allowed() {
				problem = "Decide = " + string(d.Reason) + " for a signed token whose time claim overflows int64 seconds"
			}
			knownVulnerability(t, "exp/nbf/iat beyond int64 seconds wrap around in golang-jwt's float conversion; "+
				"nbf or iat far in the future then reads as far in the past (amd64), and exp far in the future as never expiring (arm64)", problem)
		})
	}
}

func jsonInt(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAttackClaimHeaderValues: a verified claim is rendered so that the
// backend reads exactly what the token says (TestClaimHeaders covers control
// characters).
func TestAttackClaimHeaderValues(t *testing.T) {
	tests := []struct {
		name   string
		claims jwt.MapClaims
		header string
		issue  string
		check  func(set map[string]string, removed []string) string // "" when right
	}{
		{
			name:   "array element holding a comma",
			claims: with(claimsA(), "groups", []string{"admin,users"}),
			header: "x-groups",
			issue:  `array claims are joined with "," unescaped: ["admin,users"] and ["admin","users"] render the same, so a backend splitting on commas sees a group "admin" the token never granted (matters where users choose group or role names)`,
			check: func(set map[string]string, removed []string) string {
				if v, ok := set["x-groups"]; ok && v == "admin,users" {
					return `x-groups = "admin,users" for ["admin,users"], the rendering of ["admin","users"]`
				}
				return ""
			},
		},
		{
			name:   "value with surrounding whitespace",
			claims: with(claimsA(), "sub", " admin "),
			header: "x-jwt-sub",
			issue:  `claim values with leading or trailing spaces or tabs are forwarded as they are; proxies and backends strip that whitespace (RFC 9110 §5.5), so sub " admin " reaches the backend as "admin"`,
			check: func(set map[string]string, removed []string) string {
				if v, ok := set["x-jwt-sub"]; ok && strings.TrimSpace(v) != v {
					return `x-jwt-sub set to "` + v + `"`
				}
				return ""
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *Config) {
				c.ClaimHeaders = map[string]string{"x-jwt-sub": "sub", "x-groups": "groups"}
			})
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(mint(t, tokenSpec{claims: tc.claims}))})
			if d.Reason != Allowed {
				t.Fatalf("Decide = %q, want allowed", d.Reason)
			}
			set := map[string]string{}
			for _, h := range d.Headers {
				set[h.Name] = h.Value
			}
			knownVulnerability(t, tc.issue, tc.check(set, d.Remove))
		})
	}
}

// TestAttackScopeSeparators: RFC 6749 §3.3 separates scopes with spaces
// (TestDecideScopes also accepts tabs). Other Unicode white space is part of
// a scope token: a scope "files:x\u00a0admin" is not the scope "admin".
func TestAttackScopeSeparators(t *testing.T) {
	w := newWorld(t, nil)
	for _, sep := range []string{"\u00a0", "\u2003", "\u0085", "\u3000"} {
		t.Run(strings.Trim(fmt.Sprintf("%+q", sep), `"`), func(t *testing.T) {
			tok := mint(t, tokenSpec{claims: with(claimsA(), "scope", "files:x"+sep+"admin")})
			d := w.srv.Decide(t.Context(), Request{Path: "/admin", Authorization: bearer(tok)})
			problem := ""
			if d.Reason != InsufficientScope {
				problem = fmt.Sprintf("scope %+q grants admin: Decide(/admin) = %q", "files:x"+sep+"admin", d.Reason)
			}
			knownVulnerability(t, "scopes are split with strings.Fields, on any Unicode white space, so a scope the issuer "+
				"lets a client shape (dynamic scopes) can carry another scope after a no-break space", problem)
		})
	}
}

// TestAttackShadowedRule: a rule that can never match because an earlier
// public rule covers every path it names is a configuration error that
// silently makes the later rule's paths public.
func TestAttackShadowedRule(t *testing.T) {
	cfg := baseConfig(newFakeKeys(), newFakeKeys())
	cfg.Rules = []Rule{{Path: "/public", Public: true}, {Path: "/public/admin", Scopes: []string{"admin"}}}
	_, err := New(cfg)
	problem := ""
	if err == nil {
		srv, _ := New(cfg)
		d := srv.Decide(t.Context(), Request{Path: "/public/admin"})
		problem = "New accepted [/public public, /public/admin scopes admin]; GET /public/admin without a token is " + string(d.Reason)
	}
	knownVulnerability(t, "New accepts a scoped rule shadowed by an earlier public rule (first match wins), so its paths are public", problem)
}

// keyFuncSource is a KeySource answering with whatever key and error a test
// gives.
type keyFuncSource func(ctx context.Context, t *jwt.Token) (any, error)

func (f keyFuncSource) Key(ctx context.Context, t *jwt.Token) (any, error) { return f(ctx, t) }

// panicObserver panics on every decision.
type panicObserver struct{}

func (panicObserver) ObserveCheck(context.Context, Event) {
	panic("observer exploded")
}

// TestAttackFailClosed: no internal error path produces an allow. A key
// source that misbehaves, an observer that panics, a context that ends: each
// is a denial (TestCheckPanic, TestServeHTTPPanic and TestCheckContext cover
// a panicking key source and a blocked one).
func TestAttackFailClosed(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{})
	sources := []struct {
		name string
		src  keyFuncSource
	}{
		{name: "nil key, nil error", src: func(context.Context, *jwt.Token) (any, error) { return nil, nil }},
		{name: "private key", src: func(context.Context, *jwt.Token) (any, error) { return k.keyA, nil }},
		{name: "HMAC secret", src: func(context.Context, *jwt.Token) (any, error) { return publicPEM(k.keyA), nil }},
		{name: "EC key", src: func(context.Context, *jwt.Token) (any, error) { return &k.ec.PublicKey, nil }},
		{name: "string", src: func(context.Context, *jwt.Token) (any, error) { return "key", nil }},
		{name: "empty key set", src: func(context.Context, *jwt.Token) (any, error) { return jwt.VerificationKeySet{}, nil }},
		{name: "key set of wrong keys", src: func(context.Context, *jwt.Token) (any, error) {
			return jwt.VerificationKeySet{Keys: []jwt.VerificationKey{&k.keyB.PublicKey, &k.keyEvil.PublicKey}}, nil
		}},
		{name: "right key with an error", src: func(context.Context, *jwt.Token) (any, error) {
			return &k.keyA.PublicKey, errors.New("lookup failed")
		}},
		{name: "context error", src: func(ctx context.Context, _ *jwt.Token) (any, error) { return nil, context.DeadlineExceeded }},
	}
	for _, tc := range sources {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := New(baseConfig(tc.src, newFakeKeys()))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"/protected", "/admin"} {
				if d := srv.Decide(t.Context(), Request{Path: p, Authorization: bearer(valid)}); d.Allowed() || d.Status() < 400 {
					t.Errorf("Decide(%s) = %q (%d), want a denial", p, d.Reason, d.Status())
				}
			}
			resp, err := srv.Check(t.Context(), checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid}))
			if err == nil && codes.Code(resp.GetStatus().GetCode()) == codes.OK {
				t.Errorf("Check allowed")
			}
		})
	}

	t.Run("panicking observer", func(t *testing.T) {
		w := newWorld(t, func(c *Config) { c.Observer = panicObserver{} })
		for _, p := range []string{"/protected", "/public"} {
			resp, err := w.srv.Check(t.Context(), checkRequest(p, map[string]string{"authorization": "Bearer " + valid}))
			if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.Internal || resp.GetDeniedResponse().GetStatus().GetCode() != 500 {
				t.Errorf("Check(%s) = %v, %v; want an Internal denial", p, resp.GetStatus(), err)
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, p, nil)
			req.Header.Set("Authorization", "Bearer "+valid)
			w.srv.ServeHTTP(rec, req)
			if rec.Code != 500 || rec.Header().Get("X-Jwt-Sub") != "" {
				t.Errorf("ServeHTTP(%s) = %d, X-Jwt-Sub %q; want 500 and none", p, rec.Code, rec.Header().Get("X-Jwt-Sub"))
			}
		}
	})

	t.Run("panicking log handler", func(t *testing.T) {
		// The recovery logs the panic through the same logger. grpc-go does
		// not recover handler panics, so a panic that escapes Check ends the
		// process: no allow (Envoy fails closed), but every check in flight
		// fails with it.
		w := newWorld(t, func(c *Config) { c.Logger = slog.New(panicHandler{}) })
		var resp *authv3.CheckResponse
		var err error
		escaped := func() (p any) {
			defer func() { p = recover() }()
			resp, err = w.srv.Check(t.Context(), checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid}))
			return nil
		}()
		if escaped == nil && (err != nil || codes.Code(resp.GetStatus().GetCode()) == codes.OK) {
			t.Errorf("Check = %v, %v; want a denial", resp.GetStatus(), err)
		}
		problem := ""
		if escaped != nil {
			problem = fmt.Sprintf("Check panicked with %v: the recovery's own log call panicked again", escaped)
		}
		knownVulnerability(t, "a panic while logging escapes Check's recovery (it logs through the same handler) and, over gRPC, ends the process", problem)
	})

	t.Run("forward auth with a cancelled request", func(t *testing.T) {
		w := newWorld(t, nil)
		w.keysA.block.Store(true)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
		defer cancel()
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/protected", nil)
		req.Header.Set("Authorization", "Bearer "+valid)
		w.srv.ServeHTTP(rec, req)
		if rec.Code == 200 {
			t.Errorf("ServeHTTP after its deadline = 200, want a denial")
		}
	})

	t.Run("check with an expired deadline never allows", func(t *testing.T) {
		w := newWorld(t, nil)
		_ = w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(valid)}) // cached now
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		resp, err := w.srv.Check(ctx, checkRequest("/protected", map[string]string{"authorization": "Bearer " + valid}))
		if status := codes.Code(resp.GetStatus().GetCode()); err == nil && status == codes.OK {
			t.Errorf("Check with an expired deadline allowed a cached token")
		}
	})
}

// panicHandler is a slog.Handler that panics on every record.
type panicHandler struct{}

func (panicHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panicHandler) Handle(context.Context, slog.Record) error { panic("log handler exploded") }
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h panicHandler) WithGroup(string) slog.Handler           { return h }

// TestAttackTokenCacheKey: the verified-token cache is keyed by the SHA-256
// of the whole token, so no other token string, however close, is answered
// with a cached result; and its entries never outlive their key.
func TestAttackTokenCacheKey(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{})
	parts := strings.Split(valid, ".")
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	w := newWorld(t, nil)
	if d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(valid)}); d.Reason != Allowed {
		t.Fatalf("Decide(valid) = %q", d.Reason)
	}
	variants := []struct {
		name string
		tok  string
	}{
		{name: "one signature character changed", tok: parts[0] + "." + parts[1] + "." + flip(parts[2], 10)},
		{name: "one payload character changed", tok: parts[0] + "." + flip(parts[1], 10) + "." + parts[2]},
		{name: "payload of another token", tok: parts[0] + "." + payloadOf(mint(t, tokenSpec{claims: with(claimsA(), "sub", "admin")})) + "." + parts[2]},
		{name: "signature truncated", tok: parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4]},
		{name: "signature of another key", tok: parts[0] + "." + parts[1] + "." + strings.Split(mint(t, tokenSpec{key: k.keyEvil}), ".")[2]},
		{name: "header of another kid", tok: b64([]byte(`{"alg":"RS256","kid":"b1","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			before := w.srv.CacheStats()
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(v.tok)})
			if d.Allowed() {
				t.Errorf("a variant of a cached valid token was allowed (%q)", d.Reason)
			}
			if after := w.srv.CacheStats(); after.Hits != before.Hits {
				t.Errorf("the variant was answered from the positive cache")
			}
		})
	}
	if st := w.srv.CacheStats(); st.Hits != 0 || st.Misses < 1 {
		t.Errorf("cache stats %+v: the valid token was not cached, or a variant hit it", st)
	}
}

// TestAttackSpoofedClaimHeadersAllSpellings: every case and separator
// spelling of a claim header that a client sends is overwritten or removed
// over gRPC, on public and protected routes, with and without a token
// (TestSpoofing applies the response the way Envoy does; this enumerates the
// spellings).
func TestAttackSpoofedClaimHeadersAllSpellings(t *testing.T) {
	valid := mint(t, tokenSpec{})
	var spellings []string
	for _, sep := range [][2]string{{"-", "-"}, {"_", "_"}, {"-", "_"}, {"_", "-"}} {
		for _, c := range []func(string) string{strings.ToLower, strings.ToUpper, func(s string) string { return "X" + s[1:] }} {
			spellings = append(spellings, c("x"+sep[0]+"jwt"+sep[1]+"sub"), c("x"+sep[0]+"jwt"+sep[1]+"payload"))
		}
	}
	w := newWorld(t, nil)
	for _, path := range []string{"/public", "/protected"} {
		for _, tok := range []string{"", valid} {
			name := path + " without token"
			if tok != "" {
				name = path + " with token"
			}
			t.Run(name, func(t *testing.T) {
				headers := map[string]string{}
				for _, s := range spellings {
					headers[s] = "admin"
				}
				if tok != "" {
					headers["authorization"] = "Bearer " + tok
				}
				resp, err := w.srv.Check(t.Context(), checkRequest(path, headers))
				if err != nil {
					t.Fatal(err)
				}
				ok := resp.GetOkResponse()
				if path == "/protected" && tok == "" {
					if ok != nil {
						t.Fatalf("allowed without a token")
					}
					return
				}
				if ok == nil {
					t.Fatalf("denied: %v", resp.GetStatus())
				}
				handled := map[string]bool{}
				for _, h := range ok.GetHeaders() {
					handled[strings.ToLower(h.GetHeader().GetKey())] = true
				}
				for _, r := range ok.GetHeadersToRemove() {
					handled[strings.ToLower(r)] = true
				}
				for _, s := range spellings {
					if !handled[strings.ToLower(s)] {
						t.Errorf("client header %q is neither overwritten nor removed", s)
					}
				}
			})
		}
	}
}

// TestAttackTokenSpellings: golang-jwt decodes base64url leniently, so a
// valid token has other spellings (unused trailing bits of the signature, a
// line break inside it). They carry the very same signature bytes, so they
// are the same token, not a forgery: allowed, and verified on their own
// rather than answered from the cache entry of the first spelling.
func TestAttackTokenSpellings(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	valid := mint(t, tokenSpec{})
	parts := strings.Split(valid, ".")
	sig := parts[2]
	if len(sig)%4 != 2 {
		t.Fatalf("signature of %d characters: the last one has no unused bits to flip", len(sig))
	}
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	spellings := []struct {
		name string
		tok  string
	}{
		{name: "unused trailing bits set", tok: parts[0] + "." + parts[1] + "." + sig[:len(sig)-1] + string(alphabet[last^1])},
		{name: "line break inside the signature", tok: parts[0] + "." + parts[1] + "." + sig[:10] + "\n" + sig[10:]},
	}
	w := newWorld(t, nil)
	if d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(valid)}); d.Reason != Allowed {
		t.Fatalf("Decide(valid) = %q", d.Reason)
	}
	for _, sp := range spellings {
		t.Run(sp.name, func(t *testing.T) {
			before := w.srv.CacheStats()
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(sp.tok)})
			if d.Reason != Allowed || headerValue(d.Headers, "x-jwt-sub") != subject {
				t.Errorf("Decide = %q, sub %q; want the same token's allow", d.Reason, headerValue(d.Headers, "x-jwt-sub"))
			}
			if after := w.srv.CacheStats(); after.Misses != before.Misses+1 || after.Hits != before.Hits {
				t.Errorf("cache %+v -> %+v: want the spelling verified on its own", before, after)
			}
		})
	}
}
