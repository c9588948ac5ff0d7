package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/MicahParks/jwkset"
)

// MinRSABits is the smallest RSA modulus accepted for a signing key. Smaller
// keys are factorable by a determined attacker and are skipped.
const MinRSABits = 2048

// ParseResult is a parsed key set: the usable keys, and a short reason for
// each key that was skipped.
type ParseResult struct {
	Keys    []jwkset.JWK
	Skipped []string
}

// Parse decodes a JWK Set document and keeps the keys that can verify a token
// signed with one of algs: RSA keys of at least [MinRSABits] for RS* and PS*,
// EC keys on the matching curve for ES*, Ed25519 keys for EdDSA. A key whose
// "use" is present and not "sig", whose "alg" is not in algs, or whose kid
// repeats an earlier key's is skipped (keys without a kid are all kept:
// a token without a kid is tried against each). Private key material is
// ignored.
//
// Parse returns an error wrapping [ErrParse] when the document is not a JWK Set
// or holds more than maxKeys keys, and one wrapping [ErrNoUsableKeys] when no
// key is usable. A maxKeys of zero or less means no limit.
func Parse(doc []byte, algs []string, maxKeys int) (ParseResult, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return ParseResult{}, fmt.Errorf("%w: %w", ErrParse, err)
	}
	if set.Keys == nil {
		return ParseResult{}, fmt.Errorf(`%w: no "keys" array`, ErrParse)
	}
	if maxKeys > 0 && len(set.Keys) > maxKeys {
		return ParseResult{}, fmt.Errorf("%w: %d keys, more than the limit of %d", ErrParse, len(set.Keys), maxKeys)
	}
	var res ParseResult
	seen := make(map[string]bool, len(set.Keys))
	for i, raw := range set.Keys {
		jwk, err := parseKey(raw, algs)
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		kid := jwk.Marshal().KID
		if kid != "" && seen[kid] {
			res.Skipped = append(res.Skipped, fmt.Sprintf("key %d: duplicate kid", i))
			continue
		}
		seen[kid] = true
		res.Keys = append(res.Keys, jwk)
	}
	if len(res.Keys) == 0 {
		return res, fmt.Errorf("%w (%d skipped)", ErrNoUsableKeys, len(res.Skipped))
	}
	return res, nil
}

func parseKey(raw json.RawMessage, algs []string) (jwkset.JWK, error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return jwkset.JWK{}, errors.New("not a JSON object of JWK members")
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return jwkset.JWK{}, fmt.Errorf("use %q is not sig", truncate(string(m.USE)))
	}
	if m.ALG != "" && !slices.Contains(algs, string(m.ALG)) {
		return jwkset.JWK{}, fmt.Errorf("alg %q is not allowed", truncate(string(m.ALG)))
	}
	// Private members are dropped before parsing: a JWKS endpoint that leaks a
	// private key must not make us hold it.
	m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH, m.K = "", "", "", "", "", "", nil, ""
	// x5u is never fetched: jwkset only fetches it when GetX5U is set, and it
	// is not. x5c chains are not needed to verify a signature.
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("invalid %s key", truncate(string(m.KTY)))
	}
	if !usable(jwk.Key(), m.ALG, algs) {
		return jwkset.JWK{}, fmt.Errorf("%s key fits no allowed algorithm %v", truncate(string(m.KTY)), algs)
	}
	return jwk, nil
}

// usable reports whether key can verify a signature with one of algs (or, when
// the JWK names an alg, with that one).
func usable(key any, alg jwkset.ALG, algs []string) bool {
	if alg != "" {
		algs = []string{string(alg)}
	}
	for _, a := range algs {
		if fits(key, a) {
			return true
		}
	}
	return false
}

func fits(key any, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return k.N.BitLen() >= MinRSABits && rsaVerifiable(k)
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// rsaVerifiable reports whether crypto/rsa accepts k for verification (the
// checks of its checkPublicKey): an odd modulus and an odd exponent from 3 to
// 2^31-1. A key that fails them can never verify a signature, so a set of
// only such keys must not replace a working one.
func rsaVerifiable(k *rsa.PublicKey) bool {
	return k.N.Bit(0) == 1 && k.E >= 3 && k.E%2 == 1 && k.E <= 1<<31-1
}

// truncate bounds a string taken from a remote document before it reaches an
// error message or a log line.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
