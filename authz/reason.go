package authz

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Reason is the outcome of a decision, in a closed set of values. The same
// value is the deny body's cause, the log attribute and the metric label.
type Reason string

// The reasons. Allowed and Public are the two kinds of allow.
const (
	Allowed             Reason = "allowed"               // a valid token on a protected path
	Public              Reason = "public"                // a public path, with or without a valid token
	MissingToken        Reason = "missing_token"         // no Authorization header, or not a Bearer one
	InvalidRequest      Reason = "invalid_request"       // several Authorization headers or tokens; no request target to judge
	AmbiguousRequest    Reason = "ambiguous_request"     // forward-auth headers that disagree on the original request
	PathTooLong         Reason = "path_too_long"         // an escaped or dotted path over MaxSlowPathBytes
	TokenTooLarge       Reason = "token_too_large"       // over Config.MaxTokenBytes
	Malformed           Reason = "malformed"             // not a JWS compact token
	BadAlgorithm        Reason = "bad_algorithm"         // alg not allowed for the provider
	BadSignature        Reason = "bad_signature"         // signature does not verify
	UnknownKID          Reason = "unknown_kid"           // no key with that kid, even after a refresh
	UnknownIssuer       Reason = "unknown_issuer"        // iss names no configured provider
	WrongAudience       Reason = "wrong_audience"        // aud holds no accepted audience
	Expired             Reason = "expired"               // exp passed (beyond the clock skew)
	NotYetValid         Reason = "not_yet_valid"         // nbf or iat in the future (beyond the skew)
	InvalidClaims       Reason = "invalid_claims"        // exp missing, a claim of the wrong type
	InsufficientScope   Reason = "insufficient_scope"    // valid token lacking a required scope
	PolicyDenied        Reason = "policy_denied"         // a deny rule, a claim requirement or a condition not met
	PolicyError         Reason = "policy_error"          // a condition that could not be evaluated
	UnknownPolicy       Reason = "unknown_policy"        // Envoy's route names a policy the server does not have
	DPoPInvalid         Reason = "dpop_invalid"          // no DPoP proof, several, or one failing RFC 9449 §4.3
	DPoPReplayed        Reason = "dpop_replayed"         // a DPoP proof seen before within its window
	DPoPBindingMismatch Reason = "dpop_binding_mismatch" // cnf.jkt is not the proof's key, or the scheme is not the token's
	UseDPoPNonce        Reason = "use_dpop_nonce"        // the provider wants a server nonce the proof lacks
	CertBindingMismatch Reason = "cert_binding_mismatch" // cnf x5t#S256 is not the client certificate's
	TokenNotBound       Reason = "token_not_bound"       // a bearer token where the provider requires a bound one
	KeysUnavailable     Reason = "jwks_unavailable"      // the provider's key set never loaded
	Internal            Reason = "internal"              // a bug; denied
)

// Reasons returns every Reason, for metrics and documentation that want
// all label values. A new slice each call.
func Reasons() []Reason {
	return []Reason{Allowed, Public, MissingToken, InvalidRequest, AmbiguousRequest, PathTooLong, TokenTooLarge, Malformed,
		BadAlgorithm, BadSignature, UnknownKID, UnknownIssuer, WrongAudience, Expired, NotYetValid,
		InvalidClaims, DPoPInvalid, DPoPReplayed, DPoPBindingMismatch, UseDPoPNonce, CertBindingMismatch, TokenNotBound,
		InsufficientScope, PolicyDenied, PolicyError, UnknownPolicy, KeysUnavailable, Internal}
}

// outcome is what a Reason means on the wire. This is the one table that maps
// decisions to HTTP statuses and gRPC codes.
type outcome struct {
	status  int
	code    codes.Code
	message string // the deny body's "error" and the challenge's error_description
	bearer  string // RFC 6750 error code for WWW-Authenticate; "" = bare challenge
	// dpop is the RFC 9449 §7.1 error code of a DPoP challenge, for the
	// denials of a sender constraint ("" for a Bearer challenge).
	dpop string
}

var outcomes = map[Reason]outcome{
	Allowed:             {http.StatusOK, codes.OK, "", "", ""},
	Public:              {http.StatusOK, codes.OK, "", "", ""},
	MissingToken:        {http.StatusUnauthorized, codes.Unauthenticated, "Missing or invalid Authorization header", "", ""},
	InvalidRequest:      {http.StatusBadRequest, codes.InvalidArgument, "Multiple Authorization headers or tokens", "invalid_request", ""}, // RFC 6750 §3.1: 400
	AmbiguousRequest:    {http.StatusBadRequest, codes.InvalidArgument, "Conflicting original-request headers", "", ""},
	PathTooLong:         {http.StatusRequestURITooLong, codes.InvalidArgument, "Request path is too long to check", "", ""},
	TokenTooLarge:       {http.StatusUnauthorized, codes.Unauthenticated, "Token is too large", "invalid_token", ""},
	Malformed:           {http.StatusUnauthorized, codes.Unauthenticated, "Token is malformed", "invalid_token", ""},
	BadAlgorithm:        {http.StatusUnauthorized, codes.Unauthenticated, "The specified alg value is not allowed", "invalid_token", ""},
	BadSignature:        {http.StatusUnauthorized, codes.Unauthenticated, "Signature verification failed", "invalid_token", ""},
	UnknownKID:          {http.StatusUnauthorized, codes.Unauthenticated, "Unable to find matching public key", "invalid_token", ""},
	UnknownIssuer:       {http.StatusUnauthorized, codes.Unauthenticated, "Invalid issuer", "invalid_token", ""},
	WrongAudience:       {http.StatusUnauthorized, codes.Unauthenticated, "Invalid audience", "invalid_token", ""},
	Expired:             {http.StatusUnauthorized, codes.Unauthenticated, "Token has expired", "invalid_token", ""},
	NotYetValid:         {http.StatusUnauthorized, codes.Unauthenticated, "Token is not valid yet", "invalid_token", ""},
	InvalidClaims:       {http.StatusUnauthorized, codes.Unauthenticated, "Token claims are invalid", "invalid_token", ""},
	DPoPInvalid:         {http.StatusUnauthorized, codes.Unauthenticated, "Invalid DPoP proof", "", "invalid_dpop_proof"},
	DPoPReplayed:        {http.StatusUnauthorized, codes.Unauthenticated, "DPoP proof replayed", "", "invalid_dpop_proof"},
	DPoPBindingMismatch: {http.StatusUnauthorized, codes.Unauthenticated, "Token is not bound to the DPoP proof key", "", "invalid_token"},
	UseDPoPNonce:        {http.StatusUnauthorized, codes.Unauthenticated, "DPoP proof needs the server nonce", "", "use_dpop_nonce"},
	CertBindingMismatch: {http.StatusUnauthorized, codes.Unauthenticated, "Client certificate does not match the token", "invalid_token", ""},
	TokenNotBound:       {http.StatusUnauthorized, codes.Unauthenticated, "Token must be sender-constrained", "invalid_token", "invalid_token"},
	InsufficientScope:   {http.StatusForbidden, codes.PermissionDenied, "Insufficient scope", "insufficient_scope", ""},
	PolicyDenied:        {http.StatusForbidden, codes.PermissionDenied, "Access denied", "insufficient_scope", ""},
	PolicyError:         {http.StatusForbidden, codes.PermissionDenied, "Access denied", "insufficient_scope", ""},
	UnknownPolicy:       {http.StatusInternalServerError, codes.Internal, "Unknown policy", "", ""},
	KeysUnavailable:     {http.StatusServiceUnavailable, codes.Unavailable, "Signing keys are not available yet", "", ""},
	Internal:            {http.StatusInternalServerError, codes.Internal, "Internal error", "", ""},
}

// Messages of denials whose reason has more than one cause. Like the
// reasons' own messages they are a closed set: safe in a JSON body and a
// quoted challenge parameter as they are.
const (
	msgNoOriginalURI = "Missing original-request URI header"
	msgNoPath        = "Missing request path"
	msgNoMethod      = "Missing original-request method"
	msgNoHost        = "Missing original-request host"
	// Sender constraints.
	msgBoundAsBearer = "DPoP-bound token used as a bearer token"
	msgNotDPoPBound  = "Token is not DPoP-bound"
	msgOneProof      = "Exactly one DPoP proof is required"
	msgProofURI      = "The request URI for the DPoP proof is unknown"
	msgNoClientCert  = "Client certificate is missing"
	msgCnf           = "Token cnf claim is invalid"
)

// Allow reports whether the reason is an allow.
func (r Reason) Allow() bool { return r == Allowed || r == Public }

// Status is the HTTP status a client sees for the reason.
func (r Reason) Status() int { return outcomeOf(r).status }

// Code is the gRPC status code of the CheckResponse for the reason.
func (r Reason) Code() codes.Code { return outcomeOf(r).code }

// Message is the human-readable cause sent in the deny body.
func (r Reason) Message() string { return outcomeOf(r).message }

func outcomeOf(r Reason) outcome {
	if o, ok := outcomes[r]; ok {
		return o
	}
	return outcomes[Internal]
}
