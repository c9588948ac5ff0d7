package authz

// Routing: which rules a request meets, over every reading of its path and
// method, through an index whose cost does not grow with the number of rules.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/policy"
)

// rule is a compiled path rule: where it applies (path, fold, methods and
// hosts) and what it asks (public, deny, scopes, and the requirements of c).
type rule struct {
	path   string // normalised, as configured; "/" matches every path
	fold   string // path in the fold of the folded readings (see foldPath)
	cased  bool   // fold differs from path
	public bool
	deny   bool
	scopes []string
	c      *policy.Compiled
	cond   bool // c matches only some methods or hosts
	shadow bool // enforce: false
}

// matches reports whether the rule's path matches p, an exact reading of a
// request (compared with the path as configured).
func (r *rule) matches(p string) bool { return prefixMatch(r.path, p) }

// matchesFolded reports whether the rule's path matches p, a folded reading
// of a request (compared with the rule's path in the same fold: a rule
// /Reports must match the folded reading /reports of /REPORTS).
func (r *rule) matchesFolded(p string) bool { return prefixMatch(r.fold, p) }

func prefixMatch(prefix, p string) bool {
	if prefix == "/" {
		return true
	}
	return p == prefix || strings.HasPrefix(p, prefix) && p[len(prefix)] == '/'
}

// ruleSet is the compiled rules and named policies.
type ruleSet struct {
	list []rule
	// byPath and byFold index the rules by path and by folded path, each
	// list in rule order; nil for small sets, where a scan is faster.
	byPath, byFold map[string][]int32
	// policies are the named policies, chosen by Envoy's route.
	policies map[string]*rule
	// methods and hosts: some rule or policy matches only some methods or
	// hosts, so the request's must be known.
	methods, hosts bool
	// needsClaims: some rule or policy reads the verified claims.
	needsClaims bool
}

// indexFrom is the number of rules from which they are indexed: below it, a
// scan of the rules costs less than hashing each prefix of a path.
const indexFrom = 16

// CheckRules reports the first error New would find in the rules and named
// policies (each error names the rule's Where), without building a Server.
func CheckRules(rules []Rule, named map[string]Rule) error {
	env, err := policy.NewEnv()
	if err != nil {
		return err
	}
	_, err = compileRules(rules, named, env)
	return err
}

// compileRules checks and compiles the rules and named policies.
func compileRules(in []Rule, named map[string]Rule, env *policy.Env) (*ruleSet, error) {
	rs := &ruleSet{list: make([]rule, 0, len(in))}
	shadow := map[string]int{} // path -> the first rule without conditions there
	for i, r := range in {
		where := r.Where
		if where == "" {
			where = fmt.Sprintf("rule %d (%s)", i, r.Path)
		}
		strict, lenient, ok := readings(r.Path)
		if !ok || strict != lenient || strict != r.Path || strings.ContainsAny(r.Path, "?#") {
			return nil, fmt.Errorf("%s: path %q must be a plain absolute path (no query, escapes, dot segments or repeated slashes)", where, r.Path)
		}
		p := strict
		if len(p) > 1 {
			p = strings.TrimSuffix(p, "/")
		}
		pr := r
		pr.Where = where
		c, err := policy.Compile(pr, env)
		if err != nil {
			return nil, err
		}
		// A rule is never used when an earlier rule without conditions
		// matches all its paths: one at its path or at a prefix of it.
		for _, q := range prefixes(p) {
			if j, ok := shadow[q]; ok {
				earlier := in[j].Where
				if earlier == "" {
					earlier = fmt.Sprintf("rule %d (%s)", j, in[j].Path)
				}
				return nil, fmt.Errorf("%s is never used: %s matches all its paths first", where, earlier)
			}
		}
		if !c.HasConditions() {
			if _, ok := shadow[p]; !ok {
				shadow[p] = i
			}
		}
		fold := foldPath(p)
		rs.list = append(rs.list, rule{path: p, fold: fold, cased: fold != p, public: c.Public, deny: c.Deny,
			scopes: c.Scopes, c: c, cond: c.HasConditions(), shadow: c.Shadow})
		rs.note(c)
	}
	if len(rs.list) >= indexFrom {
		rs.byPath = make(map[string][]int32, len(rs.list))
		rs.byFold = make(map[string][]int32, len(rs.list))
		for i, r := range rs.list {
			rs.byPath[r.path] = append(rs.byPath[r.path], int32(i))
			rs.byFold[r.fold] = append(rs.byFold[r.fold], int32(i))
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range named {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		r := named[name]
		if r.Where == "" {
			r.Where = "policy " + name
		}
		if name == "" {
			return nil, fmt.Errorf("%s: a named policy needs a name", r.Where)
		}
		if r.Path != "" {
			return nil, fmt.Errorf("%s: a named policy has no path (the route chose the traffic)", r.Where)
		}
		c, err := policy.Compile(r, env)
		if err != nil {
			return nil, err
		}
		if rs.policies == nil {
			rs.policies = make(map[string]*rule, len(named))
		}
		rs.policies[name] = &rule{path: "policy " + name, public: c.Public, deny: c.Deny, scopes: c.Scopes, c: c, cond: c.HasConditions(), shadow: c.Shadow}
		rs.note(c)
	}
	return rs, nil
}

func (rs *ruleSet) note(c *policy.Compiled) {
	rs.needsClaims = rs.needsClaims || c.NeedsClaims
	rs.methods = rs.methods || c.HasMethods()
	rs.hosts = rs.hosts || c.HasHosts()
}

// prefixes returns "/" and every segment prefix of p, p included.
func prefixes(p string) []string {
	out := []string{"/"}
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	if p != "/" {
		out = append(out, p)
	}
	return out
}

// first returns the first rule matching p, an exact reading or (folded) a
// folded one, for a request with this method and host; nil for none.
func (rs *ruleSet) first(p string, folded bool, method, host string) *rule {
	if rs.byPath == nil {
		for i := range rs.list {
			r := &rs.list[i]
			if (folded && r.matchesFolded(p) || !folded && r.matches(p)) && (!r.cond || r.c.Matches(method, host)) {
				return r
			}
		}
		return nil
	}
	index := rs.byPath
	if folded {
		index = rs.byFold
	}
	best := int32(-1)
	visit := func(prefix string) {
		for _, i := range index[prefix] {
			if best >= 0 && i >= best {
				return
			}
			if r := &rs.list[i]; !r.cond || r.c.Matches(method, host) {
				best = i
				return
			}
		}
	}
	visit("/")
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			visit(p[:i])
		}
	}
	if p != "/" {
		visit(p)
	}
	if best < 0 {
		return nil
	}
	return &rs.list[best]
}

// route is what the rules ask of one request: the rules every reading of its
// path (and method) meets, merged so that the strictest wins.
type route struct {
	tooLong bool   // refused: see MaxSlowPathBytes
	path    string // the strict reading of the path, the one conditions see
	public  bool   // every reading met a public rule
	deny    bool   // some reading met a deny rule
	shadow  bool   // every reading met a rule, and every rule met is not enforced
	scopes  []string
	rule    string // the path of the rule that decided, for the record
	// first and more are the distinct rules met: their requirements beyond
	// scopes must all hold.
	first *rule
	more  []*rule
	owned bool // scopes is route's own (not first's)
}

// routeFor matches target (and method, host) against the rules: first match
// wins per reading, and the answers of every reading merge: public only if
// every reading is, every reading's scopes and requirements apply, and one
// deny denies.
//
// There are two kinds of path readings, each compared with the rules in its
// own fold: the exact readings of [variants] with the rule paths as
// configured, and the folded readings of [folds] (lower case, NFKC, trailing
// dots and spaces, format suffixes) with the rule paths folded the same way.
// A method not in upper case is read as sent and upper-cased.
func (rs *ruleSet) routeFor(target, method, host string) route {
	var one [1]string // the plain target's only reading, without an allocation
	vs, ok := variants(target, one[:0])
	if vs == nil {
		return route{tooLong: true}
	}
	var two [2]string // a plain target's folded readings, likewise
	fs, sane := folds(vs, two[:0])
	rt := route{public: ok && sane, path: vs[0], shadow: true}
	upper := method
	if rs.methods {
		upper = strings.ToUpper(method)
	}
	for _, v := range vs {
		rt.merge(rs.first(v, false, method, host))
		if upper != method {
			rt.merge(rs.first(v, false, upper, host))
		}
	}
	for _, f := range fs {
		rt.merge(rs.first(f, true, method, host))
		if upper != method {
			rt.merge(rs.first(f, true, upper, host))
		}
	}
	return rt
}

// policyFor is routeFor for a GET without a host, as the path-only tests
// and fuzzers ask.
func policyFor(rs *ruleSet, target string) route { return rs.routeFor(target, "GET", "") }

// named is the route of a named policy: the policy, when the request's
// method and host are among its own (else a denial).
func (rs *ruleSet) named(p *rule, target, method, host string) route {
	rt := route{public: p.public, deny: p.deny, scopes: p.scopes, rule: p.path, first: p, shadow: p.shadow}
	if vs, _ := variants(target, nil); len(vs) > 0 {
		rt.path = vs[0]
	}
	if p.cond && !p.c.Matches(method, host) && !p.c.Matches(strings.ToUpper(method), host) {
		rt.public, rt.deny = false, true
	}
	return rt
}

// merge adds what one reading's rule (nil: none matched) asks.
func (rt *route) merge(r *rule) {
	if r == nil || !r.public {
		rt.public = false
	}
	if r == nil || !r.shadow {
		rt.shadow = false
	}
	if r == nil {
		return
	}
	rt.deny = rt.deny || r.deny
	if rt.first == nil {
		rt.first, rt.scopes, rt.rule = r, r.scopes, r.path
		return
	}
	if r == rt.first || slices.Contains(rt.more, r) {
		return
	}
	rt.more = append(rt.more, r)
	for _, s := range r.scopes {
		if !slices.Contains(rt.scopes, s) {
			if !rt.owned {
				rt.scopes, rt.owned = slices.Clone(rt.scopes), true
			}
			rt.scopes = append(rt.scopes, s)
			rt.rule = r.path // a stricter reading decides
		}
	}
	if r.deny {
		rt.rule = r.path
	}
}

// rules calls f with every distinct rule met.
func (rt *route) rules(f func(*rule) bool) bool {
	if rt.first == nil {
		return true
	}
	if !f(rt.first) {
		return false
	}
	for _, r := range rt.more {
		if !f(r) {
			return false
		}
	}
	return true
}
