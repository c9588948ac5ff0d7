package authz

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
)

// envoyHeaderNames are the header names of a typical request as Envoy sends
// them in a CheckRequest, for the look-alike scan.
var envoyHeaderNames = []string{":authority", ":method", ":path", ":scheme", "accept", "authorization",
	"user-agent", "x-forwarded-proto", "x-request-id", "x-envoy-expected-rq-timeout-ms"}

// BenchmarkDecide measures one decision: an allow (RS256 verification plus
// claim headers), a public path without a token, and a denial for a bad
// signature (a full verification that fails). Compare with
// BenchmarkRSAVerify, the floor of the first and last.
func BenchmarkDecide(b *testing.B) {
	w := newWorld(b, nil)
	valid := mint(b, tokenSpec{})
	evil := mint(b, tokenSpec{key: testKeys().keyEvil})
	cases := []struct {
		name string
		req  Request
		want Reason
	}{
		{name: "allow", req: Request{Method: "GET", Path: "/protected/items?page=2", Authorization: bearer(valid), HeaderNames: envoyHeaderNames}, want: Allowed},
		{name: "public_anonymous", req: Request{Method: "GET", Path: "/public/index.html", HeaderNames: envoyHeaderNames}, want: Public},
		{name: "bad_signature", req: Request{Method: "GET", Path: "/protected/items", Authorization: bearer(evil), HeaderNames: envoyHeaderNames}, want: BadSignature},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if d := w.srv.Decide(ctx, bc.req); d.Reason != bc.want {
				b.Fatalf("Decide = %q, want %q", d.Reason, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.srv.Decide(ctx, bc.req)
			}
		})
	}
}

// BenchmarkPolicyFor measures path matching alone: a plain path (one
// reading), paths that take the slow path with every backend reading
// (an escape, a dot segment such as /.well-known), and long hostile paths
// at nginx's default header buffer (8 KiB) and near Envoy's header limit
// (60 KiB), to bound what one request can cost before any token is read.
func BenchmarkPolicyFor(b *testing.B) {
	rules := mustCompile(b, policyRules)
	hostile := func(n int) string {
		return "/public/" + strings.Repeat("a%252e%5C..;x/", n/len("a%252e%5C..;x/"))
	}
	cases := []struct{ name, target string }{
		{name: "plain", target: "/public/index.html"},
		{name: "escaped", target: "/public/my%20doc.pdf"},
		{name: "well_known", target: "/.well-known/openid-configuration"},
		{name: "traversal", target: "/public/%2e%2e/admin"},
		{name: "hostile_8KiB", target: hostile(8 << 10)},
		{name: "hostile_60KiB", target: hostile(60 << 10)},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				policyFor(rules, bc.target)
			}
		})
	}
}

// BenchmarkCheck is BenchmarkDecide's allow through the gRPC adapter,
// called directly (no transport): CheckRequest in, CheckResponse out; with
// the token answered from the verified-token cache (cache_hit), with a token
// the cache has not seen each time (cache_miss: 1024 tokens through a cache
// of 16, so the verification, the hashing and the insertion are all paid),
// and with the cache off (no_cache).
func BenchmarkCheck(b *testing.B) {
	tokens := make([]*authv3.CheckRequest, 1024)
	for i := range tokens {
		tokens[i] = envoyCheck("/protected/items", bearer(mint(b, tokenSpec{claims: with(claimsA(), "jti", i)}))[0])
	}
	for _, bc := range []struct {
		name   string
		srv    func() *Server
		spread int
	}{
		{name: "cache_hit", srv: func() *Server { return newCacheWorld(b, nil).srv }, spread: 1},
		{name: "cache_miss", srv: func() *Server { return newCacheWorld(b, func(c *Config) { c.TokenCacheSize = 16 }).srv }, spread: len(tokens)},
		{name: "no_cache", srv: func() *Server { return newWorld(b, nil).srv }, spread: 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := bc.srv()
			ctx := context.Background()
			if resp, err := srv.Check(ctx, tokens[0]); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("Check = %v, %v", resp, err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, _ = srv.Check(ctx, tokens[i%bc.spread])
				i++
			}
		})
	}
}

// BenchmarkServeHTTP is the forward-auth check in-process (nginx's
// auth_request headers, a cached token): the HTTP adapter's own cost beside
// BenchmarkCheck/cache_hit.
func BenchmarkServeHTTP(b *testing.B) {
	w := newCacheWorld(b, nil)
	req := httptest.NewRequest(http.MethodGet, "/auth", nil)
	req.Header.Set("Authorization", bearer(mint(b, tokenSpec{}))[0])
	req.Header.Set("X-Original-URI", "/protected/items")
	req.Header.Set("X-Original-Method", http.MethodGet)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		w.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkCheckDenials measures each kind of denial through the gRPC
// adapter with the default cache, the same request repeated: what a client
// retrying a bad token costs. Failures that cannot heal are answered from
// the negative cache after the first; the others are decided again each
// time (unknown kids, unknown issuers and missing key sets are never
// cached; the malformed and missing never reach it).
func BenchmarkCheckDenials(b *testing.B) {
	k := testKeys()
	rs := func(c map[string]any) string { return bearer(mint(b, tokenSpec{claims: c}))[0] }
	valid := bearer(mint(b, tokenSpec{}))[0]
	cases := []struct {
		name  string
		path  string
		auth  string
		setup func(*cacheWorld)
		want  Reason
	}{
		{name: "missing_token", want: MissingToken},
		{name: "invalid_request", auth: valid + " " + valid, want: InvalidRequest},
		{name: "token_too_large", auth: "Bearer " + strings.Repeat("a", 8<<10+1), want: TokenTooLarge},
		{name: "malformed", auth: "Bearer abc.def.ghi", want: Malformed},
		{name: "bad_algorithm", auth: bearer(mint(b, tokenSpec{method: jwt.SigningMethodHS256, key: []byte("secret")}))[0], want: BadAlgorithm},
		{name: "bad_signature", auth: bearer(mint(b, tokenSpec{key: k.keyEvil}))[0], want: BadSignature},
		{name: "unknown_kid", auth: bearer(mint(b, tokenSpec{kid: "nope"}))[0], want: UnknownKID},
		{name: "unknown_issuer", auth: rs(with(claimsA(), "iss", "https://evil.example.com")), want: UnknownIssuer},
		{name: "wrong_audience", auth: rs(with(claimsA(), "aud", "https://elsewhere.example.com")), want: WrongAudience},
		{name: "expired", auth: rs(with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())), want: Expired},
		{name: "not_yet_valid", auth: rs(with(claimsA(), "nbf", testNow.Add(time.Hour).Unix())), want: NotYetValid},
		{name: "invalid_claims", auth: rs(with(claimsA(), "exp", nil)), want: InvalidClaims},
		{name: "insufficient_scope", path: "/admin", auth: valid, want: InsufficientScope},
		{name: "jwks_unavailable", auth: valid, setup: func(w *cacheWorld) { w.keys.notReady.Store(true) }, want: KeysUnavailable},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			w := newCacheWorld(b, nil)
			if bc.setup != nil {
				bc.setup(w)
			}
			path := cmp.Or(bc.path, "/protected")
			req := envoyCheck(path, bc.auth)
			ctx := context.Background()
			resp, err := w.srv.Check(ctx, req)
			if err != nil || resp.GetDeniedResponse() == nil || resp.GetStatus().GetMessage() != string(bc.want) {
				b.Fatalf("Check = %v, %v; want a %s denial", resp.GetStatus(), err, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = w.srv.Check(ctx, req)
			}
		})
	}
}

// envoyCheck is a CheckRequest as Envoy sends it for a GET of path with the
// given Authorization value ("" for none).
func envoyCheck(path, authorization string) *authv3.CheckRequest {
	headers := map[string]string{}
	for _, n := range envoyHeaderNames {
		headers[n] = "v"
	}
	delete(headers, "authorization")
	if authorization != "" {
		headers["authorization"] = authorization
	}
	return checkRequest(path, headers)
}

// BenchmarkRSAVerify is the floor: hashing the signing input and
// rsa.VerifyPKCS1v15 with the same 2048-bit key, nothing else. About a
// third of it (crypto/rsa.fipsPublicKey in a profile) is Go rebuilding the
// key's Montgomery constants on every call: crypto/rsa has no precomputation
// for public keys, so a cache miss pays it too.
func BenchmarkRSAVerify(b *testing.B) {
	tok := mint(b, tokenSpec{})
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	input := []byte(tok[:i])
	pub := &testKeys().keyA.PublicKey
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideDPoP: a cache-hit token as a bearer token, and a
// DPoP-bound cache-hit token with a fresh proof per request (the proof is
// verified every time: one ECDSA verification and its parsing). The ratio
// is what DPoP costs a check; proofs are made outside the timer.
func BenchmarkDecideDPoP(b *testing.B) {
	keys := &versionedFake{fakeKeys: newFakeKeys(kidA, &testKeys().keyA.PublicKey)}
	w := newWorld(b, func(c *Config) {
		c.Providers[0].Keys = keys
		c.DPoPReplayCacheSize = 1 << 24
	})
	alice := proofSigner(b)
	plain := boundTo(b, nil)
	bound := boundTo(b, map[string]any{"jkt": alice.JKT()})
	ctx := context.Background()
	req := func(auth string, proof ...string) Request {
		return Request{Method: "GET", Path: bindPath, Host: bindHost, Scheme: "https", Authorization: []string{auth}, DPoP: proof, HeaderNames: envoyHeaderNames}
	}
	b.Run("bearer_hit", func(b *testing.B) {
		r := req("Bearer " + plain)
		w.srv.Decide(ctx, r) // into the cache
		if d := w.srv.Decide(ctx, r); d.Reason != Allowed {
			b.Fatalf("Decide = %q", d.Reason)
		}
		b.ReportAllocs()
		for b.Loop() {
			w.srv.Decide(ctx, r)
		}
	})
	b.Run("dpop_hit", func(b *testing.B) {
		w.srv.Decide(ctx, req(dpopScheme+bound, mustProof(b, alice, "GET", bindURI, bound, ""))) // into the cache
		const batch = 512
		proofs := make([]string, batch)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%batch == 0 {
				b.StopTimer()
				for j := range proofs {
					proofs[j] = mustProof(b, alice, "GET", bindURI, bound, "")
				}
				b.StartTimer()
			}
			if d := w.srv.Decide(ctx, req(dpopScheme+bound, proofs[i%batch])); d.Reason != Allowed {
				b.Fatalf("Decide = %q", d.Reason)
			}
		}
	})
}
