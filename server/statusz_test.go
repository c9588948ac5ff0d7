package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/config"
)

// TestStatusz: /statusz tells the build, the configuration (its file, digest
// and generation), each provider's key set (keys by kid, alg, size and first
// sighting; the URL without credentials), the token cache and the rules, and
// nothing secret.
func TestStatusz(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	dir := t.TempDir()
	file := filepath.Join(dir, "extauthz.yaml")
	secretURL := strings.Replace(js.url(), "http://", "http://reader:s3cret@", 1)
	body := "issuer: " + testIssuer + "\naudience: " + testAudience + "\njwks_url: " + secretURL +
		"\nrules:\n  - path: /public\n    public: true\n  - path: /admin\n    scopes: [admin]\npolicies:\n  ops:\n    scopes: [ops]\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{"--config", file, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
		func(string) (string, bool) { return "", false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, cfg)
	h.waitReady()
	tok := mint(t, k, claims("alice"))
	for range 3 {
		if _, err := h.check("/api", tok); err != nil {
			t.Fatal(err)
		}
	}
	code, raw := h.get("/statusz")
	if code != 200 {
		t.Fatalf("/statusz = %d", code)
	}
	var st struct {
		Version       string  `json:"version"`
		UptimeSeconds float64 `json:"uptime_seconds"`
		Config        struct {
			Source     string `json:"source"`
			SHA256     string `json:"sha256"`
			Generation int64  `json:"generation"`
		} `json:"config"`
		Providers []struct {
			Issuer    string `json:"issuer"`
			KeySetURL string `json:"key_set_url"`
			Ready     bool   `json:"ready"`
			Source    string `json:"source"`
			Sender    string `json:"sender_constraint"`
			Keys      []struct {
				KID  string `json:"kid"`
				Bits int    `json:"bits"`
			} `json:"keys"`
		} `json:"providers"`
		TokenCache struct {
			Entries  int     `json:"entries"`
			HitRatio float64 `json:"hit_ratio"`
		} `json:"token_cache"`
		Rules struct {
			Count    int      `json:"count"`
			Paths    []string `json:"paths"`
			Policies []string `json:"policies"`
		} `json:"rules"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if st.Version == "" || st.Config.Source != file || len(st.Config.SHA256) != 64 || st.Config.Generation != 1 {
		t.Errorf("build/config: %+v", st)
	}
	if len(st.Providers) != 1 || st.Providers[0].Issuer != testIssuer || !st.Providers[0].Ready || st.Providers[0].Source != "fetch" ||
		st.Providers[0].Sender != "optional" || len(st.Providers[0].Keys) != 1 || st.Providers[0].Keys[0].KID != "k0" || st.Providers[0].Keys[0].Bits != 2048 {
		t.Errorf("providers: %+v", st.Providers)
	}
	if st.TokenCache.Entries != 1 || st.TokenCache.HitRatio <= 0.5 {
		t.Errorf("token cache: %+v", st.TokenCache)
	}
	if st.Rules.Count != 2 || len(st.Rules.Policies) != 1 || st.Rules.Policies[0] != "ops" {
		t.Errorf("rules: %+v", st.Rules)
	}
	for _, secret := range []string{"s3cret", "reader", tok, "alice"} {
		if strings.Contains(raw, secret) {
			t.Errorf("/statusz holds %q", secret)
		}
	}
}
