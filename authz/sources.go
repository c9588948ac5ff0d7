package authz

// Token locations beyond the Authorization header: other headers, cookies,
// query parameters, as each provider configures them.

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// TokenSource is one place a provider's tokens may come from. Exactly one
// of Header, Cookie and Query is set.
type TokenSource struct {
	// Header names a request header; with Prefix (such as "Bearer "), the
	// value must start with it, compared case-insensitively, and the token
	// follows it; without, the whole value is the token.
	Header, Prefix string
	// Cookie names a cookie.
	Cookie string
	// Query names a query parameter (removed before the upstream on allow,
	// over gRPC; never logged, as no query is).
	Query string
}

// DefaultTokenSources is where tokens come from when a provider names none:
// the Authorization header with the Bearer scheme.
func DefaultTokenSources() []TokenSource {
	return []TokenSource{{Header: "authorization", Prefix: "Bearer "}}
}

func (t TokenSource) String() string {
	switch {
	case t.Cookie != "":
		return "cookie " + t.Cookie
	case t.Query != "":
		return "query " + t.Query
	case t.Prefix != "":
		return fmt.Sprintf("header %s (%q)", t.Header, t.Prefix)
	}
	return "header " + t.Header
}

func (t TokenSource) isDefault() bool {
	return t.Header == "authorization" && strings.EqualFold(t.Prefix, "Bearer ") && t.Cookie == "" && t.Query == ""
}

// CheckTokenSources reports what New refuses in a provider's token
// locations.
func CheckTokenSources(srcs []TokenSource) error {
	for _, t := range srcs {
		if _, err := checkTokenSource(t); err != nil {
			return err
		}
	}
	return nil
}

// checkTokenSource refuses a location that names nothing or several things.
func checkTokenSource(t TokenSource) (TokenSource, error) {
	n := 0
	for _, v := range []string{t.Header, t.Cookie, t.Query} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return t, fmt.Errorf("a token source names exactly one of header, cookie and query (got %+v)", t)
	}
	if t.Header != "" {
		t.Header = strings.ToLower(t.Header)
		if !validHeaderName(t.Header) {
			return t, fmt.Errorf("token source header %q is not a header name", t.Header)
		}
	} else if t.Prefix != "" {
		return t, fmt.Errorf("a token source's prefix goes with a header")
	}
	return t, nil
}

// found is a token and where it was.
type found struct {
	token  string
	source int  // index into Server.sources
	dpop   bool // the Authorization header's DPoP scheme
}

// tokenOf finds the request's token in the union of the providers'
// locations, in order: a location that is present but malformed denies (no
// fall-through: a client must not choose which reading counts), and two
// locations carrying different tokens deny (400); the same token in two is
// one token.
func (s *Server) tokenOf(r Request) (found, Reason) {
	if s.defaultSources {
		return s.authorization(r.Authorization)
	}
	var got found
	have := false
	for i, src := range s.sources {
		values := s.locate(r, src)
		if len(values) == 0 {
			continue
		}
		var tok found
		var reason Reason
		if src.isDefault() {
			tok, reason = s.authorization(values) // Bearer, or DPoP
		} else {
			tok.token, reason = s.readSource(src, values)
		}
		tok.source = i
		if reason != "" {
			if reason == MissingToken && src.Prefix != "" {
				continue // another scheme (Basic): not this location's token
			}
			return found{}, reason
		}
		switch {
		case !have:
			got, have = tok, true
		case got.token != tok.token:
			return found{}, InvalidRequest
		}
	}
	if !have {
		return found{}, MissingToken
	}
	return got, ""
}

// locate returns the values a location holds in r.
func (s *Server) locate(r Request, src TokenSource) []string {
	switch {
	case src.Header == "authorization":
		return r.Authorization
	case src.Header != "":
		if v, ok := r.Headers[src.Header]; ok {
			return []string{v}
		}
		return nil
	case src.Cookie != "":
		var out []string
		for _, c := range r.cookies() {
			if c.Name == src.Cookie {
				out = append(out, c.Value)
			}
		}
		return out
	default:
		_, q, ok := strings.Cut(r.Path, "?")
		if !ok {
			return nil
		}
		if i := strings.IndexByte(q, '#'); i >= 0 {
			q = q[:i]
		}
		vals, err := url.ParseQuery(q)
		if err != nil {
			return []string{""} // present and malformed
		}
		return vals[src.Query]
	}
}

// cookies parses the request's Cookie header as net/http does (a cookie
// that does not parse is skipped, the others kept).
func (r Request) cookies() []*http.Cookie {
	raw, ok := r.Headers["cookie"]
	if !ok {
		return nil
	}
	return (&http.Request{Header: http.Header{"Cookie": {raw}}}).Cookies()
}

// readSource reads the token of a present location.
func (s *Server) readSource(src TokenSource, values []string) (string, Reason) {
	if len(values) > 1 {
		return "", InvalidRequest
	}
	v := strings.TrimSpace(values[0])
	if src.Prefix != "" {
		if len(v) < len(src.Prefix) || !strings.EqualFold(v[:len(src.Prefix)], src.Prefix) {
			return "", MissingToken
		}
		v = strings.TrimLeft(v[len(src.Prefix):], " ")
	}
	switch {
	case v == "":
		return "", MissingToken
	case len(v) > s.maxToken:
		return "", TokenTooLarge
	case strings.ContainsAny(v, ", \t"):
		// Envoy joins repeated headers with ","; a JWS never holds one.
		return "", InvalidRequest
	}
	return v, ""
}

// acceptsSource reports whether the provider of issuer takes tokens from
// the server's location i.
func (s *Server) acceptsSource(issuer string, i int) bool {
	if s.defaultSources {
		return true
	}
	p := s.providers[issuer]
	return p != nil && slices.Contains(p.sources, i)
}
