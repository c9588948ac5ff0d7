package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/authz"
)

// env is a fake environment.
type env map[string]string

func (e env) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// environ is e as os.Environ returns the environment.
func (e env) environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// writeConfig writes body to a config file in a fresh temp dir and returns
// its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// minimal are the arguments of the smallest valid configuration.
var minimal = []string{"--issuer", "https://tenant.example.com", "--audience", "https://api.example.com"}

// load runs Load and fails the test on an error.
func load(t *testing.T, args []string, e env) *Config {
	t.Helper()
	cfg, err := Load(args, e.lookup, io.Discard)
	if err != nil {
		t.Fatalf("Load(%q) = %v, want no error", args, err)
	}
	return cfg
}

func TestLoadDefaults(t *testing.T) {
	got := load(t, minimal, nil)
	want := &Config{
		GRPCAddr:  ":9191",
		HTTPAddr:  ":9192",
		AdminAddr: ":9090",
		Providers: []Provider{{
			Name:       "tenant.example.com",
			Issuer:     "https://tenant.example.com",
			Audiences:  []string{"https://api.example.com"},
			JWKSURL:    "https://tenant.example.com/.well-known/jwks.json",
			Algorithms: []string{"RS256"},
		}},
		JWKSRefreshInterval:    15 * time.Minute,
		JWKSMinRefreshInterval: 10 * time.Second,
		JWKSFetchTimeout:       5 * time.Second,
		JWKSUnknownKIDWait:     100 * time.Millisecond,
		JWKSMaxBytes:           1 << 20,
		JWKSMaxKeys:            100,
		JWKSCacheMaxAge:        24 * time.Hour,
		ClockSkew:              60 * time.Second,
		MaxTokenBytes:          8192,
		TokenCacheSize:         10000,
		DPoPReplayCacheSize:    1 << 20,
		Realm:                  "extauthz",
		ForwardAuthSource:      "auto",
		ShutdownGrace:          10 * time.Second,
		ConfigWatchInterval:    5 * time.Second,
		GRPCMaxRecvBytes:       1 << 20,
		GRPCMaxStreams:         1024,
		HTTPMaxHeaderBytes:     64 << 10,
		HTTPReadTimeout:        10 * time.Second,
		LogLevel:               "info",
		LogFormat:              "json",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(minimal) =\n%+v\nwant\n%+v", got, want)
	}
}

// TestLoadPrecedence covers every adjacent pair of the order flag, AUTHZ_*
// variable, AUTHACTION_* variable, config file, default, for the scalar
// settings and for the single provider.
func TestLoadPrecedence(t *testing.T) {
	type getter func(*Config) any
	grpcAddr := func(c *Config) any { return c.GRPCAddr }
	refresh := func(c *Config) any { return c.JWKSRefreshInterval }
	skew := func(c *Config) any { return c.ClockSkew }
	maxKeys := func(c *Config) any { return c.JWKSMaxKeys }
	issuer := func(c *Config) any { return c.Providers[0].Issuer }
	audiences := func(c *Config) any { return c.Providers[0].Audiences }
	jwksURL := func(c *Config) any { return c.Providers[0].JWKSURL }

	tests := []struct {
		name string
		args []string
		env  env
		file string // config file body; "" for none
		get  getter
		want any
	}{
		{
			name: "flag over variable",
			args: append([]string{"--grpc-addr", "127.0.0.1:1"}, minimal...),
			env:  env{"AUTHZ_GRPC_ADDR": "127.0.0.1:2"},
			get:  grpcAddr,
			want: "127.0.0.1:1",
		},
		{
			name: "flag with = over variable",
			args: append([]string{"-jwks-refresh-interval=1h"}, minimal...),
			env:  env{"AUTHZ_JWKS_REFRESH_INTERVAL": "2h"},
			get:  refresh,
			want: time.Hour,
		},
		{
			name: "variable over file",
			args: minimal,
			env:  env{"AUTHZ_GRPC_ADDR": "127.0.0.1:2"},
			file: "grpc_addr: 127.0.0.1:3\n",
			get:  grpcAddr,
			want: "127.0.0.1:2",
		},
		{
			name: "file over default",
			args: minimal,
			file: "grpc_addr: 127.0.0.1:3\n",
			get:  grpcAddr,
			want: "127.0.0.1:3",
		},
		{
			name: "default",
			args: minimal,
			file: "# nothing\n",
			get:  grpcAddr,
			want: ":9191",
		},
		{
			name: "empty variable falls through to the file",
			args: minimal,
			env:  env{"AUTHZ_GRPC_ADDR": ""},
			file: "grpc_addr: 127.0.0.1:3\n",
			get:  grpcAddr,
			want: "127.0.0.1:3",
		},
		{
			name: "duration: variable over file",
			args: minimal,
			env:  env{"AUTHZ_CLOCK_SKEW": "5s"},
			file: "clock_skew: 7s\n",
			get:  skew,
			want: 5 * time.Second,
		},
		{
			name: "duration: file zero over default",
			args: minimal,
			file: "clock_skew: 0s\n",
			get:  skew,
			want: time.Duration(0),
		},
		{
			name: "number: flag over file",
			args: append([]string{"--jwks-max-keys", "7"}, minimal...),
			file: "jwks_max_keys: 9\n",
			get:  maxKeys,
			want: 7,
		},
		{
			name: "number: file over default",
			args: minimal,
			file: "jwks_max_keys: 9\n",
			get:  maxKeys,
			want: 9,
		},
		{
			name: "config file named by its variable",
			args: minimal,
			env:  env{"AUTHZ_CONFIG": "FILE"},
			file: "jwks_max_keys: 9\n",
			get:  maxKeys,
			want: 9,
		},
		{
			name: "issuer: flag over variable",
			args: []string{"--issuer", "https://flag.example.com", "--audience", "a"},
			env:  env{"AUTHZ_ISSUER": "https://env.example.com"},
			get:  issuer,
			want: "https://flag.example.com",
		},
		{
			name: "issuer: variable over AUTHACTION_DOMAIN",
			args: []string{"--audience", "a"},
			env:  env{"AUTHZ_ISSUER": "https://env.example.com", "AUTHACTION_DOMAIN": "guide.example.com"},
			get:  issuer,
			want: "https://env.example.com",
		},
		{
			name: "issuer: AUTHACTION_DOMAIN over file",
			env:  env{"AUTHACTION_DOMAIN": "guide.example.com", "AUTHACTION_AUDIENCE": "guide-api"},
			file: "issuer: https://file.example.com\naudience: file-api\n",
			get:  issuer,
			want: "https://guide.example.com",
		},
		{
			name: "issuer: file over default (none)",
			file: "issuer: https://file.example.com\naudience: file-api\n",
			get:  issuer,
			want: "https://file.example.com",
		},
		{
			name: "audience: flag over variable, comma-separated",
			args: []string{"--issuer", "https://i.example.com", "--audience", " a , b,"},
			env:  env{"AUTHZ_AUDIENCE": "env-api"},
			get:  audiences,
			want: []string{"a", "b"},
		},
		{
			name: "audience: variable over AUTHACTION_AUDIENCE",
			args: []string{"--issuer", "https://i.example.com"},
			env:  env{"AUTHZ_AUDIENCE": "env-api", "AUTHACTION_AUDIENCE": "guide-api"},
			get:  audiences,
			want: []string{"env-api"},
		},
		{
			name: "audience: AUTHACTION_AUDIENCE over file",
			env:  env{"AUTHACTION_DOMAIN": "guide.example.com", "AUTHACTION_AUDIENCE": "guide-api"},
			file: "issuer: https://file.example.com\naudience: file-api\n",
			get:  audiences,
			want: []string{"guide-api"},
		},
		{
			name: "audience: file",
			file: "issuer: https://file.example.com\naudience: file-api, other\n",
			get:  audiences,
			want: []string{"file-api", "other"},
		},
		{
			name: "jwks-url: flag over variable",
			args: append([]string{"--jwks-url", "https://keys.example.com/flag"}, minimal...),
			env:  env{"AUTHZ_JWKS_URL": "https://keys.example.com/env"},
			get:  jwksURL,
			want: "https://keys.example.com/flag",
		},
		{
			name: "jwks-url: variable over AUTHACTION_DOMAIN",
			env:  env{"AUTHZ_JWKS_URL": "https://keys.example.com/env", "AUTHACTION_DOMAIN": "guide.example.com", "AUTHACTION_AUDIENCE": "a"},
			get:  jwksURL,
			want: "https://keys.example.com/env",
		},
		{
			name: "jwks-url: AUTHACTION_DOMAIN over file",
			env:  env{"AUTHACTION_DOMAIN": "guide.example.com", "AUTHACTION_AUDIENCE": "a"},
			file: "issuer: https://file.example.com\naudience: a\njwks_url: https://keys.example.com/file\n",
			get:  jwksURL,
			want: "https://guide.example.com/.well-known/jwks.json",
		},
		{
			name: "jwks-url: file",
			file: "issuer: https://file.example.com\naudience: a\njwks_url: https://keys.example.com/file\n",
			get:  jwksURL,
			want: "https://keys.example.com/file",
		},
		{
			name: "jwks-url: default from the issuer without its trailing slash",
			args: []string{"--issuer", "https://tenant.example.com/", "--audience", "a"},
			get:  jwksURL,
			want: "https://tenant.example.com/.well-known/jwks.json",
		},
		{
			name: "jwks-url: an explicit issuer is not paired with AUTHACTION_DOMAIN's key set",
			args: []string{"--issuer", "https://flag.example.com", "--audience", "a"},
			env:  env{"AUTHACTION_DOMAIN": "guide.example.com"},
			get:  jwksURL,
			want: "https://flag.example.com/.well-known/jwks.json",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				path := writeConfig(t, tc.file)
				if tc.env["AUTHZ_CONFIG"] == "FILE" {
					tc.env["AUTHZ_CONFIG"] = path
				} else {
					args = append([]string{"--config", path}, args...)
				}
			}
			cfg := load(t, args, tc.env)
			if got := tc.get(cfg); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestEnviron(t *testing.T) {
	dir := t.TempDir()
	dotenv := filepath.Join(dir, ".env")
	body := "# the guide's .env\n" +
		"AUTHZ_ISSUER=https://dotenv.example.com\n" +
		"export AUTHZ_AUDIENCE=\"dotenv-api\"\n" +
		"AUTHZ_GRPC_ADDR=127.0.0.1:7\n"
	if err := os.WriteFile(dotenv, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	process := env{"AUTHZ_ISSUER": "https://process.example.com"}
	lookup, warnings, err := Environ(process.environ(), dotenv)
	if err != nil || warnings != nil {
		t.Fatalf("Environ = %v, warnings %q; want no error or warning", err, warnings)
	}
	for _, tc := range []struct {
		name    string
		want    string
		wantSet bool
	}{
		{name: "AUTHZ_ISSUER", want: "https://process.example.com", wantSet: true}, // the environment wins
		{name: "AUTHZ_AUDIENCE", want: "dotenv-api", wantSet: true},
		{name: "AUTHZ_GRPC_ADDR", want: "127.0.0.1:7", wantSet: true},
		{name: "AUTHZ_HTTP_ADDR", wantSet: false},
	} {
		if got, ok := lookup(tc.name); got != tc.want || ok != tc.wantSet {
			t.Errorf("lookup(%s) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.wantSet)
		}
	}
	cfg := load(t, nil, env{"AUTHZ_ISSUER": "https://process.example.com"}.withDotenv(t, dotenv))
	if got, want := cfg.Providers[0].Issuer, "https://process.example.com"; got != want {
		t.Errorf("issuer = %q, want %q (environment over .env)", got, want)
	}
	if got, want := cfg.Providers[0].Audiences, []string{"dotenv-api"}; !reflect.DeepEqual(got, want) {
		t.Errorf("audiences = %q, want %q (from .env)", got, want)
	}
	// A flag still beats both.
	cfg = load(t, []string{"--grpc-addr", "127.0.0.1:8"}, env{}.withDotenv(t, dotenv))
	if got, want := cfg.GRPCAddr, "127.0.0.1:8"; got != want {
		t.Errorf("grpc addr = %q, want %q", got, want)
	}

	t.Run("missing file", func(t *testing.T) {
		lookup, _, err := Environ(env{"X": "1"}.environ(), filepath.Join(t.TempDir(), ".env"))
		if err != nil {
			t.Fatalf("Environ(missing) = %v, want nil", err)
		}
		if got, ok := lookup("X"); got != "1" || !ok {
			t.Errorf("lookup(X) = %q, %v; want 1, true", got, ok)
		}
	})
	t.Run("malformed file", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), ".env")
		if err := os.WriteFile(bad, []byte("AUTHZ_ISSUER='unterminated\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := Environ(nil, bad)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("Environ(malformed) = %v, want an error naming %s", err, bad)
		}
	})
	t.Run("first of a name wins", func(t *testing.T) {
		lookup, _, err := Environ([]string{"A=1", "A=2", "NOEQUALS", "B=x=y"}, filepath.Join(t.TempDir(), ".env"))
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"A": "1", "B": "x=y"} {
			if got, ok := lookup(name); got != want || !ok {
				t.Errorf("lookup(%s) = %q, %v; want %q (as os.Getenv)", name, got, ok, want)
			}
		}
	})
}

// TestEnvironWarnings: what the server will not read although it looks
// meant for it is named, once, with the setting it may mean: an AUTHZ_*
// variable that names none, in the environment or the .env, and a .env line
// godotenv misreads for want of an =.
func TestEnvironWarnings(t *testing.T) {
	dotenv := filepath.Join(t.TempDir(), ".env")
	body := "# the guide's .env, with typos\n" +
		"AUTHACTION_DOMAIN localhost:9000\n" + // no =: godotenv reads "AUTHACTION_DOMAIN localhost" = "9000"
		"AUTHACTION_AUDIENCE=https://api.example.com\n" +
		"export AUTHZ_CLOCKSKEW=30s\n" +
		"AUTHZ_ISSUER=https://i.example.com\n" +
		"OTHER_TOOL=x\n" + // not the server's: no warning
		"=orphan\n"
	if err := os.WriteFile(dotenv, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	process := env{"AUTHZ_AUDIENCES": "a", "AUTHZ_WHATEVER": "x", "AUTHZ_REALM": "r", "PATH": "/bin", "AUTHACTION_EXTRA": "guide's own"}
	lookup, warnings, err := Environ(process.environ(), dotenv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"AUTHZ_AUDIENCES names no setting and is ignored; did you mean AUTHZ_AUDIENCE? (-h lists the variables)",
		"AUTHZ_WHATEVER names no setting and is ignored (-h lists the variables)",
		dotenv + `:2: "AUTHACTION_DOMAIN localhost" is not a variable name, so the line sets nothing: write NAME=value`,
		dotenv + ":4: AUTHZ_CLOCKSKEW names no setting and is ignored; did you mean AUTHZ_CLOCK_SKEW? (-h lists the variables)",
		dotenv + `:7: "" is not a variable name, so the line sets nothing: write NAME=value`,
	}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
	if v, ok := lookup("AUTHACTION_DOMAIN localhost"); ok {
		t.Errorf("the misread entry is still there: %q", v)
	}
	if v, _ := lookup("AUTHACTION_AUDIENCE"); v != "https://api.example.com" {
		t.Errorf("AUTHACTION_AUDIENCE = %q: the lines after a bad one must still be read", v)
	}
}

// withDotenv layers the .env file at path under e.
func (e env) withDotenv(t *testing.T, path string) env {
	t.Helper()
	lookup, _, err := Environ(e.environ(), path)
	if err != nil {
		t.Fatal(err)
	}
	out := env{}
	for _, name := range []string{"AUTHZ_ISSUER", "AUTHZ_AUDIENCE", "AUTHZ_GRPC_ADDR", "AUTHZ_JWKS_URL",
		"AUTHACTION_DOMAIN", "AUTHACTION_AUDIENCE"} {
		if v, ok := lookup(name); ok {
			out[name] = v
		}
	}
	return out
}

func TestGuideIssuer(t *testing.T) {
	tests := []struct {
		domain string
		want   string
	}{
		{domain: "tenant.eu.authaction.com", want: "https://tenant.eu.authaction.com"},
		{domain: "tenant.eu.authaction.com/", want: "https://tenant.eu.authaction.com"},
		{domain: " tenant.example.com ", want: "https://tenant.example.com"},
		{domain: "localhost:9000", want: "http://localhost:9000"},
		{domain: "localhost", want: "http://localhost"},
		{domain: "127.0.0.1:9000", want: "http://127.0.0.1:9000"},
		{domain: "127.0.0.53", want: "http://127.0.0.53"},
		{domain: "[::1]:9000", want: "http://[::1]:9000"},
		{domain: "localhost.example.com:9000", want: "https://localhost.example.com:9000"},
		{domain: "10.0.0.1:9000", want: "https://10.0.0.1:9000"},
		{domain: "http://idp.internal:8080", want: "http://idp.internal:8080"},
		{domain: "https://tenant.example.com/", want: "https://tenant.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			if got := GuideIssuer(tc.domain); got != tc.want {
				t.Errorf("GuideIssuer(%q) = %q, want %q", tc.domain, got, tc.want)
			}
		})
	}
}

func TestLoadAuthAction(t *testing.T) {
	tests := []struct {
		name string
		env  env
		want Provider
	}{
		{
			name: "tenant domain",
			env:  env{"AUTHACTION_DOMAIN": "tenant.eu.authaction.com", "AUTHACTION_AUDIENCE": "https://api.example.com"},
			want: Provider{
				Name:       "tenant.eu.authaction.com",
				Issuer:     "https://tenant.eu.authaction.com",
				Audiences:  []string{"https://api.example.com"},
				JWKSURL:    "https://tenant.eu.authaction.com/.well-known/jwks.json",
				Algorithms: []string{"RS256"},
			},
		},
		{
			name: "loopback demo issuer is http",
			env:  env{"AUTHACTION_DOMAIN": "localhost:9000", "AUTHACTION_AUDIENCE": "https://api.example.com"},
			want: Provider{
				Name:       "localhost:9000",
				Issuer:     "http://localhost:9000",
				Audiences:  []string{"https://api.example.com"},
				JWKSURL:    "http://localhost:9000/.well-known/jwks.json",
				Algorithms: []string{"RS256"},
			},
		},
		{
			name: "explicit scheme is kept",
			env:  env{"AUTHACTION_DOMAIN": "http://idp.internal:8080", "AUTHACTION_AUDIENCE": "a,b"},
			want: Provider{
				Name:       "idp.internal:8080",
				Issuer:     "http://idp.internal:8080",
				Audiences:  []string{"a", "b"},
				JWKSURL:    "http://idp.internal:8080/.well-known/jwks.json",
				Algorithms: []string{"RS256"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := load(t, nil, tc.env)
			if got := cfg.Providers; len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Errorf("providers = %+v, want [%+v]", got, tc.want)
			}
		})
	}
}

func TestLoadProvidersConflict(t *testing.T) {
	providers := "# two providers\nproviders:\n  - issuer: https://a.example.com\n    audiences: [a]\n"
	tests := []struct {
		name  string
		args  []string
		env   env
		file  string
		wants []string // substrings of the error
	}{
		{name: "flag", args: []string{"--issuer", "https://x.example.com"}, file: providers, wants: []string{":2:", "--issuer", "providers"}},
		{name: "audience flag", args: []string{"--audience", "x"}, file: providers, wants: []string{":2:", "--audience"}},
		{name: "jwks flag", args: []string{"--jwks-url", "https://x.example.com/k"}, file: providers, wants: []string{":2:", "--jwks-url"}},
		{name: "variable", env: env{"AUTHZ_ISSUER": "https://x.example.com"}, file: providers, wants: []string{":2:", "AUTHZ_ISSUER"}},
		{name: "guide variable", env: env{"AUTHACTION_DOMAIN": "x.example.com"}, file: providers, wants: []string{":2:", "AUTHACTION_DOMAIN"}},
		{name: "file keys", file: providers + "issuer: https://x.example.com\n", wants: []string{":2:", "providers", "issuer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			_, err := Load(append([]string{"--config", path}, tc.args...), tc.env.lookup, io.Discard)
			if err == nil {
				t.Fatal("Load = nil error, want a conflict")
			}
			for _, w := range append(tc.wants, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingIssuerOrAudience(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   env
		wants []string
	}{
		{name: "nothing", wants: []string{"issuer", "--issuer", "AUTHZ_ISSUER", "AUTHACTION_DOMAIN", "--config"}},
		{name: "audience only", args: []string{"--audience", "a"}, wants: []string{"issuer", "--issuer", "AUTHZ_ISSUER", "AUTHACTION_DOMAIN"}},
		{name: "empty issuer flag", args: []string{"--issuer=", "--audience", "a"}, wants: []string{"--issuer"}},
		{name: "issuer only", args: []string{"--issuer", "https://i.example.com"}, wants: []string{"audience", "--audience", "AUTHZ_AUDIENCE", "AUTHACTION_AUDIENCE"}},
		{name: "guide domain only", env: env{"AUTHACTION_DOMAIN": "tenant.example.com"}, wants: []string{"--audience", "AUTHACTION_AUDIENCE"}},
		{name: "blank audience variable", args: []string{"--issuer", "https://i.example.com"}, env: env{"AUTHZ_AUDIENCE": "  "}, wants: []string{"--audience"}},
		{name: "audience of commas", args: []string{"--issuer", "https://i.example.com", "--audience", ", ,"}, wants: []string{"--audience", "AUTHZ_AUDIENCE"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(tc.args, tc.env.lookup, io.Discard)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want an error", cfg)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q has several lines, want one", msg)
			}
			for _, w := range tc.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	single := "issuer: https://i.example.com\naudience: a\n"
	tests := []struct {
		name  string
		body  string
		line  int      // the line the error must name
		wants []string // more substrings: the field at fault
	}{
		{name: "unknown top-level field", body: single + "grpc_adress: :1\n", line: 3, wants: []string{"grpc_adress"}},
		{name: "unknown provider field", body: "providers:\n  - issuer: https://a.example.com\n    audience: [a]\n", line: 3, wants: []string{"audience"}},
		{name: "unknown rule field", body: single + "rules:\n  - path: /a\n    scope: [x]\n", line: 5, wants: []string{"scope"}},
		{name: "duration as number", body: single + "clock_skew: 60\n", line: 3, wants: []string{"60"}},
		{name: "duration garbage", body: single + "jwks_refresh_interval: soon\n", line: 3, wants: []string{"soon"}},
		{name: "number garbage", body: single + "jwks_max_keys: many\n", line: 3, wants: []string{"many"}},
		{name: "list as string", body: "providers:\n  - issuer: https://a.example.com\n    audiences: a\n", line: 3, wants: []string{"a"}},
		{name: "providers as map", body: "providers:\n  issuer: https://a.example.com\n", line: 2, wants: []string{"providers"}},
		{name: "not a mapping", body: "- issuer\n", line: 1},
		{name: "syntax", body: single + "rules: [\n", line: 3},
		{name: "negative duration", body: single + "\nclock_skew: -1s\n", line: 4, wants: []string{"clock_skew", "-1s"}},
		{name: "zero refresh interval", body: single + "jwks_refresh_interval: 0s\n", line: 3, wants: []string{"jwks_refresh_interval"}},
		{name: "zero number", body: single + "max_token_bytes: 0\n", line: 3, wants: []string{"max_token_bytes"}},
		{name: "bad listen address", body: single + "grpc_addr: nowhere\n", line: 3, wants: []string{"grpc_addr", "nowhere"}},
		{name: "bad log level", body: single + "log_level: loud\n", line: 3, wants: []string{"log_level", "loud"}},
		{name: "bad log format", body: single + "log_format: xml\n", line: 3, wants: []string{"log_format", "xml"}},
		{name: "public path without slash", body: "issuer: https://i.example.com\naudience: a\npublic_paths: health\n", line: 3, wants: []string{"public_paths", "health"}},
		{name: "public path with a space", body: single + "public_paths: / 0\n", line: 3, wants: []string{"public_paths", `"/ 0"`}},
		{name: "rule public and scopes", body: single + "rules:\n  - path: /ok\n  - path: /a\n    public: true\n    scopes: [x]\n", line: 5, wants: []string{"rules[1]", "public", "scopes"}},
		{name: "rule without path", body: single + "rules:\n  - public: true\n", line: 4, wants: []string{"rules[0]", "path"}},
		{name: "rule path not absolute", body: single + "rules:\n  - path: admin\n", line: 4, wants: []string{"rules[0]", "admin"}},
		{name: "provider without audiences", body: "providers:\n  - issuer: https://a.example.com\n  - issuer: https://b.example.com\n", line: 2, wants: []string{"providers[0]", "audiences"}},
		{name: "provider with empty audience", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [\"\"]\n", line: 2, wants: []string{"providers[0]", "audience"}},
		{name: "provider without issuer", body: "providers:\n  - audiences: [a]\n", line: 2, wants: []string{"providers[0]", "issuer"}},
		{name: "duplicate issuer", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n  - issuer: https://a.example.com\n    audiences: [b]\n", line: 4, wants: []string{"providers[1]", "https://a.example.com", "providers[0]"}},
		{name: "symmetric algorithm", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    algorithms: [HS256]\n", line: 2, wants: []string{"providers[0]", "HS256"}},
		{name: "relative jwks url", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    jwks_url: /keys\n", line: 2, wants: []string{"providers[0]", "/keys"}},
		{name: "issuer that is no URL", body: "providers:\n  - issuer: tenant\n    audiences: [a]\n", line: 2, wants: []string{"providers[0]", "tenant"}},
		{name: "empty claim", body: single + "\nclaim_headers:\n  x-jwt-sub: \"\"\n", line: 5, wants: []string{"claim_headers", "x-jwt-sub"}},
		{name: "claim header twice", body: single + "claim_headers:\n  X-User: sub\n  x-user: email\n", line: 4, wants: []string{"claim_headers", "x-user", "lines 4 and 5"}},
		{name: "forbidden claim header", body: single + "claim_headers:\n  x-jwt-sub: sub\n  Authorization: email\n", line: 5, wants: []string{"claim_headers", "authorization", "cannot be a claim header"}},
		{name: "look-alike claim headers", body: single + "claim_headers:\n  x-jwt-sub: sub\n  x-other: email\n  X_JWT_SUB: email\n", line: 4, wants: []string{"claim_headers", "x_jwt_sub", "x-jwt-sub", "lines 4 and 6"}},
		{name: "claim header not a token", body: single + "claim_headers:\n  \"x jwt\": sub\n", line: 4, wants: []string{"claim_headers", "x jwt"}},
		{name: "syntax: unclosed list", body: single + "rules:\n  - path: /a\n    scopes: [a\n  - path: /b\n", line: 5, wants: []string{"did not find expected ',' or ']'"}},
		{name: "syntax: indentation", body: single + "rules:\n  - path: /a\n  - path: /b\n    scopes: [x]\n   hosts: [a]\n", line: 7, wants: []string{"expected '-' indicator"}},
		{name: "syntax: missing colon", body: single + "claim_headers:\n  x-a: sub\n  x-b sub\n  x-c: email\n", line: 5, wants: []string{"could not find expected ':'"}},
		{name: "syntax: tab", body: single + "rules:\n  - path: /a\n\tscopes: [a]\n", line: 5, wants: []string{"tab character"}},
		{name: "syntax: unterminated quote", body: single + "realm: \"abc\n", line: 3, wants: []string{"unexpected end of stream"}},
		{name: "type: scalar for a list", body: single + "rules:\n  - path: /a\n    scopes: admin\n", line: 5, wants: []string{`rules[0].scopes: "admin" is not a list`}},
		{name: "type: list for a scalar", body: single + "rules:\n  - path: [/a]\n", line: 4, wants: []string{"rules[0].path: a list is not a single value"}},
		{name: "type: not a bool", body: single + "rules:\n  - path: /a\n  - path: /b\n    public: yes please\n", line: 6, wants: []string{`rules[1].public: "yes please" is not true or false`}},
		{name: "type: policy not a mapping", body: single + "policies:\n  admin: [a]\n", line: 4, wants: []string{"policies.admin: a list is not a mapping (a rule)"}},
		{name: "type: claim header list", body: single + "claim_headers:\n  x-a: [sub]\n", line: 4, wants: []string{"claim_headers.x-a: a list is not a single value"}},
		{name: "type: long value cut", body: "providers:\n  - issuer: https://a.example.com\n    audiences: https://api.example.com/very/long\n", line: 3, wants: []string{`providers[0].audiences: "https://api.example.com/very/long" is not a list`}},
		{name: "sender constraint", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    sender_constraint: always\n", line: 2, wants: []string{"providers[0]", "sender_constraint", "always"}},
		{name: "DPoP HMAC", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    dpop_algorithms: [HS256]\n", line: 2, wants: []string{"providers[0]", "HS256"}},
		{name: "DPoP window", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    dpop_max_age: soon\n", line: 2, wants: []string{"providers[0]", "dpop_max_age"}},
		{name: "DPoP base URL", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    dpop_public_base_url: https://api.example.com/v1\n", line: 2, wants: []string{"providers[0]", "dpop_public_base_url"}},
		{name: "DPoP nonce key without nonces", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    dpop_nonce_key_file: /nonexistent\n", line: 2, wants: []string{"providers[0]", "dpop_nonce: true"}},
		{name: "DPoP nonce key missing", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    dpop_nonce: true\n    dpop_nonce_key_file: /nonexistent/key\n", line: 2, wants: []string{"providers[0]", "dpop_nonce_key_file"}},
		{name: "client certificate source", body: "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    client_cert_from: header\n", line: 2, wants: []string{"providers[0]", "client_cert_from"}},
		{name: "unknown field named with its place", body: single + "policies:\n  admin:\n    scope: [a]\n", line: 5, wants: []string{"policies.admin: unknown field scope"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			cfg, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want an error", cfg)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q has several lines, want one", msg)
			}
			at := path + ":" + strconv.Itoa(tc.line) + ":"
			if !strings.Contains(msg, at) {
				t.Errorf("error %q does not name %q", msg, at)
			}
			for _, w := range tc.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadFileReadErrors(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := Load(append([]string{"--config", path}, minimal...), env{}.lookup, io.Discard)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(missing file) = %v, want os.ErrNotExist naming %s", err, path)
		}
	})
	t.Run("too large", func(t *testing.T) {
		body := "# " + strings.Repeat("x", MaxFileBytes) + "\n"
		path := writeConfig(t, body)
		_, err := Load(append([]string{"--config", path}, minimal...), env{}.lookup, io.Discard)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("Load(oversize file) = %v, want an error naming %s and the limit", err, path)
		}
	})
}

func TestLoadInvalidValues(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		env         env
		ownProvider bool // args set the provider; else minimal comes first
		wants       []string
	}{
		{name: "duration flag", args: []string{"--clock-skew", "a minute"}, wants: []string{"--clock-skew", "a minute"}},
		{name: "duration variable", env: env{"AUTHZ_JWKS_REFRESH_INTERVAL": "0"}, wants: []string{"AUTHZ_JWKS_REFRESH_INTERVAL"}},
		{name: "negative duration", args: []string{"--shutdown-grace=-1s"}, wants: []string{"--shutdown-grace"}},
		{name: "negative watch interval", env: env{"AUTHZ_CONFIG_WATCH_INTERVAL": "-5s"}, wants: []string{"AUTHZ_CONFIG_WATCH_INTERVAL"}},
		{name: "zero fetch timeout", args: []string{"--jwks-fetch-timeout", "0s"}, wants: []string{"--jwks-fetch-timeout"}},
		{name: "zero unknown-kid wait", args: []string{"--jwks-unknown-kid-wait", "0s"}, wants: []string{"--jwks-unknown-kid-wait"}},
		{name: "negative number", args: []string{"--jwks-max-bytes", "-1"}, wants: []string{"--jwks-max-bytes", "-1"}},
		{name: "fractional number", env: env{"AUTHZ_MAX_TOKEN_BYTES": "1.5"}, wants: []string{"AUTHZ_MAX_TOKEN_BYTES", "1.5"}},
		{name: "number overflow", args: []string{"--jwks-max-keys", "99999999999999999999"}, wants: []string{"--jwks-max-keys"}},
		{name: "min refresh above refresh", args: []string{"--jwks-refresh-interval", "1m", "--jwks-min-refresh-interval", "2m"}, wants: []string{"--jwks-min-refresh-interval", "--jwks-refresh-interval"}},
		{name: "log level", args: []string{"--log-level", "loud"}, wants: []string{"--log-level", "loud"}},
		{name: "log format", env: env{"AUTHZ_LOG_FORMAT": "xml"}, wants: []string{"AUTHZ_LOG_FORMAT", "xml"}},
		{name: "listen address", args: []string{"--admin-addr", "9090"}, wants: []string{"--admin-addr", "9090"}},
		{name: "listen address variable", env: env{"AUTHZ_HTTP_ADDR": "nowhere"}, wants: []string{"AUTHZ_HTTP_ADDR", "nowhere"}},
		{name: "public path", args: []string{"--public-paths", "/ok,health"}, wants: []string{"--public-paths", "health"}},
		{name: "positional argument", args: []string{"serve"}, wants: []string{"serve"}},
		{name: "unknown flag", args: []string{"--isuer", "x"}, wants: []string{"isuer"}},
		{name: "jwks url not http", args: []string{"--jwks-url", "file:///etc/keys.json"}, wants: []string{"--jwks-url", "file:///etc/keys.json"}},
		{name: "switch flag", args: []string{"--admin-pprof=yes"}, wants: []string{"admin-pprof", "yes"}},
		{name: "switch variable", env: env{"AUTHZ_ADMIN_PPROF": "on"}, wants: []string{"AUTHZ_ADMIN_PPROF", "on"}},
		{name: "issuer not a URL", args: []string{"--issuer", "tenant", "--audience", "a"}, ownProvider: true, wants: []string{"--issuer", "tenant"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !tc.ownProvider {
				args = append(append([]string{}, minimal...), tc.args...)
			}
			var usage bytes.Buffer
			cfg, err := Load(args, tc.env.lookup, &usage)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, nil; want an error", args, cfg)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if usage.Len() > 0 {
				t.Errorf("Load wrote %q to the usage writer; only -h should", usage.String())
			}
		})
	}
}

// TestLoadSwitch pins how a true-or-false setting resolves: the bare flag
// means true, and flag, variable and file keep their precedence.
func TestLoadSwitch(t *testing.T) {
	file := writeConfig(t, "issuer: https://tenant.example.com\naudience: a\nadmin_pprof: true\n")
	tests := []struct {
		name string
		args []string
		env  env
		want bool
	}{
		{name: "default", args: minimal, want: false},
		{name: "bare flag", args: append([]string{"--admin-pprof"}, minimal...), want: true},
		{name: "flag false", args: append([]string{"--admin-pprof=false"}, minimal...), env: env{"AUTHZ_ADMIN_PPROF": "true"}, want: false},
		{name: "variable", args: minimal, env: env{"AUTHZ_ADMIN_PPROF": "1"}, want: true},
		{name: "file", args: []string{"--config", file}, want: true},
		{name: "variable over file", args: []string{"--config", file}, env: env{"AUTHZ_ADMIN_PPROF": "false"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := load(t, tc.args, tc.env).AdminPprof; got != tc.want {
				t.Errorf("AdminPprof = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLoadAllowsZeroSkewAndGrace(t *testing.T) {
	cfg := load(t, append([]string{"--clock-skew", "0s", "--shutdown-grace", "0s", "--config-watch-interval", "0"}, minimal...), nil)
	if cfg.ClockSkew != 0 || cfg.ShutdownGrace != 0 || cfg.ConfigWatchInterval != 0 {
		t.Errorf("clock skew, shutdown grace, watch interval = %v, %v, %v; want 0, 0, 0", cfg.ClockSkew, cfg.ShutdownGrace, cfg.ConfigWatchInterval)
	}
}

func TestLoadRules(t *testing.T) {
	file := "issuer: https://i.example.com\naudience: a\npublic_paths: /from-file\n" +
		"rules:\n  - path: /public\n    public: true\n  - path: /admin\n    scopes: [admin, read:messages]\n"
	fileRules := []Rule{{Path: "/public", Public: true}, {Path: "/admin", Scopes: []string{"admin", "read:messages"}}}
	tests := []struct {
		name string
		args []string
		env  env
		want []Rule
	}{
		{
			name: "flag paths first, then the file's rules",
			args: []string{"--public-paths", " /healthz, /docs ,"},
			want: append([]Rule{{Path: "/healthz", Public: true}, {Path: "/docs", Public: true}}, fileRules...),
		},
		{
			name: "variable paths",
			env:  env{"AUTHZ_PUBLIC_PATHS": "/status"},
			want: append([]Rule{{Path: "/status", Public: true}}, fileRules...),
		},
		{
			name: "file paths when no flag",
			want: append([]Rule{{Path: "/from-file", Public: true}}, fileRules...),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, file)
			cfg := load(t, append([]string{"--config", path}, tc.args...), tc.env)
			if !reflect.DeepEqual(cfg.Rules, tc.want) {
				t.Errorf("rules = %+v, want %+v", cfg.Rules, tc.want)
			}
		})
	}
	t.Run("no rules", func(t *testing.T) {
		if cfg := load(t, minimal, nil); cfg.Rules != nil {
			t.Errorf("rules = %+v, want none", cfg.Rules)
		}
	})
}

func TestLoadFullFile(t *testing.T) {
	path := filepath.Join("testdata", "full.yaml")
	got := load(t, []string{"--config", path}, nil)
	want := &Config{
		GRPCAddr:  "127.0.0.1:19191",
		HTTPAddr:  "127.0.0.1:19192",
		AdminAddr: "127.0.0.1:19090",
		Providers: []Provider{
			{
				Name:       "authaction",
				Issuer:     "https://tenant.example.com",
				Audiences:  []string{"https://api.example.com"},
				JWKSURL:    "https://tenant.example.com/.well-known/jwks.json",
				Algorithms: []string{"RS256"},
			},
			{
				Name:       "partner",
				Issuer:     "https://partner.example.org/",
				Audiences:  []string{"https://api.example.com", "partner-api"},
				JWKSURL:    "https://partner.example.org/.well-known/jwks.json",
				Algorithms: []string{"RS256"},
			},
		},
		Rules:                  []Rule{{Path: "/public", Public: true}, {Path: "/admin", Scopes: []string{"admin"}}},
		ClaimHeaders:           map[string]string{"x-jwt-sub": "sub", "x-jwt-email": "email"},
		JWKSRefreshInterval:    30 * time.Minute,
		JWKSMinRefreshInterval: 30 * time.Second,
		JWKSFetchTimeout:       2 * time.Second,
		JWKSUnknownKIDWait:     250 * time.Millisecond,
		JWKSMaxBytes:           65536,
		JWKSMaxKeys:            20,
		JWKSCacheMaxAge:        24 * time.Hour,
		ClockSkew:              0,
		MaxTokenBytes:          4096,
		TokenCacheSize:         10000,
		DPoPReplayCacheSize:    1 << 20,
		Realm:                  "api",
		ForwardAuthSource:      "auto",
		ShutdownGrace:          3 * time.Second,
		ConfigWatchInterval:    5 * time.Second,
		GRPCMaxRecvBytes:       1 << 20,
		GRPCMaxStreams:         1024,
		HTTPMaxHeaderBytes:     64 << 10,
		HTTPReadTimeout:        10 * time.Second,
		LogLevel:               "debug",
		LogFormat:              "text",
		File:                   path,
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	want.FileSHA256 = hex.EncodeToString(sum[:]) // the digest of the file as read (/statusz)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(full.yaml) =\n%+v\nwant\n%+v", got, want)
	}
}

func TestLoadSingleProviderFile(t *testing.T) {
	got := load(t, []string{"--config", filepath.Join("testdata", "single.yaml")}, nil)
	wantProviders := []Provider{{
		Name:       "tenant.example.com",
		Issuer:     "https://tenant.example.com/",
		Audiences:  []string{"https://api.example.com", "other-api"},
		JWKSURL:    "https://tenant.example.com/.well-known/jwks.json",
		Algorithms: []string{"RS256"},
	}}
	if !reflect.DeepEqual(got.Providers, wantProviders) {
		t.Errorf("providers = %+v, want %+v", got.Providers, wantProviders)
	}
	wantRules := []Rule{{Path: "/health", Public: true}, {Path: "/docs", Public: true}, {Path: "/admin", Scopes: []string{"admin", "read:messages"}}}
	if !reflect.DeepEqual(got.Rules, wantRules) {
		t.Errorf("rules = %+v, want %+v", got.Rules, wantRules)
	}
}

func TestLoadClaimHeaders(t *testing.T) {
	path := writeConfig(t, "claim_headers:\n  X-JWT-Email: email\n  x-Tenant: org.id\n")
	cfg := load(t, append([]string{"--config", path}, minimal...), nil)
	want := map[string]string{"x-jwt-email": "email", "x-tenant": "org.id"}
	if !reflect.DeepEqual(cfg.ClaimHeaders, want) {
		t.Errorf("claim headers = %v, want %v", cfg.ClaimHeaders, want)
	}
	if cfg := load(t, minimal, nil); cfg.ClaimHeaders != nil {
		t.Errorf("claim headers without a file = %v, want nil (authz's defaults)", cfg.ClaimHeaders)
	}
}

func TestLoadHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var usage bytes.Buffer
			cfg, err := Load([]string{arg}, env{}.lookup, &usage)
			if !errors.Is(err, flag.ErrHelp) || cfg != nil {
				t.Fatalf("Load(%s) = %v, %v; want nil, flag.ErrHelp", arg, cfg, err)
			}
			out := usage.String()
			for _, s := range settings {
				if !strings.Contains(out, "-"+s.name+" ") && !strings.Contains(out, "-"+s.name+"\n") {
					t.Errorf("usage does not list -%s:\n%s", s.name, out)
				}
				if !strings.Contains(out, "[$"+s.env()+"]") {
					t.Errorf("usage does not name $%s", s.env())
				}
			}
		})
	}
}

// TestSettingsEverywhere checks that every setting of the table is a flag, a
// variable and (but --config) a file key, so that the three stay in step.
func TestSettingsEverywhere(t *testing.T) {
	sample := map[string]string{
		"issuer":             "https://i.example.com",
		"audience":           "a",
		"jwks-url":           "https://i.example.com/keys",
		"public-paths":       "/p",
		"tls-cert-file":      "/certs/tls.crt",
		"tls-key-file":       "/certs/tls.key",
		"tls-client-ca-file": "/certs/ca.crt",
		"jwks-ca-file":       "/certs/jwks-ca.crt",
		"jwks-cache-dir":     "/var/cache/extauthz",
	}
	// Settings that only make sense with others: what goes with each.
	with := map[string][]string{
		"tls-cert-file":      {"tls-key-file"},
		"tls-key-file":       {"tls-cert-file"},
		"tls-client-ca-file": {"tls-cert-file", "tls-key-file"},
	}
	for _, s := range settings {
		if s.name == "config" {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			v := s.def
			if v == "" {
				v = sample[s.name]
			}
			if v == "" {
				t.Fatalf("no sample value for %s", s.name)
			}
			if _, _, err := parseFile([]byte(s.key() + ": " + v + "\n")); err != nil {
				t.Errorf("file key %s: %v", s.key(), err)
			}
			args := append([]string{"--" + s.name + "=" + v}, minimal...)
			e := env{s.env(): v, "AUTHZ_ISSUER": "https://i.example.com", "AUTHZ_AUDIENCE": "a"}
			for _, o := range with[s.name] {
				args = append(args, "--"+o+"="+sample[o])
				e[setting{name: o}.env()] = sample[o]
			}
			if _, err := Load(args, env{}.lookup, io.Discard); err != nil {
				t.Errorf("flag --%s=%s: %v", s.name, v, err)
			}
			if _, err := Load(nil, e.lookup, io.Discard); err != nil {
				t.Errorf("variable %s=%s: %v", s.env(), v, err)
			}
		})
	}
}

func TestParseFileEmpty(t *testing.T) {
	for _, body := range []string{"", "  \n\t\n", "# just a comment\n", "---\n"} {
		fc, _, err := parseFile([]byte(body))
		if err != nil || fc == nil {
			t.Errorf("parseFile(%q) = %v, %v; want an empty config", body, fc, err)
		}
	}
}

// TestLoadSingleProviderPerSetting: the sources are ordered per setting
// (flag, AUTHZ_*, AUTHACTION_*, file, default), so the file's audience
// applies when the issuer comes from a flag or the guide's variables.
func TestLoadSingleProviderPerSetting(t *testing.T) {
	path := writeConfig(t, "audience: file-api\njwks_url: https://keys.example.com/k\n")
	for _, tc := range []struct {
		name string
		args []string
		env  env
	}{
		{name: "issuer flag", args: []string{"--issuer", "https://i.example.com"}},
		{name: "guide domain", env: env{"AUTHACTION_DOMAIN": "i.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := load(t, append([]string{"--config", path}, tc.args...), tc.env)
			if got, want := cfg.Providers[0].Audiences, []string{"file-api"}; !reflect.DeepEqual(got, want) {
				t.Errorf("audiences = %q, want %q from the file", got, want)
			}
		})
	}
}

func TestLoadTLSPairs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // "" for no error
	}{
		{name: "cert without key", args: []string{"--tls-cert-file=/c"}, want: "go together"},
		{name: "key without cert", args: []string{"--tls-key-file=/k"}, want: "go together"},
		{name: "client CA without server cert", args: []string{"--tls-client-ca-file=/ca"}, want: "mutual TLS needs"},
		{name: "server TLS", args: []string{"--tls-cert-file=/c", "--tls-key-file=/k"}},
		{name: "mutual TLS", args: []string{"--tls-cert-file=/c", "--tls-key-file=/k", "--tls-client-ca-file=/ca"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(append(tc.args, minimal...), env{}.lookup, io.Discard)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Load = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// TestLoadJWKSURLCredentials: a JWKS URL may hold the user info of a key set
// behind Basic authentication. It is kept as written for the fetch, and an
// error about the URL names it without the user info, wherever it was set.
func TestLoadJWKSURLCredentials(t *testing.T) {
	const (
		user = "reader-7f3a"
		pass = "s3cr3t-pw-91c"
	)
	creds := user + ":" + pass + "@"
	provider := func(jwksURL string) string {
		return "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    jwks_url: " + jwksURL + "\n"
	}
	tests := []struct {
		name    string
		args    []string
		env     env
		file    string // config file body, if any
		wantURL string // the JWKSURL loaded; "" means an error
	}{
		{name: "flag", args: append(minimal, "--jwks-url", "https://"+creds+"idp.example.com/jwks"), wantURL: "https://" + creds + "idp.example.com/jwks"},
		{name: "variable", args: minimal, env: env{"AUTHZ_JWKS_URL": "https://" + creds + "idp.example.com/jwks"}, wantURL: "https://" + creds + "idp.example.com/jwks"},
		{name: "file", file: provider("https://" + creds + "idp.example.com/jwks"), wantURL: "https://" + creds + "idp.example.com/jwks"},
		{name: "flag, not http", args: append(minimal, "--jwks-url", "ftp://"+creds+"idp.example.com/jwks")},
		{name: "flag, no host", args: append(minimal, "--jwks-url", "https://"+creds+"/jwks")},
		{name: "variable, bad escape", args: minimal, env: env{"AUTHZ_JWKS_URL": "https://" + creds + "idp.example.com/%zz"}},
		{name: "variable, space in the password", args: minimal, env: env{"AUTHZ_JWKS_URL": "https://" + user + ":" + pass + " x@idp.example.com/jwks"}},
		{name: "file, not http", file: provider("ftp://" + creds + "idp.example.com/jwks")},
		{name: "file, no scheme", file: provider(creds + "idp.example.com/jwks")},
		{name: "file, token as the user name", file: provider("ftp://" + pass + "@idp.example.com/jwks")},
		{name: "issuer with user info", args: []string{"--issuer", "ftp://" + creds + "idp.example.com", "--audience", "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeConfig(t, tc.file))
			}
			cfg, err := Load(args, tc.env.lookup, io.Discard)
			if tc.wantURL != "" {
				if err != nil {
					t.Fatalf("Load: got %v, want no error", err)
				}
				if got := cfg.Providers[0].JWKSURL; got != tc.wantURL {
					t.Errorf("JWKSURL: got %q, want %q", got, tc.wantURL)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load: got no error, want one")
			}
			for _, secret := range []string{user, pass} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("Load error shows %q: %v", secret, err)
				}
			}
			if !strings.Contains(err.Error(), "idp.example.com") && !strings.Contains(err.Error(), "/jwks") {
				t.Errorf("Load error %v names neither the host nor the path", err)
			}
		})
	}
}

// TestLoadSenderSettings: a provider's sender constraint settings reach
// Provider, the nonce key read from its file.
func TestLoadSenderSettings(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "nonce.key")
	key := strings.Repeat("k", 40)
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := "providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n    sender_constraint: required\n" +
		"    dpop_algorithms: [ES256]\n    dpop_max_age: 30s\n    dpop_max_ahead: 2s\n    dpop_nonce: true\n" +
		"    dpop_nonce_key_file: " + keyFile + "\n    dpop_public_base_url: https://api.example.com\n" +
		"    client_cert_from: xfcc\n    client_cert_header: x-client-cert\n"
	cfg, err := Load([]string{"--config", writeConfig(t, body)}, env{}.lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Providers[0]
	want := authz.DPoP{Algorithms: []string{"ES256"}, MaxAge: 30 * time.Second, MaxAhead: 2 * time.Second, Nonce: true,
		NonceKey: []byte(key), PublicBaseURL: "https://api.example.com"}
	if p.SenderConstraint != "required" || p.ClientCertFrom != "xfcc" || p.ClientCertHeader != "x-client-cert" || !reflect.DeepEqual(p.DPoP, want) {
		t.Errorf("provider = %+v, want sender required, xfcc, x-client-cert, %+v", p, want)
	}
}
