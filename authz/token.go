package authz

// Finding the bearer token of a request.

import (
	"strings"
)

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
