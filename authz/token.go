package authz

// Finding the bearer token of a request.

// bearerSource is the default token location: Authorization: Bearer.
var bearerSource = TokenSource{Header: "authorization", Prefix: "Bearer "}

// bearer extracts the token from the Authorization values. An empty reason
// means a token was found.
func (s *Server) bearer(values []string) (string, Reason) {
	if len(values) == 0 {
		return "", MissingToken
	}
	return s.readSource(bearerSource, values)
}
