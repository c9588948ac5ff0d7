package standin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Pseudo-header keys as they appear in Envoy's request header map, in the
// CheckRequest and in the header sets ApplyOK works on.
const (
	pseudoAuthority = ":authority"
	pseudoMethod    = ":method"
	pseudoPath      = ":path"
	pseudoScheme    = ":scheme"
)

// strippedRequestHeaders are removed by Envoy's connection manager before any
// HTTP filter runs (conn_manager_utility.cc mutateRequestHeaders and
// cleanInternalHeaders, for a request that is neither internal nor edge,
// which is what a default HttpConnectionManager sees). x-forwarded-client-cert
// goes because the default forward_client_cert is SANITIZE and the stand-in
// has no mTLS.
var strippedRequestHeaders = []string{
	"Keep-Alive",
	"Proxy-Connection",
	"Transfer-Encoding",
	"X-Envoy-Internal",
	"X-Envoy-Retriable-Status-Codes",
	"X-Envoy-Retriable-Header-Names",
	"X-Envoy-Retry-On",
	"X-Envoy-Retry-Grpc-On",
	"X-Envoy-Max-Retries",
	"X-Envoy-Upstream-Alt-Stat-Name",
	"X-Envoy-Upstream-Rq-Timeout-Ms",
	"X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms",
	"X-Envoy-Upstream-Rq-Timeout-Alt-Response",
	"X-Envoy-Expected-Rq-Timeout-Ms",
	"X-Envoy-Force-Trace",
	"X-Envoy-Ip-Tags",
	"X-Envoy-Original-Url",
	"X-Envoy-Hedge-On-Per-Try-Timeout",
	"X-Forwarded-Client-Cert",
}

// partialBodyHeader is never copied from the client into a CheckRequest
// (check_request_utils.cc setHttpRequest), as Envoy uses it internally.
const partialBodyHeader = "x-envoy-auth-partial-body"

// BuildCheckRequest returns the CheckRequest Envoy's ext_authz filter sends
// for r (CheckRequestUtils::createHttpCheck, gRPC mode, no request body):
//
//   - attributes.request.http.headers holds every request header as Envoy
//     sees it after its connection manager ran (see the package comment),
//     keys lower-cased, the pseudo-headers :authority, :method, :path and
//     :scheme included, repeated headers joined with "," and values made
//     valid UTF-8 with "!" for bad bytes.
//   - id is a random stream id; method, path (raw request target, query
//     included), host, scheme and protocol ("HTTP/1.1", "HTTP/2") come from
//     the same values; size is 0, the body bytes received when the check is
//     sent on the headers alone.
//   - attributes.source.address is r.RemoteAddr and
//     attributes.destination.address the local address of r's connection
//     (absent for requests not received by an http.Server);
//     attributes.source.service is x-envoy-downstream-service-cluster.
//   - attributes.request.time is now.
//
// Envoy adds an x-request-id when the client sent none; BuildCheckRequest
// generates one too, so call it once per request. It does not bound r: an
// http.Server with MaxHeaderBytes (see [Proxy.Serve]) does.
func BuildCheckRequest(r *http.Request) *authv3.CheckRequest {
	return buildCheckRequest(r, connManager{}.requestHeaders(r, requestTarget(r)), time.Now(), nil, nil)
}

// buildCheckRequest builds the CheckRequest for r from h, the Envoy view of
// its headers. disallowed holds lower-case header names left out of the
// request (the ext_authz filter's disallowed_headers); ext are the route's
// context_extensions (nil for none), sent as they are.
func buildCheckRequest(r *http.Request, h http.Header, now time.Time, disallowed map[string]bool, ext map[string]string) *authv3.CheckRequest {
	headers := make(map[string]string, len(h))
	for k, vv := range h {
		key := strings.ToLower(k)
		if key == partialBodyHeader || disallowed[key] {
			continue
		}
		headers[key] = sanitize(strings.Join(vv, ","))
	}

	source := &authv3.AttributeContext_Peer{Address: socketAddress(r.RemoteAddr)}
	if svc := h.Get("X-Envoy-Downstream-Service-Cluster"); svc != "" {
		source.Service = sanitize(svc)
	}
	destination := &authv3.AttributeContext_Peer{}
	if la := localAddr(r); la != "" {
		destination.Address = socketAddress(la)
	}

	return &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{
			Source:            source,
			Destination:       destination,
			ContextExtensions: ext,
			Request: &authv3.AttributeContext_Request{
				Time: timestamppb.New(now),
				Http: &authv3.AttributeContext_HttpRequest{
					Id:       strconv.FormatUint(mathrand.Uint64(), 10),
					Method:   sanitize(first(h, pseudoMethod)),
					Headers:  headers,
					Path:     sanitize(first(h, pseudoPath)),
					Host:     sanitize(first(h, pseudoAuthority)),
					Scheme:   sanitize(first(h, pseudoScheme)),
					Protocol: protocol(r),
				},
			},
		},
	}
}

func localAddr(r *http.Request) string {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && la != nil {
		return la.String()
	}
	return ""
}

// connManager holds the HttpConnectionManager settings the stand-in
// models; the zero value is Envoy's defaults.
type connManager struct {
	useRemoteAddress bool // use_remote_address: true
	dropUnderscores  bool // headers_with_underscores_action: DROP_HEADER
}

// edgeOnlyHeaders are also removed from an edge request
// (cleanInternalHeaders with edge_request).
var edgeOnlyHeaders = []string{
	"X-Envoy-Decorator-Operation",
	"X-Envoy-Downstream-Service-Cluster",
	"X-Envoy-Downstream-Service-Node",
}

// requestHeaders returns r's headers as Envoy's HTTP filters see them,
// with target (the raw request target, possibly normalised) as :path: the
// connection manager's clean-up done (conn_manager_utility.cc
// mutateRequestHeaders), x-forwarded-proto and x-request-id added, and the
// pseudo-headers set. The result is a fresh map that shares nothing with r.
func (cm connManager) requestHeaders(r *http.Request, target string) http.Header {
	h := make(http.Header, len(r.Header)+8)
	for k, vv := range r.Header {
		if cm.dropUnderscores && strings.Contains(k, "_") {
			continue
		}
		h[k] = slices.Clone(vv)
	}

	// Connection and Upgrade survive only on an upgrade request, which Envoy
	// forwards verbatim.
	if !isUpgrade(h) {
		delete(h, "Connection")
		delete(h, "Upgrade")
	}
	for _, k := range strippedRequestHeaders {
		delete(h, k)
	}
	// A referer that is repeated or not an absolute URL is dropped.
	if ref := h.Values("Referer"); len(ref) > 1 || (len(ref) == 1 && !isAbsoluteURL(ref[0])) {
		delete(h, "Referer")
	}

	connScheme := "http"
	if r.TLS != nil {
		connScheme = "https"
	}
	if cm.useRemoteAddress {
		// Envoy is the edge and no hop is trusted: append the peer to
		// x-forwarded-for (Envoy's own address for a loopback peer), and
		// overwrite x-forwarded-proto. No source address is internal by
		// default (Envoy 1.33 on), so the request is an edge request.
		remote := hostOf(r.RemoteAddr)
		xffAddr := remote
		if ip, err := netip.ParseAddr(remote); err == nil && ip.IsLoopback() {
			if local := hostOf(localAddr(r)); local != "" {
				xffAddr = local
			}
		}
		if xffAddr != "" {
			xff := strings.Join(h.Values("X-Forwarded-For"), ",")
			if xff != "" {
				xff += ","
			}
			h["X-Forwarded-For"] = []string{xff + xffAddr}
		}
		h["X-Forwarded-Proto"] = []string{connScheme}
		for _, k := range edgeOnlyHeaders {
			delete(h, k)
		}
		if remote != "" {
			h["X-Envoy-External-Address"] = []string{remote}
		}
		// An edge request always gets a fresh x-request-id
		// (preserve_external_request_id defaults to false).
		h["X-Request-Id"] = []string{newRequestID()}
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		h["X-Forwarded-Proto"] = []string{connScheme}
	}
	// :scheme follows x-forwarded-proto when that is a valid scheme. With
	// the default use_remote_address: false a client can choose it, as it
	// can with Envoy.
	scheme := connScheme
	if xfp := strings.ToLower(h.Get("X-Forwarded-Proto")); xfp == "http" || xfp == "https" {
		scheme = xfp
	}
	if _, ok := h["X-Request-Id"]; !ok {
		h["X-Request-Id"] = []string{newRequestID()}
	}

	h[pseudoAuthority] = []string{r.Host}
	h[pseudoMethod] = []string{r.Method}
	h[pseudoPath] = []string{target}
	h[pseudoScheme] = []string{scheme}
	return h
}

// hostOf returns the host part of "host:port", or "".
func hostOf(hostport string) string {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return ""
	}
	return host
}

// requestTarget is the raw request target (path and query, no decoding) as
// it appeared on the request line, or in :path for HTTP/2.
func requestTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") || r.RequestURI == "*" {
		return r.RequestURI
	}
	// Absolute-form targets, and requests not received by a server.
	return r.URL.RequestURI()
}

func isUpgrade(h http.Header) bool {
	if h.Get("Upgrade") == "" {
		return false
	}
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

func isAbsoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme != "" || u.Host != "")
}

func protocol(r *http.Request) string {
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "HTTP/1.0"
	case r.ProtoMajor == 1:
		return "HTTP/1.1"
	case r.ProtoMajor == 2:
		return "HTTP/2"
	case r.ProtoMajor == 3:
		return "HTTP/3"
	default:
		return ""
	}
}

// socketAddress turns "ip:port" into Envoy's Address proto, as
// Network::Utility::addressToProtobufAddress does. It returns nil for
// anything else (a pipe, or an address net/http could not report).
func socketAddress(hostport string) *corev3.Address {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ap.Addr().WithZone("").String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}

// sanitize makes s valid UTF-8, which proto3 strings must be, replacing bad
// bytes with "!" as Envoy's MessageUtil::sanitizeUtf8String does.
func sanitize(s string) string {
	return strings.ToValidUTF8(s, "!")
}

func first(h http.Header, key string) string {
	if vv := h[key]; len(vv) > 0 {
		return vv[0]
	}
	return ""
}

// newRequestID returns a random (version 4) UUID, the form of Envoy's
// default request id extension.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails.
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// urlEncodedPEM is a certificate as Envoy's include_peer_certificate sends
// it (Ssl::ConnectionInfo::urlEncodedPemEncodedPeerCertificate): the PEM
// with newline, space, '+', '/' and '=' percent-encoded.
func urlEncodedPEM(der []byte) string {
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
}
