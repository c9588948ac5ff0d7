package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	srvconfig "github.com/extauthz/extauthz/config"
)

// TestProvidersConfig loads the many-providers config as the server does,
// and the key server answers each provider's JWKS URL with its keys.
func TestProvidersConfig(t *testing.T) {
	const n = 20
	ts := tokensForTest(t)
	ks, err := startKeyServer(n, &ts.key.PublicKey, &ts.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	path, err := writeProvidersConfig(t.TempDir(), n, ks.URL)
	if err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	cfg, err := srvconfig.Load([]string{"--config", path}, noEnv, io.Discard)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	if len(cfg.Providers) != n {
		t.Fatalf("got %d providers, want %d", len(cfg.Providers), n)
	}
	for i, p := range cfg.Providers {
		if p.Issuer != providerIssuer(i) || p.Name != providerName(i) {
			t.Errorf("providers[%d]: issuer %q, name %q; want %q, %q", i, p.Issuer, p.Name, providerIssuer(i), providerName(i))
		}
		resp, err := http.Get(p.JWKSURL)
		if err != nil {
			t.Fatal(err)
		}
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		err = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if err != nil || len(set.Keys) != 2 || set.Keys[0].Kid != providerName(i)+"-a" || set.Keys[1].Kid != providerName(i)+"-b" {
			t.Errorf("providers[%d]'s JWKS: %+v (%v), want kids %s-a and %s-b", i, set, err, providerName(i), providerName(i))
		}
	}
	if got := ks.hits.Load(); got != n {
		t.Errorf("key server counted %d fetches, want %d", got, n)
	}
	rec := httptest.NewRecorder()
	ks.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/p999"+jwksPath, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown provider: status %d, want 404", rec.Code)
	}
}
