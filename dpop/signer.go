package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signer makes proofs: the client's side of DPoP, for the demo client, the
// demo issuer's tests and the load harness. It holds the client's private
// key; the proofs carry its public JWK.
type Signer struct {
	key    crypto.Signer
	method jwt.SigningMethod
	jwk    map[string]any
	jkt    string
	// Now is the clock of iat; time.Now when nil.
	Now func() time.Time
}

// NewSigner returns a Signer for key: ECDSA P-256 signs ES256, Ed25519
// EdDSA, RSA (2048 bits or more) RS256.
func NewSigner(key crypto.Signer) (*Signer, error) {
	s := &Signer{key: key}
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("dpop: only P-256 ECDSA keys sign proofs here")
		}
		ecdh, err := k.PublicKey.ECDH()
		if err != nil {
			return nil, err
		}
		raw := ecdh.Bytes() // 0x04 || X || Y, 32 bytes each
		s.method = jwt.SigningMethodES256
		s.jwk = map[string]any{"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PrivateKey:
		s.method = jwt.SigningMethodEdDSA
		s.jwk = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(k.Public().(ed25519.PublicKey))}
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("dpop: RSA keys sign proofs from 2048 bits")
		}
		s.method = jwt.SigningMethodRS256
		s.jwk = map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	default:
		return nil, errors.New("dpop: a proof key is ECDSA P-256, Ed25519 or RSA")
	}
	jkt, err := Thumbprint(s.jwk)
	if err != nil {
		return nil, err
	}
	s.jkt = jkt
	return s, nil
}

// GenerateSigner returns a Signer with a fresh ECDSA P-256 key.
func GenerateSigner() (*Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewSigner(k)
}

// JKT is the RFC 7638 thumbprint of the Signer's public key: what a token
// bound to it carries in cnf.jkt.
func (s *Signer) JKT() string { return s.jkt }

// Algorithm is the proofs' alg.
func (s *Signer) Algorithm() string { return s.method.Alg() }

// Proof returns a fresh proof (a new jti, iat now) for a request with method
// and uri (its query and fragment are dropped, as htu has none). With an
// accessToken the proof carries its hash (ath), as a request to a resource
// server must; a token request has none. nonce is the server's last
// DPoP-Nonce, "" for none.
func (s *Signer) Proof(method, uri, accessToken, nonce string) (string, error) {
	htu, err := NormalizeURI(uri)
	if err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	claims := jwt.MapClaims{
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"htm": method,
		"htu": htu,
		"iat": now().Unix(),
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	t := jwt.NewWithClaims(s.method, claims)
	t.Header["typ"] = "dpop+jwt"
	t.Header["jwk"] = s.jwk
	return t.SignedString(s.key)
}
