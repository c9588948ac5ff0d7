package idp

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// OAuth 2.0 error codes this server answers with (RFC 6749 §5.2, RFC 8707
// §2, RFC 9449 §5). invalid_grant and unauthorized_client are never
// produced: the only grant is client_credentials, it has no grant to be
// invalid, and every registered client may use it.
const (
	ErrCodeInvalidRequest       = "invalid_request"
	ErrCodeInvalidClient        = "invalid_client"
	ErrCodeUnsupportedGrantType = "unsupported_grant_type"
	ErrCodeInvalidScope         = "invalid_scope"
	ErrCodeInvalidTarget        = "invalid_target"
	ErrCodeServerError          = "server_error"
	ErrCodeInvalidDPoPProof     = "invalid_dpop_proof"
)

// basicRealm is the challenge sent with invalid_client when the client
// tried HTTP Basic authentication (RFC 6749 §5.2).
const basicRealm = `Basic realm="demo-idp", charset="UTF-8"`

// tokenRequest holds the parameters of a token request, from whichever
// encoding it used.
type tokenRequest struct {
	grantType    string
	clientID     string
	clientSecret string
	audience     string
	resource     string
	scope        string
	// basic reports that the client tried to authenticate with the
	// Authorization header, which decides the WWW-Authenticate challenge.
	basic bool
}

// tokenError is a refusal: the HTTP status and the §5.2 body. Descriptions
// are fixed strings: request data is never echoed.
type tokenError struct {
	status int
	code   string
	desc   string
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func badRequest(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: ErrCodeInvalidRequest, desc: desc}
}

func badClient(desc string) *tokenError {
	return &tokenError{status: http.StatusUnauthorized, code: ErrCodeInvalidClient, desc: desc}
}

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// serveToken is the client credentials grant (RFC 6749 §4.4). Checks run
// in this order, the first failure answering: method (405), request syntax
// (invalid_request), client authentication (invalid_client), grant_type
// (invalid_request when missing, else unsupported_grant_type), audience
// (invalid_target), scope (invalid_scope), DPoP proof (invalid_dpop_proof).
// Authentication comes before the grant so that an unauthenticated caller
// learns nothing about what the server supports. The proof comes last so
// that only a request that would otherwise get a token spends it (its jti
// is remembered) and an unauthenticated caller cannot fill the replay
// cache. Missing credentials are invalid_client, not invalid_request,
// because §5.2 lists "no client authentication included" under
// invalid_client.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, http.MethodPost)
		return
	}
	req, terr := parseTokenRequest(w, r)
	if terr != nil {
		s.refuse(w, r, req.basic, "", terr)
		return
	}
	c := s.authenticate(req.clientID, req.clientSecret)
	if c == nil {
		s.refuse(w, r, req.basic, "", badClient("client authentication failed"))
		return
	}
	resp, terr := s.grant(r, c, req)
	if terr != nil {
		s.refuse(w, r, req.basic, c.id, terr)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// grant checks what an authenticated client asked for and issues the token.
func (s *Server) grant(r *http.Request, c *client, req tokenRequest) (tokenResponse, *tokenError) {
	switch req.grantType {
	case "":
		return tokenResponse{}, badRequest("grant_type is required")
	case "client_credentials":
	default:
		return tokenResponse{}, &tokenError{status: http.StatusBadRequest, code: ErrCodeUnsupportedGrantType,
			desc: "only client_credentials is supported"}
	}

	aud := req.audience
	if req.resource != "" {
		if aud != "" && aud != req.resource {
			return tokenResponse{}, badRequest("audience and resource differ")
		}
		aud = req.resource
	}
	if aud == "" {
		if len(c.audiences) != 1 {
			return tokenResponse{}, &tokenError{status: http.StatusBadRequest, code: ErrCodeInvalidTarget,
				desc: "audience is required for this client"}
		}
		aud = c.audiences[0]
	}
	if !slices.Contains(c.audiences, aud) {
		return tokenResponse{}, &tokenError{status: http.StatusBadRequest, code: ErrCodeInvalidTarget,
			desc: "audience is unknown or not allowed for this client"}
	}

	scopes := c.scopes
	if req.scope != "" {
		scopes = dedupe(strings.Split(req.scope, " "))
		for _, sc := range scopes {
			if !slices.Contains(c.scopes, sc) {
				return tokenResponse{}, &tokenError{status: http.StatusBadRequest, code: ErrCodeInvalidScope,
					desc: "requested scope is invalid or not allowed for this client"}
			}
		}
	}

	b, terr := s.bind(r)
	if terr != nil {
		return tokenResponse{}, terr
	}
	claims := s.DefaultClaims(c.id, aud, scopes...)
	if cnf := b.cnf(); cnf != nil {
		claims["cnf"] = cnf
	}
	tok, err := s.sign(r.Context(), claims)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "sign failed", slog.Any("error", err))
		return tokenResponse{}, &tokenError{status: http.StatusInternalServerError, code: ErrCodeServerError,
			desc: "could not sign the token"}
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "token issued",
		slog.String("client_id", c.id), slog.String("aud", aud),
		slog.String("scope", strings.Join(scopes, " ")), slog.Any("jti", claims["jti"]),
		slog.String("token_type", b.tokenType()), slog.Bool("certificate_bound", b.x5tS256 != ""))
	return tokenResponse{
		AccessToken: tok,
		TokenType:   b.tokenType(),
		ExpiresIn:   claims["exp"].(int64) - claims["iat"].(int64),
		Scope:       strings.Join(scopes, " "),
	}, nil
}

// refuse writes a §5.2 error. clientID is set only once authenticated, so
// unauthenticated input never reaches the log.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, basic bool, clientID string, e *tokenError) {
	attrs := []slog.Attr{slog.String("error", e.code), slog.String("reason", e.desc)}
	if clientID != "" {
		attrs = append(attrs, slog.String("client_id", clientID))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "token refused", attrs...)
	if e.code == ErrCodeInvalidClient && basic {
		w.Header().Set("WWW-Authenticate", basicRealm)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, e.status, errorBody{Error: e.code, Description: e.desc})
}

// authenticate returns the client whose id and secret match, or nil. The
// secret is compared as a SHA-256 hash in constant time, and an unknown id
// costs the same comparison, so timing reveals neither the secret's content
// nor its length. (Whether an id exists is not treated as secret.)
func (s *Server) authenticate(id, secret string) *client {
	c, known := s.clients[id]
	want := [sha256.Size]byte{} // no secret hashes to all zeroes
	if known {
		want = c.secretHash
	}
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known {
		return nil
	}
	return c
}

// tokenParams are the parameters read from either body encoding.
var tokenParams = []string{"grant_type", "client_id", "client_secret", "audience", "resource", "scope"}

// parseTokenRequest reads the body (JSON or form, at most MaxBodyBytes) and
// the Authorization header, and settles which client credentials apply.
// Credentials may come from the body (client_secret_post) or from HTTP Basic
// (client_secret_basic), never both (RFC 6749 §2.3).
func parseTokenRequest(w http.ResponseWriter, r *http.Request) (tokenRequest, *tokenError) {
	var req tokenRequest
	auth := r.Header.Values("Authorization")
	req.basic = len(auth) > 0

	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mediaType != "application/json" && mediaType != "application/x-www-form-urlencoded") {
		return req, badRequest("content type must be application/json or application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return req, badRequest(fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
		}
		return req, badRequest("could not read the request body")
	}
	var params map[string]string
	var terr *tokenError
	if mediaType == "application/json" {
		params, terr = parseJSONParams(body)
	} else {
		params, terr = parseFormParams(body)
	}
	if terr != nil {
		return req, terr
	}
	req.grantType = params["grant_type"]
	req.clientID = params["client_id"]
	req.clientSecret = params["client_secret"]
	req.audience = params["audience"]
	req.resource = params["resource"]
	req.scope = params["scope"]

	if req.basic {
		if len(auth) > 1 {
			return req, badRequest("more than one Authorization header")
		}
		id, secret, ok := r.BasicAuth()
		if !ok {
			return req, badClient("malformed or unsupported Authorization header")
		}
		// §2.3.1: both parts are form-urlencoded before base64.
		if id, err = url.QueryUnescape(id); err != nil {
			return req, badClient("malformed Basic credentials")
		}
		if secret, err = url.QueryUnescape(secret); err != nil {
			return req, badClient("malformed Basic credentials")
		}
		if req.clientSecret != "" {
			return req, badRequest("more than one client authentication method")
		}
		if req.clientID != "" && req.clientID != id {
			return req, badRequest("client_id differs from the Basic credentials")
		}
		req.clientID, req.clientSecret = id, secret
	}
	if req.clientID == "" || req.clientSecret == "" {
		return req, badClient("client authentication is required")
	}
	return req, nil
}

// parseJSONParams reads the guide's body: one JSON object whose known
// members are strings. Unknown members are ignored, as OAuth servers
// ignore unknown parameters (RFC 6749 §3.2).
func parseJSONParams(body []byte) (map[string]string, *tokenError) {
	var fields struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Audience     string `json:"audience"`
		Resource     string `json:"resource"`
		Scope        string `json:"scope"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return nil, badRequest("body must be a JSON object with string parameters")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("unexpected data after the JSON object")
	}
	return map[string]string{
		"grant_type":    fields.GrantType,
		"client_id":     fields.ClientID,
		"client_secret": fields.ClientSecret,
		"audience":      fields.Audience,
		"resource":      fields.Resource,
		"scope":         fields.Scope,
	}, nil
}

// parseFormParams reads an application/x-www-form-urlencoded body. A
// parameter sent twice is refused (RFC 6749 §3.2); the URL query is never
// consulted, so credentials in a URL are not accepted.
func parseFormParams(body []byte) (map[string]string, *tokenError) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest("malformed form body")
	}
	params := make(map[string]string, len(tokenParams))
	for _, name := range tokenParams {
		switch v := values[name]; len(v) {
		case 0:
		case 1:
			params[name] = v[0]
		default:
			return nil, badRequest("parameter " + name + " is repeated")
		}
	}
	return params, nil
}
