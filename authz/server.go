package authz

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks"
)

// Server makes authorization decisions. It implements Envoy's ext_authz v3
// gRPC service ([Server.Check]) and an HTTP forward-auth handler
// ([Server.ServeHTTP]). It is safe for concurrent use and holds no
// per-request state.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	providers       map[string]*provider // by issuer
	parser          *jwt.Parser
	algs            []string // every provider's algorithms
	rules           []rule
	claimHeaders    []claimHeader     // sorted by name
	allClaimHeaders []string          // their names, sorted: what an anonymous request removes
	canonicalNames  map[string]string // claim header name -> its net/http canonical form
	skew            time.Duration
	cache           *tokenCache // nil when disabled; may be shared with the Server this one replaced
	cacheCount      cacheCounters
	realm           string
	maxToken        int
	source          string // forward-auth source of the original request
	unpinnedWarn    everyMinute
	log             *slog.Logger
	obs             Observer
	now             func() time.Time
}

var _ authv3.AuthorizationServer = (*Server)(nil)

type provider struct {
	name      string
	issuer    string
	algs      []string
	audiences []string // sorted
	keys      KeySource
	validator *jwt.Validator
}

type claimHeader struct {
	name  string
	claim string
}

// New validates cfg and returns a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	if len(cfg.Providers) == 0 {
		return nil, errors.New("authz: no provider configured")
	}
	s := &Server{
		providers: make(map[string]*provider, len(cfg.Providers)),
		realm:     cfg.Realm,
		maxToken:  cfg.MaxTokenBytes,
		log:       cfg.Logger,
		obs:       cfg.Observer,
		now:       cfg.Now,
	}
	if s.realm == "" {
		s.realm = "extauthz"
	}
	if strings.ContainsAny(s.realm, "\"\\\r\n") {
		return nil, fmt.Errorf("authz: realm %q may not contain quotes, backslashes or line breaks", s.realm)
	}
	if s.maxToken <= 0 {
		s.maxToken = 8 << 10
	}
	switch s.source = cfg.ForwardAuthSource; s.source {
	case "":
		s.source = SourceAuto
	case SourceAuto, SourceOriginal, SourceForwarded, SourceRequest:
	default:
		return nil, fmt.Errorf("authz: forward-auth source %q is not %s, %s, %s or %s", s.source, SourceAuto, SourceOriginal, SourceForwarded, SourceRequest)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	skew := cfg.ClockSkew
	if skew == 0 {
		skew = 60 * time.Second
	} else if skew < 0 {
		skew = 0
	}
	var union []string
	for i, p := range cfg.Providers {
		if p.Issuer == "" {
			return nil, fmt.Errorf("authz: provider %d (%s): no issuer", i, p.Name)
		}
		if len(p.Audiences) == 0 || slices.Contains(p.Audiences, "") {
			return nil, fmt.Errorf("authz: provider %s: an audience is required, so that tokens minted for other APIs of the same issuer are refused", p.Issuer)
		}
		if p.Keys == nil {
			return nil, fmt.Errorf("authz: provider %s: no key source", p.Issuer)
		}
		if _, dup := s.providers[p.Issuer]; dup {
			return nil, fmt.Errorf("authz: issuer %s is configured twice", p.Issuer)
		}
		algs := p.Algorithms
		if len(algs) == 0 {
			algs = []string{"RS256"}
		}
		for _, a := range algs {
			if !slices.Contains(knownAlgs, a) {
				return nil, fmt.Errorf("authz: provider %s: algorithm %q is not allowed (asymmetric algorithms only: %s)", p.Issuer, a, strings.Join(knownAlgs, ", "))
			}
			if !slices.Contains(union, a) {
				union = append(union, a)
			}
		}
		name := p.Name
		if name == "" {
			name = p.Issuer
		}
		s.providers[p.Issuer] = &provider{
			name:      name,
			issuer:    p.Issuer,
			algs:      slices.Clone(algs),
			audiences: slices.Sorted(slices.Values(p.Audiences)),
			keys:      p.Keys,
			validator: jwt.NewValidator(
				jwt.WithIssuer(p.Issuer),
				jwt.WithAudience(p.Audiences...),
				jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(),
				jwt.WithLeeway(skew),
				jwt.WithTimeFunc(s.now),
			),
		}
	}
	// Claims are validated per provider after the signature; the parser
	// checks the algorithm (never none or HMAC) and the signature only.
	s.algs = union
	s.parser = jwt.NewParser(jwt.WithValidMethods(union), jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())

	rules, err := compileRules(cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	s.rules = rules

	headers := cfg.ClaimHeaders
	if len(headers) == 0 {
		headers = DefaultClaimHeaders
	}
	for h, c := range headers {
		name := strings.ToLower(h)
		if !validHeaderName(name) || strings.HasPrefix(name, ":") || slices.Contains(forbiddenHeaders, name) {
			return nil, fmt.Errorf("authz: %q cannot be a claim header", h)
		}
		if c == "" {
			return nil, fmt.Errorf("authz: claim header %q names no claim", h)
		}
		for _, o := range s.claimHeaders {
			if o.name == name || strings.ReplaceAll(o.name, "_", "-") == strings.ReplaceAll(name, "_", "-") {
				return nil, fmt.Errorf("authz: claim headers %q and %q collide", o.name, name)
			}
		}
		s.claimHeaders = append(s.claimHeaders, claimHeader{name: name, claim: c})
	}
	slices.SortFunc(s.claimHeaders, func(a, b claimHeader) int { return strings.Compare(a.name, b.name) })
	s.canonicalNames = make(map[string]string, len(s.claimHeaders))
	for _, h := range s.claimHeaders {
		s.allClaimHeaders = append(s.allClaimHeaders, h.name)
		s.canonicalNames[h.name] = http.CanonicalHeaderKey(h.name)
	}
	s.skew = skew
	if cfg.TokenCacheSize >= 0 {
		size := cfg.TokenCacheSize
		if size == 0 {
			size = DefaultTokenCacheSize
		}
		if p := cfg.Previous; p != nil && p.cache != nil && p.cache.size == size && s.sameVerification(p) {
			s.cache = p.cache
		} else {
			s.cache = newTokenCache(size, s.now)
		}
	}
	return s, nil
}

// sameVerification reports whether every cached result of p would be the
// same under s: the same providers (issuer, name for metrics and logs,
// audiences, algorithms and the very same key source, whose key-set versions
// the entries recorded), claim headers (entries hold them rendered) and
// clock skew (entries hold the validity window).
func (s *Server) sameVerification(p *Server) bool {
	if len(s.providers) != len(p.providers) || s.skew != p.skew || !slices.Equal(s.claimHeaders, p.claimHeaders) {
		return false
	}
	for iss, a := range s.providers {
		b, ok := p.providers[iss]
		if !ok || a.name != b.name || !slices.Equal(a.algs, b.algs) || !slices.Equal(a.audiences, b.audiences) || !sameKeySource(a.keys, b.keys) {
			return false
		}
	}
	return true
}

// sameKeySource compares key sources by identity: only pointers (such as
// *jwks.Cache) can be the same one; a key source of any other kind is never
// the same (comparing values could panic, or call two equal values one).
func sameKeySource(a, b KeySource) bool {
	ta := reflect.TypeOf(a)
	return ta != nil && ta == reflect.TypeOf(b) && ta.Kind() == reflect.Pointer && a == b
}

// CacheStats returns this Server's verified-token cache counters (zero when
// the cache is disabled) and the entries its cache holds, which a taken-over
// cache shares with the Server it came from (see [Server.SharesTokenCache]).
func (s *Server) CacheStats() CacheStats { return s.cache.stats(&s.cacheCount) }

// SharesTokenCache reports whether s and o use one verified-token cache:
// o replaced s (or s replaced o) with [Config.Previous] and took it over.
func (s *Server) SharesTokenCache(o *Server) bool {
	return s != nil && o != nil && s.cache != nil && s.cache == o.cache
}

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
	// On deny: the RFC 6750 challenge ("" for none) and the JSON body.
	WWWAuthenticate string
	Body            string
}

// Allowed reports whether the decision lets the request through.
func (d Decision) Allowed() bool { return d.Reason.Allow() }

// Status is the HTTP status for the decision.
func (d Decision) Status() int { return d.Reason.Status() }

// Decide makes the decision for one request. It never panics on any input,
// and it allows only when the path is public or a configured provider's key
// verified the token and every claim rule held.
func (s *Server) Decide(ctx context.Context, r Request) Decision {
	start := time.Now()
	if r.Path == "" {
		// No request target at all (Envoy always sends one): judging it as
		// "/" would apply the root rule alone, a default more permissive
		// than the request's real path.
		d := s.denyWith(InvalidRequest, msgNoPath, nil)
		s.record(ctx, r, d, verified{}, time.Since(start))
		return d
	}
	pol := policyFor(s.rules, r.Path)
	if pol.tooLong {
		d := s.deny(PathTooLong, nil)
		s.record(ctx, r, d, verified{}, time.Since(start))
		return d
	}
	v := s.verifyRequest(ctx, r)

	var d Decision
	switch {
	case v.reason == Allowed && !hasScopes(v.scopes, pol.scopes):
		d = s.deny(InsufficientScope, pol.scopes)
	case v.reason == Allowed:
		d = Decision{Reason: Allowed}
		if pol.public {
			d.Reason = Public
		}
		d.Headers, d.Remove = s.claimHeadersFor(v, r.HeaderNames)
	case pol.public:
		// Public: an absent or bad token is ignored, and the request goes on
		// anonymously, with every claim header removed.
		d = Decision{Reason: Public}
		d.Headers, d.Remove = s.claimHeadersFor(verified{}, r.HeaderNames)
	default:
		d = s.deny(v.reason, pol.scopes)
	}
	d.Provider = v.provider
	s.record(ctx, r, d, v, time.Since(start))
	return d
}

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

var (
	errUnknownIssuer = errors.New("iss names no configured provider")
	errAlgorithm     = errors.New("alg not allowed for this provider")
	errCrit          = errors.New("crit header names extensions this server does not understand")
)

func (s *Server) verify(ctx context.Context, raw string) verified {
	if s.cache == nil {
		v, _, _, _ := s.verifyToken(ctx, raw)
		return v
	}
	key := sha256.Sum256([]byte(raw))
	if v, ok := s.cache.get(ctx, &s.cacheCount, key, s.now()); ok {
		return v
	}
	v, keys, version, verifier := s.verifyToken(ctx, raw)
	s.cache.put(key, v, keys, version, verifier)
	return v
}

// verifyToken verifies the token's signature and claims. It also returns, for
// the cache, the key source that was asked for the key, the version of its
// key set before it was asked (keys is nil when the source cannot be
// cached), and what it answered.
func (s *Server) verifyToken(ctx context.Context, raw string) (v verified, keys versionedKeys, version uint64, verifier any) {
	if err := checkSegments(raw); err != nil {
		v.reason, v.err = Malformed, err
		return v, keys, version, verifier
	}
	claims := jwt.MapClaims{}
	var prov *provider
	t, err := s.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header["kid"].(string); ok {
			v.kid = kid
		}
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515 §4.1.11: a recipient that does not understand a
			// critical extension must reject the token.
			return nil, errCrit
		}
		iss, _ := claims["iss"].(string)
		p := s.providers[iss]
		if p == nil {
			return nil, errUnknownIssuer
		}
		if !slices.Contains(p.algs, t.Method.Alg()) {
			return nil, errAlgorithm
		}
		prov = p
		v.provider = p.name
		if vk, ok := p.keys.(versionedKeys); ok {
			// Read before the lookup: a set replaced meanwhile makes the
			// entry re-check its kid, never the reverse.
			keys, version = vk, vk.Version()
		}
		k, err := p.keys.Key(ctx, t)
		verifier = k
		return k, err
	})
	if err == nil {
		err = checkDates(claims)
	}
	if err == nil {
		err = prov.validator.Validate(claims)
	}
	if err != nil {
		v.reason, v.err = reasonOf(err), err
		if v.reason != Malformed && t != nil && !slices.Contains(s.algs, algOf(t)) {
			v.reason = BadAlgorithm
		}
		if v.reason == NotYetValid {
			v.validFrom = s.validFrom(claims) // when the cached denial must end
		}
		return v, keys, version, verifier
	}
	v.reason, v.claims = Allowed, claims
	// A copy: a substring would keep the whole token alive in the cache.
	v.payload = strings.Clone(payloadSegment(raw))
	v.headers, v.missing = s.renderClaimHeaders(v)
	v.scopes = grantedScopes(claims)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		v.validTill = exp.Add(s.skew)
	}
	v.validFrom = s.validFrom(claims)
	v.claims, v.payload = nil, "" // rendered above; not needed any more
	return v, keys, version, verifier
}

// validFrom is the first instant the token's nbf and iat allow, skew
// included; zero when neither is set.
func (s *Server) validFrom(claims jwt.MapClaims) time.Time {
	var from time.Time
	for _, get := range []func() (*jwt.NumericDate, error){claims.GetNotBefore, claims.GetIssuedAt} {
		if t, err := get(); err == nil && t != nil && t.Add(-s.skew).After(from) {
			from = t.Add(-s.skew)
		}
	}
	return from
}

// maxDate is 9999-12-31T23:59:59Z, the last second a NumericDate may name
// here: golang-jwt turns larger values into int64 seconds with a conversion
// whose overflow depends on the CPU (1e19 reads as far in the past on amd64).
const maxDate = 253402300799

var errDate = fmt.Errorf("%w: a time claim is outside 1970..9999", jwt.ErrTokenInvalidClaims)

// checkDates refuses exp, nbf and iat values that are not numbers from 0 to
// maxDate.
func checkDates(claims jwt.MapClaims) error {
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := claims[name]
		if !ok {
			continue
		}
		n, ok := v.(json.Number)
		if !ok {
			return errDate
		}
		f, err := n.Float64()
		if err != nil || f < 0 || f > maxDate || f != f {
			return errDate
		}
	}
	return nil
}

func algOf(t *jwt.Token) string {
	alg, _ := t.Header["alg"].(string)
	return alg
}

func payloadSegment(raw string) string {
	i := strings.IndexByte(raw, '.')
	j := strings.LastIndexByte(raw, '.')
	if i < 0 || j <= i {
		return ""
	}
	return raw[i+1 : j]
}

// reasonOf classifies a verification error. It is the only place that does.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, jwks.ErrNotReady):
		return KeysUnavailable
	case errors.Is(err, jwks.ErrKeyNotFound):
		return UnknownKID
	case errors.Is(err, errUnknownIssuer):
		return UnknownIssuer
	case errors.Is(err, errAlgorithm):
		return BadAlgorithm
	case errors.Is(err, errCrit), errors.Is(err, jwt.ErrTokenMalformed):
		return Malformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return BadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return Expired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return NotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return WrongAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return UnknownIssuer
	case errors.Is(err, jwt.ErrTokenInvalidClaims), errors.Is(err, jwt.ErrTokenRequiredClaimMissing),
		errors.Is(err, jwt.ErrInvalidType):
		// ErrInvalidType: exp, nbf, iat or aud of the wrong type. The
		// validator returns it unwrapped, as claims are validated apart
		// from parsing.
		return InvalidClaims
	}
	return BadSignature
}

// grantedScopes returns the scopes a token grants: the "scope" claim
// (space-separated, RFC 8693) and the "scp" claim (an array, or a
// space-separated string).
func grantedScopes(claims jwt.MapClaims) []string {
	var granted []string
	for _, name := range []string{"scope", "scp"} {
		switch v := claims[name].(type) {
		case string:
			// RFC 6749 §3.3: scope tokens are separated by spaces (%x20)
			// only; strings.Fields would also split on Unicode spaces.
			for _, t := range strings.Split(v, " ") {
				if t != "" {
					granted = append(granted, t)
				}
			}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					granted = append(granted, s)
				}
			}
		}
	}
	return granted
}

// hasScopes reports whether every required scope is granted.
func hasScopes(granted, required []string) bool {
	for _, r := range required {
		if !slices.Contains(granted, r) {
			return false
		}
	}
	return true
}

// renderClaimHeaders renders the configured claim headers from a verified
// token: the ones with a value, sorted by name, and the names of the others.
func (s *Server) renderClaimHeaders(v verified) (set []Header, missing []string) {
	for _, h := range s.claimHeaders {
		if val, ok := v.claimValue(h.claim); ok {
			set = append(set, Header{Name: h.name, Value: val})
		} else {
			missing = append(missing, h.name)
		}
	}
	return set, missing
}

// claimHeadersFor computes the headers to set and remove upstream. Every
// configured claim header is in exactly one of the two lists; look-alike
// request headers (x_jwt_sub for x-jwt-sub, x-user for x_user) are removed.
// Header names are case-insensitive, so a spelling that differs from a
// configured name only in case is that header, handled by the first list,
// and is never removed (that would remove the value just set). v is a
// verified token, or the zero value for an anonymous request.
func (s *Server) claimHeadersFor(v verified, requestHeaders []string) (set []Header, remove []string) {
	set, remove = v.headers, v.missing
	if v.reason != Allowed {
		set, remove = nil, s.allClaimHeaders
	}
	cloned := false
	for _, name := range requestHeaders {
		n := strings.ToLower(name)
		canon := strings.ReplaceAll(n, "_", "-")
		for _, h := range s.claimHeaders {
			if n != h.name && strings.ReplaceAll(h.name, "_", "-") == canon && !slices.Contains(remove, n) {
				if !cloned {
					// set and remove are shared with the cache entry.
					remove, cloned = slices.Clone(remove), true
				}
				remove = append(remove, n)
			}
		}
	}
	if cloned {
		slices.Sort(remove)
	}
	return set, remove
}

// claimValue renders a claim as a header value. ok is false when the token
// is absent, the claim is missing or null, or its value cannot be a header
// value (control characters).
func (v verified) claimValue(path string) (string, bool) {
	if v.claims == nil {
		return "", false
	}
	if path == PayloadClaim {
		return v.payload, v.payload != ""
	}
	val, ok := lookup(v.claims, path)
	if !ok || val == nil {
		return "", false
	}
	var s string
	switch x := val.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = strconv.FormatBool(x)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			switch e := e.(type) {
			case string:
				if strings.ContainsRune(e, ',') || e != strings.Trim(e, " \t") {
					// Joined with ",", it would read as several values
					// (["admin,users"] as ["admin", "users"]).
					return "", false
				}
				parts = append(parts, e)
			case json.Number:
				parts = append(parts, e.String())
			case bool:
				parts = append(parts, strconv.FormatBool(e))
			default:
				b, err := json.Marshal(x)
				if err != nil {
					return "", false
				}
				return headerSafe(string(b))
			}
		}
		s = strings.Join(parts, ",")
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	return headerSafe(s)
}

func headerSafe(s string) (string, bool) {
	if s != strings.Trim(s, " \t") {
		// Proxies and backends strip surrounding white space (RFC 9110
		// §5.5): " admin " would arrive as "admin".
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

// lookup finds a claim: an exact name wins, otherwise dots descend.
func lookup(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(path, ".")
	for found {
		if v, ok := m[head].(map[string]any); ok {
			if x, ok := lookup(v, rest); ok {
				return x, true
			}
		}
		// A key may itself contain dots ("https://example.com/x.y"): try a
		// longer head.
		var more string
		more, rest, found = strings.Cut(rest, ".")
		head = head + "." + more
	}
	return nil, false
}

// deny renders a denial for r with the reason's message.
func (s *Server) deny(r Reason, scopes []string) Decision {
	return s.denyWith(r, outcomeOf(r).message, scopes)
}

// denyWith renders a denial for r with message, one of the closed set of
// messages in reason.go (it goes into a JSON body and a quoted challenge
// parameter unescaped).
func (s *Server) denyWith(r Reason, message string, scopes []string) Decision {
	o := outcomeOf(r)
	d := Decision{Reason: r}
	body, _ := json.Marshal(map[string]string{"error": message})
	d.Body = string(body)
	switch {
	case o.status == 401 && o.bearer == "":
		d.WWWAuthenticate = fmt.Sprintf(`Bearer realm="%s"`, s.realm)
	case o.bearer == "insufficient_scope":
		d.WWWAuthenticate = fmt.Sprintf(`Bearer realm="%s", error="insufficient_scope", error_description="%s", scope="%s"`,
			s.realm, message, strings.Join(scopes, " "))
	case o.bearer != "":
		d.WWWAuthenticate = fmt.Sprintf(`Bearer realm="%s", error="%s", error_description="%s"`, s.realm, o.bearer, message)
	}
	return d
}

// record logs and observes a decision. Tokens never reach the log: only the
// reason, the provider, the kid (bounded) and the path (bounded).
func (s *Server) record(ctx context.Context, r Request, d Decision, v verified, elapsed time.Duration) {
	if s.obs != nil {
		s.obs.ObserveCheck(ctx, d.Provider, d.Reason, elapsed)
	}
	level := slog.LevelInfo
	msg := "check denied"
	if d.Allowed() {
		level, msg = slog.LevelDebug, "check allowed"
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("reason", string(d.Reason)),
		slog.Int("status", d.Status()),
		slog.String("method", bound(r.Method)),
		slog.String("path", bound(pathOnly(r.Path))),
		slog.Duration("duration", elapsed),
	}
	if d.Provider != "" {
		attrs = append(attrs, slog.String("provider", d.Provider))
	}
	if v.kid != "" {
		attrs = append(attrs, slog.String("kid", bound(v.kid)))
	}
	if v.err != nil && !d.Allowed() {
		attrs = append(attrs, slog.String("error", bound(v.err.Error())))
	}
	if d.Reason == Public && v.reason != Allowed && v.reason != MissingToken {
		attrs = append(attrs, slog.String("token_ignored", string(v.reason)))
	}
	s.log.LogAttrs(context.WithoutCancel(ctx), level, msg, attrs...)
}

// pathOnly drops the query and fragment, which may hold tokens
// (access_token=..., RFC 6750 §2.3) or other secrets.
func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}

func bound(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
