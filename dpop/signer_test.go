package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
	"time"
)

// TestSigner: a Signer's proofs pass the Verifier for every key kind it
// takes, name its key's thumbprint, carry ath and nonce as asked, and a
// proof for another method or URI fails.
func TestSigner(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{{"ecdsa", ec, "ES256"}, {"ed25519", ed, "EdDSA"}, {"rsa", rk, "RS256"}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSigner(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			s.Now = func() time.Time { return testNow }
			if s.Algorithm() != tc.alg {
				t.Errorf("Algorithm = %s, want %s", s.Algorithm(), tc.alg)
			}
			nonces := NewNonces(make([]byte, 32), time.Minute)
			v := newVerifier(t, nonces)
			nonce := nonces.Issue(testNow)
			proof, err := s.Proof("POST", "https://API.example.com:443/messages?x=1", accessToken, nonce)
			if err != nil {
				t.Fatal(err)
			}
			p, err := v.Verify(proof, req)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.JKT != s.JKT() {
				t.Errorf("proof JKT %s, signer JKT %s", p.JKT, s.JKT())
			}
			other, _ := s.Proof("GET", "https://api.example.com/messages", accessToken, nonce)
			if _, err := v.Verify(other, req); !errors.Is(err, ErrInvalid) {
				t.Errorf("a GET proof for a POST: got %v, want %v", err, ErrInvalid)
			}
			noAth, _ := s.Proof("POST", "https://api.example.com/messages", "", nonce)
			if _, err := v.Verify(noAth, req); !errors.Is(err, ErrInvalid) {
				t.Errorf("a proof without ath: got %v, want %v", err, ErrInvalid)
			}
			noNonce, _ := s.Proof("POST", "https://api.example.com/messages", accessToken, "")
			if _, err := v.Verify(noNonce, req); !errors.Is(err, ErrUseNonce) {
				t.Errorf("a proof without the nonce: got %v, want %v", err, ErrUseNonce)
			}
		})
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, k := range []crypto.Signer{small, p384} {
		if _, err := NewSigner(k); err == nil {
			t.Errorf("NewSigner(%T) accepted a key it cannot sign proofs with", k)
		}
	}
}
