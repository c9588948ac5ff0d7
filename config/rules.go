package config

// The rules (--public-paths, then the file's) and the claim headers.

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/authz"
)

// loadRules sets cfg.Rules: the paths of public-paths first, then the
// file's rules.
func loadRules(cfg *Config, src *sources) error {
	// where names each rule and policy for CheckRules's errors (the
	// public-paths setting's source, a file rule's line); the Config holds
	// them without it.
	var where []Rule
	if v, from := src.value(named("public-paths")); v != "" {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if !strings.HasPrefix(p, "/") {
					return fmt.Errorf("%s: %q does not start with /", from, p)
				}
				cfg.Rules = append(cfg.Rules, Rule{Path: p, Public: true})
				where = append(where, Rule{Path: p, Public: true, Where: from})
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
// Each error names the header's line.
func loadClaimHeaders(cfg *Config, src *sources) error {
	if len(src.file.ClaimHeaders) == 0 {
		return nil
	}
	line := func(h string) int { return lineOfKey(&src.root, "claim_headers", h) }
	// In the file's order: of two headers that collide, the first is named.
	names := slices.SortedFunc(maps.Keys(src.file.ClaimHeaders), func(a, b string) int {
		return cmp.Or(cmp.Compare(line(a), line(b)), strings.Compare(a, b))
	})
	cfg.ClaimHeaders = make(map[string]string, len(names))
	lineOfName := make(map[string]int, len(names)) // lower-case name -> its line
	var earlier []string                           // the lower-case names so far, in order
	for _, h := range names {
		c := src.file.ClaimHeaders[h]
		at := fmt.Sprintf("%s:%d: claim_headers", src.path, line(h))
		if h == "" || c == "" {
			return fmt.Errorf("%s: header %q and claim %q must both be set", at, h, c)
		}
		lower := strings.ToLower(h)
		if prev, dup := lineOfName[lower]; dup {
			// Header names are case-insensitive: which claim won would
			// depend on map order.
			return fmt.Errorf("%s:%d: claim_headers: header %s is set twice, on lines %d and %d (names are case-insensitive)", src.path, prev, lower, prev, line(h))
		}
		// authz.New refuses some names (authorization, host, ...) and
		// look-alikes of one another (x_jwt_sub, x-jwt-sub); it is asked
		// here, header by header, so that the error names the line.
		if err := checkClaimHeaders(map[string]string{lower: c}); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		cfg.ClaimHeaders[lower] = c
		lineOfName[lower] = line(h)
		if checkClaimHeaders(cfg.ClaimHeaders) != nil {
			for _, prev := range earlier { // the one it collides with
				if err := checkClaimHeaders(map[string]string{prev: cfg.ClaimHeaders[prev], lower: c}); err != nil {
					return fmt.Errorf("%s:%d: claim_headers: %w (lines %d and %d)", src.path, lineOfName[prev], err, lineOfName[prev], line(h))
				}
			}
		}
		earlier = append(earlier, lower)
	}
	return nil
}

// checkClaimHeaders reports what authz.New refuses in claim headers.
func checkClaimHeaders(headers map[string]string) error { return authz.CheckClaimHeaders(headers) }
