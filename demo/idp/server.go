package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/dpop"
)

// Route paths, relative to the issuer.
const (
	TokenPath     = "/oauth2/m2m/token"
	JWKSPath      = "/.well-known/jwks.json"
	DiscoveryPath = "/.well-known/openid-configuration"
	RotatePath    = "/rotate" // admin listener only
	KeysPath      = "/keys"   // admin listener only
)

// Server is the demo issuer. It is safe for concurrent use.
type Server struct {
	issuer       string
	mtlsBase     string // Config.MTLSBaseURL
	audiences    []string
	clients      map[string]*client
	tokenTTL     time.Duration
	keyBits      int
	publishDelay time.Duration
	retireMargin time.Duration
	now          func() time.Time
	log          *slog.Logger
	dpop         *dpop.Verifier // DPoP proofs at the token endpoint
	discovery    []byte

	mu   sync.Mutex
	keys []*signingKey // ordered by signingFrom; never empty
}

// client is a registered client with its secret reduced to a hash, so
// secrets of any length compare in constant time.
type client struct {
	id         string
	secretHash [sha256.Size]byte
	scopes     []string
	audiences  []string
	tokenTTL   time.Duration // 0: the server's
}

// New validates cfg, applies defaults and generates the first signing key,
// which signs from the start. Key generation (tens of milliseconds for 2048
// bits) is the only work it does: no I/O and no goroutines.
func New(cfg Config) (*Server, error) {
	s := &Server{
		issuer:       cmpOr(cfg.Issuer, DefaultIssuer),
		mtlsBase:     cfg.MTLSBaseURL,
		audiences:    slices.Clone(cfg.Audiences),
		tokenTTL:     cmpOr(cfg.TokenTTL, DefaultTokenTTL).Truncate(time.Second),
		keyBits:      cmpOr(cfg.KeyBits, DefaultKeyBits),
		publishDelay: max(cmpOr(cfg.RotationPublishDelay, DefaultRotationPublishDelay), 0),
		retireMargin: max(cmpOr(cfg.RetireMargin, DefaultRetireMargin), 0),
		now:          cfg.Now,
		log:          cfg.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := checkIssuer(s.issuer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if s.mtlsBase != "" {
		if err := checkIssuer(s.mtlsBase); err != nil || !strings.HasPrefix(s.mtlsBase, "https://") {
			return nil, fmt.Errorf("%w: MTLS base URL %q must be an absolute https URL without user info, query or fragment",
				ErrInvalidConfig, s.mtlsBase)
		}
	}
	if len(s.audiences) == 0 {
		s.audiences = []string{DefaultAudience}
	}
	for _, a := range s.audiences {
		if err := checkAudience(a); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if s.tokenTTL < time.Second {
		return nil, fmt.Errorf("%w: token TTL %s is shorter than 1s", ErrInvalidConfig, cfg.TokenTTL)
	}
	if s.keyBits < minKeyBits || s.keyBits > maxKeyBits {
		return nil, fmt.Errorf("%w: key bits %d outside %d..%d", ErrInvalidConfig, s.keyBits, minKeyBits, maxKeyBits)
	}
	clients := cfg.Clients
	if len(clients) == 0 {
		clients = DemoClients()
	}
	s.clients = make(map[string]*client, len(clients))
	for _, c := range clients {
		if err := checkClient(c); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if _, dup := s.clients[c.ID]; dup {
			return nil, fmt.Errorf("%w: client %q defined twice", ErrInvalidConfig, c.ID)
		}
		auds := slices.Clone(c.Audiences)
		if len(auds) == 0 {
			auds = slices.Clone(s.audiences)
		}
		for _, a := range auds {
			if !slices.Contains(s.audiences, a) {
				return nil, fmt.Errorf("%w: client %q: audience %q is not one of the allowed audiences %q",
					ErrInvalidConfig, c.ID, a, s.audiences)
			}
		}
		s.clients[c.ID] = &client{
			id:         c.ID,
			secretHash: sha256.Sum256([]byte(c.Secret)),
			scopes:     dedupe(c.Scopes),
			audiences:  auds,
			tokenTTL:   c.TokenTTL.Truncate(time.Second),
		}
	}
	v, err := newDPoPVerifier(s.now)
	if err != nil {
		return nil, fmt.Errorf("idp: dpop verifier: %w", err)
	}
	s.dpop = v
	disc, err := json.Marshal(s.discoveryDocument())
	if err != nil {
		return nil, fmt.Errorf("idp: marshal discovery: %w", err)
	}
	s.discovery = disc

	now := s.now()
	k, err := newSigningKey(s.keyBits, now, now)
	if err != nil {
		return nil, err
	}
	s.keys = []*signingKey{k}
	return s, nil
}

// dedupe returns the distinct values of in, in first-seen order.
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func checkIssuer(iss string) error {
	u, err := url.Parse(iss)
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("issuer %q must be an absolute http(s) URL without user info, query or fragment", iss)
	}
	return nil
}

// Issuer returns the configured issuer (the iss claim).
func (s *Server) Issuer() string { return s.issuer }

// endpoint builds an absolute URL for a route under the issuer.
func (s *Server) endpoint(path string) string {
	return strings.TrimSuffix(s.issuer, "/") + path
}

// tokenEndpoint is the token endpoint's URL as the issuer publishes it for a
// request that came over TLS or not: under Config.MTLSBaseURL for one over
// TLS when that is set, else under the issuer.
func (s *Server) tokenEndpoint(overTLS bool) string {
	if overTLS && s.mtlsBase != "" {
		return strings.TrimSuffix(s.mtlsBase, "/") + TokenPath
	}
	return s.endpoint(TokenPath)
}

// Handler returns the public routes: the token endpoint, the JWKS and the
// discovery document. Anything else is a JSON 404. It has no admin routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(TokenPath, s.serveToken)
	mux.HandleFunc(JWKSPath, s.serveJWKS)
	mux.HandleFunc(DiscoveryPath, s.serveDiscovery)
	mux.HandleFunc("/", serveNotFound)
	return mux
}

// AdminHandler returns the admin routes: POST /rotate (answers the new
// key's [KeyInfo]) and GET /keys (answers the published keys' [KeyInfo]s).
// Serve it on a separate listener that only operators can reach; it has no
// authentication of its own.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(RotatePath, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeMethodNotAllowed(w, http.MethodPost)
			return
		}
		info, err := s.Rotate(r.Context())
		if err != nil {
			s.log.LogAttrs(r.Context(), slog.LevelError, "rotate failed", slog.Any("error", err))
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: "server_error", Description: "key rotation failed"})
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc(KeysPath, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeMethodNotAllowed(w, "GET, HEAD")
			return
		}
		writeJSON(w, http.StatusOK, s.Keys())
	})
	mux.HandleFunc("/", serveNotFound)
	return mux
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeMethodNotAllowed(w, "GET, HEAD")
		return
	}
	b, err := s.jwksJSON(r.Context())
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "jwks failed", slog.Any("error", err))
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "server_error"})
		return
	}
	// The set changes on rotation; let caches revalidate rather than pin it.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// discovery is the subset of RFC 8414 / OpenID Connect Discovery metadata
// that applies to an issuer with only a client credentials token endpoint,
// with the sender-constraint metadata of RFC 9449 §5.1 and RFC 8705 §3.3, §5.
type discovery struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	TokenEndpoint                    string   `json:"token_endpoint"`
	GrantTypesSupported              []string `json:"grant_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                  []string `json:"scopes_supported"`
	DPoPSigningAlgValuesSupported    []string `json:"dpop_signing_alg_values_supported"`
	// Advertised only when the issuer has a TLS listener (Config.MTLSBaseURL).
	TLSClientCertificateBoundTokens bool         `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	MTLSEndpointAliases             *mtlsAliases `json:"mtls_endpoint_aliases,omitempty"`
}

// mtlsAliases are the endpoints a client using mutual TLS calls instead
// (RFC 8705 §5): the token endpoint of the TLS listener.
type mtlsAliases struct {
	TokenEndpoint string `json:"token_endpoint"`
}

func (s *Server) discoveryDocument() discovery {
	var scopes []string
	for _, c := range s.clients {
		scopes = append(scopes, c.scopes...)
	}
	slices.Sort(scopes)
	var aliases *mtlsAliases
	if alias := s.tokenEndpoint(true); alias != s.endpoint(TokenPath) {
		aliases = &mtlsAliases{TokenEndpoint: alias}
	}
	return discovery{
		Issuer:                           s.issuer,
		JWKSURI:                          s.endpoint(JWKSPath),
		TokenEndpoint:                    s.endpoint(TokenPath),
		GrantTypesSupported:              []string{"client_credentials"},
		IDTokenSigningAlgValuesSupported: []string{"RS256"},
		TokenEndpointAuthMethods:         []string{"client_secret_basic", "client_secret_post"},
		ScopesSupported:                  append([]string{}, slices.Compact(scopes)...),
		DPoPSigningAlgValuesSupported:    s.dpop.Algorithms(),
		TLSClientCertificateBoundTokens:  s.mtlsBase != "",
		MTLSEndpointAliases:              aliases,
	}
}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeMethodNotAllowed(w, "GET, HEAD")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.discovery)
}

// DefaultClaims returns the claims the token endpoint puts in a token for
// clientID and audience with the given scopes, issued at Config.Now and
// valid for the client's Client.TokenTTL when clientID is a registered
// client that sets one, else for Config.TokenTTL: iss, sub and client_id
// (both clientID), aud (a single string), iat, nbf, exp (NumericDate
// seconds), jti (random) and scope (space-separated; omitted when there are
// no scopes). Nothing is checked: tests may change the result and pass it to
// [Server.MintForTest].
func (s *Server) DefaultClaims(clientID, audience string, scopes ...string) map[string]any {
	now := s.now().Unix()
	ttl := s.tokenTTL
	if c, ok := s.clients[clientID]; ok && c.tokenTTL > 0 {
		ttl = c.tokenTTL
	}
	claims := map[string]any{
		"iss":       s.issuer,
		"sub":       clientID,
		"aud":       audience,
		"iat":       now,
		"nbf":       now,
		"exp":       now + int64(ttl/time.Second),
		"jti":       rand.Text(),
		"client_id": clientID,
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	return claims
}

// MintForTest signs claims exactly as given, adding and checking nothing,
// with the key that signs at Config.Now, and returns the compact JWT (header
// alg RS256, typ JWT, kid). It exists for tests that need tokens the token
// endpoint would never issue (expired, not yet valid, without scope, for a
// foreign audience) but that carry a valid signature from the real issuer
// key; start from [Server.DefaultClaims]. Never expose it over a network.
//
// The signing key stays in the JWKS until the token's exp (a number or
// *jwt.NumericDate) has passed plus Config.RetireMargin; a token without a
// readable exp counts as expiring after Config.TokenTTL.
func (s *Server) MintForTest(claims map[string]any) (string, error) {
	return s.sign(context.Background(), claims)
}

// sign signs claims with the current key and records the token's expiry on
// that key so rotation keeps it listed long enough.
func (s *Server) sign(ctx context.Context, claims map[string]any) (string, error) {
	s.mu.Lock()
	now := s.now()
	k, events := s.advance(now)
	exp, ok := expiryOf(claims)
	if !ok {
		exp = now.Add(s.tokenTTL)
	}
	if exp.After(k.lastExpiry) {
		k.lastExpiry = exp
	}
	s.mu.Unlock()
	s.logEvents(ctx, events)

	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(claims))
	tok.Header["kid"] = k.kid
	signed, err := tok.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("idp: sign: %w", err)
	}
	return signed, nil
}

// expiryOf reads the exp claim as golang-jwt would.
func expiryOf(claims map[string]any) (time.Time, bool) {
	switch v := claims["exp"].(type) {
	case int64:
		return time.Unix(v, 0), true
	case int:
		return time.Unix(int64(v), 0), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1<<62 {
			return time.Time{}, false
		}
		return time.Unix(int64(math.Ceil(v)), 0), true
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return time.Time{}, false
		}
		return expiryOf(map[string]any{"exp": f})
	case *jwt.NumericDate:
		if v == nil {
			return time.Time{}, false
		}
		return v.Time, true
	case jwt.NumericDate:
		return v.Time, true
	}
	return time.Time{}, false
}

// errorBody is the RFC 6749 §5.2 error response, also used for the
// non-OAuth errors of the other routes.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own fixed types are marshalled
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeMethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "invalid_request", Description: "method not allowed"})
}

func serveNotFound(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found"})
}
