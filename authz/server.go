package authz

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/extauthz/extauthz/dpop"
	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/policy"
	"github.com/golang-jwt/jwt/v5"
)

// Server makes authorization decisions. It implements Envoy's ext_authz v3
// gRPC service ([Server.Check]) and an HTTP forward-auth handler
// ([Server.ServeHTTP]). It is safe for concurrent use and holds no
// per-request state.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	inputs    Config               // what cached verifications depend on: see cacheInputs
	providers map[string]*provider // by issuer
	parser    *jwt.Parser
	algs      []string // every provider's algorithms
	rules     *ruleSet
	// sources is the union of the providers' token locations, in order;
	// defaultSources: it is just Authorization: Bearer (the fast path).
	sources        []TokenSource
	defaultSources bool
	metadataClaims []string
	enforce        bool // false: every denial is a shadow allow
	denyDetail     bool
	// Rates of unknown_policy ERROR lines: per name, and one for the names
	// beyond maxUnknownPolicyNames.
	unknownPolicies    sync.Map // name -> *everyMinute
	unknownPolicyNames atomic.Int64
	unknownPolicy      everyMinute
	claimHeaders       []claimHeader     // sorted by name
	allClaimHeaders    []string          // their names, sorted: what an anonymous request removes
	anonRemove         []string          // the same and authorization (see New): what an anonymous request with a token removes
	canonicalNames     map[string]string // claim header name -> its net/http canonical form
	skew               time.Duration
	cache              *tokenCache // nil when disabled; may be shared with the Server this one replaced
	cacheCount         cacheCounters
	realm              string
	maxToken           int
	source             string // forward-auth source of the original request
	unpinnedWarn       everyMinute
	// The DPoP replay cache, shared by the providers (nil when every
	// provider's sender constraint is off), its window and size.
	replay       *dpop.ReplayCache
	replayWindow time.Duration
	replaySize   int
	// bindHeaders: some provider reads a client certificate from a header.
	bindHeaders bool
	// requiredChallenge is the DPoP challenge a request without a token
	// gets beside the Bearer one, when some provider requires bound tokens.
	requiredChallenge string
	log               *slog.Logger
	obs               Observer
	now               func() time.Time
}

var _ authv3.AuthorizationServer = (*Server)(nil)

type provider struct {
	name      string
	issuer    string
	algs      []string
	audiences []string // sorted
	keys      KeySource
	validator *jwt.Validator
	// forwardToken keeps Authorization on allow.
	forwardToken bool
	// sources are the provider's token locations, as indexes into
	// Server.sources.
	sources []int
	// sender is its sender constraint (DPoP, certificate binding).
	sender sender
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
		inputs:    cacheInputs(cfg),
		providers: make(map[string]*provider, len(cfg.Providers)),
		realm:     cfg.Realm,
		maxToken:  cfg.MaxTokenBytes,
		log:       cfg.Logger,
		obs:       cfg.Observer,
		now:       cfg.Now,
	}
	if s.realm == "" {
		s.realm = DefaultRealm
	}
	if err := CheckRealm(s.realm); err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	if s.maxToken <= 0 {
		s.maxToken = DefaultMaxTokenBytes
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
		skew = DefaultClockSkew
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
			if err := jwks.CheckAlgorithm(a); err != nil {
				return nil, fmt.Errorf("authz: provider %s: %w", p.Issuer, err)
			}
			if !slices.Contains(union, a) {
				union = append(union, a)
			}
		}
		name := p.Name
		if name == "" {
			name = p.Issuer
		}
		srcs := p.TokenSources
		if len(srcs) == 0 {
			srcs = DefaultTokenSources()
		}
		var srcIdx []int
		for _, src := range srcs {
			src, err := checkTokenSource(src)
			if err != nil {
				return nil, fmt.Errorf("authz: provider %s: %w", p.Issuer, err)
			}
			i := slices.Index(s.sources, src)
			if i < 0 {
				i = len(s.sources)
				s.sources = append(s.sources, src)
			}
			srcIdx = append(srcIdx, i)
		}
		var prevSender *sender
		if cfg.Previous != nil && cfg.Previous.providers[p.Issuer] != nil {
			prevSender = &cfg.Previous.providers[p.Issuer].sender
		}
		sc, err := compileSender(p, prevSender)
		if err != nil {
			return nil, fmt.Errorf("authz: provider %s: %w", p.Issuer, err)
		}
		s.providers[p.Issuer] = &provider{
			sender:       sc,
			name:         name,
			issuer:       p.Issuer,
			algs:         slices.Clone(algs),
			audiences:    slices.Sorted(slices.Values(p.Audiences)),
			keys:         p.Keys,
			forwardToken: p.ForwardToken,
			sources:      srcIdx,
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
	if err := s.newVerifiers(cfg); err != nil {
		return nil, err
	}
	// Claims are validated per provider after the signature; the parser
	// checks the algorithm (never none or HMAC) and the signature only.
	s.algs = union
	s.parser = jwt.NewParser(jwt.WithValidMethods(union), jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())

	env, err := policy.NewEnv()
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	rules, err := compileRules(cfg.Rules, cfg.Policies, env)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	s.rules = rules
	for _, c := range cfg.MetadataClaims {
		if c == "" || c == PayloadClaim {
			return nil, fmt.Errorf("authz: metadata claim %q names no claim", c)
		}
	}
	s.defaultSources = len(s.sources) == 1 && s.sources[0].isDefault()
	s.metadataClaims = slices.Clone(cfg.MetadataClaims)
	s.enforce, s.denyDetail = !cfg.Shadow, cfg.DenyDetail

	headers := cfg.ClaimHeaders
	if len(headers) == 0 {
		headers = DefaultClaimHeaders()
	}
	if s.claimHeaders, err = compileClaimHeaders(headers); err != nil {
		return nil, err
	}
	s.canonicalNames = make(map[string]string, len(s.claimHeaders))
	for _, h := range s.claimHeaders {
		s.allClaimHeaders = append(s.allClaimHeaders, h.name)
		s.canonicalNames[h.name] = http.CanonicalHeaderKey(h.name)
	}
	// An anonymous allow (a public path without a valid token) removes the
	// Authorization header too, unless every provider forwards tokens: an
	// unverified token may still be one another API accepts.
	s.anonRemove = s.allClaimHeaders
	for _, p := range s.providers {
		if !p.forwardToken {
			s.anonRemove = withName(s.allClaimHeaders, "authorization")
			break
		}
	}
	s.skew = skew
	// Rules may change without emptying the token cache, but entries keep
	// the claims only when some rule read them: a configuration whose rules
	// start reading claims needs fresh entries.
	if cfg.TokenCacheSize >= 0 {
		size := cfg.TokenCacheSize
		if size == 0 {
			size = DefaultTokenCacheSize
		}
		if p := cfg.Previous; p != nil && p.cache != nil && p.cache.size == size && takesOver(cfg, p) && (p.rules.needsClaims || !s.rules.needsClaims) {
			s.cache = p.cache
		} else {
			s.cache = newTokenCache(size, s.now)
		}
	}
	return s, nil
}

// newVerifiers gives every provider whose sender constraint is not off its
// DPoP proof verifier, over one replay cache as long as the longest window.
func (s *Server) newVerifiers(cfg Config) error {
	var algs []string
	for _, p := range s.providers {
		sc := &p.sender
		if sc.constraint == SenderOff {
			continue
		}
		s.replayWindow = max(s.replayWindow, sc.window)
		if sc.certHeader != "" || sc.certFrom == CertFromXFCC {
			s.bindHeaders = true
		}
		if sc.constraint == SenderRequired {
			for _, a := range strings.Fields(sc.algs) {
				if !slices.Contains(algs, a) {
					algs = append(algs, a)
				}
			}
		}
	}
	if s.replayWindow == 0 {
		return nil
	}
	if len(algs) > 0 {
		s.requiredChallenge = fmt.Sprintf(`DPoP algs="%s"`, strings.Join(algs, " "))
	}
	s.replaySize = cfg.DPoPReplayCacheSize
	if s.replaySize <= 0 {
		s.replaySize = DefaultDPoPReplayCacheSize
	}
	s.replay = newReplayCache(s.replayWindow, s.replaySize, cfg.Previous)
	for _, p := range s.providers {
		sc := &p.sender
		if sc.constraint == SenderOff {
			continue
		}
		c := sc.proofs
		c.Replay, c.Now = s.replay, s.now
		v, err := dpop.NewVerifier(c)
		if err != nil {
			return fmt.Errorf("authz: provider %s: %w", p.issuer, err)
		}
		sc.verifier = v
	}
	return nil
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

// CheckClaimHeaders reports what New refuses in claim headers: a name that
// is not a header name, a pseudo-header or one that would reframe or
// reroute the request, a header naming no claim, two names that collide.
func CheckClaimHeaders(headers map[string]string) error {
	_, err := compileClaimHeaders(headers)
	return err
}

// compileClaimHeaders checks the claim headers and returns them sorted by
// (lower-case) name.
func compileClaimHeaders(headers map[string]string) ([]claimHeader, error) {
	var out []claimHeader
	for h, c := range headers {
		name := strings.ToLower(h)
		if !validHeaderName(name) || strings.HasPrefix(name, ":") || slices.Contains(forbiddenHeaders, name) {
			return nil, fmt.Errorf("authz: %q cannot be a claim header", h)
		}
		if c == "" {
			return nil, fmt.Errorf("authz: claim header %q names no claim", h)
		}
		for _, o := range out {
			if o.name == name || strings.ReplaceAll(o.name, "_", "-") == strings.ReplaceAll(name, "_", "-") {
				return nil, fmt.Errorf("authz: claim headers %q and %q collide", o.name, name)
			}
		}
		out = append(out, claimHeader{name: name, claim: c})
	}
	slices.SortFunc(out, func(a, b claimHeader) int { return strings.Compare(a.name, b.name) })
	return out, nil
}
