package authz

// Finding the bearer token of a request.

import (
	"context"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// verified is the outcome of token verification.
type verified struct {
	reason   Reason // Allowed when the token verified
	provider string
	claims   jwt.MapClaims
	payload  string // base64url payload segment as in the token
	kid      string // for logs
	err      error  // for logs
	// The configured claim headers rendered from the claims (sorted), and
	// the configured ones without a value, the granted scopes and the
	// validity window (skew applied): computed once per verification, so
	// that cached tokens reuse them and the claim set itself is not kept.
	headers              []Header
	missing              []string
	scopes               []string
	validFrom, validTill time.Time // zero validFrom: no lower bound
}

func (s *Server) verifyRequest(ctx context.Context, r Request) verified {
	token, reason := s.bearer(r.Authorization)
	if reason != "" {
		return verified{reason: reason}
	}
	return s.verify(ctx, token)
}

// bearer extracts the token from the Authorization values. An empty reason
// means a token was found.
func (s *Server) bearer(values []string) (string, Reason) {
	switch len(values) {
	case 0:
		return "", MissingToken
	case 1:
	default:
		return "", InvalidRequest
	}
	v := strings.TrimSpace(values[0])
	scheme, token, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", MissingToken
	}
	token = strings.TrimLeft(token, " ")
	switch {
	case token == "":
		return "", MissingToken
	case len(token) > s.maxToken:
		return "", TokenTooLarge
	case strings.ContainsAny(token, ", \t"):
		// Envoy joins repeated headers with ","; a JWS never holds one.
		return "", InvalidRequest
	}
	return token, ""
}
