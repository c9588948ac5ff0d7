package authz

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
)

// ServeHTTP is the forward-auth check: every request it gets is a question
// about another request. The original method and URI come from
// X-Original-Method/X-Original-URI (nginx auth_request), else
// X-Forwarded-Method/X-Forwarded-Uri (Caddy forward_auth, Traefik
// ForwardAuth), else the request's own method and target (Envoy's HTTP
// ext_authz mode, which forwards the original path); Config.ForwardAuthSource
// pins one. Those headers are trusted, so only the proxy may reach this
// handler, and since some proxies copy the client's headers into the check,
// two families that disagree are denied (400) rather than guessed between.
//
// Allow is 200 with the claim headers as response headers, and, for Envoy's
// HTTP mode, x-envoy-auth-headers-to-remove naming the claim headers that
// must be stripped from the upstream request. Deny is the decision's status
// with WWW-Authenticate and a JSON body.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			safeLog(func() {
				s.log.LogAttrs(r.Context(), slog.LevelError, "panic in forward-auth check; denied",
					slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			})
			s.writeDecision(w, s.deny(Internal, nil))
		}
	}()
	method, uri, ok := s.original(r)
	if !ok {
		d := s.deny(AmbiguousRequest, nil)
		s.record(r.Context(), Request{Method: r.Method, Path: r.URL.RequestURI()}, d, verified{}, 0)
		s.writeDecision(w, d)
		return
	}
	d := s.Decide(r.Context(), Request{Method: method, Path: uri, Authorization: r.Header.Values("Authorization")})
	s.writeDecision(w, d)
}

// original finds the original request's method and URI per the configured
// source. ok is false when the headers are repeated or, in auto mode, when
// the nginx and the Caddy/Traefik families disagree: a client has added one.
func (s *Server) original(r *http.Request) (method, uri string, ok bool) {
	method, uri = r.Method, r.URL.RequestURI()
	if s.source == SourceRequest {
		return method, uri, true
	}
	type family struct{ uri, method []string }
	orig := family{values(r.Header, "X-Original-Uri"), values(r.Header, "X-Original-Method")}
	fwd := family{values(r.Header, "X-Forwarded-Uri"), values(r.Header, "X-Forwarded-Method")}
	var fams []family
	switch s.source {
	case SourceOriginal:
		fams = []family{orig}
	case SourceForwarded:
		fams = []family{fwd}
	default:
		fams = []family{orig, fwd}
	}
	found := false
	for _, f := range fams {
		if len(f.uri) > 1 || len(f.method) > 1 {
			return "", "", false
		}
		if len(f.uri) == 0 {
			if len(f.method) == 1 {
				return "", "", false // a method without its URI
			}
			continue
		}
		m := method
		if len(f.method) == 1 {
			m = f.method[0]
		}
		if found && (f.uri[0] != uri || m != method) {
			return "", "", false
		}
		method, uri, found = m, f.uri[0], true
	}
	return method, uri, true
}

// safeLog runs a log call made while recovering from a panic: if logging
// itself panics (a broken handler), the denial must still be answered.
func safeLog(log func()) {
	defer func() { _ = recover() }()
	log()
}

// values returns a header's non-empty values: an empty header is absent.
func values(h http.Header, name string) []string {
	vs := h.Values(name)
	for _, v := range vs {
		if v == "" {
			return slices.DeleteFunc(slices.Clone(vs), func(v string) bool { return v == "" })
		}
	}
	return vs
}

func (s *Server) writeDecision(w http.ResponseWriter, d Decision) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if d.Allowed() {
		for _, c := range d.Headers {
			// The claim headers' canonical names are known from the
			// start: no canonicalisation (an allocation) per response.
			if k, ok := s.canonicalNames[c.Name]; ok {
				h[k] = []string{c.Value}
			} else {
				h.Set(c.Name, c.Value)
			}
		}
		if len(d.Remove) > 0 {
			h.Set("X-Envoy-Auth-Headers-To-Remove", strings.Join(d.Remove, ","))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "application/json")
	if d.WWWAuthenticate != "" {
		h.Set("WWW-Authenticate", d.WWWAuthenticate)
	}
	w.WriteHeader(d.Status())
	_, _ = w.Write([]byte(d.Body))
}
