package dpop

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
)

// The errors of Verify. Each wraps one of them.
var (
	// ErrInvalid: the proof fails a check of RFC 9449 §4.3.
	ErrInvalid = errors.New("invalid DPoP proof")
	// ErrReplayed: the proof's jti was seen within the window.
	ErrReplayed = errors.New("DPoP proof replayed")
	// ErrUseNonce: the server asks for a nonce and the proof has none, or a
	// stale one: answer use_dpop_nonce with a fresh DPoP-Nonce.
	ErrUseNonce = errors.New("DPoP proof needs a fresh server nonce")
)

// DefaultAlgorithms are the proof algorithms accepted by default: asymmetric
// only (never none or HMAC).
var DefaultAlgorithms = []string{"ES256", "RS256", "PS256", "EdDSA"}

// MaxProofBytes bounds a proof.
const MaxProofBytes = 8 << 10

// Config configures a Verifier.
type Config struct {
	// Algorithms are the accepted proof algorithms; DefaultAlgorithms when
	// empty. Only asymmetric ones are accepted.
	Algorithms []string
	// MaxAge and MaxAhead bound iat on the server's clock: from MaxAge ago
	// (default 60s) to MaxAhead ahead (default 5s). The access token's
	// clock skew is not added.
	MaxAge, MaxAhead time.Duration
	// Replay remembers proofs within MaxAge+MaxAhead; required.
	Replay *ReplayCache
	// Nonces, when set, requires every proof to carry a current nonce.
	Nonces *Nonces
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Verifier checks proofs. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	for _, a := range cfg.Algorithms {
		switch a {
		case "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA":
		default:
			return nil, fmt.Errorf("dpop: algorithm %q is not an asymmetric signature algorithm", a)
		}
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 60 * time.Second
	}
	if cfg.MaxAhead <= 0 {
		cfg.MaxAhead = 5 * time.Second
	}
	if cfg.Replay == nil {
		return nil, errors.New("dpop: a replay cache is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := jwt.NewParser(jwt.WithValidMethods(cfg.Algorithms), jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())
	return &Verifier{cfg: cfg, parser: p}, nil
}

// Algorithms are the accepted algorithms, for the DPoP challenge's algs.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.cfg.Algorithms) }

// Request is what a proof must be bound to.
type Request struct {
	Method string // the request's method, exactly (htm)
	URI    string // the request's URI: scheme, host, path (htu); any query is ignored
	// AccessToken is the token the proof goes with (ath), "" when none.
	AccessToken string
}

// Proof is a verified proof.
type Proof struct {
	// JKT is the RFC 7638 thumbprint of the proof's key: an access token
	// bound to this key names it in cnf.jkt.
	JKT string
	JTI string
	IAT time.Time
}

// Verify checks one proof for r: RFC 9449 §4.3's checks, then the nonce,
// then the replay cache (last, so that an invalid proof never fills it).
func (v *Verifier) Verify(proof string, r Request) (Proof, error) {
	invalid := func(format string, args ...any) (Proof, error) {
		return Proof{}, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(proof) > MaxProofBytes {
		return invalid("larger than %d bytes", MaxProofBytes)
	}
	if err := oneObjectSegments(proof); err != nil {
		return invalid("%v", err)
	}
	claims := jwt.MapClaims{}
	var jkt string
	tok, err := v.parser.ParseWithClaims(proof, claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != "dpop+jwt" {
			return nil, errors.New(`typ is not "dpop+jwt"`)
		}
		raw, ok := t.Header["jwk"].(map[string]any)
		if !ok {
			return nil, errors.New("no jwk header")
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, ok := raw[private]; ok {
				return nil, errors.New("the jwk header holds private key material")
			}
		}
		b, err := json.Marshal(raw)
		if err != nil {
			return nil, err
		}
		key, err := jwkset.NewJWKFromRawJSON(b, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, errors.New("the jwk header is not a public key")
		}
		switch key.Key().(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, errors.New("the jwk header is not an asymmetric public key")
		}
		if jkt, err = Thumbprint(raw); err != nil {
			return nil, err
		}
		return key.Key(), nil
	})
	if err != nil || tok == nil || !tok.Valid {
		return invalid("%v", err)
	}
	if htm, _ := claims["htm"].(string); htm != r.Method {
		return invalid("htm %q is not the request's method %q", htm, r.Method)
	}
	htu, _ := claims["htu"].(string)
	got, err1 := NormalizeURI(htu)
	want, err2 := NormalizeURI(r.URI)
	if err1 != nil || err2 != nil || got != want {
		return invalid("htu %q is not the request's URI %q", htu, want)
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return invalid("iat is missing or not a number")
	}
	now := v.cfg.Now()
	if iat.Before(now.Add(-v.cfg.MaxAge)) || iat.After(now.Add(v.cfg.MaxAhead)) {
		return invalid("iat %s is outside [now-%s, now+%s]", iat.UTC().Format(time.RFC3339), v.cfg.MaxAge, v.cfg.MaxAhead)
	}
	jti, _ := claims["jti"].(string)
	if jti == "" || len(jti) > 256 {
		return invalid("jti is missing, not a string or longer than 256 bytes")
	}
	if r.AccessToken != "" {
		sum := sha256.Sum256([]byte(r.AccessToken))
		if ath, _ := claims["ath"].(string); ath != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return invalid("ath is not the access token's hash")
		}
	}
	if v.cfg.Nonces != nil {
		if nonce, _ := claims["nonce"].(string); !v.cfg.Nonces.Valid(nonce, now) {
			return Proof{}, ErrUseNonce
		}
	}
	replayed, full := v.cfg.Replay.seen(jkt, jti, now)
	switch {
	case replayed:
		return Proof{}, ErrReplayed
	case full:
		return invalid("the replay cache is full: the proof cannot be checked for reuse")
	}
	return Proof{JKT: jkt, JTI: jti, IAT: iat.Time}, nil
}

// oneObjectSegments refuses a proof whose header or payload is not exactly
// one JSON object with unique member names (a header with two jwk members
// would be read differently by different parsers).
func oneObjectSegments(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errors.New("not a compact JWS")
	}
	for _, seg := range parts[:2] {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil {
			return errors.New("a segment is not base64url")
		}
		v := jsontext.Value(b)
		if v.Kind() != '{' || !v.IsValid() {
			return errors.New("header or payload is not one JSON object with unique member names")
		}
	}
	return nil
}
