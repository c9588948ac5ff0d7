package authz

// Finding the bearer token of a request.

// bearerSource is the default token location: Authorization: Bearer.
var bearerSource = TokenSource{Header: "authorization", Prefix: "Bearer "}

// dpopSource is the Authorization header with the DPoP scheme (RFC 9449
// §7.1), read wherever the Bearer scheme is when some provider takes
// DPoP-bound tokens.
var dpopSource = TokenSource{Header: "authorization", Prefix: "DPoP "}

// authorization extracts the token from the Authorization values: the
// Bearer scheme, or the DPoP scheme when some provider's sender constraint
// is not off. An empty reason means a token was found.
func (s *Server) authorization(values []string) (found, Reason) {
	if len(values) == 0 {
		return found{}, MissingToken
	}
	tok, reason := s.readSource(bearerSource, values)
	if reason == MissingToken && s.replay != nil {
		if t, r := s.readSource(dpopSource, values); r != MissingToken {
			return found{token: t, dpop: true}, r
		}
	}
	return found{token: tok}, reason
}
