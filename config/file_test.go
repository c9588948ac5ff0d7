package config

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLoadFileScalars covers the file's scalar keys, read through the
// settings table: each error names FILE:LINE:, cross-field ones included.
func TestLoadFileScalars(t *testing.T) {
	single := "issuer: https://i.example.com\naudience: a\n"
	tests := []struct {
		name  string
		body  string
		line  int      // the line the error must name
		wants []string // more substrings
	}{
		{name: "key set twice", body: single + "realm: a\nrealm: b\n", line: 4, wants: []string{"realm", "already defined at line 3"}},
		{name: "list for a scalar", body: single + "realm: [a, b]\n", line: 3, wants: []string{"realm", "single value"}},
		{name: "mapping for a scalar", body: single + "jwks_max_keys:\n  n: 1\n", line: 3, wants: []string{"jwks_max_keys", "single value"}},
		{name: "the file names no file", body: single + "config: other.yaml\n", line: 3, wants: []string{"unknown field config"}},
		{name: "min refresh above refresh", body: single + "jwks_refresh_interval: 1m\njwks_min_refresh_interval: 2m\n", line: 4, wants: []string{"jwks_min_refresh_interval", "longer than", "jwks_refresh_interval", ":3:"}},
		{name: "min refresh above the default", body: single + "jwks_min_refresh_interval: 1h\n", line: 3, wants: []string{"jwks_min_refresh_interval", "longer than", "--jwks-refresh-interval"}},
		{name: "tls cert without key", body: single + "tls_cert_file: /c\n", line: 3, wants: []string{"go together", "tls_cert_file"}},
		{name: "mutual TLS without a cert", body: single + "tls_client_ca_file: /ca\n", line: 3, wants: []string{"mutual TLS needs"}},
		{name: "switch", body: single + "admin_pprof: maybe\n", line: 3, wants: []string{"admin_pprof", "maybe"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			cfg, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want an error", cfg)
			}
			msg := err.Error()
			for _, w := range append(tc.wants, path+":"+strconv.Itoa(tc.line)+":") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestLoadFileScalarValues: a file value is read as the flag's text would
// be; null is no value (the default); an alias is its anchor's value.
func TestLoadFileScalarValues(t *testing.T) {
	body := "issuer: https://i.example.com\naudience: a\n" +
		"realm: ~\n" + // null: the default
		"clock_skew: &s 0\n" + // 0 as a duration, as --clock-skew 0
		"shutdown_grace: *s\n" +
		"jwks_max_keys: \"9\"\n" + // quoted: the same text
		"admin_pprof: TRUE\n"
	cfg := load(t, []string{"--config", writeConfig(t, body)}, nil)
	if cfg.Realm != "extauthz" || cfg.ClockSkew != 0 || cfg.ShutdownGrace != 0 || cfg.JWKSMaxKeys != 9 || !cfg.AdminPprof {
		t.Errorf("realm, clock skew, grace, max keys, pprof = %q, %v, %v, %d, %v; want extauthz, 0, 0, 9, true",
			cfg.Realm, cfg.ClockSkew, cfg.ShutdownGrace, cfg.JWKSMaxKeys, cfg.AdminPprof)
	}
	if cfg.JWKSRefreshInterval != 15*time.Minute {
		t.Errorf("refresh interval = %v, want the default 15m", cfg.JWKSRefreshInterval)
	}
}
