package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/certbind"
	"github.com/extauthz/extauthz/internal/selfsigned"
)

// TestExplain: explain decides as the server would and prints every step,
// as text or one JSON document, never the signature; its exit code is 0 on
// allow, 1 on deny, 2 on a usage or configuration error.
func TestExplain(t *testing.T) {
	p := newIDP(t)
	iss := "http://127.0.0.1:" + p.port()
	base := []string{"explain", "--issuer", iss, "--audience", "https://api.example.com", "--jwks-url", p.URL + "/.well-known/jwks.json", "--public-paths", "/public"}
	good := p.token(t, iss, "https://api.example.com", "alice")
	other := p.token(t, iss, "https://other.example.com", "alice")
	sig := good[strings.LastIndexByte(good, '.')+1:]
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		contains []string
	}{
		{name: "allowed", args: []string{"--path", "/api", good}, code: 0, contains: []string{"outcome: allow, 200 allowed", "set x-jwt-sub: alice", "verify    signature", "(verified;"}},
		{name: "wrong audience", args: []string{"--path", "/api", other}, code: 1, contains: []string{"401 wrong_audience", `aud ["https://other.example.com"]`, "FAIL"}},
		{name: "no token", args: []string{"--path", "/api"}, code: 1, contains: []string{"token: none", "401 missing_token", `WWW-Authenticate: Bearer realm="extauthz"`}},
		{name: "from stdin", args: []string{"--path", "/api", "-"}, stdin: "Bearer " + good + "\n", code: 0, contains: []string{"200 allowed"}},
		{name: "public", args: []string{"--path", "/public/x"}, code: 0, contains: []string{"200 public"}},
		{name: "malformed", args: []string{"--path", "/api", "not-a-token"}, code: 1, contains: []string{"401 malformed"}},
		{name: "two tokens", args: []string{good, good}, code: 2},
		{name: "bad header flag", args: []string{"--header", "nocolon", good}, code: 2},
		{name: "bad config", args: []string{"--clock-skew", "soon", good}, code: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdin = strings.NewReader(tc.stdin)
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), append(append([]string{}, base...), tc.args...), nil, &stdout, &stderr, nil)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, c := range tc.contains {
				if !strings.Contains(stdout.String(), c) {
					t.Errorf("output lacks %q:\n%s", c, stdout.String())
				}
			}
			if strings.Contains(stdout.String(), sig) {
				t.Errorf("the output holds the token's signature")
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		var stdout bytes.Buffer
		code := run(t.Context(), append(append([]string{}, base...), "--json", "--path", "/api", other), nil, &stdout, io.Discard, nil)
		var doc struct {
			Steps   []map[string]any `json:"steps"`
			Outcome struct {
				Status int    `json:"status"`
				Reason string `json:"reason"`
			} `json:"outcome"`
		}
		dec := json.NewDecoder(&stdout)
		if err := dec.Decode(&doc); err != nil || dec.More() {
			t.Fatalf("not exactly one JSON document: %v", err)
		}
		if code != 1 || doc.Outcome.Status != 401 || doc.Outcome.Reason != "wrong_audience" || len(doc.Steps) == 0 {
			t.Errorf("exit %d, %+v", code, doc)
		}
	})
	t.Run("offline", func(t *testing.T) {
		resp, err := p.Client().Get(p.URL + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		file := filepath.Join(t.TempDir(), "jwks.json")
		if err := os.WriteFile(file, body, 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout bytes.Buffer
		args := []string{"explain", "--issuer", iss, "--audience", "https://api.example.com", "--jwks-url", "https://unreachable.invalid/jwks.json", "--jwks-file", file, good}
		if code := run(t.Context(), args, nil, &stdout, io.Discard, nil); code != 0 {
			t.Errorf("offline explain: exit %d\n%s", code, stdout.String())
		}
	})
}

// TestValidate: validate exits 0 on a configuration that would start, 1 on
// one that would not (file:line for the file's errors), 2 on a usage
// error; --fetch reports each provider's keys.
func TestValidate(t *testing.T) {
	p := newIDP(t)
	iss := "http://127.0.0.1:" + p.port()
	good := "issuer: " + iss + "\naudience: a\njwks_url: " + p.URL + "/.well-known/jwks.json\n"
	inDir(t, map[string]string{
		"good.yaml": good,
		"bad.yaml":  good + "rules:\n  - path: /a\n    when: 'claims.x =='\n",
	})
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{name: "good", args: []string{"--config", "good.yaml"}, code: 0, contains: "ok: the configuration (good.yaml) would start"},
		{name: "fetch", args: []string{"--config", "good.yaml", "--fetch"}, code: 0, contains: "1 keys"},
		{name: "bad CEL", args: []string{"--config", "bad.yaml"}, code: 1, contains: "bad.yaml:5:"},
		{name: "usage", args: []string{"--config", "good.yaml", "extra"}, code: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(t.Context(), append([]string{"validate"}, tc.args...), nil, &out, &out, nil)
			if code != tc.code || !strings.Contains(out.String(), tc.contains) {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.code, out.String())
			}
		})
	}
}

// TestExplainClientCertificate: --client-cert is the certificate the client
// presented: a certificate-bound token is explained as allowed with its
// certificate and as cert_binding_mismatch without it or with another.
func TestExplainClientCertificate(t *testing.T) {
	p := newIDP(t)
	iss := "http://127.0.0.1:" + p.port()
	dir := t.TempDir()
	var x5t string
	certs := map[string]string{}
	for _, name := range []string{"bound", "other"} {
		certPEM, _, err := selfsigned.Generate(name, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs[name] = filepath.Join(dir, name+".pem")
		if err := os.WriteFile(certs[name], certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if name == "bound" {
			if x5t, err = certbind.FromPEM(string(certPEM)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": iss, "aud": "https://api.example.com", "sub": "alice", "cnf": map[string]any{"x5t#S256": x5t},
		"iat": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "demo"
	raw, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"explain", "--issuer", iss, "--audience", "https://api.example.com", "--jwks-url", p.URL + "/.well-known/jwks.json", "--path", "/api"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "its certificate", args: []string{"--client-cert", certs["bound"]}, code: 0, want: "200 allowed"},
		{name: "no certificate", code: 1, want: "401 cert_binding_mismatch"},
		{name: "another certificate", args: []string{"--client-cert", certs["other"]}, code: 1, want: "401 cert_binding_mismatch"},
		{name: "no such file", args: []string{"--client-cert", filepath.Join(dir, "none.pem")}, code: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(append(append([]string{}, base...), tc.args...), raw)
			if code := run(t.Context(), args, nil, &stdout, &stderr, nil); code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, stdout.String())
			}
		})
	}
}
