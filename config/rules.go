package config

// The rules (--public-paths, then the file's) and the claim headers.

import (
	"fmt"
	"github.com/extauthz/extauthz/authz"
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
	// where names each file rule and policy for CheckRules's errors; the
	// Config holds them without it.
	where := make([]Rule, 0, len(cfg.Rules)+len(src.file.Rules))
	where = append(where, cfg.Rules...)
	for i, r := range src.file.Rules {
		at := fmt.Sprintf("%s: rules[%d]", src.at("rules", i), i)
		switch {
		case r.Path == "":
			return fmt.Errorf("%s: path is required", at)
		case !strings.HasPrefix(r.Path, "/"):
			return fmt.Errorf("%s: path %q does not start with /", at, r.Path)
		}
		where = append(where, r.rule(at))
		cfg.Rules = append(cfg.Rules, r.rule(""))
	}
	var wherePolicies map[string]Rule
	if len(src.file.Policies) > 0 {
		cfg.Policies = make(map[string]Rule, len(src.file.Policies))
		wherePolicies = make(map[string]Rule, len(src.file.Policies))
		for name, r := range src.file.Policies {
			at := fmt.Sprintf("%s:%d: policies.%s", src.path, lineOfKey(&src.root, "policies", name), name)
			if r.Path != "" {
				return fmt.Errorf("%s: a named policy has no path (the route chose the traffic)", at)
			}
			cfg.Policies[name], wherePolicies[name] = r.rule(""), r.rule(at)
		}
	}
	for i, c := range src.file.MetadataClaims {
		if c == "" {
			return fmt.Errorf("%s: metadata_claims[%d] names no claim", src.at("metadata_claims", i), i)
		}
		cfg.MetadataClaims = append(cfg.MetadataClaims, c)
	}
	// Every rule and policy is compiled here as the server will (CEL
	// type-checked, combinations checked, shadowed rules found), so that a
	// mistake stops the start or refuses the reload with its file line.
	if err := authz.CheckRules(where, wherePolicies); err != nil {
		return err
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
