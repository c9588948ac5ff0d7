package authz

// The vocabulary of one decision: the request as a transport read it, the
// decision, and the event every decision is recorded as.

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// Request is what a decision needs of one HTTP request.
type Request struct {
	// Method is the HTTP method, for logs.
	Method string
	// Path is the request target as received (path, and maybe a query).
	Path string
	// Authorization holds every Authorization header value.
	Authorization []string
	// HeaderNames are the lower-cased names of the request's headers, when
	// the transport can strip headers upstream (Envoy). Look-alike spellings
	// of claim headers among them are removed on allow.
	HeaderNames []string
	// Host is the original request's host (":authority" or Host, maybe
	// with a port), for host rules and conditions; "" when the transport
	// cannot tell.
	Host string
	// Scheme is the original request's scheme, for conditions.
	Scheme string
	// Headers are the request's headers with lower-case names, for
	// conditions; nil when no condition reads them (see Server.NeedsHeaders).
	Headers map[string]string
	// ContextExtensions are Envoy's per-route context_extensions: "policy"
	// names the policy that decides; all are available to conditions.
	ContextExtensions map[string]string
	// SourceAddress and SourcePrincipal describe the calling peer (Envoy's
	// attributes.source: its address, and its identity as the mesh proves
	// it, Istio's SPIFFE ID), for conditions.
	SourceAddress, SourcePrincipal string
	// DPoP holds every DPoP header value (RFC 9449 proofs).
	DPoP []string
	// Certificate is the client certificate presented to the proxy, as
	// Envoy's attributes.source.certificate gives it (URL-encoded PEM), for
	// certificate-bound tokens; "" when none.
	Certificate string
	// Trace, when not nil, collects what each stage of the decision found
	// (for explaining it); nil costs nothing.
	Trace *Trace

	// problem is what the transport found wrong with the request it checks
	// (AmbiguousRequest, InvalidRequest), with its message: the decision is
	// that denial, recorded as every other.
	problem    Reason
	problemMsg string
}

// Header is one header to set upstream.
type Header struct {
	Name  string
	Value string
}

// Decision is the answer to one Request.
type Decision struct {
	Reason   Reason
	Provider string // name of the provider that issued the token, if known
	// On allow: the claim headers to set upstream (overwriting any client
	// value), sorted by name, and the headers to remove from the upstream
	// request. A name is never in both.
	Headers []Header
	Remove  []string
	// RemoveQuery are query parameters to remove upstream (a token read
	// from the query), over gRPC.
	RemoveQuery []string
	// ResponseHeaders are headers for the client's response, on allow and
	// on deny (a fresh DPoP-Nonce), with lower-case names.
	ResponseHeaders []Header
	// On deny: the RFC 6750 challenge ("" for none) and the JSON body.
	WWWAuthenticate string
	Body            string
	// Message is the body's "error", one of a closed set of messages.
	Message string
	// Detail: name the reason in an X-Extauthz-Reason header
	// (Config.DenyDetail).
	Detail bool
	// Shadow: the decision was Reason, a denial, but it is not enforced
	// (shadow mode): the request is allowed, without claim headers unless
	// its token verified.
	Shadow bool
	// Metadata is Envoy's dynamic_metadata for the other filters: on allow
	// with a token, sub, iss, provider, scope and the configured metadata
	// claims; on deny, the reason. Shared: never modify it.
	Metadata *structpb.Struct
}

// Allowed reports whether the decision lets the request through: an allow,
// or a denial in shadow mode.
func (d Decision) Allowed() bool { return d.Reason.Allow() || d.Shadow }

// Status is the HTTP status for the decision.
func (d Decision) Status() int {
	if d.Shadow {
		return 200
	}
	return d.Reason.Status()
}

// Event is one decision as metrics, traces and logs see it: everything they
// need, so that none of them reads the request again.
type Event struct {
	Reason   Reason
	Provider string // the token's provider, "" when it named none (or there was no token)
	Rule     string // the path of the rule that decided, "" when none matched
	Method   string // the original request's method, bounded
	Path     string // the original request's path, without its query, bounded
	KID      string // the token's kid, bounded
	// Err is why verification failed, on a denial (never holds the token).
	Err error
	// TokenIgnored is why a public request's token did not verify.
	TokenIgnored Reason
	Duration     time.Duration
	// Shadow: Reason is a denial that was not enforced (shadow mode).
	Shadow bool
}

// Observer receives every decision.
type Observer interface {
	// ObserveCheck is called once per decision, with the request's context
	// (for tracing).
	ObserveCheck(ctx context.Context, e Event)
}
