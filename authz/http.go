package authz

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
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
// Pinned to a header family, the check is denied (400 invalid_request) when
// that family's URI header is absent: the check request's own target (say
// /_extauthz) is not the request to judge.
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
			s.writeDecision(w, s.recovered(r.Context(), "forward-auth check", p, Request{Method: r.Method, Path: target(r)}, 0))
		}
	}()
	o, reason := s.original(r)
	req := Request{Method: o.method, Path: o.uri, Host: o.host, Scheme: o.scheme, Authorization: r.Header.Values("Authorization"),
		DPoP: r.Header.Values("Dpop")}
	if reason != "" {
		req = Request{Method: r.Method, Path: target(r), problem: reason, problemMsg: reason.Message()}
		if reason == InvalidRequest {
			req.problemMsg = msgNoOriginalURI
			s.warnUnpinned(r.Context())
		}
	} else if s.rules.needsClaims || !s.defaultSources || s.bindHeaders {
		req.Headers = make(map[string]string, len(r.Header))
		for k, vs := range r.Header {
			sep := "," // as a proxy joins repeated headers
			if k == "Cookie" {
				sep = "; " // cookies, as RFC 6265 §5.4 joins them
			}
			req.Headers[strings.ToLower(k)] = strings.Join(vs, sep)
		}
	}
	s.writeDecision(w, s.Decide(r.Context(), req))
}

// target is the request target as received: "*" for OPTIONS *, the
// authority for CONNECT, the absolute form as sent (r.URL.RequestURI would
// turn the first two into "/").
func target(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// originalRequest is the request a forward-auth check asks about.
type originalRequest struct {
	method, uri, host, scheme string
}

// headerFamily names the headers one kind of front sets.
type headerFamily struct {
	uri, method, host string
}

var (
	originalFamily  = headerFamily{"X-Original-Uri", "X-Original-Method", "X-Original-Host"}
	forwardedFamily = headerFamily{"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Host"}
)

// original finds the original request's method, URI and host per the
// configured source: a family's headers, or (source request, or auto when
// neither family is present) the check request itself. A family's method
// or host that is absent is "" (never the check request's own: nginx's
// auth_request subrequest is always a GET to the server's host), which
// denies only when a rule needs it. A reason is returned instead when the
// request cannot be known: AmbiguousRequest when a header is repeated or, in
// auto mode, when the nginx and the Caddy/Traefik families disagree (a
// client has added one); InvalidRequest when the source is pinned to a
// family whose URI header is absent (a front that does not set it, or a
// server pinned for another front).
func (s *Server) original(r *http.Request) (originalRequest, Reason) {
	self := originalRequest{method: r.Method, uri: target(r), host: r.Host, scheme: "http"}
	if r.TLS != nil {
		self.scheme = "https"
	}
	if s.source == SourceRequest {
		// Envoy's HTTP mode sends the original request's headers: its
		// x-forwarded-proto says how the client reached the proxy.
		if p := values(r.Header, "X-Forwarded-Proto"); len(p) == 1 {
			self.scheme = p[0]
		}
		return self, ""
	}
	var fams []headerFamily
	switch s.source {
	case SourceOriginal:
		fams = []headerFamily{originalFamily}
	case SourceForwarded:
		fams = []headerFamily{forwardedFamily}
	default:
		fams = []headerFamily{originalFamily, forwardedFamily}
	}
	var found *originalRequest
	for _, f := range fams {
		uri, method, host := values(r.Header, f.uri), values(r.Header, f.method), values(r.Header, f.host)
		if len(uri) > 1 || len(method) > 1 || len(host) > 1 {
			return originalRequest{}, AmbiguousRequest
		}
		if len(uri) == 0 {
			if len(method) == 1 {
				return originalRequest{}, AmbiguousRequest // a method without its URI
			}
			continue
		}
		o := originalRequest{uri: uri[0], scheme: self.scheme}
		if len(method) == 1 {
			o.method = method[0]
		}
		if len(host) == 1 {
			o.host = host[0]
		}
		if p := values(r.Header, "X-Forwarded-Proto"); len(p) == 1 {
			o.scheme = p[0]
		}
		if found == nil {
			found = &o
			continue
		}
		// Both families: they must agree on what both say.
		if o.uri != found.uri || o.method != "" && found.method != "" && o.method != found.method ||
			o.host != "" && found.host != "" && !strings.EqualFold(o.host, found.host) {
			return originalRequest{}, AmbiguousRequest
		}
		if found.method == "" {
			found.method = o.method
		}
		if found.host == "" {
			found.host = o.host
		}
	}
	if found == nil {
		if s.source != SourceAuto {
			return originalRequest{}, InvalidRequest
		}
		return self, ""
	}
	return *found, ""
}

// warnUnpinned logs, at most once a minute, that the pinned forward-auth
// source's URI header is missing: every check through that front is denied
// until its configuration (or the server's --forward-auth-source) is fixed.
func (s *Server) warnUnpinned(ctx context.Context) {
	if !s.unpinnedWarn.allow(s.now()) {
		return
	}
	header := "X-Original-URI"
	if s.source == SourceForwarded {
		header = "X-Forwarded-Uri"
	}
	s.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelWarn,
		"forward-auth check without its original URI header; denied (is the front configured to send it, and is --forward-auth-source right for this front?)",
		slog.String("forward_auth_source", s.source), slog.String("missing_header", header))
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
	for _, c := range d.ResponseHeaders {
		h.Set(c.Name, c.Value)
	}
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
	// The body's message again, for fronts that drop the check's body
	// (nginx's auth_request): deploy/nginx turns it back into the guide's
	// body. A closed set of messages, safe in a JSON string as they are.
	if d.Message != "" {
		h.Set("X-Extauthz-Error", d.Message)
	}
	if d.Detail {
		h.Set("X-Extauthz-Reason", string(d.Reason))
	}
	if d.WWWAuthenticate != "" {
		h.Set("WWW-Authenticate", d.WWWAuthenticate)
	}
	w.WriteHeader(d.Status())
	_, _ = w.Write([]byte(d.Body))
}

// everyMinute lets one event through per minute of the server's clock.
type everyMinute struct{ last atomic.Int64 }

func (e *everyMinute) allow(now time.Time) bool {
	n, last := now.UnixNano(), e.last.Load()
	if last != 0 && n-last < int64(time.Minute) && n >= last {
		return false
	}
	return e.last.CompareAndSwap(last, n)
}
