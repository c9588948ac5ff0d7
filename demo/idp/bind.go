package idp

// bind.go: sender-constrained tokens, the cnf claim of an issued token:
// DPoP (RFC 9449 §5) and mutual-TLS certificate binding (RFC 8705 §3).

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/extauthz/extauthz/dpop"
)

// DPoP proof acceptance at the token endpoint: a proof's iat may be up to
// dpopMaxAge old and dpopMaxAhead ahead of the issuer's clock (the dpop
// package's defaults), and its jti is remembered that long; at most
// dpopReplaySize proofs are remembered per window (about 30 bytes each), past
// which proofs are refused rather than left unchecked for reuse.
const (
	dpopMaxAge     = 60 * time.Second
	dpopMaxAhead   = 5 * time.Second
	dpopReplaySize = 1 << 16
)

// newDPoPVerifier returns the token endpoint's proof verifier, with its own
// replay cache, on the issuer's clock. It does no I/O and starts nothing.
func newDPoPVerifier(now func() time.Time) (*dpop.Verifier, error) {
	return dpop.NewVerifier(dpop.Config{
		MaxAge:   dpopMaxAge,
		MaxAhead: dpopMaxAhead,
		Replay:   dpop.NewReplayCache(dpopMaxAge+dpopMaxAhead, dpopReplaySize),
		Now:      now,
	})
}

// binding is what an issued token is bound to: the members of its cnf claim.
type binding struct {
	jkt     string // the DPoP proof key's RFC 7638 thumbprint (RFC 9449 §6.1)
	x5tS256 string // the TLS client certificate's SHA-256 thumbprint (RFC 8705 §3.1)
}

// cnf is the token's cnf claim, nil for an unbound (bearer) token.
func (b binding) cnf() map[string]any {
	cnf := map[string]any{}
	if b.jkt != "" {
		cnf["jkt"] = b.jkt
	}
	if b.x5tS256 != "" {
		cnf["x5t#S256"] = b.x5tS256
	}
	if len(cnf) == 0 {
		return nil
	}
	return cnf
}

// tokenType is the token_type of the response: DPoP for a token bound to a
// proof key (RFC 9449 §5), else Bearer, certificate-bound tokens included
// (RFC 8705 §3).
func (b binding) tokenType() string {
	if b.jkt != "" {
		return "DPoP"
	}
	return "Bearer"
}

// bind reads what the token requested by r is to be bound to: the key of its
// DPoP proof, if it sends one, and the TLS client certificate it presented, if
// any. The certificate needs no other check: the TLS handshake proved that
// the client holds its key, and the client authenticated with its secret.
//
// A request may carry at most one DPoP header, holding a proof for POST to
// the token endpoint as the issuer publishes it (never as the Host header
// names it) and without ath, since no access token goes with it. Anything
// else is invalid_dpop_proof (RFC 9449 §5). Descriptions are fixed: the
// proof's content is never echoed.
func (s *Server) bind(r *http.Request) (binding, *tokenError) {
	var b binding
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		b.x5tS256 = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	proofs := r.Header.Values("DPoP")
	switch {
	case len(proofs) == 0:
		return b, nil
	case len(proofs) > 1:
		return b, badProof("more than one DPoP header")
	case hasATH(proofs[0]):
		return b, badProof("a DPoP proof for the token endpoint has no ath: no access token goes with it")
	}
	htu := s.tokenEndpoint(r.TLS != nil)
	p, err := s.dpop.Verify(proofs[0], dpop.Request{Method: http.MethodPost, URI: htu})
	switch {
	case errors.Is(err, dpop.ErrReplayed):
		return b, badProof("the DPoP proof was already used; send a new proof with each request")
	case err != nil:
		return b, badProof("the DPoP proof is invalid: it must be a dpop+jwt signed with an asymmetric key in its jwk header, " +
			"with htm POST, htu " + htu + ", an iat within the last minute and a unique jti")
	}
	b.jkt = p.JKT
	return b, nil
}

func badProof(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: ErrCodeInvalidDPoPProof, desc: desc}
}

// hasATH reports whether the payload of proof, not yet verified, has an ath
// member. Anything it cannot read is left to the verifier to refuse.
func hasATH(proof string) bool {
	if len(proof) > dpop.MaxProofBytes {
		return false
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(payload, &members) != nil {
		return false
	}
	_, ok := members["ath"]
	return ok
}
