package policy

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Rule is a rule or a named policy as configured. A path rule has a Path; a
// named policy (chosen by Envoy's route through context_extensions) has none.
type Rule struct {
	// Path matches itself and every path below it (authz matches it).
	Path string
	// Methods, if any, are the upper-case HTTP methods the rule applies to:
	// a path rule whose methods do not include the request's does not match
	// (the next rule is tried); a named policy denies such a request.
	Methods []string
	// Hosts, if any, are the hosts the rule applies to (":authority" or
	// Host, case-insensitive, the port ignored); "*.example.com" matches one
	// label. Like Methods, a match condition.
	Hosts []string
	// Public lets requests through without a token. Not with Scopes,
	// Claims, When or Deny.
	Public bool
	// Deny refuses every request (403), even with a valid token. Alone.
	Deny bool
	// Scopes are all required.
	Scopes []string
	// Claims must all hold: a dotted path into the claims (a claim whose
	// own name matches exactly is taken first) to a scalar (equality, JSON
	// type included) or a list of scalars (the claim equals one of them,
	// or, an array claim, contains one of them).
	Claims map[string]any
	// When is a CEL condition that must be true (see [NewEnv] for what it
	// may read).
	When string
	// Shadow (enforce: false in the file) makes the rule's denials shadow
	// allows: decided, logged and counted, but let through, to roll a rule
	// out safely.
	Shadow bool
	// Where names the rule in errors, "file:line" or "rule 3".
	Where string
}

// Compiled is a checked rule, immutable and safe for concurrent use.
type Compiled struct {
	Path    string
	Public  bool
	Deny    bool
	Shadow  bool
	Scopes  []string
	methods []string // sorted; nil: any
	hosts   []host   // nil: any
	claims  []claimRequirement
	when    *condition
	// NeedsClaims reports whether evaluating the rule reads the verified
	// claims (Claims or When), so that they must be kept for cached tokens.
	NeedsClaims bool
}

type host struct {
	name     string // lower-cased, without a trailing dot
	wildcard bool   // "*.name": exactly one label before name
}

type claimRequirement struct {
	path  string
	oneOf []any // normalised scalars: string, bool, int64, float64, nil
}

// Compile checks r and compiles it with env (nil: CEL conditions are
// refused). Errors name r.Where.
func Compile(r Rule, env *Env) (*Compiled, error) {
	c, err := compile(r, env)
	if err != nil && r.Where != "" {
		return nil, fmt.Errorf("%s: %w", r.Where, err)
	}
	return c, err
}

func compile(r Rule, env *Env) (*Compiled, error) {
	c := &Compiled{Path: r.Path, Public: r.Public, Deny: r.Deny, Shadow: r.Shadow, Scopes: slices.Clone(r.Scopes)}
	switch {
	case r.Public && r.Deny:
		return nil, errors.New("a rule cannot be both public and deny")
	case r.Public && len(r.Scopes) > 0:
		return nil, errors.New("a rule cannot be both public and require scopes")
	case r.Public && len(r.Claims) > 0:
		return nil, errors.New("a public rule cannot require claims: anonymous requests pass it, so a token's claims would only make it stricter for those who send one")
	case r.Public && r.When != "":
		return nil, errors.New("a public rule cannot have a when condition: anonymous requests pass it, so the condition would only bind those who send a token")
	case r.Deny && (len(r.Scopes) > 0 || len(r.Claims) > 0 || r.When != ""):
		return nil, errors.New("a deny rule denies every request: scopes, claims or when would never be read")
	}
	for _, s := range r.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			return nil, fmt.Errorf("scope %q is not a valid scope token", s)
		}
	}
	for _, m := range r.Methods {
		if m == "" || m != strings.ToUpper(m) || !token(m) {
			return nil, fmt.Errorf("method %q is not an upper-case HTTP method", m)
		}
		if !slices.Contains(c.methods, m) {
			c.methods = append(c.methods, m)
		}
	}
	slices.Sort(c.methods)
	for _, h := range r.Hosts {
		parsed, err := parseHost(h)
		if err != nil {
			return nil, err
		}
		c.hosts = append(c.hosts, parsed)
	}
	paths := make([]string, 0, len(r.Claims))
	for p := range r.Claims {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		req, err := claimRequirementOf(p, r.Claims[p])
		if err != nil {
			return nil, err
		}
		c.claims = append(c.claims, req)
	}
	if r.When != "" {
		if env == nil {
			return nil, errors.New("when: CEL conditions are not available here")
		}
		cond, err := env.compile(r.When)
		if err != nil {
			return nil, fmt.Errorf("when: %w", err)
		}
		c.when = cond
	}
	c.NeedsClaims = len(c.claims) > 0 || c.when != nil
	return c, nil
}

// token reports whether s is an RFC 9110 token (a method's syntax).
func token(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func parseHost(h string) (host, error) {
	name := strings.TrimSuffix(strings.ToLower(h), ".")
	out := host{name: name}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		out = host{name: rest, wildcard: true}
	}
	if out.name == "" || strings.ContainsAny(out.name, "*/:@ ") || strings.Contains(out.name, "..") {
		if _, _, err := net.SplitHostPort(h); err == nil {
			return host{}, fmt.Errorf("host %q: give the host without a port (the port is ignored)", h)
		}
		return host{}, fmt.Errorf("host %q is not a host name or \"*.\" and a host name", h)
	}
	return out, nil
}

// Matches reports whether the rule applies to a request with this method
// and host (as the request sent them; the host's port is ignored).
func (c *Compiled) Matches(method, hostport string) bool {
	if c.methods != nil && !slices.Contains(c.methods, method) {
		return false
	}
	if c.hosts == nil {
		return true
	}
	h := normalHost(hostport)
	for _, want := range c.hosts {
		if want.wildcard {
			if label, rest, ok := strings.Cut(h, "."); ok && label != "" && rest == want.name {
				return true
			}
		} else if h == want.name {
			return true
		}
	}
	return false
}

// HasConditions reports whether the rule matches only some methods or hosts.
func (c *Compiled) HasConditions() bool { return c.methods != nil || c.hosts != nil }

// HasMethods reports whether the rule matches only some methods.
func (c *Compiled) HasMethods() bool { return c.methods != nil }

// HasHosts reports whether the rule matches only some hosts.
func (c *Compiled) HasHosts() bool { return c.hosts != nil }

// normalHost lower-cases a host, drops its port and a trailing dot.
func normalHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
