package authz

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

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
// the token answered from the verified-token cache (hit), and with the cache
// off (every check verifies the signature).
func BenchmarkCheck(b *testing.B) {
	headers := map[string]string{"authorization": "Bearer " + mint(b, tokenSpec{})}
	for _, n := range envoyHeaderNames {
		if _, ok := headers[n]; !ok {
			headers[n] = "v"
		}
	}
	req := checkRequest("/protected/items", headers)
	for _, bc := range []struct {
		name string
		srv  func() *Server
	}{
		{name: "cache_hit", srv: func() *Server { return newCacheWorld(b, nil).srv }},
		{name: "no_cache", srv: func() *Server { return newWorld(b, nil).srv }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := bc.srv()
			ctx := context.Background()
			if resp, err := srv.Check(ctx, req); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("Check = %v, %v", resp, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = srv.Check(ctx, req)
			}
		})
	}
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
