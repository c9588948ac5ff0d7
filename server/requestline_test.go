package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/authz"
)

// TestAttackRequestLines: every request line Go's server parses is a check
// on the forward-auth port, the asterisk form (OPTIONS *, which net/http
// answers 200 itself unless told not to) and the authority form (CONNECT)
// included: a decision, a log line, Cache-Control: no-store, never a 200
// that no check made.
func TestAttackRequestLines(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	cfg := testConfig(js)
	cfg.ForwardAuthSource = authz.SourceRequest
	h := start(t, cfg)
	h.waitReady()
	token := mint(t, k, claims("alice"))
	tests := []struct {
		name, line, auth string
		want             int
	}{
		{name: "OPTIONS asterisk", line: "OPTIONS * HTTP/1.1", want: http.StatusUnauthorized},
		{name: "OPTIONS asterisk with a token", line: "OPTIONS * HTTP/1.1", auth: token, want: http.StatusOK},
		{name: "OPTIONS asterisk HTTP/1.0", line: "OPTIONS * HTTP/1.0", want: http.StatusUnauthorized},
		{name: "CONNECT authority", line: "CONNECT api.example.com:443 HTTP/1.1", want: http.StatusUnauthorized},
		{name: "absolute form into admin", line: "GET http://api.example.com/admin HTTP/1.1", auth: token, want: http.StatusForbidden},
		{name: "OPTIONS on a path", line: "OPTIONS /api HTTP/1.1", want: http.StatusUnauthorized},
		{name: "TRACE", line: "TRACE /api HTTP/1.1", want: http.StatusUnauthorized},
		{name: "an extension method", line: "PROPFIND /api HTTP/1.1", want: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(h.logs.String(), `"msg":"check`)
			c, err := net.Dial("tcp", h.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(waitLong))
			req := tc.line + "\r\nHost: api.example.com\r\n"
			if tc.auth != "" {
				req += "Authorization: Bearer " + tc.auth + "\r\n"
			}
			if _, err := io.WriteString(c, req+"Connection: close\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d (body %q), want %d", resp.StatusCode, body, tc.want)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store: no check answered", cc)
			}
			if tc.want != http.StatusOK {
				var m map[string]string
				if json.Unmarshal(body, &m) != nil || m["error"] == "" {
					t.Errorf("denial body %q is not the check's JSON", body)
				}
			}
			deadline := time.Now().Add(waitLong)
			for strings.Count(h.logs.String(), `"msg":"check`) == before && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if strings.Count(h.logs.String(), `"msg":"check`) == before {
				t.Errorf("no decision was logged")
			}
		})
	}
}
