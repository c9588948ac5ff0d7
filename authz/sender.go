package authz

// The bind stage: sender-constrained tokens. A verified token that names a
// key (cnf.jkt, RFC 9449 DPoP) or a client certificate (cnf["x5t#S256"],
// RFC 8705) is accepted only from the holder of that key or certificate.
// The token's verification may come from the cache; the proof is checked on
// every request (it is single-use by design).

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/extauthz/extauthz/certbind"
	"github.com/extauthz/extauthz/dpop"
)

// sender is a provider's sender constraint, compiled.
type sender struct {
	constraint string
	verifier   *dpop.Verifier // nil when off
	nonces     *dpop.Nonces   // nil unless nonces are required
	nonceKey   []byte
	proofs     dpop.Config // the verifier's configuration, but the replay cache
	algs       string      // the accepted proof algorithms, for the challenge
	base       string      // dpop_public_base_url as scheme://host, "" for the request's
	window     time.Duration
	certFrom   string
	certHeader string // lower case
}

// DefaultDPoPMaxAge and DefaultDPoPMaxAhead bound a proof's iat.
const (
	DefaultDPoPMaxAge   = 60 * time.Second
	DefaultDPoPMaxAhead = 5 * time.Second
	// dpopNonceStep is how long a nonce is issued for; it is accepted for
	// one to two steps.
	dpopNonceStep = time.Minute
)

// CheckSender reports what New refuses in a provider's sender constraint
// settings.
func CheckSender(p Provider) error {
	_, err := compileSender(p, nil)
	return err
}

// compileSender checks p's sender settings. The verifier is not made here
// (the replay cache is the Server's): see (*Server).newVerifier.
func compileSender(p Provider, prev *sender) (sender, error) {
	sc := sender{constraint: p.SenderConstraint, certFrom: p.ClientCertFrom, certHeader: strings.ToLower(p.ClientCertHeader)}
	switch sc.constraint {
	case "":
		sc.constraint = SenderOptional
	case SenderOptional, SenderRequired, SenderOff:
	default:
		return sc, fmt.Errorf("sender_constraint %q is not %s, %s or %s", sc.constraint, SenderOptional, SenderRequired, SenderOff)
	}
	switch sc.certFrom {
	case "":
		sc.certFrom = CertFromPeer
	case CertFromPeer, CertFromXFCC:
	default:
		return sc, fmt.Errorf("client_cert_from %q is not %s or %s", sc.certFrom, CertFromPeer, CertFromXFCC)
	}
	if sc.certHeader != "" && (!validHeaderName(sc.certHeader) || strings.HasPrefix(sc.certHeader, ":")) {
		return sc, fmt.Errorf("client_cert_header %q is not a header name", p.ClientCertHeader)
	}
	d := p.DPoP
	if d.MaxAge < 0 || d.MaxAhead < 0 {
		return sc, errors.New("dpop_max_age and dpop_max_ahead may not be negative")
	}
	maxAge, maxAhead := cmp.Or(d.MaxAge, DefaultDPoPMaxAge), cmp.Or(d.MaxAhead, DefaultDPoPMaxAhead)
	sc.window = maxAge + maxAhead
	if d.PublicBaseURL != "" {
		base, err := checkBaseURL(d.PublicBaseURL)
		if err != nil {
			return sc, err
		}
		sc.base = base
	}
	if d.Nonce {
		switch key := d.NonceKey; {
		case len(key) > 0 && len(key) < 32:
			return sc, errors.New("the DPoP nonce key must be at least 32 bytes")
		case len(key) > 0:
			sc.nonceKey = key
		case prev != nil && prev.nonceKey != nil:
			sc.nonceKey = prev.nonceKey // a reload keeps the nonces it issued valid
		default:
			sc.nonceKey = make([]byte, 32)
			if _, err := rand.Read(sc.nonceKey); err != nil {
				return sc, err
			}
		}
		sc.nonces = dpop.NewNonces(sc.nonceKey, dpopNonceStep)
	}
	sc.proofs = dpop.Config{Algorithms: d.Algorithms, MaxAge: maxAge, MaxAhead: maxAhead, Nonces: sc.nonces}
	// The algorithms are checked by a throwaway verifier: the one place
	// that knows which are asymmetric.
	check := sc.proofs
	check.Replay = dpop.NewReplayCache(sc.window, 1)
	v, err := dpop.NewVerifier(check)
	if err != nil {
		return sc, err
	}
	sc.algs = strings.Join(v.Algorithms(), " ")
	return sc, nil
}

// checkBaseURL returns dpop_public_base_url as scheme://host[:port].
func checkBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("dpop_public_base_url %q is not scheme://host (http or https, no path, query or credentials)", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// binding is what the bind stage found.
type binding struct {
	reason Reason // "" when the token is bound to the request (or need not be)
	msg    string // the denial's message, "" for the reason's own
	err    error  // for the log
	p      *provider
	nonce  string // a fresh DPoP-Nonce to send, "" for none
}

// bind checks that the verified token v is used by its holder: a DPoP proof
// by the key cnf.jkt names, the client certificate cnf["x5t#S256"] names, a
// bound token when the provider requires one.
func (s *Server) bind(r Request, tok found, v *verified) (b binding) {
	p := s.providers[v.issuer]
	if p == nil {
		return binding{reason: Internal, err: errors.New("no provider for a verified token")}
	}
	b.p = p
	sc := &p.sender
	fail := func(reason Reason, msg string, err error) binding {
		b.reason, b.msg, b.err = reason, msg, err
		return b
	}
	if sc.constraint == SenderOff {
		if tok.dpop {
			return fail(DPoPBindingMismatch, msgNotDPoPBound, errors.New("DPoP scheme, provider's sender_constraint off"))
		}
		return b
	}
	if v.cnfErr {
		return fail(InvalidClaims, msgCnf, errors.New("cnf is not an object of strings"))
	}
	if sc.nonces != nil && tok.dpop {
		b.nonce = sc.nonces.Issue(s.now())
	}
	switch {
	case v.jkt != "":
		if !tok.dpop {
			return fail(DPoPBindingMismatch, msgBoundAsBearer, errors.New("a DPoP-bound token without the DPoP scheme"))
		}
		proof, reason, msg, err := s.proof(r, tok.token, sc)
		if reason != "" {
			return fail(reason, msg, err)
		}
		if proof.JKT != v.jkt {
			return fail(DPoPBindingMismatch, "", errors.New("cnf.jkt is not the thumbprint of the proof's key"))
		}
	case tok.dpop:
		return fail(DPoPBindingMismatch, msgNotDPoPBound, errors.New("the DPoP scheme with a token without cnf.jkt"))
	}
	if v.x5t != "" {
		got, err := s.clientCert(r, sc)
		switch {
		case err != nil:
			msg := ""
			if errors.Is(err, certbind.ErrNoCertificate) {
				msg = msgNoClientCert
			}
			return fail(CertBindingMismatch, msg, err)
		case got != v.x5t:
			return fail(CertBindingMismatch, "", errors.New(`cnf["x5t#S256"] is not the client certificate's thumbprint`))
		}
	}
	if sc.constraint == SenderRequired && v.jkt == "" && v.x5t == "" {
		return fail(TokenNotBound, "", errors.New("a bearer token; the provider's sender_constraint is required"))
	}
	return b
}

// proof verifies the request's one DPoP proof for token.
func (s *Server) proof(r Request, token string, sc *sender) (dpop.Proof, Reason, string, error) {
	if len(r.DPoP) != 1 || strings.ContainsRune(r.DPoP[0], ',') {
		// A proof never holds a comma: Envoy joins repeated headers with one.
		err := fmt.Errorf("%d DPoP headers", len(r.DPoP))
		if len(r.DPoP) == 1 {
			err = errors.New("a DPoP header holding several proofs (repeated headers the proxy joined)")
		}
		return dpop.Proof{}, DPoPInvalid, msgOneProof, err
	}
	uri, err := htu(r, sc.base)
	if err != nil {
		return dpop.Proof{}, DPoPInvalid, msgProofURI, err
	}
	proof, err := sc.verifier.Verify(r.DPoP[0], dpop.Request{Method: r.Method, URI: uri, AccessToken: token})
	switch {
	case err == nil:
		return proof, "", "", nil
	case errors.Is(err, dpop.ErrReplayed):
		return proof, DPoPReplayed, "", err
	case errors.Is(err, dpop.ErrUseNonce):
		return proof, UseDPoPNonce, "", err
	}
	return proof, DPoPInvalid, "", err
}

// htu is the URI a proof for r must name: scheme and host from the
// provider's public base URL, else from the request as the proxy reported
// it; the path as received (the proof's htu and this are compared
// normalised, without query).
func htu(r Request, base string) (string, error) {
	if base == "" {
		if r.Scheme == "" || r.Host == "" {
			return "", errors.New("the request's scheme or host is unknown (set dpop_public_base_url)")
		}
		base = strings.ToLower(r.Scheme) + "://" + r.Host
	}
	path := pathOnly(r.Path)
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("the request target %q is not a path", bound(path))
	}
	return base + path, nil
}

// clientCert returns the thumbprint of the client certificate of r, from
// where the provider says it comes.
func (s *Server) clientCert(r Request, sc *sender) (string, error) {
	switch {
	case sc.certHeader != "":
		return certbind.FromPEM(r.Headers[sc.certHeader])
	case sc.certFrom == CertFromXFCC:
		return certbind.FromXFCC(r.Headers["x-forwarded-client-cert"])
	}
	return certbind.FromPEM(r.Certificate)
}

// bindDenial renders a denial of the bind stage: the DPoP challenge for the
// proof's denials (RFC 9449 §7.1: algs, the error), the Bearer one for a
// certificate's, both for a bearer token where a bound one is required;
// and the fresh nonce a use_dpop_nonce answer carries.
func (s *Server) bindDenial(b binding) Decision {
	msg := b.msg
	if msg == "" {
		msg = b.reason.Message()
	}
	d := s.denyWith(b.reason, msg, nil)
	if o := outcomeOf(b.reason); o.dpop != "" {
		challenge := fmt.Sprintf(`DPoP algs="%s", error="%s", error_description="%s"`, b.p.sender.algs, o.dpop, msg)
		if d.WWWAuthenticate != "" {
			challenge += ", " + d.WWWAuthenticate
		}
		d.WWWAuthenticate = challenge
	}
	if b.nonce != "" {
		d.ResponseHeaders = []Header{{Name: "dpop-nonce", Value: b.nonce}}
	}
	return d
}

// newReplayCache returns the replay cache of a Server whose providers'
// longest proof window is window: prev's when it is the same, so that a
// reload does not forget the proofs already seen.
func newReplayCache(window time.Duration, size int, prev *Server) *dpop.ReplayCache {
	if prev != nil && prev.replay != nil && prev.replayWindow == window && prev.replaySize == size {
		return prev.replay
	}
	return dpop.NewReplayCache(window, size)
}

// dpopScheme turns the Bearer challenge of a denial of a DPoP request whose
// token was bound to it (a scope or policy denial) into the DPoP scheme's,
// with the provider's algorithms (RFC 9449 §7.1).
func (s *Server) dpopScheme(d Decision, p *provider) Decision {
	bearer := fmt.Sprintf(`Bearer realm="%s"`, s.realm)
	if p == nil || !strings.HasPrefix(d.WWWAuthenticate, bearer) {
		return d
	}
	d.WWWAuthenticate = fmt.Sprintf(`DPoP algs="%s"`, p.sender.algs) + d.WWWAuthenticate[len(bearer):]
	return d
}
