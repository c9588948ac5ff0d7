package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestColdStartFromDisk: with --jwks-cache-dir, a restart while the
// identity provider is down is ready at once with the last good key set,
// says so in /readyz and the metrics, and verifies tokens.
func TestColdStartFromDisk(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	dir := t.TempDir()
	cfg := testConfig(js)
	cfg.JWKSCacheDir = dir
	first := start(t, cfg)
	first.waitReady()
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	js.down.Store(true)
	second := start(t, cfg)
	second.waitReady()
	token := mint(t, k, claims("alice"))
	if resp := second.mustCheck("/api", token); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("check with the key set from disk = %v, want OK", resp.GetStatus())
	}
	_, body := second.get("/readyz")
	if !strings.Contains(body, `"source":"disk"`) {
		t.Errorf("/readyz = %s, want the provider's source disk", body)
	}
	_, metrics := second.get("/metrics")
	if !strings.Contains(metrics, `extauthz_jwks_key_set_from_disk{provider="test"} 1`) {
		t.Errorf("/metrics does not say the key set came from disk")
	}
}

// TestDiscoveryThroughTheServer: a provider with discovery takes its key
// set from the document's jwks_uri; a document naming another issuer keeps
// it not ready, with the reason in /readyz.
func TestDiscoveryThroughTheServer(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	var issuer string
	var docIssuer string
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": docIssuer, "jwks_uri": js.url()})
	}))
	t.Cleanup(idp.Close)
	issuer = idp.URL
	for _, tc := range []struct {
		name, docIssuer string
		ready           bool
	}{{name: "matching issuer", docIssuer: issuer, ready: true}, {name: "another issuer", docIssuer: issuer + "/evil", ready: false}} {
		t.Run(tc.name, func(t *testing.T) {
			docIssuer = tc.docIssuer
			cfg := testConfig(js)
			cfg.Providers[0].Issuer, cfg.Providers[0].JWKSURL, cfg.Providers[0].Discovery = issuer, "", true
			h := start(t, cfg)
			if !tc.ready {
				eventually(t, "the issuer mismatch in /readyz", func() bool {
					_, body := h.get("/readyz")
					return strings.Contains(body, "another issuer") && strings.Contains(body, `"ready":false`)
				})
				return
			}
			h.waitReady()
			c := claims("alice")
			c["iss"] = issuer
			if resp := h.mustCheck("/api", mint(t, k, c)); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				t.Errorf("check = %v, want OK", resp.GetStatus())
			}
		})
	}
}
