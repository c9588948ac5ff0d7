package config

// The rules (--public-paths, then the file's) and the claim headers.

import (
	"fmt"
	"strings"
)

// loadRules sets cfg.Rules: the paths of public-paths first, then the
// file's rules.
func loadRules(cfg *Config, src *sources) error {
	if v, where := src.value(named("public-paths")); v != "" {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if !strings.HasPrefix(p, "/") {
					return fmt.Errorf("%s: %q does not start with /", where, p)
				}
				cfg.Rules = append(cfg.Rules, Rule{Path: p, Public: true})
			}
		}
	}
	for i, r := range src.file.Rules {
		at := fmt.Sprintf("%s: rules[%d]", src.at("rules", i), i)
		switch {
		case r.Path == "":
			return fmt.Errorf("%s: path is required", at)
		case !strings.HasPrefix(r.Path, "/"):
			return fmt.Errorf("%s: path %q does not start with /", at, r.Path)
		case r.Public && len(r.Scopes) > 0:
			return fmt.Errorf("%s: a rule cannot be both public and require scopes", at)
		}
		cfg.Rules = append(cfg.Rules, Rule(r))
	}
	return nil
}

// loadClaimHeaders sets cfg.ClaimHeaders from the file, header names in
// lower case; nil when the file sets none (authz's defaults then apply).
func loadClaimHeaders(cfg *Config, src *sources) error {
	if len(src.file.ClaimHeaders) == 0 {
		return nil
	}
	cfg.ClaimHeaders = make(map[string]string, len(src.file.ClaimHeaders))
	for h, c := range src.file.ClaimHeaders {
		if h == "" || c == "" {
			return fmt.Errorf("%s: claim_headers: header %q and claim %q must both be set", src.at("claim_headers", -1), h, c)
		}
		lower := strings.ToLower(h)
		if _, dup := cfg.ClaimHeaders[lower]; dup {
			// Header names are case-insensitive: which claim won would
			// depend on map order.
			return fmt.Errorf("%s: claim_headers: header %s is set twice (names are case-insensitive)", src.at("claim_headers", -1), lower)
		}
		cfg.ClaimHeaders[lower] = c
	}
	return nil
}
