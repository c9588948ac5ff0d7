package dpop

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
)

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a public JWK, base64url
// without padding: the hash of its required members only, in lexicographic
// order, with no white space. kty selects the members: RSA (e, kty, n), EC
// (crv, kty, x, y), OKP (crv, kty, x).
func Thumbprint(jwk map[string]any) (string, error) {
	str := func(name string) (string, error) {
		v, ok := jwk[name].(string)
		if !ok || v == "" {
			return "", errors.New("jwk: " + name + " is missing or not a string")
		}
		return v, nil
	}
	kty, err := str("kty")
	if err != nil {
		return "", err
	}
	var names []string
	switch kty {
	case "RSA":
		names = []string{"e", "kty", "n"}
	case "EC":
		names = []string{"crv", "kty", "x", "y"}
	case "OKP":
		names = []string{"crv", "kty", "x"}
	default:
		return "", errors.New("jwk: kty " + kty + " has no thumbprint here")
	}
	// The members are strings: JSON-encoding each one is RFC 7638's
	// canonical form (no escapes needed for base64url and these names).
	buf := []byte{'{'}
	for i, n := range names {
		v, err := str(n)
		if err != nil {
			return "", err
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		k, _ := json.Marshal(n)
		s, _ := json.Marshal(v)
		buf = append(append(append(buf, k...), ':'), s...)
	}
	buf = append(buf, '}')
	sum := sha256.Sum256(buf)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
