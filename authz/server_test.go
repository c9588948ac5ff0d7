package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/jwks"
)

func TestDecideReasons(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{})
	otherValid := mint(t, tokenSpec{claims: with(claimsA(), "sub", "someone-else")})
	rs := func(c jwt.MapClaims) string { return mint(t, tokenSpec{claims: c}) }
	noneHeader := map[string]any{"alg": "none", "typ": "JWT", "kid": kidA}
	payload := map[string]any(claimsA())

	tests := []struct {
		name     string
		path     string // defaults to /protected
		auth     []string
		setup    func(w world)
		want     Reason
		provider string
	}{
		{name: "valid token", auth: bearer(valid), want: Allowed, provider: "a"},
		{name: "lower-case scheme", auth: []string{"bearer " + valid}, want: Allowed, provider: "a"},
		{name: "upper-case scheme", auth: []string{"BEARER " + valid}, want: Allowed, provider: "a"},
		{name: "mixed-case scheme", auth: []string{"bEaReR " + valid}, want: Allowed, provider: "a"},
		{name: "several spaces after scheme", auth: []string{"Bearer    " + valid}, want: Allowed, provider: "a"},
		{name: "surrounding whitespace", auth: []string{" \tBearer " + valid + " \t"}, want: Allowed, provider: "a"},
		{name: "audience list holding ours", auth: bearer(rs(with(claimsA(), "aud", []string{"x", audience}))), want: Allowed, provider: "a"},

		{name: "no header", want: MissingToken},
		{name: "empty header", auth: []string{""}, want: MissingToken},
		{name: "scheme only", auth: []string{"Bearer"}, want: MissingToken},
		{name: "scheme and spaces", auth: []string{"Bearer   "}, want: MissingToken},
		{name: "basic scheme", auth: []string{"Basic dXNlcjpwYXNz"}, want: MissingToken},
		{name: "token without scheme", auth: []string{valid}, want: MissingToken},
		{name: "scheme prefix only", auth: []string{"Bearerx " + valid}, want: MissingToken},
		{name: "tab after scheme", auth: []string{"Bearer\t" + valid}, want: MissingToken},

		{name: "two headers", auth: []string{"Bearer " + valid, "Bearer " + otherValid}, want: InvalidRequest},
		{name: "two identical headers", auth: []string{"Bearer " + valid, "Bearer " + valid}, want: InvalidRequest},
		{name: "second header empty", auth: []string{"Bearer " + valid, ""}, want: InvalidRequest},
		{name: "headers joined by Envoy", auth: []string{"Bearer " + valid + ",Bearer " + otherValid}, want: InvalidRequest},
		{name: "two tokens in one header", auth: []string{"Bearer " + valid + " " + otherValid}, want: InvalidRequest},
		{name: "tab inside token", auth: []string{"Bearer " + valid + "\tx"}, want: InvalidRequest},

		{name: "over the size limit", auth: []string{"Bearer " + strings.Repeat("a", 8<<10+1)}, want: TokenTooLarge},
		{name: "at the size limit", auth: []string{"Bearer " + strings.Repeat("a", 8<<10)}, want: Malformed},

		{name: "not a JWS", auth: []string{"Bearer abc"}, want: Malformed},
		{name: "two segments", auth: []string{"Bearer " + strings.Join(strings.Split(valid, ".")[:2], ".")}, want: Malformed},
		{name: "four segments", auth: []string{"Bearer " + valid + ".x"}, want: Malformed},
		{name: "header not base64url", auth: []string{"Bearer !!!." + payloadOf(valid) + ".x"}, want: Malformed},
		{name: "padded header", auth: []string{"Bearer " + (*jwt.Token)(nil).EncodeSegment([]byte(`{"alg":"RS256","kid":"a1"}`)) + "=." + payloadOf(valid) + ".x"}, want: Malformed},
		{name: "header not JSON", auth: []string{"Bearer " + (*jwt.Token)(nil).EncodeSegment([]byte("not json")) + "." + payloadOf(valid) + ".x"}, want: Malformed},
		{name: "payload not an object", auth: []string{"Bearer " + strings.Split(valid, ".")[0] + "." + (*jwt.Token)(nil).EncodeSegment([]byte(`["a"]`)) + ".x"}, want: Malformed},
		{name: "crit header", auth: bearer(mint(t, tokenSpec{header: map[string]any{"crit": []string{"exp"}}})), want: Malformed},
		{name: "empty crit header", auth: bearer(mint(t, tokenSpec{header: map[string]any{"crit": []string{}}})), want: Malformed},

		{name: "alg none", auth: bearer(rawToken(t, noneHeader, payload, "")), want: BadAlgorithm},
		{name: "alg none with a signature", auth: bearer(rawToken(t, noneHeader, payload, strings.Split(valid, ".")[2])), want: BadAlgorithm},
		{name: "alg NONE", auth: bearer(rawToken(t, map[string]any{"alg": "NONE", "kid": kidA}, payload, "")), want: BadAlgorithm},
		{name: "HS256 keyed with the public key", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodHS256, key: publicPEM(k.keyA)})), want: BadAlgorithm},
		{name: "HS256 keyed with the public key DER", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodHS256, key: k.keyA.PublicKey.N.Bytes()})), want: BadAlgorithm},
		{name: "HS512", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodHS512, key: []byte("secret")})), want: BadAlgorithm},
		{name: "RS384 with the right key", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodRS384})), want: BadAlgorithm},
		{name: "PS256 with the right key", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodPS256})), want: BadAlgorithm},
		{name: "ES256", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodES256, key: k.ec})), want: BadAlgorithm},
		{name: "unknown alg", auth: bearer(rawToken(t, map[string]any{"alg": "XX256", "kid": kidA}, payload, "c2ln")), want: BadAlgorithm},
		{name: "no alg", auth: bearer(rawToken(t, map[string]any{"kid": kidA}, payload, "c2ln")), want: BadAlgorithm},
		{name: "alg not a string", auth: bearer(rawToken(t, map[string]any{"alg": 256, "kid": kidA}, payload, "c2ln")), want: BadAlgorithm},

		{name: "signed by a stranger's key", auth: bearer(mint(t, tokenSpec{key: k.keyEvil})), want: BadSignature, provider: "a"},
		{name: "signed by provider b's key", auth: bearer(mint(t, tokenSpec{key: k.keyB})), want: BadSignature, provider: "a"},
		{name: "payload swapped", auth: []string{"Bearer " + strings.Split(valid, ".")[0] + "." + payloadOf(otherValid) + "." + strings.Split(valid, ".")[2]}, want: BadSignature, provider: "a"},
		{name: "signature removed", auth: []string{"Bearer " + strings.Join(strings.Split(valid, ".")[:2], ".") + "."}, want: BadSignature, provider: "a"},
		{name: "signature not base64url", auth: []string{"Bearer " + strings.Join(strings.Split(valid, ".")[:2], ".") + ".!!"}, want: Malformed},

		{name: "unknown kid", auth: bearer(mint(t, tokenSpec{kid: "nope"})), want: UnknownKID, provider: "a"},
		{name: "no kid", auth: bearer(mint(t, tokenSpec{kid: "-"})), want: UnknownKID, provider: "a"},
		{name: "kid not a string", auth: bearer(mint(t, tokenSpec{header: map[string]any{"kid": 1}})), want: UnknownKID, provider: "a"},

		{name: "unknown issuer", auth: bearer(rs(with(claimsA(), "iss", "https://evil.example.com"))), want: UnknownIssuer},
		{name: "no issuer", auth: bearer(rs(with(claimsA(), "iss", nil))), want: UnknownIssuer},
		{name: "issuer not a string", auth: bearer(rs(with(claimsA(), "iss", 7))), want: UnknownIssuer},
		{name: "issuer with a trailing slash", auth: bearer(rs(with(claimsA(), "iss", issuerA+"/"))), want: UnknownIssuer},
		{name: "issuer in other case", auth: bearer(rs(with(claimsA(), "iss", strings.ToUpper(issuerA)))), want: UnknownIssuer},

		{name: "wrong audience", auth: bearer(rs(with(claimsA(), "aud", "https://elsewhere.example.com"))), want: WrongAudience, provider: "a"},
		{name: "audience list without ours", auth: bearer(rs(with(claimsA(), "aud", []string{"x", "y"}))), want: WrongAudience, provider: "a"},
		{name: "audience of another provider", auth: bearer(rs(with(claimsA(), "aud", audience2))), want: WrongAudience, provider: "a"},
		{name: "audience differs in case", auth: bearer(rs(with(claimsA(), "aud", strings.ToUpper(audience)))), want: WrongAudience, provider: "a"},
		{name: "no audience", auth: bearer(rs(with(claimsA(), "aud", nil))), want: InvalidClaims, provider: "a"},
		{name: "empty audience", auth: bearer(rs(with(claimsA(), "aud", ""))), want: InvalidClaims, provider: "a"},
		{name: "audience not a string", auth: bearer(rs(with(claimsA(), "aud", 5))), want: InvalidClaims, provider: "a"},
		{name: "audience list holding a number", auth: bearer(rs(with(claimsA(), "aud", []any{audience, 5}))), want: InvalidClaims, provider: "a"},
		{name: "iat not a number", auth: bearer(rs(with(claimsA(), "iat", true))), want: InvalidClaims, provider: "a"},

		{name: "expired beyond the skew", auth: bearer(rs(with(claimsA(), "exp", testNow.Add(-61*time.Second).Unix()))), want: Expired, provider: "a"},
		{name: "expired within the skew", auth: bearer(rs(with(claimsA(), "exp", testNow.Add(-59*time.Second).Unix()))), want: Allowed, provider: "a"},
		{name: "expired long ago", auth: bearer(rs(with(claimsA(), "exp", testNow.Add(-24*time.Hour).Unix()))), want: Expired, provider: "a"},
		{name: "exp zero", auth: bearer(rs(with(claimsA(), "exp", 0))), want: Expired, provider: "a"},
		{name: "no exp", auth: bearer(rs(with(claimsA(), "exp", nil))), want: InvalidClaims, provider: "a"},
		{name: "exp not a number", auth: bearer(rs(with(claimsA(), "exp", "tomorrow"))), want: InvalidClaims, provider: "a"},
		{name: "nbf beyond the skew", auth: bearer(rs(with(claimsA(), "nbf", testNow.Add(61*time.Second).Unix()))), want: NotYetValid, provider: "a"},
		{name: "nbf within the skew", auth: bearer(rs(with(claimsA(), "nbf", testNow.Add(59*time.Second).Unix()))), want: Allowed, provider: "a"},
		{name: "nbf not a number", auth: bearer(rs(with(claimsA(), "nbf", "soon"))), want: InvalidClaims, provider: "a"},
		{name: "iat beyond the skew", auth: bearer(rs(with(claimsA(), "iat", testNow.Add(2*time.Minute).Unix()))), want: NotYetValid, provider: "a"},
		{name: "iat within the skew", auth: bearer(rs(with(claimsA(), "iat", testNow.Add(30*time.Second).Unix()))), want: Allowed, provider: "a"},
		{name: "no iat and no nbf", auth: bearer(rs(with(claimsA(), "iat", nil, "nbf", nil))), want: Allowed, provider: "a"},

		{name: "lacking the scope", path: "/admin", auth: bearer(valid), want: InsufficientScope, provider: "a"},
		{name: "no token on a scoped path", path: "/admin", want: MissingToken},
		{name: "bad token on a scoped path", path: "/admin", auth: bearer(mint(t, tokenSpec{key: k.keyEvil})), want: BadSignature, provider: "a"},

		{name: "keys not loaded", auth: bearer(valid), setup: func(w world) { w.keysA.notReady.Store(true) }, want: KeysUnavailable, provider: "a"},
		{name: "keys of another provider not loaded", auth: bearer(valid), setup: func(w world) { w.keysB.notReady.Store(true) }, want: Allowed, provider: "a"},
		{name: "keys not loaded on a scoped path", path: "/admin", auth: bearer(valid), setup: func(w world) { w.keysA.notReady.Store(true) }, want: KeysUnavailable, provider: "a"},

		{name: "public, no token", path: "/public", want: Public},
		{name: "public, valid token", path: "/public/x", auth: bearer(valid), want: Public, provider: "a"},
		{name: "public, expired token", path: "/public", auth: bearer(rs(with(claimsA(), "exp", testNow.Add(-time.Hour).Unix()))), want: Public, provider: "a"},
		{name: "public, alg none", path: "/public", auth: bearer(rawToken(t, noneHeader, payload, "")), want: Public},
		{name: "public, two headers", path: "/public", auth: []string{"Bearer " + valid, "Bearer " + valid}, want: Public},
		{name: "public, keys not loaded", path: "/public", auth: bearer(valid), setup: func(w world) { w.keysA.notReady.Store(true) }, want: Public, provider: "a"},
		{name: "public, oversized token", path: "/public", auth: []string{"Bearer " + strings.Repeat("a", 9000)}, want: Public},
		{name: "dot dot out of public", path: "/public/../protected", want: MissingToken},
		{name: "encoded dot dot out of public", path: "/public/%2e%2e/admin", auth: bearer(valid), want: InsufficientScope, provider: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			if tc.setup != nil {
				tc.setup(w)
			}
			p := tc.path
			if p == "" {
				p = "/protected"
			}
			d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: p, Authorization: tc.auth})
			if d.Reason != tc.want || d.Provider != tc.provider {
				t.Errorf("Decide = reason %q, provider %q; want %q, %q", d.Reason, d.Provider, tc.want, tc.provider)
			}
			if d.Allowed() != tc.want.Allow() {
				t.Errorf("Allowed() = %v, want %v", d.Allowed(), tc.want.Allow())
			}
		})
	}
}

// TestDenials checks the whole denial for every deny reason Decide can give:
// status, gRPC code, JSON body and RFC 6750 challenge.
func TestDenials(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{})
	rs := func(c jwt.MapClaims) []string { return bearer(mint(t, tokenSpec{claims: c})) }
	invalidToken := func(desc string) string {
		return `Bearer realm="extauthz", error="invalid_token", error_description="` + desc + `"`
	}
	tests := []struct {
		name   string
		path   string
		auth   []string
		realm  string
		setup  func(w world)
		want   Decision
		status int
		code   codes.Code
	}{
		{name: "missing token", want: Decision{Reason: MissingToken,
			Body: `{"error":"Missing or invalid Authorization header"}`, WWWAuthenticate: `Bearer realm="extauthz"`},
			status: 401, code: codes.Unauthenticated},
		{name: "missing token, custom realm", realm: "api.example.com", want: Decision{Reason: MissingToken,
			Body: `{"error":"Missing or invalid Authorization header"}`, WWWAuthenticate: `Bearer realm="api.example.com"`},
			status: 401, code: codes.Unauthenticated},
		{name: "not a bearer token", auth: []string{"Basic eDp5"}, want: Decision{Reason: MissingToken,
			Body: `{"error":"Missing or invalid Authorization header"}`, WWWAuthenticate: `Bearer realm="extauthz"`},
			status: 401, code: codes.Unauthenticated},
		{name: "two authorization headers", auth: []string{"Bearer " + valid, "Bearer " + valid}, want: Decision{Reason: InvalidRequest,
			Body:            `{"error":"Multiple Authorization headers or tokens"}`,
			WWWAuthenticate: `Bearer realm="extauthz", error="invalid_request", error_description="Multiple Authorization headers or tokens"`},
			status: 400, code: codes.InvalidArgument},
		{name: "token too large", auth: []string{"Bearer " + strings.Repeat("x", 9000)}, want: Decision{Reason: TokenTooLarge,
			Body: `{"error":"Token is too large"}`, WWWAuthenticate: invalidToken("Token is too large")},
			status: 401, code: codes.Unauthenticated},
		{name: "malformed", auth: []string{"Bearer x.y.z"}, want: Decision{Reason: Malformed,
			Body: `{"error":"Token is malformed"}`, WWWAuthenticate: invalidToken("Token is malformed")},
			status: 401, code: codes.Unauthenticated},
		{name: "bad algorithm", auth: bearer(mint(t, tokenSpec{method: jwt.SigningMethodHS256, key: publicPEM(k.keyA)})), want: Decision{Reason: BadAlgorithm,
			Body: `{"error":"The specified alg value is not allowed"}`, WWWAuthenticate: invalidToken("The specified alg value is not allowed")},
			status: 401, code: codes.Unauthenticated},
		{name: "bad signature", auth: bearer(mint(t, tokenSpec{key: k.keyEvil})), want: Decision{Reason: BadSignature, Provider: "a",
			Body: `{"error":"Signature verification failed"}`, WWWAuthenticate: invalidToken("Signature verification failed")},
			status: 401, code: codes.Unauthenticated},
		{name: "unknown kid", auth: bearer(mint(t, tokenSpec{kid: "zz"})), want: Decision{Reason: UnknownKID, Provider: "a",
			Body: `{"error":"Unable to find matching public key"}`, WWWAuthenticate: invalidToken("Unable to find matching public key")},
			status: 401, code: codes.Unauthenticated},
		{name: "unknown issuer", auth: rs(with(claimsA(), "iss", "https://evil")), want: Decision{Reason: UnknownIssuer,
			Body: `{"error":"Invalid issuer"}`, WWWAuthenticate: invalidToken("Invalid issuer")},
			status: 401, code: codes.Unauthenticated},
		{name: "wrong audience", auth: rs(with(claimsA(), "aud", "x")), want: Decision{Reason: WrongAudience, Provider: "a",
			Body: `{"error":"Invalid audience"}`, WWWAuthenticate: invalidToken("Invalid audience")},
			status: 401, code: codes.Unauthenticated},
		{name: "expired", auth: rs(with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())), want: Decision{Reason: Expired, Provider: "a",
			Body: `{"error":"Token has expired"}`, WWWAuthenticate: invalidToken("Token has expired")},
			status: 401, code: codes.Unauthenticated},
		{name: "not yet valid", auth: rs(with(claimsA(), "nbf", testNow.Add(time.Hour).Unix())), want: Decision{Reason: NotYetValid, Provider: "a",
			Body: `{"error":"Token is not valid yet"}`, WWWAuthenticate: invalidToken("Token is not valid yet")},
			status: 401, code: codes.Unauthenticated},
		{name: "invalid claims", auth: rs(with(claimsA(), "exp", nil)), want: Decision{Reason: InvalidClaims, Provider: "a",
			Body: `{"error":"Token claims are invalid"}`, WWWAuthenticate: invalidToken("Token claims are invalid")},
			status: 401, code: codes.Unauthenticated},
		{name: "insufficient scope", path: "/admin/x", auth: bearer(valid), want: Decision{Reason: InsufficientScope, Provider: "a",
			Body:            `{"error":"Insufficient scope"}`,
			WWWAuthenticate: `Bearer realm="extauthz", error="insufficient_scope", error_description="Insufficient scope", scope="admin"`},
			status: 403, code: codes.PermissionDenied},
		{name: "insufficient scope, two scopes", path: "/reports", auth: bearer(valid), want: Decision{Reason: InsufficientScope, Provider: "a",
			Body:            `{"error":"Insufficient scope"}`,
			WWWAuthenticate: `Bearer realm="extauthz", error="insufficient_scope", error_description="Insufficient scope", scope="read reports"`},
			status: 403, code: codes.PermissionDenied},
		{name: "keys unavailable", auth: bearer(valid), setup: func(w world) { w.keysA.notReady.Store(true) }, want: Decision{Reason: KeysUnavailable, Provider: "a",
			Body: `{"error":"Signing keys are not available yet"}`},
			status: 503, code: codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *Config) {
				c.Realm = tc.realm
				c.Rules = append(c.Rules, Rule{Path: "/reports", Scopes: []string{"read", "reports"}})
			})
			if tc.setup != nil {
				tc.setup(w)
			}
			p := tc.path
			if p == "" {
				p = "/protected"
			}
			d := w.srv.Decide(t.Context(), Request{Path: p, Authorization: tc.auth})
			if d.Metadata.GetFields()["reason"].GetStringValue() != string(d.Reason) {
				t.Errorf("metadata %v, want the reason %q", d.Metadata, d.Reason)
			}
			d.Metadata = nil
			if d.Message != d.Reason.Message() {
				t.Errorf("message %q, want the reason's %q", d.Message, d.Reason.Message())
			}
			d.Message = ""
			if !reflect.DeepEqual(d, tc.want) {
				t.Errorf("Decide =\n %+v\nwant\n %+v", d, tc.want)
			}
			if d.Status() != tc.status || d.Reason.Code() != tc.code {
				t.Errorf("status, code = %d, %v; want %d, %v", d.Status(), d.Reason.Code(), tc.status, tc.code)
			}
			var body map[string]string
			if err := json.Unmarshal([]byte(d.Body), &body); err != nil || body["error"] != d.Reason.Message() || len(body) != 1 {
				t.Errorf("body %q is not {\"error\": %q} (%v)", d.Body, d.Reason.Message(), err)
			}
		})
	}
}

func TestReasonTable(t *testing.T) {
	all := []Reason{Allowed, Public, MissingToken, InvalidRequest, AmbiguousRequest, PathTooLong, TokenTooLarge, Malformed, BadAlgorithm,
		BadSignature, UnknownKID, UnknownIssuer, WrongAudience, Expired, NotYetValid, InvalidClaims,
		DPoPInvalid, DPoPReplayed, DPoPBindingMismatch, UseDPoPNonce, CertBindingMismatch, TokenNotBound,
		InsufficientScope, PolicyDenied, PolicyError, UnknownPolicy, KeysUnavailable, Internal}
	if !sameSet(reasonStrings(Reasons()), reasonStrings(all)) || len(Reasons()) != len(all) {
		t.Errorf("Reasons() = %q, want %q", Reasons(), all)
	}
	for _, r := range all {
		t.Run(string(r), func(t *testing.T) {
			if _, ok := outcomes[r]; !ok {
				t.Fatalf("no outcome for %q", r)
			}
			var wantStatus int
			var wantCode codes.Code
			switch r {
			case Allowed, Public:
				wantStatus, wantCode = 200, codes.OK
			case InsufficientScope, PolicyDenied, PolicyError:
				wantStatus, wantCode = 403, codes.PermissionDenied
			case UnknownPolicy:
				wantStatus, wantCode = 500, codes.Internal
			case KeysUnavailable:
				wantStatus, wantCode = 503, codes.Unavailable
			case AmbiguousRequest, InvalidRequest:
				wantStatus, wantCode = 400, codes.InvalidArgument // RFC 6750 §3.1 for invalid_request
			case PathTooLong:
				wantStatus, wantCode = 414, codes.InvalidArgument
			case Internal:
				wantStatus, wantCode = 500, codes.Internal
			default:
				wantStatus, wantCode = 401, codes.Unauthenticated
			}
			if r.Status() != wantStatus || r.Code() != wantCode {
				t.Errorf("Status, Code = %d, %v; want %d, %v", r.Status(), r.Code(), wantStatus, wantCode)
			}
			if r.Allow() != (wantStatus == 200) {
				t.Errorf("Allow() = %v", r.Allow())
			}
			if !r.Allow() && r.Message() == "" {
				t.Errorf("deny reason %q has no message", r)
			}
			if strings.ContainsAny(r.Message(), "\"\\\r\n") {
				t.Errorf("message %q cannot be a quoted-string in WWW-Authenticate", r.Message())
			}
		})
	}
	t.Run("unknown reason fails closed", func(t *testing.T) {
		r := Reason("bogus")
		if r.Allow() || r.Status() != 500 || r.Code() != codes.Internal {
			t.Errorf("Reason(bogus) = allow %v, %d, %v; want deny, 500, Internal", r.Allow(), r.Status(), r.Code())
		}
	})
}

func reasonStrings(rs []Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

func TestDecideScopes(t *testing.T) {
	scoped := func(kv ...any) []string {
		return bearer(mint(t, tokenSpec{claims: with(claimsA(), append([]any{"scope", nil}, kv...)...)}))
	}
	tests := []struct {
		name string
		path string
		auth []string
		want Reason
	}{
		{name: "scope string", path: "/admin", auth: scoped("scope", "admin"), want: Allowed},
		{name: "scope among others", path: "/admin/x", auth: scoped("scope", "read:messages admin"), want: Allowed},
		{name: "scope with extra spaces", path: "/admin", auth: scoped("scope", "  read   admin  "), want: Allowed},
		{name: "scope separated by a tab is one token (RFC 6749 §3.3: spaces only)", path: "/admin", auth: scoped("scope", "read\tadmin"), want: InsufficientScope},
		{name: "scp array", path: "/admin", auth: scoped("scp", []string{"read", "admin"}), want: Allowed},
		{name: "scp string", path: "/admin", auth: scoped("scp", "read admin"), want: Allowed},
		{name: "scope array", path: "/admin", auth: scoped("scope", []string{"admin"}), want: Allowed},
		{name: "no scope claim", path: "/admin", auth: scoped(), want: InsufficientScope},
		{name: "other scope", path: "/admin", auth: scoped("scope", "read:messages"), want: InsufficientScope},
		{name: "longer scope is not the scope", path: "/admin", auth: scoped("scope", "administrator"), want: InsufficientScope},
		{name: "scope prefix is not the scope", path: "/admin", auth: scoped("scope", "adm"), want: InsufficientScope},
		{name: "scope is case-sensitive", path: "/admin", auth: scoped("scope", "Admin"), want: InsufficientScope},
		{name: "comma is not a separator", path: "/admin", auth: scoped("scope", "read,admin"), want: InsufficientScope},
		{name: "scope not a string", path: "/admin", auth: scoped("scope", 1), want: InsufficientScope},
		{name: "scope object", path: "/admin", auth: scoped("scope", map[string]any{"admin": true}), want: InsufficientScope},
		{name: "scp array of non-strings", path: "/admin", auth: scoped("scp", []any{1, true}), want: InsufficientScope},
		{name: "all of two scopes", path: "/reports", auth: scoped("scope", "reports read"), want: Allowed},
		{name: "one of two scopes", path: "/reports", auth: scoped("scope", "read"), want: InsufficientScope},
		{name: "two scopes across scope and scp", path: "/reports", auth: scoped("scope", "read", "scp", []string{"reports"}), want: Allowed},
		{name: "unscoped path needs no scope", path: "/protected", auth: scoped(), want: Allowed},
		{name: "encoded slash reaches scoped rule", path: "/x/..%2Fadmin", auth: scoped("scope", "read"), want: InsufficientScope},
		{name: "encoded slash with the scope", path: "/x/..%2Fadmin", auth: scoped("scope", "admin"), want: Allowed},
		{name: "parameter hides scoped rule", path: "/admin;x=1", auth: scoped("scope", "read"), want: InsufficientScope},
		{name: "public path beats scope", path: "/public", auth: scoped(), want: Public},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *Config) {
				c.Rules = append(c.Rules, Rule{Path: "/reports", Scopes: []string{"read", "reports"}})
			})
			d := w.srv.Decide(t.Context(), Request{Path: tc.path, Authorization: tc.auth})
			if d.Reason != tc.want {
				t.Errorf("Decide(%s) = %q, want %q", tc.path, d.Reason, tc.want)
			}
		})
	}
}

func TestDecideClockSkew(t *testing.T) {
	tok := func(exp, nbf, iat time.Duration) []string {
		return bearer(mint(t, tokenSpec{claims: with(claimsA(),
			"exp", testNow.Add(exp).Unix(), "nbf", testNow.Add(nbf).Unix(), "iat", testNow.Add(iat).Unix())}))
	}
	tests := []struct {
		name string
		skew time.Duration
		auth []string
		want Reason
	}{
		{name: "default skew tolerates 59s of expiry", skew: 0, auth: tok(-59*time.Second, -time.Hour, -time.Hour), want: Allowed},
		{name: "default skew stops at 61s of expiry", skew: 0, auth: tok(-61*time.Second, -time.Hour, -time.Hour), want: Expired},
		{name: "default skew tolerates nbf 59s ahead", skew: 0, auth: tok(time.Hour, 59*time.Second, 0), want: Allowed},
		{name: "default skew stops nbf 61s ahead", skew: 0, auth: tok(time.Hour, 61*time.Second, 0), want: NotYetValid},
		{name: "default skew stops iat 61s ahead", skew: 0, auth: tok(time.Hour, 0, 61*time.Second), want: NotYetValid},
		{name: "no skew: expired a second ago", skew: -1, auth: tok(-time.Second, -time.Hour, -time.Hour), want: Expired},
		{name: "no skew: expires in a second", skew: -1, auth: tok(time.Second, -time.Hour, -time.Hour), want: Allowed},
		{name: "no skew: nbf a second ahead", skew: -1, auth: tok(time.Hour, time.Second, 0), want: NotYetValid},
		{name: "no skew: iat a second ahead", skew: -1, auth: tok(time.Hour, 0, time.Second), want: NotYetValid},
		{name: "five minutes tolerate four", skew: 5 * time.Minute, auth: tok(-4*time.Minute, 4*time.Minute, 4*time.Minute), want: Allowed},
		{name: "five minutes stop at six", skew: 5 * time.Minute, auth: tok(-6*time.Minute, -time.Hour, -time.Hour), want: Expired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *Config) { c.ClockSkew = tc.skew })
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: tc.auth})
			if d.Reason != tc.want {
				t.Errorf("Decide = %q, want %q", d.Reason, tc.want)
			}
		})
	}
}

// TestDecideProviders checks that a token is verified only with the keys and
// algorithms of the provider its iss names.
func TestDecideProviders(t *testing.T) {
	k := testKeys()
	claimsB := func() jwt.MapClaims { return with(claimsA(), "iss", issuerB) }
	tests := []struct {
		name     string
		token    tokenSpec
		want     Reason
		provider string
		callsA   int64 // calls to provider a's key source
		callsB   int64
	}{
		{name: "a's token", token: tokenSpec{}, want: Allowed, provider: "a", callsA: 1},
		{name: "b's token", token: tokenSpec{key: k.keyB, kid: kidB, claims: claimsB()}, want: Allowed, provider: "b", callsB: 1},
		{name: "b's second audience", token: tokenSpec{key: k.keyB, kid: kidB, claims: with(claimsB(), "aud", audience2)}, want: Allowed, provider: "b", callsB: 1},
		{name: "b's second audience is not a's", token: tokenSpec{claims: with(claimsA(), "aud", audience2)}, want: WrongAudience, provider: "a", callsA: 1},
		{name: "a's key and kid claiming b", token: tokenSpec{claims: claimsB()}, want: UnknownKID, provider: "b", callsB: 1},
		{name: "b's key and kid claiming a", token: tokenSpec{key: k.keyB, kid: kidB}, want: UnknownKID, provider: "a", callsA: 1},
		{name: "a's key under a shared kid claiming b", token: tokenSpec{kid: "shared", claims: claimsB()}, want: BadSignature, provider: "b", callsB: 1},
		{name: "b's key under a shared kid claiming a", token: tokenSpec{key: k.keyB, kid: "shared"}, want: BadSignature, provider: "a", callsA: 1},
		{name: "a's key under a shared kid claiming a", token: tokenSpec{kid: "shared"}, want: Allowed, provider: "a", callsA: 1},
		{name: "PS256 is b's, not a's", token: tokenSpec{method: jwt.SigningMethodPS256}, want: BadAlgorithm, callsA: 0},
		{name: "PS256 for b", token: tokenSpec{method: jwt.SigningMethodPS256, key: k.keyB, kid: kidB, claims: claimsB()}, want: Allowed, provider: "b", callsB: 1},
		{name: "ES256 for b", token: tokenSpec{method: jwt.SigningMethodES256, key: k.ec, kid: "e1", claims: claimsB()}, want: Allowed, provider: "b", callsB: 1},
		{name: "ES256 naming an RSA key", token: tokenSpec{method: jwt.SigningMethodES256, key: k.ec, kid: kidB, claims: claimsB()}, want: BadSignature, provider: "b", callsB: 1},
		{name: "RS256 naming an EC key", token: tokenSpec{key: k.keyB, kid: "e1", claims: claimsB()}, want: BadSignature, provider: "b", callsB: 1},
		{name: "RS384 allowed for neither", token: tokenSpec{method: jwt.SigningMethodRS384, key: k.keyB, kid: kidB, claims: claimsB()}, want: BadAlgorithm},
		{name: "issuer of neither", token: tokenSpec{claims: with(claimsA(), "iss", "https://c.example.com")}, want: UnknownIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *Config) { c.Providers[1].Algorithms = []string{"RS256", "PS256", "ES256"} })
			w.keysA.keys["shared"] = &k.keyA.PublicKey
			w.keysB.keys["shared"] = &k.keyB.PublicKey
			w.keysB.keys["e1"] = &k.ec.PublicKey
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(mint(t, tc.token))})
			if d.Reason != tc.want || d.Provider != tc.provider {
				t.Errorf("Decide = %q, provider %q; want %q, %q", d.Reason, d.Provider, tc.want, tc.provider)
			}
			if a, b := w.keysA.calls.Load(), w.keysB.calls.Load(); a != tc.callsA || b != tc.callsB {
				t.Errorf("key source calls: a %d, b %d; want %d, %d", a, b, tc.callsA, tc.callsB)
			}
			if d.Allowed() {
				if got := headerValue(d.Headers, "x-jwt-sub"); got != subject {
					t.Errorf("x-jwt-sub = %q, want %q", got, subject)
				}
			}
		})
	}
}

func headerValue(hs []Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// TestDecideNeverFetchesHeaderKeys: jku, x5u, jwk and x5c token headers are
// never used: the URLs are never fetched and an embedded key never verifies.
func TestDecideNeverFetchesHeaderKeys(t *testing.T) {
	k := testKeys()
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	evilJWK := map[string]any{"kty": "RSA", "kid": "evil", "alg": "RS256",
		"n": (*jwt.Token)(nil).EncodeSegment(k.keyEvil.PublicKey.N.Bytes()), "e": "AQAB"}
	tests := []struct {
		name   string
		header map[string]any
		kid    string
		want   Reason
	}{
		{name: "jku", header: map[string]any{"jku": ts.URL + "/jwks.json"}, kid: "evil", want: UnknownKID},
		{name: "x5u", header: map[string]any{"x5u": ts.URL + "/cert.pem"}, kid: "evil", want: UnknownKID},
		{name: "jwk", header: map[string]any{"jwk": evilJWK}, kid: "evil", want: UnknownKID},
		{name: "jku with a known kid", header: map[string]any{"jku": ts.URL + "/jwks.json"}, kid: kidA, want: BadSignature},
		{name: "jwk with a known kid", header: map[string]any{"jwk": evilJWK}, kid: kidA, want: BadSignature},
		{name: "x5c", header: map[string]any{"x5c": []string{"MIIB"}}, kid: kidA, want: BadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			tok := mint(t, tokenSpec{key: k.keyEvil, kid: tc.kid, header: tc.header})
			d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(tok)})
			if d.Reason != tc.want {
				t.Errorf("Decide = %q, want %q", d.Reason, tc.want)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("header URLs were fetched %d times, want 0", n)
	}
}

// TestClaimHeaders checks how claims become header values.
func TestClaimHeaders(t *testing.T) {
	claims := with(claimsA(),
		"email", "u@example.com",
		"n_int", 42,
		"n_float", 1.5,
		"n_big", json.Number("12345678901234567890"),
		"admin", true,
		"off", false,
		"groups", []string{"a", "b"},
		"mixed", []any{1, "x", true},
		"objs", []any{map[string]any{"k": "v"}},
		"empty_list", []string{},
		"org", map[string]any{"team": map[string]any{"name": "core"}},
		"https://example.com/roles", []string{"r1", "r2"},
		"https://example.com/claims.v2", map[string]any{"level": "gold"},
		"a.b", "exact",
		"a", map[string]any{"b": "nested"},
		"crlf", "x\r\nInjected: 1",
		"nul", "a\x00b",
		"del", "a\x7fb",
		"tab", "a\tb",
		"utf8", "José",
		"obj_ctl", map[string]any{"k": "a\nb"},
		"arr_ctl", []string{"ok", "a\nb"},
	)
	claims["null"] = nil
	tok := mint(t, tokenSpec{claims: claims})
	headers := map[string]string{
		"x-sub": "sub", "x-email": "email", "x-int": "n_int", "x-float": "n_float", "x-big": "n_big",
		"x-admin": "admin", "x-off": "off", "x-groups": "groups", "x-mixed": "mixed", "x-objs": "objs",
		"x-empty-list": "empty_list", "x-team": "org.team.name", "x-org": "org",
		"x-roles": "https://example.com/roles", "x-level": "https://example.com/claims.v2.level",
		"x-exact": "a.b", "x-missing": "nope", "x-null": "null", "x-crlf": "crlf", "x-nul": "nul",
		"x-del": "del", "x-tab": "tab", "x-utf8": "utf8", "x-obj-ctl": "obj_ctl", "x-arr-ctl": "arr_ctl",
		"x-deep-missing": "org.team.nope", "x-through-string": "sub.x", "x-payload": PayloadClaim,
		"x-iss": "iss", "x-aud": "aud", "X-Exp": "exp",
	}
	w := newWorld(t, func(c *Config) { c.ClaimHeaders = headers })
	d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(tok)})
	if d.Reason != Allowed {
		t.Fatalf("Decide = %q, want allowed", d.Reason)
	}
	want := []Header{
		{Name: "x-admin", Value: "true"},
		{Name: "x-aud", Value: audience},
		{Name: "x-big", Value: "12345678901234567890"},
		{Name: "x-email", Value: "u@example.com"},
		{Name: "x-empty-list", Value: ""},
		{Name: "x-exact", Value: "exact"},
		{Name: "x-exp", Value: strconv.FormatInt(testNow.Add(time.Hour).Unix(), 10)},
		{Name: "x-float", Value: "1.5"},
		{Name: "x-groups", Value: "a,b"},
		{Name: "x-int", Value: "42"},
		{Name: "x-iss", Value: issuerA},
		{Name: "x-level", Value: "gold"},
		{Name: "x-mixed", Value: "1,x,true"},
		{Name: "x-obj-ctl", Value: `{"k":"a\nb"}`},
		{Name: "x-objs", Value: `[{"k":"v"}]`},
		{Name: "x-off", Value: "false"},
		{Name: "x-org", Value: `{"team":{"name":"core"}}`},
		{Name: "x-payload", Value: payloadOf(tok)},
		{Name: "x-roles", Value: "r1,r2"},
		{Name: "x-sub", Value: subject},
		{Name: "x-tab", Value: "a\tb"},
		{Name: "x-team", Value: "core"},
		{Name: "x-utf8", Value: "José"},
	}
	wantRemove := []string{"x-arr-ctl", "x-crlf", "x-deep-missing", "x-del", "x-missing", "x-nul", "x-null", "x-through-string"}
	if !reflect.DeepEqual(d.Headers, want) {
		t.Errorf("Headers:\n got %q\nwant %q", d.Headers, want)
	}
	if !slices.Equal(d.Remove, wantRemove) {
		t.Errorf("Remove = %q, want %q", d.Remove, wantRemove)
	}
	// The JSON renderings must still be what the claims say.
	var org map[string]any
	if err := json.Unmarshal([]byte(headerValue(d.Headers, "x-org")), &org); err != nil {
		t.Errorf("x-org is not JSON: %v", err)
	}
	checkHeaderLists(t, d)
}

// checkHeaderLists asserts the structural rules of an allow: headers sorted
// by name, headers_to_remove sorted, no name (case-insensitively) in both,
// and no value a proxy could not send.
func checkHeaderLists(t *testing.T, d Decision) {
	t.Helper()
	if !slices.IsSortedFunc(d.Headers, func(a, b Header) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("Headers not sorted by name: %q", d.Headers)
	}
	if !slices.IsSorted(d.Remove) {
		t.Errorf("Remove not sorted: %q", d.Remove)
	}
	for _, h := range d.Headers {
		for _, r := range d.Remove {
			if strings.EqualFold(h.Name, r) {
				t.Errorf("%q is both set and removed", h.Name)
			}
		}
		if _, ok := headerSafe(h.Value); !ok {
			t.Errorf("header %q has an unsafe value %q", h.Name, h.Value)
		}
	}
}

func TestDecidePublic(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{})
	anonymous := []string{"x-jwt-payload", "x-jwt-sub"}
	tests := []struct {
		name        string
		path        string
		auth        []string
		setup       func(w world)
		want        Reason
		wantHeaders []Header
		wantRemove  []string
	}{
		{name: "no token", path: "/public", want: Public, wantRemove: anonymous},
		{name: "valid token", path: "/public", auth: bearer(valid), want: Public,
			wantHeaders: []Header{{Name: "x-jwt-payload", Value: payloadOf(valid)}, {Name: "x-jwt-sub", Value: subject}}},
		{name: "valid token without sub", path: "/public", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "sub", nil)})), want: Public,
			wantHeaders: []Header{{Name: "x-jwt-payload", Value: payloadOf(mint(t, tokenSpec{claims: with(claimsA(), "sub", nil)}))}},
			wantRemove:  []string{"x-jwt-sub"}},
		{name: "expired token", path: "/public", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})), want: Public, wantRemove: anonymous},
		{name: "bad signature", path: "/public/x", auth: bearer(mint(t, tokenSpec{key: k.keyEvil})), want: Public, wantRemove: anonymous},
		{name: "garbage token", path: "/public", auth: []string{"Bearer garbage"}, want: Public, wantRemove: anonymous},
		{name: "keys not loaded", path: "/public", auth: bearer(valid), setup: func(w world) { w.keysA.notReady.Store(true) }, want: Public, wantRemove: anonymous},
		{name: "valid token lacking any scope", path: "/public", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "scope", nil)})), want: Public,
			wantHeaders: []Header{{Name: "x-jwt-payload", Value: payloadOf(mint(t, tokenSpec{claims: with(claimsA(), "scope", nil)}))}, {Name: "x-jwt-sub", Value: subject}}},
		{name: "protected, valid token", path: "/protected", auth: bearer(valid), want: Allowed,
			wantHeaders: []Header{{Name: "x-jwt-payload", Value: payloadOf(valid)}, {Name: "x-jwt-sub", Value: subject}}},
		{name: "protected, token without sub", path: "/protected", auth: bearer(mint(t, tokenSpec{claims: with(claimsA(), "sub", nil)})), want: Allowed,
			wantHeaders: []Header{{Name: "x-jwt-payload", Value: payloadOf(mint(t, tokenSpec{claims: with(claimsA(), "sub", nil)}))}},
			wantRemove:  []string{"x-jwt-sub"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			if tc.setup != nil {
				tc.setup(w)
			}
			d := w.srv.Decide(t.Context(), Request{Path: tc.path, Authorization: tc.auth})
			if d.Reason != tc.want {
				t.Fatalf("Decide = %q, want %q", d.Reason, tc.want)
			}
			if !reflect.DeepEqual(d.Headers, tc.wantHeaders) || !slices.Equal(d.Remove, tc.wantRemove) {
				t.Errorf("Headers, Remove = %q, %q; want %q, %q", d.Headers, d.Remove, tc.wantHeaders, tc.wantRemove)
			}
			if d.Body != "" || d.WWWAuthenticate != "" {
				t.Errorf("an allow has Body %q, WWWAuthenticate %q", d.Body, d.WWWAuthenticate)
			}
			checkHeaderLists(t, d)
		})
	}
}

// TestDecideLookAlikes: request headers that a backend may merge with a
// claim header (x_jwt_sub for x-jwt-sub) are removed, on every kind of allow,
// and never a name that is also set.
func TestDecideLookAlikes(t *testing.T) {
	valid := mint(t, tokenSpec{})
	tests := []struct {
		name        string
		claims      map[string]string
		auth        []string
		path        string
		names       []string
		wantSet     []string
		wantRemove  []string
		wantNotGone []string // request headers that must stay
	}{
		{name: "underscore spelling, anonymous", path: "/public",
			names:      []string{"x_jwt_sub", "x-jwt-sub", "x_jwt_payload", "x-other", "x_other", "accept"},
			wantRemove: []string{"x-jwt-payload", "x-jwt-sub", "x_jwt_payload", "x_jwt_sub"}, wantNotGone: []string{"x_other", "x-other"}},
		{name: "underscore spelling, valid token", path: "/protected", auth: bearer(valid),
			names:   []string{"x_jwt_sub", "x-jwt-sub", "x-jwt_sub", "x_jwt-payload"},
			wantSet: []string{"x-jwt-payload", "x-jwt-sub"}, wantRemove: []string{"x-jwt_sub", "x_jwt-payload", "x_jwt_sub"}},
		{name: "upper-case spelling of a set header", path: "/protected", auth: bearer(valid),
			names:   []string{"X-JWT-Sub", "X_JWT_SUB"},
			wantSet: []string{"x-jwt-payload", "x-jwt-sub"}, wantRemove: []string{"x_jwt_sub"}},
		{name: "configured underscore header, dash spelling", path: "/protected", auth: bearer(valid),
			claims: map[string]string{"x_user": "sub"}, names: []string{"x-user", "X_USER", "x_user"},
			wantSet: []string{"x_user"}, wantRemove: []string{"x-user"}},
		{name: "configured underscore header, anonymous", path: "/public",
			claims: map[string]string{"x_user": "sub"}, names: []string{"x-user", "x_user"},
			wantRemove: []string{"x-user", "x_user"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, func(c *Config) { c.ClaimHeaders = tc.claims })
			d := w.srv.Decide(t.Context(), Request{Path: tc.path, Authorization: tc.auth, HeaderNames: tc.names})
			if !d.Allowed() {
				t.Fatalf("Decide = %q, want an allow", d.Reason)
			}
			var set []string
			for _, h := range d.Headers {
				set = append(set, h.Name)
			}
			if !slices.Equal(set, tc.wantSet) || !slices.Equal(d.Remove, tc.wantRemove) {
				t.Errorf("set %q, removed %q; want %q, %q", set, d.Remove, tc.wantSet, tc.wantRemove)
			}
			for _, n := range tc.wantNotGone {
				if slices.Contains(d.Remove, n) {
					t.Errorf("%q removed, but it is no look-alike", n)
				}
			}
			checkHeaderLists(t, d)
		})
	}
}

// TestDecideNeverLogsToken: no log line, at any level, holds any part of a
// token that can be replayed (its payload or signature segment), whether it
// came in the Authorization header or in the query string.
func TestDecideNeverLogsToken(t *testing.T) {
	k := testKeys()
	valid := mint(t, tokenSpec{})
	expired := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
	evil := mint(t, tokenSpec{key: k.keyEvil})
	// A compact token, short enough to fit in any truncated log field.
	short := mint(t, tokenSpec{method: jwt.SigningMethodES256, key: k.ec, kid: "-", claims: jwt.MapClaims{"sub": "u"}})
	requests := []Request{
		{Method: "GET", Path: "/protected", Authorization: bearer(valid)},
		{Method: "GET", Path: "/public", Authorization: bearer(valid)},
		{Method: "GET", Path: "/admin", Authorization: bearer(valid)},
		{Method: "GET", Path: "/protected", Authorization: bearer(expired)},
		{Method: "GET", Path: "/public", Authorization: bearer(expired)},
		{Method: "GET", Path: "/protected", Authorization: bearer(evil)},
		{Method: "GET", Path: "/protected", Authorization: []string{"Bearer " + payloadOf(valid)}},
		{Method: "GET", Path: "/protected", Authorization: []string{"Bearer " + valid, "Bearer " + evil}},
		{Method: "GET", Path: "/protected?access_token=" + valid},
		{Method: "GET", Path: "/public/cb?access_token=" + valid + "&x=1"},
		{Method: "GET", Path: "/protected?access_token=" + short},
		{Method: "GET", Path: "/public/cb?access_token=" + short},
		{Method: "GET", Path: "/protected#access_token=" + short},
		{Method: "GET", Path: "/protected", Authorization: bearer(short)},
	}
	buf, logger := newLogBuffer()
	w := newWorld(t, func(c *Config) { c.Logger = logger })
	for _, r := range requests {
		w.srv.Decide(t.Context(), r)
	}
	out := buf.String()
	if n := len(buf.records(t)); n != len(requests) {
		t.Errorf("%d log records for %d decisions", n, len(requests))
	}
	for _, tok := range []string{valid, expired, evil, short} {
		parts := strings.Split(tok, ".")
		for i, seg := range parts[1:] {
			if strings.Contains(out, seg) {
				t.Errorf("log holds segment %d of a token:\n%s", i+1, out)
			}
		}
	}
}

// TestDecideLogs checks the log record of a decision: level, reason, status
// and provider.
func TestDecideLogs(t *testing.T) {
	valid := mint(t, tokenSpec{})
	tests := []struct {
		name    string
		req     Request
		level   string
		reason  string
		ignored string // token_ignored attribute
	}{
		{name: "allow at debug", req: Request{Method: "GET", Path: "/protected", Authorization: bearer(valid)}, level: "DEBUG", reason: "allowed"},
		{name: "deny at info", req: Request{Method: "POST", Path: "/protected"}, level: "INFO", reason: "missing_token"},
		{name: "public with a bad token notes it", req: Request{Method: "GET", Path: "/public", Authorization: []string{"Bearer x.y.z"}},
			level: "DEBUG", reason: "public", ignored: "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf, logger := newLogBuffer()
			w := newWorld(t, func(c *Config) { c.Logger = logger })
			w.srv.Decide(t.Context(), tc.req)
			recs := buf.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			r := recs[0]
			if r["level"] != tc.level || r["reason"] != tc.reason || r["method"] != tc.req.Method {
				t.Errorf("record %v: want level %s, reason %s, method %s", r, tc.level, tc.reason, tc.req.Method)
			}
			if tc.ignored != "" && r["token_ignored"] != tc.ignored {
				t.Errorf("token_ignored = %v, want %s", r["token_ignored"], tc.ignored)
			}
		})
	}
}

type observation struct {
	provider string
	reason   Reason
}

type recordingObserver struct {
	mu  sync.Mutex
	obs []observation
}

func (o *recordingObserver) ObserveCheck(_ context.Context, e Event) {
	if e.Duration < 0 {
		panic("negative duration")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.obs = append(o.obs, observation{e.Provider, e.Reason})
}

func TestDecideObserver(t *testing.T) {
	k := testKeys()
	obs := &recordingObserver{}
	w := newWorld(t, func(c *Config) { c.Observer = obs })
	reqs := []Request{
		{Path: "/protected", Authorization: bearer(mint(t, tokenSpec{}))},
		{Path: "/protected"},
		{Path: "/public"},
		{Path: "/protected", Authorization: bearer(mint(t, tokenSpec{key: k.keyB, kid: kidB, claims: with(claimsA(), "iss", issuerB)}))},
		{Path: "/admin", Authorization: bearer(mint(t, tokenSpec{}))},
	}
	for _, r := range reqs {
		w.srv.Decide(t.Context(), r)
	}
	want := []observation{{"a", Allowed}, {"", MissingToken}, {"", Public}, {"b", Allowed}, {"a", InsufficientScope}}
	if !slices.Equal(obs.obs, want) {
		t.Errorf("observations = %v, want %v", obs.obs, want)
	}
}

// TestDecideContext: a verification that outlives its context is a denial.
func TestDecideContext(t *testing.T) {
	w := newWorld(t, nil)
	w.keysA.block.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	d := w.srv.Decide(ctx, Request{Path: "/protected", Authorization: bearer(mint(t, tokenSpec{}))})
	if d.Allowed() {
		t.Errorf("Decide = %q after the deadline, want a denial", d.Reason)
	}
}

func TestDecideConcurrent(t *testing.T) {
	w := newWorld(t, nil)
	valid := mint(t, tokenSpec{})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				p, want := "/protected", Allowed
				auth := bearer(valid)
				if (i+j)%2 == 0 {
					p, want, auth = "/public", Public, nil
				}
				if d := w.srv.Decide(context.Background(), Request{Path: p, Authorization: auth}); d.Reason != want {
					errs <- string(d.Reason)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Decide = %s", e)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string // a word the error must hold; "" for success
	}{
		{name: "base config", mutate: func(c *Config) {}},
		{name: "every asymmetric algorithm", mutate: func(c *Config) {
			c.Providers[0].Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
		}},
		{name: "no rules", mutate: func(c *Config) { c.Rules = nil }},
		{name: "root rule", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/", Public: true}} }},
		{name: "negative skew", mutate: func(c *Config) { c.ClockSkew = -time.Second }},
		{name: "no logger and no clock", mutate: func(c *Config) { c.Logger, c.Now = nil, nil }},

		{name: "no providers", mutate: func(c *Config) { c.Providers = nil }, wantErr: "provider"},
		{name: "no issuer", mutate: func(c *Config) { c.Providers[0].Issuer = "" }, wantErr: "issuer"},
		{name: "no audience", mutate: func(c *Config) { c.Providers[0].Audiences = nil }, wantErr: "audience"},
		{name: "empty audience", mutate: func(c *Config) { c.Providers[0].Audiences = []string{audience, ""} }, wantErr: "audience"},
		{name: "no key source", mutate: func(c *Config) { c.Providers[1].Keys = nil }, wantErr: "key"},
		{name: "duplicate issuer", mutate: func(c *Config) { c.Providers[1].Issuer = issuerA }, wantErr: "twice"},
		{name: "HS256", mutate: func(c *Config) { c.Providers[0].Algorithms = []string{"HS256"} }, wantErr: "HS256"},
		{name: "HS256 among others", mutate: func(c *Config) { c.Providers[1].Algorithms = []string{"RS256", "HS256"} }, wantErr: "HS256"},
		{name: "none", mutate: func(c *Config) { c.Providers[0].Algorithms = []string{"none"} }, wantErr: "none"},
		{name: "lower-case rs256", mutate: func(c *Config) { c.Providers[0].Algorithms = []string{"rs256"} }, wantErr: "rs256"},
		{name: "public and scopes", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/x", Public: true, Scopes: []string{"a"}}} }, wantErr: "public"},
		{name: "rule path empty", mutate: func(c *Config) { c.Rules = []Rule{{Path: "", Public: true}} }, wantErr: "path"},
		{name: "rule path relative", mutate: func(c *Config) { c.Rules = []Rule{{Path: "public", Public: true}} }, wantErr: "path"},
		{name: "rule path with dot dot", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a/../b", Public: true}} }, wantErr: "path"},
		{name: "rule path with dot", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a/./b", Public: true}} }, wantErr: "path"},
		{name: "rule path with encoded unreserved", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/%61dmin", Scopes: []string{"admin"}}} }, wantErr: "path"},
		{name: "rule path with double slash", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a//b", Public: true}} }, wantErr: "path"},
		{name: "rule path with query", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a?x", Public: true}} }, wantErr: "path"},
		{name: "rule path with fragment", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a#x", Public: true}} }, wantErr: "path"},
		{name: "rule path with encoded slash", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a%2Fb", Public: true}} }, wantErr: "path"},
		{name: "rule path with backslash", mutate: func(c *Config) { c.Rules = []Rule{{Path: `/a\b`, Public: true}} }, wantErr: "path"},
		{name: "rule path with parameter", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a;b", Public: true}} }, wantErr: "path"},
		{name: "rule path with space", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a b", Public: true}} }, wantErr: "path"},
		{name: "empty scope", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a", Scopes: []string{""}}} }, wantErr: "scope"},
		{name: "scope with a space", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a", Scopes: []string{"a b"}}} }, wantErr: "scope"},
		{name: "scope with a quote", mutate: func(c *Config) { c.Rules = []Rule{{Path: "/a", Scopes: []string{`a"b`}}} }, wantErr: "scope"},
		{name: "empty header name", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"": "sub"} }, wantErr: "claim header"},
		{name: "header name with a space", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x jwt": "sub"} }, wantErr: "claim header"},
		{name: "header name with a newline", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x-jwt\n": "sub"} }, wantErr: "claim header"},
		{name: "header name with a colon", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x:jwt": "sub"} }, wantErr: "claim header"},
		{name: "header name not ASCII", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x-jwt-ü": "sub"} }, wantErr: "claim header"},
		{name: "pseudo-header", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{":path": "sub"} }, wantErr: "claim header"},
		{name: "host", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"host": "sub"} }, wantErr: "claim header"},
		{name: "authorization", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"Authorization": "sub"} }, wantErr: "claim header"},
		{name: "cookie", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"COOKIE": "sub"} }, wantErr: "claim header"},
		{name: "content-length", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"content-length": "sub"} }, wantErr: "claim header"},
		{name: "transfer-encoding", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"transfer-encoding": "sub"} }, wantErr: "claim header"},
		{name: "envoy remove list", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x-envoy-auth-headers-to-remove": "sub"} }, wantErr: "claim header"},
		{name: "header naming no claim", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x-jwt-sub": ""} }, wantErr: "claim"},
		{name: "headers colliding by case", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"X-User": "sub", "x-user": "email"} }, wantErr: "collide"},
		{name: "headers colliding by underscore", mutate: func(c *Config) { c.ClaimHeaders = map[string]string{"x-jwt-sub": "sub", "x_jwt_sub": "email"} }, wantErr: "collide"},
		{name: "forward-auth source pinned", mutate: func(c *Config) { c.ForwardAuthSource = SourceForwarded }},
		{name: "unknown forward-auth source", mutate: func(c *Config) { c.ForwardAuthSource = "X-Original-URI" }, wantErr: "source"},
		{name: "realm with a quote", mutate: func(c *Config) { c.Realm = `a"b` }, wantErr: "realm"},
		{name: "realm with a backslash", mutate: func(c *Config) { c.Realm = `a\b` }, wantErr: "realm"},
		{name: "realm with a newline", mutate: func(c *Config) { c.Realm = "a\nb" }, wantErr: "realm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(newFakeKeys(), newFakeKeys())
			tc.mutate(&cfg)
			srv, err := New(cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr == "" && srv == nil:
				t.Fatal("New returned a nil server and no error")
			case tc.wantErr != "" && err == nil:
				t.Fatalf("New succeeded, want an error about %q", tc.wantErr)
			case tc.wantErr != "" && srv != nil:
				t.Errorf("New returned a server with its error")
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				// The text is only checked to make sure the intended
				// validation fired, not some other one.
				t.Errorf("New error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// TestNewNormalises: what New accepts in a loose form is used in its
// canonical one.
func TestNewNormalises(t *testing.T) {
	valid := mint(t, tokenSpec{})
	w := newWorld(t, func(c *Config) {
		c.ClaimHeaders = map[string]string{"X-User": "sub"}
		c.Rules = []Rule{{Path: "/static/", Public: true}}
		c.MaxTokenBytes = len(valid)
	})
	tests := []struct {
		name string
		req  Request
		want Reason
	}{
		{name: "rule with trailing slash matches its root", req: Request{Path: "/static"}, want: Public},
		{name: "rule with trailing slash is no prefix match", req: Request{Path: "/staticky"}, want: MissingToken},
		{name: "token at the custom limit", req: Request{Path: "/x", Authorization: bearer(valid)}, want: Allowed},
		{name: "token over the custom limit", req: Request{Path: "/x", Authorization: bearer(valid + "x")}, want: TokenTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := w.srv.Decide(t.Context(), tc.req)
			if d.Reason != tc.want {
				t.Fatalf("Decide = %q, want %q", d.Reason, tc.want)
			}
			if d.Reason == Allowed && !reflect.DeepEqual(d.Headers, []Header{{Name: "x-user", Value: subject}}) {
				t.Errorf("Headers = %q, want the lower-cased x-user", d.Headers)
			}
		})
	}
}

// TestReasonOf checks the one classification of verification errors,
// through the wrapping the callers use.
func TestReasonOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Reason
	}{
		{name: "not ready", err: fmt.Errorf("fake: %w", jwks.ErrNotReady), want: KeysUnavailable},
		{name: "not ready inside jwt's keyfunc error", err: errors.Join(jwt.ErrTokenUnverifiable, fmt.Errorf("k: %w", jwks.ErrNotReady)), want: KeysUnavailable},
		{name: "unknown kid after a failed refresh", err: fmt.Errorf("%w (%w)", jwks.ErrKeyNotFound, jwks.ErrFetch), want: UnknownKID},
		{name: "unknown issuer", err: errors.Join(jwt.ErrTokenUnverifiable, errUnknownIssuer), want: UnknownIssuer},
		{name: "algorithm of another provider", err: errors.Join(jwt.ErrTokenUnverifiable, errAlgorithm), want: BadAlgorithm},
		{name: "crit", err: errors.Join(jwt.ErrTokenUnverifiable, errCrit), want: Malformed},
		{name: "malformed", err: fmt.Errorf("x: %w", jwt.ErrTokenMalformed), want: Malformed},
		{name: "signature", err: jwt.ErrTokenSignatureInvalid, want: BadSignature},
		{name: "expired", err: jwt.ErrTokenExpired, want: Expired},
		{name: "expired and wrong audience", err: errors.Join(jwt.ErrTokenExpired, jwt.ErrTokenInvalidAudience), want: Expired},
		{name: "not valid yet", err: jwt.ErrTokenNotValidYet, want: NotYetValid},
		{name: "used before issued", err: jwt.ErrTokenUsedBeforeIssued, want: NotYetValid},
		{name: "audience", err: jwt.ErrTokenInvalidAudience, want: WrongAudience},
		{name: "issuer", err: jwt.ErrTokenInvalidIssuer, want: UnknownIssuer},
		{name: "required claim missing", err: jwt.ErrTokenRequiredClaimMissing, want: InvalidClaims},
		{name: "claim of the wrong type", err: fmt.Errorf("exp is invalid: %w", jwt.ErrInvalidType), want: InvalidClaims},
		{name: "anything else fails closed", err: errors.New("surprise"), want: BadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasonOf(tc.err); got != tc.want {
				t.Errorf("reasonOf(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
