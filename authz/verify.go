package authz

// Verifying a token: signature, then claims, then the cache of results.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/jwks"
	"github.com/extauthz/extauthz/policy"
)

// verified is the outcome of token verification.
type verified struct {
	reason   Reason // Allowed when the token verified
	provider string
	issuer   string // the provider's issuer (names may repeat; issuers do not)
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
	// norm is the claim set normalised for rules and conditions (package
	// policy), kept only when some rule reads claims; metadata is the
	// allowed CheckResponse's dynamic_metadata.
	norm     map[string]any
	metadata *structpb.Struct
	// The token's confirmation (cnf, RFC 7800): the thumbprint of the key
	// a DPoP proof must be signed with (jkt), of the client certificate
	// (x5t#S256); cnfErr: cnf is there but not an object of such strings.
	// Read whatever the sender constraint, which the bind stage applies.
	jkt, x5t string
	cnfErr   bool
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
		v.provider, v.issuer = p.name, p.issuer
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
	norm := map[string]any(claims) // sub and iss are strings either way
	if s.rules.needsClaims || len(s.metadataClaims) > 0 {
		norm, _ = policy.Normalize(norm).(map[string]any)
	}
	v.metadata = s.metadataFor(prov, norm, v.scopes)
	v.jkt, v.x5t, v.cnfErr = confirmation(claims["cnf"])
	if !prov.forwardToken {
		v.missing = withName(v.missing, "authorization")
	}
	if s.rules.needsClaims {
		v.norm = norm
	}
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

// metadataFor renders the dynamic_metadata of an allowed CheckResponse for a
// token: sub, iss, provider, scope (space-joined) and the configured
// metadata claims, each under its path (a claim without a value is left out).
func (s *Server) metadataFor(p *provider, claims map[string]any, scopes []string) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 4+len(s.metadataClaims))
	for _, name := range [...]string{"sub", "iss"} {
		if v, ok := claims[name].(string); ok {
			fields[name] = structpb.NewStringValue(v)
		}
	}
	fields["provider"] = structpb.NewStringValue(p.name)
	fields["scope"] = structpb.NewStringValue(strings.Join(scopes, " "))
	for _, path := range s.metadataClaims {
		if v, ok := policy.Lookup(claims, path); ok && v != nil {
			if pv, err := structpb.NewValue(v); err == nil {
				fields[path] = pv
			}
		}
	}
	return &structpb.Struct{Fields: fields}
}

// withName returns names (sorted) with name added, in a new slice.
func withName(names []string, name string) []string {
	if slices.Contains(names, name) {
		return names
	}
	out := append(slices.Clip(names), name)
	slices.Sort(out)
	return out
}

// confirmation reads a cnf claim (RFC 7800): the DPoP key's thumbprint
// (jkt, RFC 9449 §6.1) and the client certificate's (x5t#S256, RFC 8705
// §3.1). bad: cnf is present but not an object, or one of the two is not a
// non-empty string (a binding that cannot be read must not read as none).
func confirmation(c any) (jkt, x5t string, bad bool) {
	if c == nil {
		return "", "", false
	}
	m, ok := c.(map[string]any)
	if !ok {
		return "", "", true
	}
	get := func(name string) string {
		v, present := m[name]
		if !present {
			return ""
		}
		s, ok := v.(string)
		if !ok || s == "" {
			bad = true
		}
		return s
	}
	jkt, x5t = get("jkt"), get("x5t#S256")
	return jkt, x5t, bad
}
