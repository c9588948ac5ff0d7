package standin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// DefaultTimeout is how long the stand-in waits for a Check answer unless
// told otherwise: Envoy's default grpc_service timeout for ext_authz.
const DefaultTimeout = 200 * time.Millisecond

// Bounds on a request's headers: Envoy's defaults max_request_headers_kb
// (60 KiB) and max_request_headers_count (100). A request over either gets
// 431 and is neither checked nor forwarded. [Proxy.Serve] also sets
// http.Server.MaxHeaderBytes to MaxHeaderBytes, so an oversized request is
// refused before it is even parsed; servers built elsewhere should too.
const (
	MaxHeaderBytes = 60 << 10
	MaxHeaderCount = 100
)

// Config configures a [Proxy]. The zero value of every optional field means
// its default.
type Config struct {
	// AuthzConn is the connection to the ext_authz gRPC server, for
	// example a *grpc.ClientConn. The Proxy does not close it. Exactly one
	// of AuthzConn and AuthzTarget must be set.
	AuthzConn grpc.ClientConnInterface

	// AuthzTarget is the ext_authz server's gRPC target, such as
	// "127.0.0.1:9191" or "dns:///authz:9191". New creates a client for it
	// with grpc.NewClient, which does no I/O; Close closes it.
	AuthzTarget string

	// DialOptions are used with AuthzTarget. Defaults to plaintext
	// (insecure transport credentials), as in the demo.
	DialOptions []grpc.DialOption

	// Upstream is the base URL every allowed request is forwarded to, such
	// as "http://127.0.0.1:8000". Required. The request path is appended to
	// its path; the client's Host (:authority) is kept, as Envoy keeps it
	// without host_rewrite.
	Upstream string

	// Transport carries requests to Upstream. Defaults to
	// http.DefaultTransport.
	Transport http.RoundTripper

	// Timeout bounds each Check call. Defaults to DefaultTimeout (200ms),
	// Envoy's default. A call that does not finish in time is an error.
	Timeout time.Duration

	// StatusOnError is the HTTP status sent to the client when the check
	// fails (RPC error, timeout, unreachable server, or an ErrorResponse
	// without a status) and FailureModeAllow is false. It must be 0 or a
	// status in 200-599. Defaults to 403, Envoy's status_on_error default.
	StatusOnError int

	// FailureModeAllow forwards the request upstream, unchecked and
	// unmodified, when the check fails, like Envoy's failure_mode_allow.
	// Defaults to false. Setting it is UNSAFE: while the ext_authz server is
	// down or slow, every request, with whatever identity headers the client
	// chose to send, reaches the upstream.
	FailureModeAllow bool

	// FailureModeAllowHeaderAdd adds "x-envoy-auth-failure-mode-allowed:
	// true" to requests let through by FailureModeAllow, like Envoy's
	// failure_mode_allow_header_add, so the upstream can tell.
	FailureModeAllowHeaderAdd bool

	// DisabledPathPrefixes lists path prefixes on which the check is
	// disabled, like a route carrying ExtAuthzPerRoute{disabled: true}:
	// such requests go upstream unchecked. Envoy matches a prefix route on
	// the raw path; the stand-in matches too, but only paths with no
	// percent-escapes and no "."/".." or empty segments, so
	// "/public/../admin" is always checked. Defaults to none.
	DisabledPathPrefixes []string

	// Routes are the route table's ext_authz per-route settings: the
	// CheckRequest of a request carries the ContextExtensions of the first
	// route that matches its path (see [Route]), as Envoy sends the
	// check_settings.context_extensions of the request's route. A request
	// no route matches carries none, like a route without
	// ExtAuthzPerRoute. Every route still goes to Upstream; virtual-host
	// level settings, which Envoy merges under the route's, are not
	// modelled (repeat them in each route). Defaults to none.
	Routes []Route

	// IncludePeerCertificate is the filter's include_peer_certificate: on
	// a TLS connection whose client presented a certificate (serve on a
	// tls.Listener asking for one), the CheckRequest carries it in
	// attributes.source.certificate, URL-encoded PEM as Envoy encodes it.
	IncludePeerCertificate bool

	// DisallowedHeaders are request header names (case-insensitive) left
	// out of the CheckRequest, like the filter's disallowed_headers with
	// exact matchers. They are still forwarded upstream. Defaults to none.
	DisallowedHeaders []string

	// The next three model HttpConnectionManager settings that change what
	// the ext_authz filter sees. All default to false, Envoy's defaults.
	// envoy/envoy.yaml sets all three; set them to stand in for it.

	// UseRemoteAddress is use_remote_address: true, Envoy at the edge: the
	// client's address is appended to x-forwarded-for, x-forwarded-proto
	// and x-request-id are overwritten, x-envoy-external-address is set,
	// and x-envoy-downstream-service-cluster/-node are removed.
	UseRemoteAddress bool

	// NormalizePath is normalize_path: true with merge_slashes: true and
	// path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT: dot segments
	// and repeated slashes are resolved before the check, so the
	// ext_authz server and the upstream see the same path, and a path
	// holding %2F or %5C gets a 307 to its unescaped form instead. The
	// normalisation is the RFC 3986 part of Envoy's: escapes of unreserved
	// characters decoded (%2e is a dot), other escapes upper-cased, "\"
	// read as "/", dot segments removed, slashes merged; a malformed
	// escape gets 400.
	NormalizePath bool

	// DropHeadersWithUnderscores is headers_with_underscores_action:
	// DROP_HEADER: request headers whose name has "_" are dropped before
	// the check and never forwarded.
	DropHeadersWithUnderscores bool

	// AccessLog, when set, receives one access log entry per request once
	// its response is done, as an HttpConnectionManager access_log of
	// type envoy.access_loggers.stdout (or file) writes it:
	// AccessLogFormat rendered with the request's headers as the filters
	// left them, its response code and timing, and the stream's dynamic
	// metadata, where ext_authz stores a CheckResponse's dynamic_metadata
	// (namespace [ExtAuthzNamespace]). Each entry is one Write. Defaults
	// to no access log.
	AccessLog io.Writer

	// AccessLogFormat is the text format of the access log entries, in
	// Envoy's syntax: literal text and command operators. The stand-in
	// knows %START_TIME%, %PROTOCOL%, %RESPONSE_CODE% (0 when no response
	// was sent), %DURATION% (ms), %REQ(X?Y):Z% (alias %REQUEST_HEADER%,
	// pseudo-headers included), %PATH(WQ|NQ:ORIG|PATH|ORIG_OR_PATH):Z%
	// and %DYNAMIC_METADATA(NAMESPACE:KEY*):Z%; New refuses a format with
	// any other operator. A value that is absent is "-". As in Envoy,
	// nothing is added: end the format with "\n" for one line per
	// entry. Defaults to DefaultAccessLogFormat.
	AccessLogFormat string

	// Logger receives one record per request decision and errors. Allows
	// are logged at Debug, denials at Info, check failures at Warn. Never
	// headers, query strings or bodies. Defaults to slog.Default().
	Logger *slog.Logger
}

// Proxy is an http.Handler that puts Envoy's ext_authz filter in front of an
// upstream: every request is checked with the ext_authz server, then either
// forwarded upstream with the server's header mutations applied, or answered
// with the server's denial, as described in the package comment. It is an
// Envoy stand-in for machines without Envoy, not a production proxy.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	client           authv3.AuthorizationClient
	ownedConn        *grpc.ClientConn
	upstream         *url.URL
	rp               *httputil.ReverseProxy
	timeout          time.Duration
	statusOnError    int
	failureModeAllow bool
	failureHeaderAdd bool
	disabled         []string
	routes           []Route
	disallowed       map[string]bool
	cm               connManager
	normalizePath    bool
	includePeerCert  bool
	log              *slog.Logger

	accessLog    io.Writer
	accessFormat accessLogFormat
	accessMu     sync.Mutex // serialises writes to accessLog
}

var _ http.Handler = (*Proxy)(nil)

// New validates cfg and returns a Proxy. It does no I/O and starts no
// goroutines: when cfg.AuthzTarget is set it creates the gRPC client, which
// connects on first use.
func New(cfg Config) (*Proxy, error) {
	if (cfg.AuthzConn == nil) == (cfg.AuthzTarget == "") {
		return nil, errors.New("standin: exactly one of AuthzConn and AuthzTarget must be set")
	}
	up, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("standin: upstream: %w", err)
	}
	if (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return nil, fmt.Errorf("standin: upstream %q: want an absolute http or https URL", cfg.Upstream)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("standin: negative timeout %v", cfg.Timeout)
	}
	if cfg.StatusOnError != 0 && !validFinalStatus(cfg.StatusOnError) {
		return nil, fmt.Errorf("standin: status on error %d: want 200-599", cfg.StatusOnError)
	}
	for _, p := range cfg.DisabledPathPrefixes {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("standin: disabled path prefix %q: must start with /", p)
		}
	}
	routes, err := checkRoutes(cfg.Routes)
	if err != nil {
		return nil, err
	}
	var format accessLogFormat
	if cfg.AccessLog != nil {
		if format, err = parseAccessLogFormat(cmp.Or(cfg.AccessLogFormat, DefaultAccessLogFormat)); err != nil {
			return nil, err
		}
	} else if cfg.AccessLogFormat != "" {
		return nil, errors.New("standin: AccessLogFormat without AccessLog")
	}

	p := &Proxy{
		upstream:         up,
		timeout:          cfg.Timeout,
		statusOnError:    cfg.StatusOnError,
		failureModeAllow: cfg.FailureModeAllow,
		failureHeaderAdd: cfg.FailureModeAllowHeaderAdd,
		disabled:         slices.Clone(cfg.DisabledPathPrefixes),
		routes:           routes,
		disallowed:       make(map[string]bool, len(cfg.DisallowedHeaders)),
		cm:               connManager{useRemoteAddress: cfg.UseRemoteAddress, dropUnderscores: cfg.DropHeadersWithUnderscores},
		normalizePath:    cfg.NormalizePath,
		includePeerCert:  cfg.IncludePeerCertificate,
		log:              cfg.Logger,
		accessLog:        cfg.AccessLog,
		accessFormat:     format,
	}
	for _, name := range cfg.DisallowedHeaders {
		p.disallowed[strings.ToLower(name)] = true
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.statusOnError == 0 {
		p.statusOnError = http.StatusForbidden
	}
	if p.log == nil {
		p.log = slog.Default()
	}

	conn := cfg.AuthzConn
	if conn == nil {
		opts := cfg.DialOptions
		if len(opts) == 0 {
			opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		}
		cc, err := grpc.NewClient(cfg.AuthzTarget, opts...)
		if err != nil {
			return nil, fmt.Errorf("standin: ext_authz client for %q: %w", cfg.AuthzTarget, err)
		}
		p.ownedConn = cc
		conn = cc
	}
	p.client = authv3.NewAuthorizationClient(conn)

	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      cfg.Transport,
		ModifyResponse: modifyResponse,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// Close closes the gRPC client New created for Config.AuthzTarget. It does
// nothing when the Proxy was given Config.AuthzConn.
func (p *Proxy) Close() error {
	if p.ownedConn == nil {
		return nil
	}
	if err := p.ownedConn.Close(); err != nil {
		return fmt.Errorf("standin: close ext_authz client: %w", err)
	}
	return nil
}

// Serve serves p on lis until ctx is done, then shuts down gracefully
// (waiting up to 5s for requests in flight) and returns nil. The server
// bounds request headers to MaxHeaderBytes and their reading to 10s, as
// envoy/envoy.yaml's request_headers_timeout does, and closes connections
// idle for 5 minutes (its idle_timeout).
func (p *Proxy) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           p,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("standin: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc // http.ErrServerClosed
	return nil
}

// ServeHTTP checks r with the ext_authz server and forwards it upstream or
// answers it, as Envoy's ext_authz filter would.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &stream{start: time.Now(), r: r}
	if p.accessLog != nil {
		rec := &statusRecorder{ResponseWriter: w}
		w = rec
		defer func() { p.logAccess(st, rec.status) }()
	}
	if headersTooLarge(r) {
		http.Error(w, "Request Header Fields Too Large", http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	target := requestTarget(r)
	if p.normalizePath {
		nt, redirect, ok := normalizeTarget(target)
		switch {
		case !ok:
			_ = writeLocalReply(w, http.StatusBadRequest, nil, "Bad Request")
			return
		case redirect:
			w.Header().Set("Location", nt)
			_ = writeLocalReply(w, http.StatusTemporaryRedirect, nil, "")
			return
		}
		target = nt
	}
	h := p.cm.requestHeaders(r, target)
	st.h = h // ApplyOK changes h in place: the access log sees the mutations
	logPath, _, _ := strings.Cut(first(h, pseudoPath), "?")
	attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", logPath)}

	if p.checkDisabled(logPath) {
		p.log.LogAttrs(r.Context(), slog.LevelDebug, "ext_authz disabled for path", attrs...)
		p.forward(w, r, h, nil)
		return
	}

	start := time.Now()
	req := buildCheckRequest(r, h, start, p.disallowed, p.contextExtensions(first(h, pseudoPath)))
	if p.includePeerCert && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.Attributes.Source.Certificate = urlEncodedPEM(r.TLS.PeerCertificates[0].Raw)
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	resp, err := p.client.Check(ctx, req)
	cancel()
	took := time.Since(start)
	attrs = append(attrs, slog.Duration("duration", took))

	if r.Context().Err() != nil {
		// The client went away; Envoy cancels the check and replies to no one.
		return
	}
	if err == nil {
		setDynamicMetadata(st, resp, took)
	}
	switch {
	case err != nil:
		p.checkFailed(w, r, h, nil, append(attrs, slog.Any("error", err)))
	case resp.GetStatus().GetCode() == 0: // google.rpc.Code OK
		ok := resp.GetOkResponse()
		if err := ApplyOK(h, ok); err != nil {
			p.log.LogAttrs(r.Context(), slog.LevelWarn, "ext_authz response rejected", append(attrs, slog.Any("error", err))...)
			_ = writeLocalReply(w, http.StatusInternalServerError, nil, "")
			return
		}
		p.log.LogAttrs(r.Context(), slog.LevelDebug, "ext_authz allowed", attrs...)
		p.forward(w, r, h, ok.GetResponseHeadersToAdd())
	case resp.GetErrorResponse() != nil:
		p.checkFailed(w, r, h, resp.GetErrorResponse(), append(attrs, slog.Int("grpc_code", int(resp.GetStatus().GetCode()))))
	default:
		d := resp.GetDeniedResponse()
		p.log.LogAttrs(r.Context(), slog.LevelInfo, "ext_authz denied",
			append(attrs, slog.Int("grpc_code", int(resp.GetStatus().GetCode())), slog.Int("status", int(d.GetStatus().GetCode())))...)
		if err := ApplyDenied(w, d); err != nil {
			p.log.LogAttrs(r.Context(), slog.LevelWarn, "ext_authz response rejected", append(attrs, slog.Any("error", err))...)
		}
	}
}

// setDynamicMetadata stores resp's dynamic_metadata in the stream's
// dynamic metadata under ExtAuthzNamespace, whatever the decision, as
// Envoy's ext_authz filter does on completion (Filter::onComplete, with
// enable_dynamic_metadata_ingestion at its default true): the deprecated
// OkHttpResponse.dynamic_metadata, when set, replaces the response's; an
// OK answer with metadata also gets "ext_authz_duration", the check's
// duration in milliseconds.
func setDynamicMetadata(st *stream, resp *authv3.CheckResponse, took time.Duration) {
	md := resp.GetDynamicMetadata()
	//nolint:staticcheck // Envoy still reads the deprecated field first.
	if ok := resp.GetOkResponse(); ok.GetDynamicMetadata() != nil {
		md = ok.GetDynamicMetadata() //nolint:staticcheck // as above
	}
	if len(md.GetFields()) == 0 {
		return
	}
	st.setDynamicMetadata(ExtAuthzNamespace, md)
	if resp.GetStatus().GetCode() == 0 {
		st.metadata[ExtAuthzNamespace].Fields["ext_authz_duration"] = structpb.NewNumberValue(float64(took.Milliseconds()))
	}
}

// logAccess writes st's access log entry, status being the response code
// sent to the client (0 for none).
func (p *Proxy) logAccess(st *stream, status int) {
	line := p.accessFormat.render(st, status, time.Now())
	p.accessMu.Lock()
	defer p.accessMu.Unlock()
	_, _ = p.accessLog.Write(line) // Envoy counts a failed write; nothing else to do
}

// checkFailed handles an RPC failure or an ErrorResponse (er, possibly nil):
// forward unchecked under FailureModeAllow, else answer with the error
// status (er's own status when set, else StatusOnError), headers and body.
func (p *Proxy) checkFailed(w http.ResponseWriter, r *http.Request, h http.Header, er *authv3.DeniedHttpResponse, attrs []slog.Attr) {
	if p.failureModeAllow {
		p.log.LogAttrs(r.Context(), slog.LevelWarn, "ext_authz check failed; failure mode allow forwards the request", attrs...)
		if p.failureHeaderAdd {
			h.Add("X-Envoy-Auth-Failure-Mode-Allowed", "true")
		}
		p.forward(w, r, h, nil)
		return
	}
	status := p.statusOnError
	if c := int(er.GetStatus().GetCode()); c > 0 && validFinalStatus(c) {
		status = c
	}
	p.log.LogAttrs(r.Context(), slog.LevelWarn, "ext_authz check failed", append(attrs, slog.Int("status", status))...)
	if err := writeLocalReply(w, status, er.GetHeaders(), er.GetBody()); err != nil {
		p.log.LogAttrs(r.Context(), slog.LevelWarn, "ext_authz response rejected", slog.Any("error", err))
	}
}

// checkDisabled reports whether the raw request path falls under one of
// DisabledPathPrefixes and is plain enough to be trusted for that.
func (p *Proxy) checkDisabled(rawPath string) bool {
	if len(p.disabled) == 0 || strings.Contains(rawPath, "%") || !strings.HasPrefix(rawPath, "/") {
		return false
	}
	clean := path.Clean(rawPath)
	if strings.HasSuffix(rawPath, "/") && clean != "/" {
		clean += "/"
	}
	if clean != rawPath {
		return false
	}
	for _, prefix := range p.disabled {
		if strings.HasPrefix(rawPath, prefix) {
			return true
		}
	}
	return false
}

// respOptsKey carries the response header mutations of one request from
// forward to modifyResponse.
type respOptsKey struct{}

// forward sends the request described by r and the (mutated) Envoy header
// set h to the upstream, then applies respOpts to the upstream's response.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, h http.Header, respOpts []*corev3.HeaderValueOption) {
	target, err := url.ParseRequestURI(first(h, pseudoPath))
	if err != nil {
		// checkPseudo accepted it, so this is a target net/url cannot
		// represent; Envoy's upstream codec would fail too.
		p.log.LogAttrs(r.Context(), slog.LevelWarn, "cannot forward request target", slog.Any("error", err))
		_ = writeLocalReply(w, http.StatusInternalServerError, nil, "")
		return
	}
	out := r.WithContext(context.WithValue(r.Context(), respOptsKey{}, respOpts))
	u := *r.URL
	u.Path, u.RawPath, u.RawQuery = target.Path, target.RawPath, target.RawQuery
	out.URL = &u
	out.Method = first(h, pseudoMethod)
	out.Host = first(h, pseudoAuthority)
	out.Header = make(http.Header, len(h))
	for k, vv := range h {
		if !strings.HasPrefix(k, ":") {
			out.Header[k] = vv
		}
	}
	p.rp.ServeHTTP(w, out)
}

// forwardedHeaders are dropped by httputil.ReverseProxy before Rewrite; Envoy
// forwards them (it set x-forwarded-proto itself), so rewrite puts them back.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.upstream)
	pr.Out.Host = pr.In.Host
	for _, k := range forwardedHeaders {
		if vv, ok := pr.In.Header[k]; ok {
			pr.Out.Header[k] = slices.Clone(vv)
		}
	}
}

func modifyResponse(resp *http.Response) error {
	opts, _ := resp.Request.Context().Value(respOptsKey{}).([]*corev3.HeaderValueOption)
	for _, o := range opts {
		// ApplyOK validated them before the request was forwarded.
		if err := applyResponseOption(resp.Header, o); err != nil {
			return err
		}
	}
	return nil
}

// upstreamError answers like Envoy's router when the upstream cannot be
// reached or resets: 503 with its usual body.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	p.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream request failed", slog.Any("error", err))
	_ = writeLocalReply(w, http.StatusServiceUnavailable, nil, "upstream connect error or disconnect/reset before headers")
}

// headersTooLarge applies Envoy's default header limits to r.
func headersTooLarge(r *http.Request) bool {
	n, size := 0, len(r.RequestURI)+len(r.Host)
	for k, vv := range r.Header {
		n += len(vv)
		for _, v := range vv {
			size += len(k) + len(v)
		}
	}
	return n > MaxHeaderCount || size > MaxHeaderBytes
}
