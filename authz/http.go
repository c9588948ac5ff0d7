package authz

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
)

// ServeHTTP is the forward-auth check: every request it gets is a question
// about another request. The original method and URI come from
// X-Original-Method/X-Original-URI (nginx auth_request), else
// X-Forwarded-Method/X-Forwarded-Uri (Caddy forward_auth, Traefik
// ForwardAuth), else the request's own method and target (Envoy's HTTP
// ext_authz mode, which forwards the original path). Those headers are
// trusted, so only the proxy may reach this handler.
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
			s.log.LogAttrs(r.Context(), slog.LevelError, "panic in forward-auth check; denied",
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			writeDecision(w, s.deny(Internal, nil))
		}
	}()
	method, uri := r.Method, r.URL.RequestURI()
	if v := r.Header.Get("X-Original-URI"); v != "" {
		uri, method = v, firstNonEmpty(r.Header.Get("X-Original-Method"), method)
	} else if v := r.Header.Get("X-Forwarded-Uri"); v != "" {
		uri, method = v, firstNonEmpty(r.Header.Get("X-Forwarded-Method"), method)
	}
	d := s.Decide(r.Context(), Request{Method: method, Path: uri, Authorization: r.Header.Values("Authorization")})
	writeDecision(w, d)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func writeDecision(w http.ResponseWriter, d Decision) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if d.Allowed() {
		for _, c := range d.Headers {
			h.Set(c.Name, c.Value)
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
