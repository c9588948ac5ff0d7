package integration_test

// Sender-constrained tokens end to end (README "Sender-constrained
// tokens"): tokens the demo issuer binds to a DPoP key (RFC 9449) or to a
// TLS client certificate (RFC 8705), checked by the real server behind the
// Envoy stand-in (over plain HTTP, and over TLS asking for a client
// certificate, with include_peer_certificate), called by the real demo
// client, and once through the HTTP forward-auth fronts.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/certbind"
	"github.com/extauthz/extauthz/dpop"
	"github.com/extauthz/extauthz/internal/selfsigned"
	"github.com/extauthz/extauthz/standin"
)

// The challenges of the servers' denials: the DPoP one with the servers'
// default proof algorithms, the Bearer one with the default realm.
const (
	dpopChallenge   = `DPoP algs="ES256 RS256 PS256 EdDSA"`
	bearerChallenge = `Bearer realm="extauthz"`
	// replayChallenge is the whole WWW-Authenticate of a replayed proof.
	replayChallenge = dpopChallenge + `, error="invalid_dpop_proof", error_description="DPoP proof replayed"`
)

// senderConfig is a server's config file: one provider, the sender tests'
// issuer with settings (provider lines), the rules and timings of every
// stack, and deny_detail: true, so that a denial names its reason in
// X-Extauthz-Reason.
func senderConfig(iss, settings string) string {
	return fmt.Sprintf(`providers:
  - name: demo
    issuer: %s
    audiences: [%s]
    jwks_url: %s/.well-known/jwks.json
%sdeny_detail: true
`, iss, audience, iss, settings) + serverRules + serverTimings
}

// senderStack is what the sender tests share: the demo issuer, published
// under its real loopback URL (so that discovery names endpoints a client
// can call, and proofs name the URL it posts to) with its TLS listener; the
// backend behind the tap; and three servers, each behind an Envoy stand-in
// over plain HTTP and one over TLS.
type senderStack struct {
	issuer   string // also the issuer's public listener
	tokenURL string // discovery's token_endpoint
	mtlsURL  string // discovery's mtls_endpoint_aliases token_endpoint
	// roots trusts the issuer's TLS listener and the TLS stand-ins; caFile
	// holds the same certificates, for demo-client --ca.
	roots  *x509.CertPool
	caFile string

	// optional's provider takes plain bearer tokens and enforces the
	// binding a token carries; strict's takes only bound tokens and wants a
	// server nonce in every DPoP proof; header's is optional's, reading the
	// client certificate from the header a forward-auth front sets (the
	// README's nginx: $ssl_client_escaped_cert in X-Client-Cert).
	optional, strict, header *senderServer
}

// senderServer is one server and its fronts. Its stack holds the shared
// issuer, backend and tap.
type senderServer struct {
	*stack
	envoy    *front // the Envoy stand-in over plain HTTP
	envoyTLS *front // the Envoy stand-in over TLS: tls.RequestClientCert, IncludePeerCertificate
}

// newSenderStack starts the issuer, the backend and the servers with
// their stand-ins. Everything is stopped in cleanup.
func newSenderStack(t *testing.T) *senderStack {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	dir := tempDir(t)
	backendDir := filepath.Join(dir, "backend")
	if err := os.MkdirAll(backendDir, 0o755); err != nil {
		t.Fatal(err)
	}
	backend := startProc(t, "demo-backend", backendDir, childEnv(), bins.backend,
		"--addr", "127.0.0.1:0", "--log-format", "json")
	ss := &senderStack{}
	idpCert := filepath.Join(dir, "idp", "tls.pem")
	idp := ss.startIssuer(ctx, t, filepath.Join(dir, "idp"), idpCert)

	backendAddr := backend.listenAddr(ctx, t, "")
	tp := newTap(t, "http://"+backendAddr)

	// The endpoints, as a client finds them.
	var disco struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
		MTLS          struct {
			TokenEndpoint string `json:"token_endpoint"`
		} `json:"mtls_endpoint_aliases"`
	}
	if err := getJSON(ctx, ss.issuer+"/.well-known/openid-configuration", &disco); err != nil {
		t.Fatal(err)
	}
	ss.tokenURL, ss.mtlsURL = disco.TokenEndpoint, disco.MTLS.TokenEndpoint
	if disco.Issuer != ss.issuer || !strings.HasPrefix(ss.tokenURL, ss.issuer+"/") || !strings.HasPrefix(ss.mtlsURL, "https://127.0.0.1:") {
		t.Fatalf("discovery names issuer %q, token endpoint %q, mTLS alias %q; want %s, under it, and the TLS listener",
			disco.Issuer, ss.tokenURL, ss.mtlsURL, ss.issuer)
	}

	// The TLS stand-ins' certificate, trusted with the issuer's.
	standinCert, err := selfsigned.KeyPair("envoy-tls", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	idpPEM, err := os.ReadFile(idpCert)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := append(idpPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: standinCert.Leaf.Raw})...)
	ss.caFile = writeFile(t, filepath.Join(dir, "ca.pem"), string(caPEM))
	ss.roots = x509.NewCertPool()
	if !ss.roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", idpCert)
	}
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{standinCert},
		MinVersion:   tls.VersionTLS12,
		// As the README's Envoy listener: ask, do not require, and take a
		// self-signed certificate; the binding is what is checked.
		ClientAuth: tls.RequestClientCert,
	}

	for _, srv := range []struct {
		name     string
		dst      **senderServer
		settings string // the provider's sender settings, YAML lines
	}{
		{"optional", &ss.optional, "    sender_constraint: optional\n"},
		{"strict", &ss.strict, "    sender_constraint: required\n    dpop_nonce: true\n"},
		{"header", &ss.header, "    sender_constraint: optional\n    client_cert_header: x-client-cert\n"},
	} {
		name := "extauthz-" + srv.name
		s := startAuthzNamed(ctx, t, name, filepath.Join(dir, name), senderConfig(ss.issuer, srv.settings))
		s.dir, s.idp, s.idpURL, s.backend, s.backendURL, s.tap = dir, idp, ss.issuer, backend, "http://"+backendAddr, tp
		*srv.dst = &senderServer{
			stack:    s,
			envoy:    s.startStandin(t, "envoy-"+srv.name, standin.Config{}),
			envoyTLS: s.startStandinTLS(t, "envoy-tls-"+srv.name, standin.Config{IncludePeerCertificate: true}, serverTLS),
		}
	}
	return ss
}

// startIssuer runs demo-idp published under its own loopback URL: --issuer
// names the port --addr listens on, so the port is chosen before it starts
// (and chosen again when something took it meanwhile). Its admin listener
// is off; its TLS listener takes any free port and writes its generated
// certificate to certOut.
func (ss *senderStack) startIssuer(ctx context.Context, t *testing.T, dir, certOut string) *proc {
	t.Helper()
	conf := writeFile(t, filepath.Join(dir, "idp.yaml"), idpConfig)
	for attempt := 1; ; attempt++ {
		addr := freePort(t)
		p := startProc(t, "demo-idp", dir, childEnv(), bins.idp,
			"--addr", addr, "--issuer", "http://"+addr, "--admin-addr", "",
			"--tls-addr", "127.0.0.1:0", "--tls-cert-out", certOut,
			"--config", conf, "--log-format", "json")
		if _, err := p.waitJSON(ctx, "demo issuer ready", nil); err != nil {
			if attempt < 3 && p.exited() && strings.Contains(p.out.tail(20), "address already in use") {
				continue
			}
			t.Fatal(err)
		}
		ss.issuer = "http://" + addr
		return p
	}
}

// requestToken runs the client credentials grant at endpoint through c as
// cmd/demo-client does (a form, client_secret_basic), with a DPoP proof by
// signer for POST to endpoint when signer is not nil.
func requestToken(ctx context.Context, c *http.Client, endpoint string, signer *dpop.Signer) (tokenResponse, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {audience}}
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("demo-client:demo-secret")))
	if signer != nil {
		proof, err := signer.Proof(http.MethodPost, endpoint, "", "")
		if err != nil {
			return tokenResponse{}, err
		}
		h.Set("DPoP", proof)
	}
	var tr tokenResponse
	status, raw, err := postWith(ctx, c, endpoint, h, form.Encode())
	if err != nil {
		return tr, err
	}
	if status != http.StatusOK || json.Unmarshal(raw, &tr) != nil || tr.AccessToken == "" {
		return tr, fmt.Errorf("POST %s: status %d: %s", endpoint, status, snippet(raw))
	}
	return tr, nil
}

// cnfOf returns a token's cnf claim, unverified.
func cnfOf(tok string) map[string]any {
	p, _ := jwtPart(tok, 1)
	cnf, _ := p["cnf"].(map[string]any)
	return cnf
}

// dpopToken gets a token bound to signer's key: token_type DPoP, cnf.jkt
// its thumbprint.
func (ss *senderStack) dpopToken(ctx context.Context, t *testing.T, signer *dpop.Signer) string {
	t.Helper()
	tr, err := requestToken(ctx, client, ss.tokenURL, signer)
	if err != nil {
		t.Fatal(err)
	}
	if cnf := cnfOf(tr.AccessToken); tr.TokenType != "DPoP" || cnf["jkt"] != signer.JKT() || len(cnf) != 1 {
		t.Fatalf("token with a DPoP proof: token_type %q, cnf %v; want DPoP and jkt %s", tr.TokenType, cnf, signer.JKT())
	}
	return tr.AccessToken
}

// bearerToken gets a plain bearer token: no proof, no certificate, no cnf.
func (ss *senderStack) bearerToken(ctx context.Context, t *testing.T) string {
	t.Helper()
	tr, err := requestToken(ctx, client, ss.tokenURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cnf := cnfOf(tr.AccessToken); tr.TokenType != "Bearer" || cnf != nil {
		t.Fatalf("token without a proof: token_type %q, cnf %v; want Bearer without cnf", tr.TokenType, cnf)
	}
	return tr.AccessToken
}

// certToken gets, over the issuer's TLS listener through c, a token bound
// to cert, the certificate c presents: token_type Bearer, cnf["x5t#S256"]
// its thumbprint.
func (ss *senderStack) certToken(ctx context.Context, t *testing.T, c *http.Client, cert tls.Certificate) string {
	t.Helper()
	tr, err := requestToken(ctx, c, ss.mtlsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := certbind.Thumbprint(cert.Leaf.Raw)
	if cnf := cnfOf(tr.AccessToken); tr.TokenType != "Bearer" || cnf["x5t#S256"] != want || len(cnf) != 1 {
		t.Fatalf("token over mutual TLS: token_type %q, cnf %v; want Bearer and x5t#S256 %s", tr.TokenType, cnf, want)
	}
	return tr.AccessToken
}

// tlsClient talks https to 127.0.0.1 trusting only roots, presenting cert
// when it is not nil; like client, through no proxy, following no redirect.
func tlsClient(t *testing.T, roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: client.Timeout, CheckRedirect: client.CheckRedirect}
}

// newSigner is a client's DPoP key.
func newSigner(t *testing.T) *dpop.Signer {
	t.Helper()
	s, err := dpop.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// prove returns a fresh proof by s for method and uri, with tok's hash
// (none for "") and nonce (none for "").
func prove(t *testing.T, s *dpop.Signer, method, uri, tok, nonce string) string {
	t.Helper()
	p, err := s.Proof(method, uri, tok, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dpopAuth presents tok with the DPoP scheme and the proofs, each its own
// DPoP header line.
func dpopAuth(tok string, proofs ...string) http.Header {
	h := http.Header{"Authorization": {"DPoP " + tok}}
	if len(proofs) > 0 {
		h["DPoP"] = proofs
	}
	return h
}

func bearerAuth(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// senderCall is one request of a sender test: GET path through a front.
type senderCall struct {
	name   string
	path   string      // "" is /protected
	header http.Header // Authorization, DPoP, ...; keys sent verbatim
	want   int
	// sub is the x-jwt-sub an allowed request reaches the backend with
	// ("" for none); it never arrives with an Authorization header.
	sub string
	// reason is the denial's X-Extauthz-Reason (the servers set
	// deny_detail), checked where the front passes it on.
	reason string
	// www are substrings of WWW-Authenticate.
	www []string
	// nonce: the answer carries a DPoP-Nonce header.
	nonce bool
	// knownIssue maps a front to a reported, not yet fixed, defect this
	// call shows there: its problems on that front skip the test with the
	// issue and the evidence instead of failing it (as step.knownIssue).
	knownIssue map[string]string
}

// dropsReason: the front keeps none of a denial's headers but
// WWW-Authenticate and those its config copies (nginx's auth_request), so
// X-Extauthz-Reason is not checked there.
var dropsReason = map[string]bool{"nginx": true}

// run sends the call through f with hc (nil: the plain client) and checks
// the answer and what reached the backend: an allowed request with only the
// verified subject and no Authorization header, a denied one not at all.
func (c senderCall) run(ctx context.Context, t *testing.T, hc *http.Client, tp *tap, f *front) reply {
	t.Helper()
	id := fmt.Sprintf("%s-sender-%d", f.name, reqSeq.Add(1))
	path := cmp.Or(c.path, "/protected")
	r, err := sendWith(ctx, cmp.Or(hc, client), http.MethodGet, f.url+path, merge(c.header, http.Header{idHeader: {id}}))
	if err != nil {
		t.Fatalf("%s: GET %s: %v", c.name, path, err)
	}
	var probs []string
	problem := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if r.status != c.want {
		problem("status %d, want %d; body %s", r.status, c.want, snippet(r.body))
	}
	www := strings.Join(r.header.Values("WWW-Authenticate"), ", ")
	for _, w := range c.www {
		if !strings.Contains(www, w) {
			problem("WWW-Authenticate = %q, want it to contain %q", www, w)
		}
	}
	if c.nonce && r.header.Get("DPoP-Nonce") == "" {
		problem("no DPoP-Nonce in the answer")
	}
	if got := r.header.Get("X-Extauthz-Reason"); c.reason != "" && !dropsReason[f.name] && got != c.reason {
		problem("X-Extauthz-Reason = %q, want %q", got, c.reason)
	}
	seen, reached := tp.seen(id)
	switch allowed := r.status/100 == 2; {
	case allowed && !reached:
		problem("allowed without reaching the backend")
	case !allowed && reached:
		problem("denied, yet it reached the backend")
	case reached && c.want/100 == 2:
		var want []string
		if c.sub != "" {
			want = []string{c.sub}
		}
		if got := seen.Values("X-Jwt-Sub"); !slices.Equal(got, want) {
			problem("the backend received x-jwt-sub %q, want %q", got, want)
		}
		if got := seen.Values("Authorization"); len(got) > 0 {
			problem("the backend received an Authorization header (%d)", len(got))
		}
	}
	issue, known := c.knownIssue[f.name]
	switch {
	case len(probs) == 0 && known:
		t.Logf("known issue no longer shows on %s; drop it from the call: %s", f.name, issue)
	case len(probs) > 0 && known:
		t.Skipf("KNOWN ISSUE on %s: %s\n%s: GET %s:\n%s", f.name, issue, c.name, path, strings.Join(probs, "\n"))
	case len(probs) > 0:
		t.Errorf("%s through %s: GET %s:\n%s", c.name, f.name, path, strings.Join(probs, "\n"))
	}
	return r
}

// TestSender runs sender-constrained tokens from the demo issuer through
// the Envoy stand-in to the real server: DPoP-bound tokens with fresh,
// replayed, missing and wrong proofs; server nonces; a provider that
// requires bound tokens; certificate-bound tokens over TLS with the right,
// another and no certificate; the real demo client; and DPoP through the
// HTTP forward-auth fronts.
func TestSender(t *testing.T) {
	t.Parallel()
	ss := newSenderStack(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// DPoP-bound tokens where bound tokens are optional: a fresh proof by
	// the token's key for this request allows, anything else denies.
	t.Run("DPoP", func(t *testing.T) {
		srv, f := ss.optional, ss.optional.envoy
		alice, mallory := newSigner(t), newSigner(t)
		tok := ss.dpopToken(ctx, t, alice)
		other := ss.dpopToken(ctx, t, alice) // another token of the same key
		plain := ss.bearerToken(ctx, t)
		uri := f.url + "/protected"
		fresh := func() string { return prove(t, alice, http.MethodGet, uri, tok, "") }

		proof := fresh()
		senderCall{name: "a fresh proof", header: dpopAuth(tok, proof), want: http.StatusOK, sub: "demo-client"}.run(ctx, t, nil, srv.tap, f)
		r := senderCall{name: "the same proof again", header: dpopAuth(tok, proof), want: http.StatusUnauthorized,
			reason: "dpop_replayed"}.run(ctx, t, nil, srv.tap, f)
		if got := r.header.Values("WWW-Authenticate"); !slices.Equal(got, []string{replayChallenge}) {
			t.Errorf("replayed proof: WWW-Authenticate %q, want only %q", got, replayChallenge)
		}
		if _, err := srv.authz.waitJSON(ctx, "check denied", func(m map[string]any) bool {
			return m["reason"] == "dpop_replayed" && m["path"] == "/protected"
		}); err != nil {
			t.Errorf("no log line for the replayed proof: %v", err)
		}

		invalidProof := []string{dpopChallenge + `, error="invalid_dpop_proof"`}
		invalidToken := []string{dpopChallenge + `, error="invalid_token"`}
		for _, c := range []senderCall{
			{name: "the DPoP-bound token as a bearer token", header: bearerAuth(tok),
				want: http.StatusUnauthorized, reason: "dpop_binding_mismatch", www: invalidToken},
			{name: "the DPoP-bound token as a bearer token, with a fresh proof", header: merge(bearerAuth(tok), http.Header{"DPoP": {fresh()}}),
				want: http.StatusUnauthorized, reason: "dpop_binding_mismatch", www: invalidToken},
			{name: "no proof", header: dpopAuth(tok),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "two fresh proofs", header: dpopAuth(tok, fresh(), fresh()),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "a proof by another key", header: dpopAuth(tok, prove(t, mallory, http.MethodGet, uri, tok, "")),
				want: http.StatusUnauthorized, reason: "dpop_binding_mismatch", www: invalidToken},
			{name: "a proof for another path", header: dpopAuth(tok, prove(t, alice, http.MethodGet, f.url+"/admin", tok, "")),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "a proof for another method", header: dpopAuth(tok, prove(t, alice, http.MethodPost, uri, tok, "")),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "a proof for https", header: dpopAuth(tok, prove(t, alice, http.MethodGet, "https"+strings.TrimPrefix(uri, "http"), tok, "")),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "a proof for another token (ath)", header: dpopAuth(tok, prove(t, alice, http.MethodGet, uri, other, "")),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "a proof without the token's hash", header: dpopAuth(tok, prove(t, alice, http.MethodGet, uri, "", "")),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "the token request's proof", header: dpopAuth(tok, prove(t, alice, http.MethodPost, ss.tokenURL, "", "")),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			{name: "a plain token with the DPoP scheme", header: dpopAuth(plain, prove(t, alice, http.MethodGet, uri, plain, "")),
				want: http.StatusUnauthorized, reason: "dpop_binding_mismatch", www: invalidToken},
			{name: "a plain bearer token (optional)", header: bearerAuth(plain), want: http.StatusOK, sub: "demo-client"},
			{name: "the other token with its own fresh proof", header: dpopAuth(other, prove(t, alice, http.MethodGet, uri, other, "")),
				want: http.StatusOK, sub: "demo-client"},
			{name: "after all that, a fresh proof", header: dpopAuth(tok, fresh()), want: http.StatusOK, sub: "demo-client"},
		} {
			c.run(ctx, t, nil, srv.tap, f)
		}
	})

	// Server nonces (RFC 9449 §8), through the stand-in both ways: the
	// denial's DPoP-Nonce, and the allow's next one (response_headers_to_add).
	t.Run("DPoPNonce", func(t *testing.T) {
		srv, f := ss.strict, ss.strict.envoy
		alice := newSigner(t)
		tok := ss.dpopToken(ctx, t, alice)
		uri := f.url + "/protected"
		useNonce := []string{dpopChallenge + `, error="use_dpop_nonce"`}
		nonce := ""
		for _, c := range []senderCall{
			{name: "a proof without a nonce", want: http.StatusUnauthorized, reason: "use_dpop_nonce", www: useNonce, nonce: true},
			{name: "retried with the denial's nonce", want: http.StatusOK, sub: "demo-client", nonce: true},
			{name: "the next request with the allow's nonce", want: http.StatusOK, sub: "demo-client", nonce: true},
		} {
			c.header = dpopAuth(tok, prove(t, alice, http.MethodGet, uri, tok, nonce))
			nonce = c.run(ctx, t, nil, srv.tap, f).header.Get("DPoP-Nonce")
		}
		senderCall{name: "a made-up nonce", header: dpopAuth(tok, prove(t, alice, http.MethodGet, uri, tok, "made-up")),
			want: http.StatusUnauthorized, reason: "use_dpop_nonce", www: useNonce, nonce: true}.run(ctx, t, nil, srv.tap, f)
	})

	// A provider that requires bound tokens: a plain bearer token gets
	// both challenges.
	t.Run("Required", func(t *testing.T) {
		srv, f := ss.strict, ss.strict.envoy
		plain := ss.bearerToken(ctx, t)
		for _, c := range []senderCall{
			{name: "a plain bearer token", header: bearerAuth(plain), want: http.StatusUnauthorized, reason: "token_not_bound",
				www: []string{dpopChallenge + `, error="invalid_token", error_description="Token must be sender-constrained"`,
					bearerChallenge + `, error="invalid_token"`}},
			{name: "no token", want: http.StatusUnauthorized, reason: "missing_token", www: []string{bearerChallenge, dpopChallenge}},
			{name: "/public without a token", path: "/public", want: http.StatusOK},
		} {
			c.run(ctx, t, nil, srv.tap, f)
		}
	})

	// Certificate-bound tokens: the client certificate the TLS stand-in saw
	// reaches the server in attributes.source.certificate.
	t.Run("Cert", func(t *testing.T) {
		certA, certB := clientCert(t, "client-a"), clientCert(t, "client-b")
		withA, withB, none := tlsClient(t, ss.roots, &certA), tlsClient(t, ss.roots, &certB), tlsClient(t, ss.roots, nil)
		tok := ss.certToken(ctx, t, withA, certA)
		plain := ss.bearerToken(ctx, t)
		sum := sha256.Sum256(certA.Leaf.Raw)
		xfcc := http.Header{"X-Forwarded-Client-Cert": {"Hash=" + hex.EncodeToString(sum[:])}}
		certInvalid := func(desc string) []string {
			return []string{bearerChallenge + `, error="invalid_token", error_description="` + desc + `"`}
		}
		for _, tc := range []struct {
			srv *senderServer
			f   *front
			hc  *http.Client
			senderCall
		}{
			{ss.optional, ss.optional.envoyTLS, withA, senderCall{name: "its certificate", header: bearerAuth(tok),
				want: http.StatusOK, sub: "demo-client"}},
			{ss.optional, ss.optional.envoyTLS, none, senderCall{name: "no certificate", header: bearerAuth(tok),
				want: http.StatusUnauthorized, reason: "cert_binding_mismatch", www: certInvalid("Client certificate is missing")}},
			{ss.optional, ss.optional.envoyTLS, withB, senderCall{name: "another certificate", header: bearerAuth(tok),
				want: http.StatusUnauthorized, reason: "cert_binding_mismatch", www: certInvalid("Client certificate does not match the token")}},
			{ss.optional, ss.optional.envoyTLS, none, senderCall{name: "no certificate, its hash in x-forwarded-client-cert",
				header: merge(bearerAuth(tok), xfcc), want: http.StatusUnauthorized, reason: "cert_binding_mismatch"}},
			{ss.optional, ss.optional.envoy, nil, senderCall{name: "plain HTTP", header: bearerAuth(tok),
				want: http.StatusUnauthorized, reason: "cert_binding_mismatch"}},
			{ss.optional, ss.optional.envoyTLS, withA, senderCall{name: "a plain bearer token with a certificate (optional)",
				header: bearerAuth(plain), want: http.StatusOK, sub: "demo-client"}},
			{ss.strict, ss.strict.envoyTLS, withA, senderCall{name: "its certificate (required)", header: bearerAuth(tok),
				want: http.StatusOK, sub: "demo-client"}},
			{ss.strict, ss.strict.envoyTLS, withB, senderCall{name: "another certificate (required)", header: bearerAuth(tok),
				want: http.StatusUnauthorized, reason: "cert_binding_mismatch"}},
			{ss.strict, ss.strict.envoyTLS, withA, senderCall{name: "a plain bearer token with a certificate (required)",
				header: bearerAuth(plain), want: http.StatusUnauthorized, reason: "token_not_bound"}},
		} {
			tc.run(ctx, t, tc.hc, tc.srv.tap, tc.f)
		}
	})

	// The real demo client (cmd/demo-client), as the README runs it.
	t.Run("DemoClient", func(t *testing.T) {
		optional := ss.optional.envoy.url + "/protected"
		strict := ss.strict.envoy.url + "/protected"
		out := demoClient(ctx, t, ss, 0, optional)
		wantOutput(t, out, "token_type: DPoP", `cnf: {"jkt":"`, "status: 200 OK", `"sub":"demo-client"`)

		out = demoClient(ctx, t, ss, 0, "--replay", optional)
		first, replay, ok := strings.Cut(out, "(replay: the same request with the same proof)")
		if !ok {
			t.Fatalf("--replay made no replay:\n%s", out)
		}
		wantOutput(t, first, "status: 200 OK")
		wantOutput(t, replay, "status: 401 Unauthorized", "WWW-Authenticate: "+replayChallenge)

		out = demoClient(ctx, t, ss, 0, strict)
		first, retry, ok := strings.Cut(out, "(DPoP token, new proof with the server's DPoP-Nonce)")
		if !ok {
			t.Fatalf("no nonce retry against the server that wants nonces:\n%s", out)
		}
		wantOutput(t, first, "status: 401 Unauthorized", `error="use_dpop_nonce"`, "DPoP-Nonce: ")
		wantOutput(t, retry, "status: 200 OK", "DPoP-Nonce: ")

		out = demoClient(ctx, t, ss, 1, "--dpop=false", strict)
		wantOutput(t, out, "token_type: Bearer", "status: 401 Unauthorized", "Token must be sender-constrained")

		// A certificate and a DPoP key: the token is bound to both, and
		// both are checked, over TLS.
		certPEM, keyPEM, err := selfsigned.Generate("demo-client", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		certFile := writeFile(t, filepath.Join(dir, "client.pem"), string(certPEM))
		keyFile := writeFile(t, filepath.Join(dir, "client-key.pem"), string(keyPEM))
		out = demoClient(ctx, t, ss, 0, "--cert", certFile, "--key", keyFile, "--ca", ss.caFile, ss.optional.envoyTLS.url+"/protected")
		wantOutput(t, out, "== token from "+ss.mtlsURL, `"x5t#S256":"`, `"jkt":"`, "status: 200 OK")
	})

	// The HTTP forward-auth fronts, where they run: DPoP, nonces and a
	// client's own certificate header.
	t.Run("ForwardAuth", func(t *testing.T) {
		for _, name := range []string{"nginx", "caddy"} {
			t.Run(name, func(t *testing.T) {
				forwardAuth(ctx, t, ss, name)
			})
		}
	})
}

// clientCert is a new self-signed client certificate.
func clientCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	c, err := selfsigned.KeyPair(name, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// demoClient runs the demo client against the sender stack's issuer with
// args, wants exit code want, and returns its standard output.
func demoClient(ctx context.Context, t *testing.T, ss *senderStack, want int, args ...string) string {
	t.Helper()
	args = append([]string{"--issuer", ss.issuer, "--timeout", client.Timeout.String()}, args...)
	cmd := exec.CommandContext(ctx, bins.client, args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("demo-client %s: %v", strings.Join(args, " "), err)
	}
	if code != want || (raceEnabled && strings.Contains(stderr.String(), "WARNING: DATA RACE")) {
		t.Errorf("demo-client %s: exit code %d, want %d\n--- stdout ---\n%s--- stderr ---\n%s",
			strings.Join(args, " "), code, want, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// wantOutput fails t for each of wants that out lacks.
func wantOutput(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("the output lacks %q:\n%s", w, out)
		}
	}
}

// forwardAuth runs the sender tests of the forward-auth front name (nginx
// or caddy): DPoP-bound tokens in front of the optional server, nonces in
// front of the strict one, and a client's own X-Client-Cert in front of the
// header one. Each front has paths of its own, so the servers' log lines
// are the front's.
func forwardAuth(ctx context.Context, t *testing.T, ss *senderStack, name string) {
	start := func(t *testing.T, srv *senderServer) *front {
		t.Helper()
		f := map[string]func(context.Context, *testing.T) *front{"nginx": srv.startNginx, "caddy": srv.startCaddy}[name](ctx, t)
		if f.skip != "" {
			missingPeer(t, f.skip)
		}
		f.waitPublic(ctx, t)
		return f
	}
	path := "/" + name + "/headers"
	alice := newSigner(t)
	tok := ss.dpopToken(ctx, t, alice)

	// The client calls the front on its own port, and its proof names
	// that port.
	t.Run("DPoP", func(t *testing.T) {
		srv := ss.optional
		f := start(t, srv)
		senderCall{name: "a fresh proof for the URL called", path: path,
			header: dpopAuth(tok, prove(t, alice, http.MethodGet, f.url+path, tok, "")), want: http.StatusOK, sub: "demo-client",
		}.run(ctx, t, nil, srv.tap, f)
	})

	// The client calls the front as on the scheme's default port (a Host
	// header without a port), which the fronts hand the server as it is.
	defaultPort, defaultPortURI := http.Header{"Host": {"127.0.0.1"}}, "http://127.0.0.1"+path
	t.Run("DPoPDefaultPort", func(t *testing.T) {
		srv := ss.optional
		f := start(t, srv)
		proof := prove(t, alice, http.MethodGet, defaultPortURI, tok, "")
		invalidProof := []string{dpopChallenge + `, error="invalid_dpop_proof"`}
		for _, c := range []senderCall{
			{name: "a fresh proof", header: dpopAuth(tok, proof), want: http.StatusOK, sub: "demo-client"},
			{name: "the same proof again", header: dpopAuth(tok, proof),
				want: http.StatusUnauthorized, reason: "dpop_replayed", www: []string{replayChallenge}},
			{name: "the DPoP-bound token as a bearer token", header: bearerAuth(tok),
				want: http.StatusUnauthorized, reason: "dpop_binding_mismatch", www: []string{dpopChallenge + `, error="invalid_token"`}},
			{name: "no proof", header: dpopAuth(tok), want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
			// The client claims https; the front knows better.
			{name: "a proof for https, with X-Forwarded-Proto: https",
				header: merge(dpopAuth(tok, prove(t, alice, http.MethodGet, "https://127.0.0.1"+path, tok, "")),
					http.Header{"X-Forwarded-Proto": {"https"}}),
				want: http.StatusUnauthorized, reason: "dpop_invalid", www: invalidProof},
		} {
			c.path, c.header = path, merge(defaultPort, c.header)
			c.run(ctx, t, nil, srv.tap, f)
		}
	})

	// Nonces: the front hands the client the denial's and the allow's.
	t.Run("DPoPNonce", func(t *testing.T) {
		srv := ss.strict
		f := start(t, srv)
		nonce := ""
		for _, c := range []senderCall{
			{name: "a proof without a nonce", want: http.StatusUnauthorized, reason: "use_dpop_nonce",
				www: []string{dpopChallenge + `, error="use_dpop_nonce"`}, nonce: true},
			{name: "retried with the denial's nonce", want: http.StatusOK, sub: "demo-client", nonce: true},
			{name: "the next request with the latest nonce", want: http.StatusOK, sub: "demo-client", nonce: true},
		} {
			c.path, c.header = path, merge(defaultPort, dpopAuth(tok, prove(t, alice, http.MethodGet, defaultPortURI, tok, nonce)))
			if n := c.run(ctx, t, nil, srv.tap, f).header.Get("DPoP-Nonce"); n != "" {
				nonce = n
			}
		}
	})

	// A server reading the certificate from X-Client-Cert trusts the front
	// to set it: a client's own, naming a certificate it does not hold
	// (certificates are public), must never reach the check.
	t.Run("ClientCertHeader", func(t *testing.T) {
		srv := ss.header
		f := start(t, srv)
		certA := clientCert(t, "client-a")
		certTok := ss.certToken(ctx, t, tlsClient(t, ss.roots, &certA), certA)
		forged := url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certA.Leaf.Raw})))
		senderCall{name: "the certificate-bound token with a client's X-Client-Cert naming its certificate", path: path,
			header: merge(bearerAuth(certTok), http.Header{"X-Client-Cert": {forged}}),
			want:   http.StatusUnauthorized, reason: "cert_binding_mismatch",
		}.run(ctx, t, nil, srv.tap, f)
	})
}
