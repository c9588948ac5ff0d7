package config

import (
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseFile feeds arbitrary bytes to the config file loader. The
// invariants: it never panics; an error renders as one line; and a file that
// Load accepts yields only providers and rules that the rest of the server
// can rely on (an issuer, an audience, an http(s) JWKS URL, an algorithm;
// absolute rule paths, never public with scopes; lower-case claim headers).
func FuzzParseFile(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range seeds {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"providers: [\n",
		"- a\n",
		"a: &a [*a, *a]\nb: *a\n",
		"providers:\n  - issuer: https://a.example.com\n    audiences: [a]\n  - issuer: https://a.example.com\n    audiences: [b]\n",
		"rules:\n  - path: /a\n    public: true\n    scopes: [x]\n",
		"claim_headers:\n  X-A: sub\n  x-a: email\n",
		"clock_skew: 60\njwks_max_keys: -1\n",
		"issuer: https://i.example.com\naudience: ','\n",
		"---\nissuer: a\n---\nissuer: b\n",
		"providers: !!map {}\n",
		"\ufeffissuer: https://i.example.com\n",
	} {
		f.Add([]byte(s))
	}
	// One file per fuzzing process: its executions run one at a time.
	path := filepath.Join(f.TempDir(), "c.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, root, err := parseFile(data)
		if err != nil {
			if msg := yamlError("f.yaml", err).Error(); strings.Contains(msg, "\n") {
				t.Errorf("yamlError(%v) = %q, want one line", err, msg)
			}
		} else if fc == nil {
			t.Fatal("parseFile = nil, nil")
		}
		for _, key := range []string{"providers", "rules", "claim_headers", "issuer"} {
			for idx := -1; idx < 3; idx++ {
				if n := lineOf(&root, key, idx); n < 0 {
					t.Errorf("lineOf(%s, %d) = %d", key, idx, n)
				}
			}
		}
		if len(data) > MaxFileBytes {
			return
		}

		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load([]string{"--config", path}, env{}.lookup, io.Discard)
		if err != nil {
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "issuer") &&
				!strings.Contains(err.Error(), "audience") {
				// Every error of a file-only configuration is about the file
				// or names the missing issuer or audience.
				t.Errorf("Load error %q names neither the file nor the missing setting", err)
			}
			return
		}
		if len(cfg.Providers) == 0 {
			t.Fatal("Load accepted a configuration without providers")
		}
		for _, p := range cfg.Providers {
			if p.Issuer == "" || len(p.Audiences) == 0 || len(p.Algorithms) == 0 || p.Name == "" {
				t.Errorf("accepted provider %+v lacks an issuer, audience, algorithm or name", p)
			}
			for _, a := range p.Audiences {
				if strings.TrimSpace(a) == "" {
					t.Errorf("accepted provider %+v has an empty audience", p)
				}
			}
			if u, err := url.Parse(p.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Errorf("accepted provider %+v has JWKS URL %q", p, p.JWKSURL)
			}
		}
		for _, r := range cfg.Rules {
			if !strings.HasPrefix(r.Path, "/") || (r.Public && len(r.Scopes) > 0) {
				t.Errorf("accepted rule %+v", r)
			}
		}
		for h := range cfg.ClaimHeaders {
			if h != strings.ToLower(h) {
				t.Errorf("claim header %q is not lower-case", h)
			}
		}
	})
}
