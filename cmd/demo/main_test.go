package main

import (
	"context"
	"encoding/json"
	"github.com/extauthz/extauthz/internal/testutil"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the demo goroutine to write while the
// test reads.
type syncBuffer = testutil.Buffer

// TestGuideFlow runs the demo on free loopback ports and walks the seed
// guide's steps through the URLs it prints: token, /public, /protected with
// and without the token, then the scope rule and spoofed claim headers.
func TestGuideFlow(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--idp-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "warn"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case rc := <-done:
			if rc != 0 {
				t.Errorf("demo exit code = %d, want 0; stderr:\n%s", rc, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("demo did not stop within 15s of cancellation")
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), "The extauthz demo is up") {
		if time.Now().After(deadline) {
			t.Fatalf("demo not up after 20s; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		select {
		case rc := <-done:
			t.Fatalf("demo exited early with %d; stderr:\n%s", rc, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	out := stdout.String()
	tenant := regexp.MustCompile(`tenant \(demo issuer\)\s+(\S+)`).FindStringSubmatch(out)
	api := regexp.MustCompile(`API \(Envoy stand-in\)\s+(\S+)`).FindStringSubmatch(out)
	if tenant == nil || api == nil {
		t.Fatalf("demo output lacks the tenant or API URL:\n%s", out)
	}
	for _, want := range []string{"/oauth2/m2m/token", "curl " + api[1] + "/public", "Authorization: Bearer $TOKEN", "AUTHACTION_DOMAIN=localhost:"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}

	token := func(client, secret string) string {
		body := `{"client_id": "` + client + `", "client_secret": "` + secret + `", "audience": "https://api.example.com", "grant_type": "client_credentials"}`
		resp, err := http.Post(tenant[1]+"/oauth2/m2m/token", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 || tr.TokenType != "Bearer" {
			t.Fatalf("token request: status %d, err %v, type %q", resp.StatusCode, err, tr.TokenType)
		}
		return tr.AccessToken
	}
	demoToken := token("demo-client", "demo-secret")
	adminToken := token("admin-client", "admin-secret")

	call := func(path string, headers ...string) (int, string, http.Header) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, api[1]+path, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Add(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	tests := []struct {
		name     string
		path     string
		headers  []string
		status   int
		body     string // substring
		absent   string // substring that must not be in the body
		challeng string // substring of WWW-Authenticate
	}{
		{name: "public without token", path: "/public", status: 200, body: `{"message":"This is a public message!"}`},
		{name: "protected with token", path: "/protected", headers: []string{"Authorization", "Bearer " + demoToken}, status: 200,
			body: `{"message":"This is a protected message!","sub":"demo-client"}`},
		{name: "protected without token", path: "/protected", status: 401, body: "Missing or invalid Authorization header", challeng: `Bearer realm=`},
		{name: "protected with garbage", path: "/protected", headers: []string{"Authorization", "Bearer abc.def.ghi"}, status: 401,
			challeng: `error="invalid_token"`},
		{name: "admin without scope", path: "/admin", headers: []string{"Authorization", "Bearer " + demoToken}, status: 403,
			challeng: `scope="admin"`},
		{name: "admin with scope", path: "/admin", headers: []string{"Authorization", "Bearer " + adminToken}, status: 200, body: "admin-client"},
		{name: "spoofed sub on public", path: "/public/headers", headers: []string{"X-Jwt-Sub", "admin", "X-Jwt-Payload", "forged"}, status: 200,
			absent: "admin"},
		{name: "spoofed sub on protected", path: "/protected/headers", headers: []string{"Authorization", "Bearer " + demoToken, "X-JWT-Sub", "admin"},
			status: 200, body: `"x-jwt-sub":["demo-client"]`, absent: `"admin"`},
		{name: "dot segments are not public", path: "/public/%2e%2e/protected", status: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, h := call(tc.path, tc.headers...)
			if status != tc.status {
				t.Fatalf("status = %d, want %d; body %s", status, tc.status, body)
			}
			if tc.body != "" && !strings.Contains(body, tc.body) {
				t.Errorf("body = %s, want it to contain %s", body, tc.body)
			}
			if tc.absent != "" && strings.Contains(body, tc.absent) {
				t.Errorf("body = %s, must not contain %s", body, tc.absent)
			}
			if got := h.Get("WWW-Authenticate"); !strings.Contains(got, tc.challeng) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", got, tc.challeng)
			}
		})
	}
}
