package standin

// Per-route ext_authz settings: which context_extensions a request's route
// adds to its CheckRequest.

import (
	"fmt"
	"maps"
	"strings"
)

// Route is one route of Envoy's route table as the ext_authz filter sees it:
// the requests it matches and the check_settings of its
// ExtAuthzPerRoute (typed_per_filter_config "envoy.filters.http.ext_authz").
// It stands in for a route such as this one of envoy/envoy.yaml:
//
//	match: { path_separated_prefix: /admin }
//	route: { cluster: backend }
//	typed_per_filter_config:
//	  envoy.filters.http.ext_authz:
//	    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
//	    check_settings: { context_extensions: { policy: admin } }
type Route struct {
	// PathSeparatedPrefix matches like the route match of that name: the
	// request's path, without its query and fragment (and after
	// Config.NormalizePath, when set), equals it or continues with "/".
	// It is case-sensitive and compared with the path as sent, as Envoy
	// compares it: with NormalizePath off, "/public/../admin" is a /public
	// request. Required; it starts with "/" and, as Envoy requires, does
	// not end with "/" and holds no "?" or "#".
	PathSeparatedPrefix string

	// ContextExtensions are the route's check_settings.context_extensions:
	// the CheckRequest of each request the route matches carries them in
	// attributes.context_extensions. The extauthz server reads "policy"
	// there to choose a named policy.
	ContextExtensions map[string]string
}

// checkRoutes validates routes and returns a copy that shares nothing with
// the caller's.
func checkRoutes(routes []Route) ([]Route, error) {
	out := make([]Route, 0, len(routes))
	for i, r := range routes {
		p := r.PathSeparatedPrefix
		if !strings.HasPrefix(p, "/") || len(p) < 2 || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#") {
			return nil, fmt.Errorf("standin: route %d: path_separated_prefix %q: want a path starting with /, not ending with /, without ? or #", i, p)
		}
		out = append(out, Route{PathSeparatedPrefix: p, ContextExtensions: maps.Clone(r.ContextExtensions)})
	}
	return out, nil
}

// matches reports whether the route matches path, a request's :path.
func (r *Route) matches(path string) bool {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	p := r.PathSeparatedPrefix
	return strings.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/')
}

// contextExtensions returns the context_extensions of the first route that
// matches path, as Envoy routes a request by its first matching route; nil
// when none does. The map is shared: never modify it.
func (p *Proxy) contextExtensions(path string) map[string]string {
	for i := range p.routes {
		if p.routes[i].matches(path) {
			return p.routes[i].ContextExtensions
		}
	}
	return nil
}
