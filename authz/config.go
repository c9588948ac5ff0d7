package authz

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/extauthz/extauthz/policy"

	"github.com/golang-jwt/jwt/v5"
)

// KeySource finds the key that verifies a token for one provider. It is the
// jwt.Keyfunc of that provider, with the request's context. *jwks.Cache
// implements it.
type KeySource interface {
	// Key returns the key for the token's kid and alg. Its errors wrap
	// jwks.ErrNotReady when no key set was ever loaded, and
	// jwks.ErrKeyNotFound when the kid is unknown.
	Key(ctx context.Context, t *jwt.Token) (any, error)
}

// Provider is one identity provider whose tokens are accepted.
type Provider struct {
	// Name names the provider in logs and metrics.
	Name string
	// Issuer is the exact iss value of its tokens. Required.
	Issuer string
	// Audiences are the accepted aud values; a token must carry at least
	// one. Required: without it, a token minted for another API of the same
	// tenant would pass.
	Audiences []string
	// Algorithms are the accepted signing algorithms. Defaults to RS256.
	// none and HMAC algorithms are refused.
	Algorithms []string
	// Keys verifies the provider's signatures. Required.
	Keys KeySource
	// TokenSources are where the provider's tokens may come from, in order;
	// DefaultTokenSources when empty. The server reads the union of every
	// provider's locations; a token found in one its provider (named by
	// iss) does not list is refused.
	TokenSources []TokenSource
	// SenderConstraint says what the provider's sender-constrained tokens
	// (a cnf claim: RFC 9449 DPoP's jkt, RFC 8705's x5t#S256) must prove:
	// [SenderOptional] (the default), [SenderRequired] or [SenderOff].
	SenderConstraint string
	// DPoP configures the proofs of DPoP-bound tokens.
	DPoP DPoP
	// ClientCertFrom says where a certificate-bound token's client
	// certificate comes from: [CertFromPeer] (the default: Envoy's
	// attributes.source.certificate, with include_peer_certificate) or
	// [CertFromXFCC] (the edge's element of x-forwarded-client-cert, for an
	// edge that sanitizes it). ClientCertHeader, when set, names a header
	// the front sets to the URL-encoded PEM instead (nginx's
	// $ssl_client_escaped_cert), for either transport.
	ClientCertFrom   string
	ClientCertHeader string
	// ForwardToken keeps the Authorization header on allow. By default it
	// is removed before the upstream (headers_to_remove, and
	// X-Envoy-Auth-Headers-To-Remove in HTTP mode), as Envoy's jwt_authn
	// and Istio do: a backend that reads the claim headers never holds a
	// replayable credential.
	ForwardToken bool
}

// The sender constraints of a provider (Provider.SenderConstraint).
const (
	// SenderOptional enforces the binding a token carries (cnf.jkt: a
	// DPoP proof by that key; cnf["x5t#S256"]: that client certificate)
	// and accepts plain bearer tokens. The default.
	SenderOptional = "optional"
	// SenderRequired also refuses plain bearer tokens.
	SenderRequired = "required"
	// SenderOff never reads cnf: a bound token is taken as a bearer token.
	// Unsafe: a stolen bound token works for whoever holds it.
	SenderOff = "off"
)

// The sources of a certificate-bound token's client certificate
// (Provider.ClientCertFrom).
const (
	// CertFromPeer: attributes.source.certificate of the CheckRequest
	// (Envoy's include_peer_certificate). The default.
	CertFromPeer = "peer"
	// CertFromXFCC: the Hash of the first element of
	// x-forwarded-client-cert, set by the edge proxy.
	CertFromXFCC = "xfcc"
)

// DPoP configures a provider's DPoP proofs (RFC 9449).
type DPoP struct {
	// Algorithms are the accepted proof algorithms; asymmetric only.
	// Defaults to dpop.DefaultAlgorithms (ES256, RS256, PS256, EdDSA).
	Algorithms []string
	// MaxAge and MaxAhead bound a proof's iat on the server's clock, not
	// widened by the clock skew. Default 60s and 5s.
	MaxAge, MaxAhead time.Duration
	// Nonce requires server-provided nonces (RFC 9449 §8): a proof without
	// a current one is answered 401 use_dpop_nonce with a fresh
	// DPoP-Nonce, and every DPoP request's answer carries one.
	Nonce bool
	// NonceKey keys the stateless nonces (at least 32 bytes; give every
	// replica the same one). Empty: the Server this one replaces' key, or a
	// random one.
	NonceKey []byte
	// PublicBaseURL pins the scheme and host of the URI a proof's htu must
	// name ("https://api.example.com"); empty: the request's own, as the
	// proxy reports them.
	PublicBaseURL string
}

// Rule says what a path needs, and a named policy what its routes need: the
// rule language of package policy. The first rule whose Path (and Methods
// and Hosts, when given) matches wins; a path no rule matches needs a valid
// token. Path is compared with the path as sent (case-sensitively) and, in
// the same fold, with the readings of case-insensitive and normalising
// backends: a rule /Reports also covers /reports, /REPORTS and /Reports.json,
// and a path is public only if every reading of it is.
type Rule = policy.Rule

// The defaults of Config's zero values.
const (
	// DefaultTokenCacheSize is the default bound of the verified-token cache.
	DefaultTokenCacheSize = 10_000
	// DefaultClockSkew is the leeway for exp, nbf and iat, as Envoy's
	// jwt_authn.
	DefaultClockSkew = 60 * time.Second
	// DefaultMaxTokenBytes bounds the bearer token.
	DefaultMaxTokenBytes = 8 << 10
	// DefaultRealm is the realm of the WWW-Authenticate challenge.
	DefaultRealm = "extauthz"
	// DefaultDPoPReplayCacheSize bounds the DPoP proofs remembered per
	// window (about 30 bytes each, two windows at most).
	DefaultDPoPReplayCacheSize = 1 << 20
)

// CheckRealm reports a realm that cannot stand in a quoted challenge
// parameter as it is: quotes, backslashes, line breaks.
func CheckRealm(realm string) error {
	if strings.ContainsAny(realm, "\"\\\r\n") {
		return fmt.Errorf("realm %q may not contain quotes, backslashes or line breaks", realm)
	}
	return nil
}

// The forward-auth sources of the original request.
const (
	// SourceAuto uses X-Original-URI/-Method, else X-Forwarded-Uri/-Method,
	// else the request itself; when both header families are present and
	// disagree, or one is repeated, the check is denied as ambiguous.
	SourceAuto = "auto"
	// SourceOriginal uses X-Original-URI and X-Original-Method (nginx
	// auth_request) and nothing else.
	SourceOriginal = "x-original"
	// SourceForwarded uses X-Forwarded-Uri and X-Forwarded-Method (Caddy
	// forward_auth, Traefik ForwardAuth) and nothing else.
	SourceForwarded = "x-forwarded"
	// SourceRequest uses the check request's own method and target (Envoy's
	// HTTP ext_authz mode, Istio envoyExtAuthzHttp) and ignores the headers.
	SourceRequest = "request"
)

// PayloadClaim, as the claim of a claim header, forwards the whole verified
// payload, base64url-encoded as in the token (Envoy jwt_authn's
// forward_payload_header).
const PayloadClaim = "$payload"

// DefaultClaimHeaders returns the claim headers used when
// Config.ClaimHeaders is empty: x-jwt-sub (the sub claim) and x-jwt-payload
// (the verified payload). A new map each call.
func DefaultClaimHeaders() map[string]string {
	return map[string]string{"x-jwt-sub": "sub", "x-jwt-payload": PayloadClaim}
}

// Config configures a [Server].
type Config struct {
	// Providers are the accepted identity providers; at least one, with
	// distinct issuers.
	Providers []Provider
	// Rules are the path rules, first match wins.
	Rules []Rule
	// Policies are the named policies: a CheckRequest whose route sets
	// context_extensions["policy"] is decided by that policy alone (the
	// path rules are not consulted).
	Policies map[string]Rule
	// MetadataClaims are claim paths (as for claim headers) whose values
	// an allowed CheckResponse carries in dynamic_metadata, beside sub, iss,
	// provider and scope.
	MetadataClaims []string
	// Shadow turns every denial into a shadow allow (--enforce=false, for
	// a first rollout): decided, logged ("shadow": true) and counted
	// (result shadow_deny), but let through. Internal errors still deny.
	Shadow bool
	// DenyDetail adds X-Extauthz-Reason (the reason only) to denials. Off
	// by default: it tells a client, an attacker too, which check failed.
	DenyDetail bool
	// ClaimHeaders maps an upstream header name to the claim it carries. A
	// claim name matches exactly first (namespaced claims such as
	// "https://example.com/roles" are common); otherwise dots descend into
	// nested objects. Defaults to [DefaultClaimHeaders]().
	ClaimHeaders map[string]string
	// DPoPReplayCacheSize bounds the DPoP proofs the server remembers
	// within the longest proof window of its providers; a proof beyond it is
	// refused, never another forgotten. Defaults to
	// [DefaultDPoPReplayCacheSize].
	DPoPReplayCacheSize int
	// ClockSkew is the leeway for exp, nbf and iat. Defaults to 60s, as
	// Envoy's jwt_authn. A negative value means none.
	ClockSkew time.Duration
	// Realm is the realm of the WWW-Authenticate challenge. Defaults to
	// "extauthz".
	Realm string
	// MaxTokenBytes bounds the bearer token. Defaults to 8 KiB.
	MaxTokenBytes int
	// TokenCacheSize bounds the verified-token cache, in tokens (failed
	// verifications get a separate cache a quarter of the size). Defaults to
	// [DefaultTokenCacheSize]; negative disables the cache.
	TokenCacheSize int
	// ForwardAuthSource says where the HTTP forward-auth check reads the
	// original request's method and URI: [SourceAuto] (the default),
	// [SourceOriginal], [SourceForwarded] or [SourceRequest]. Pin it to the
	// one your proxy sets: proxies that copy client headers into the check
	// request (Caddy, Traefik) would otherwise let a client send the other
	// header.
	ForwardAuthSource string
	// Logger gets one line per denial (Info) and per allow (Debug); never a
	// token. Defaults to slog.Default().
	Logger *slog.Logger
	// Observer receives every decision, for metrics. Nil means none.
	Observer Observer
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Previous is the Server this one replaces (a configuration reload).
	// Its verified-token cache is taken over when nothing a cached result
	// depends on changed: the providers (issuer, name, audiences, algorithms and
	// the same KeySource pointers), the claim headers, the clock skew and the
	// cache size. Rules may change: they are evaluated on every request.
	// Otherwise the new Server starts with an empty cache.
	Previous *Server
}

// forbiddenHeaders may not carry claims: setting them would let a token
// change how the proxy routes or frames the request.
var forbiddenHeaders = []string{"authorization", "host", "connection", "content-length", "transfer-encoding",
	"te", "trailer", "upgrade", "keep-alive", "proxy-authorization", "proxy-connection", "cookie",
	"x-envoy-auth-headers-to-remove"}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
