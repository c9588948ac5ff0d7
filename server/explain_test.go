package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/server"
)

// TestExplainAgreesWithTheServer: explain and the running server decide the
// same table of tokens and paths alike, reason and status, allows included.
func TestExplainAgreesWithTheServer(t *testing.T) {
	k := signer{key(0), "k0"}
	stranger := signer{key(1), "k0"}
	js := newJWKS(t, k)
	cfg := testConfig(js)
	h := start(t, cfg)
	h.waitReady()
	with := func(kv ...any) jwt.MapClaims {
		c := claims("alice")
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
				continue
			}
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	tests := []struct {
		name, path, token string
		want              string
	}{
		{name: "allowed", path: "/api", token: mint(t, k, with()), want: "allowed"},
		{name: "public", path: "/public/x", want: "public"},
		{name: "missing token", path: "/api", want: "missing_token"},
		{name: "expired", path: "/api", token: mint(t, k, with("exp", time.Now().Add(-time.Hour).Unix())), want: "expired"},
		{name: "not yet valid", path: "/api", token: mint(t, k, with("nbf", time.Now().Add(time.Hour).Unix())), want: "not_yet_valid"},
		{name: "wrong audience", path: "/api", token: mint(t, k, with("aud", "https://other.test")), want: "wrong_audience"},
		{name: "unknown issuer", path: "/api", token: mint(t, k, with("iss", "https://evil.test")), want: "unknown_issuer"},
		{name: "bad signature", path: "/api", token: mint(t, stranger, with()), want: "bad_signature"},
		{name: "unknown kid", path: "/api", token: mint(t, signer{key(0), "nope"}, with()), want: "unknown_kid"},
		{name: "malformed", path: "/api", token: "a.b.c", want: "malformed"},
		{name: "insufficient scope", path: "/admin", token: mint(t, k, with("scope", "read")), want: "insufficient_scope"},
		{name: "scope through dot segments", path: "/public/%2e%2e/admin", token: mint(t, k, with()), want: "insufficient_scope"},
		{name: "no exp", path: "/api", token: mint(t, k, with("exp", nil)), want: "invalid_claims"},
		{name: "DPoP-bound token as a bearer token", path: "/api", token: mint(t, k, with("cnf", map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})), want: "dpop_binding_mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := map[string]string{":path": tc.path}
			if tc.token != "" {
				hs["authorization"] = "Bearer " + tc.token
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			resp, err := h.authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: tc.path, Headers: hs}}}})
			if err != nil {
				t.Fatal(err)
			}
			served, status := resp.GetStatus().GetMessage(), 200
			if d := resp.GetDeniedResponse(); d != nil {
				status = int(d.GetStatus().GetCode())
			} else if tc.want == "allowed" || tc.want == "public" {
				served = tc.want // an allow's status carries no reason
			}
			e, err := server.Explain(ctx, cfg, server.ExplainRequest{Method: "GET", Path: tc.path, Token: tc.token}, server.ToolOptions{Timeout: waitLong})
			if err != nil {
				t.Fatal(err)
			}
			if e.Outcome.Reason != served || e.Outcome.Status != status || served != tc.want {
				t.Errorf("explain %q %d, server %q %d, want %q", e.Outcome.Reason, e.Outcome.Status, served, status, tc.want)
			}
			b, _ := json.Marshal(e)
			if tc.token != "" && strings.Contains(string(b), tc.token[strings.LastIndexByte(tc.token, '.')+1:]) && len(tc.token) > 10 {
				t.Errorf("the explanation holds the token's signature")
			}
			if len(e.Steps) == 0 {
				t.Errorf("no steps")
			}
		})
	}
}

// TestExplainOffline: with a key-set file, explain needs no identity
// provider.
func TestExplainOffline(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	body := *js.doc.Load()
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(js)
	cfg.Providers[0].JWKSURL = "https://unreachable.invalid/jwks.json"
	e, err := server.Explain(context.Background(), cfg, server.ExplainRequest{Path: "/api", Token: mint(t, k, claims("bob"))},
		server.ToolOptions{JWKSFile: file, Timeout: waitLong})
	if err != nil || !e.Outcome.Allowed || e.Token == nil || !e.Token.Verified || e.Token.Claims["sub"] != "bob" {
		t.Fatalf("Explain = %+v, %v", e, err)
	}
}

// TestValidateCatchesWhatStartCatches: for a table of broken configs,
// validate fails exactly when building the server (the start) fails, with
// the same error.
func TestValidateCatchesWhatStartCatches(t *testing.T) {
	js := newJWKS(t, signer{key(0), "k0"})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := "issuer: " + testIssuer + "\naudience: " + testAudience + "\njwks_url: " + js.url() + "\n"
	tests := []struct {
		name string
		body string
		ok   bool
	}{
		{name: "good", body: base, ok: true},
		{name: "bad CEL", body: base + "rules:\n  - path: /a\n    when: 'x ='\n"},
		{name: "public with claims", body: base + "rules:\n  - path: /a\n    public: true\n    claims: {a: b}\n"},
		{name: "shadowed rule", body: base + "rules:\n  - path: /a\n  - path: /a/b\n    scopes: [x]\n"},
		{name: "missing CA file", body: base + "jwks_ca_file: " + filepath.Join(dir, "nope.pem") + "\n"},
		{name: "bad realm", body: base + "realm: 'a\"b'\n"},
		{name: "forbidden claim header", body: base + "claim_headers:\n  authorization: sub\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--config", write(strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.body)}
			env := func(string) (string, bool) { return "", false }
			startErr := func() error {
				cfg, err := config.Load(args, env, nil)
				if err != nil {
					return err
				}
				_, err = server.New(cfg, server.Options{})
				return err
			}()
			validateErr := func() error {
				cfg, err := config.Load(args, env, nil)
				if err != nil {
					return err
				}
				_, err = server.Validate(context.Background(), cfg, false, server.ToolOptions{})
				return err
			}()
			if (startErr == nil) != tc.ok || (validateErr == nil) != tc.ok || startErr != nil && startErr.Error() != validateErr.Error() {
				t.Errorf("start: %v; validate: %v; want ok %v", startErr, validateErr, tc.ok)
			}
		})
	}
}
