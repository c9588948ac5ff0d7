package idp

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/dpop"
	"github.com/extauthz/extauthz/internal/selfsigned"
)

const (
	testTokenEndpoint = "http://localhost:9000" + TokenPath  // testConfig's token_endpoint
	testMTLSEndpoint  = "https://localhost:9443" + TokenPath // its mtls_endpoint_aliases with mtlsConfig
)

var demoBody = jsonBody("client_id", "demo-client", "client_secret", "demo-secret", "grant_type", "client_credentials")

// newSigner returns a DPoP signer whose proofs are issued at clock's now.
func newSigner(t testing.TB, clock *fakeClock) *dpop.Signer {
	t.Helper()
	sg, err := dpop.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	sg.Now = clock.Now
	return sg
}

func mustProof(t testing.TB, sg *dpop.Signer, method, uri, accessToken string) string {
	t.Helper()
	p, err := sg.Proof(method, uri, accessToken, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clientCert returns a fresh self-signed client certificate.
func clientCert(t testing.TB) *x509.Certificate {
	t.Helper()
	c, err := selfsigned.KeyPair("demo-client", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func x5tS256(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// postToken sends demoBody to the token endpoint at target with the given
// DPoP header values, over TLS with the given client certificates when tls
// is true (as net/http fills r.TLS).
func postToken(h http.Handler, target string, proofs []string, overTLS bool, certs ...*x509.Certificate) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(demoBody))
	r.Header.Set("Content-Type", ctJSON)
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	if overTLS {
		r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: certs}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// issued decodes a 200 token response and returns its token_type and the
// access token's claims, verified against the server's JWKS.
func issued(t *testing.T, s *Server, clock *fakeClock, w *httptest.ResponseRecorder) (string, jwt.MapClaims) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", w.Code, w.Body)
	}
	var resp tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("decode: %v", err)
	}
	tok, err := verifyWith(fetchJWKS(t, s), resp.AccessToken, s.Issuer(), DefaultAudience, clock.Now)
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return resp.TokenType, tok.Claims.(jwt.MapClaims)
}

// refused checks a 400 invalid_dpop_proof answer.
func refused(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400; body %s", w.Code, w.Body)
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("decode %q: %v", w.Body, err)
	}
	if got := body["error"]; got != ErrCodeInvalidDPoPProof {
		t.Errorf("error = %v, want %v", got, ErrCodeInvalidDPoPProof)
	}
	if d, _ := body["error_description"].(string); d == "" {
		t.Errorf("error_description missing")
	}
	if _, ok := body["access_token"]; ok {
		t.Errorf("refusal carries an access_token")
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// TestDPoPToken: a token request with one valid proof for POST to the
// published token endpoint gets token_type DPoP and cnf.jkt naming the
// proof's key; each proof RFC 9449 §4.3 and §5 rule out gets 400
// invalid_dpop_proof and no token.
func TestDPoPToken(t *testing.T) {
	s, clock := newTestServer(t, testConfig())
	sg := newSigner(t, clock)
	at := func(d time.Duration) *dpop.Signer { // sg with its clock moved by d
		c := *sg
		c.Now = func() time.Time { return clock.Now().Add(d) }
		return &c
	}
	none := func() string { // alg none, otherwise a fine proof
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
			"jti": "x", "htm": "POST", "htu": testTokenEndpoint, "iat": clock.Now().Unix()})
		tok.Header["typ"] = "dpop+jwt"
		raw, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		return raw
	}
	tests := []struct {
		name   string
		target string // TokenPath when empty
		proofs func(t *testing.T) []string
		ok     bool
	}{
		{name: "valid", ok: true,
			proofs: func(t *testing.T) []string { return []string{mustProof(t, sg, "POST", testTokenEndpoint, "")} }},
		{name: "htu in another case, with a query", ok: true,
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, sg, "POST", "HTTP://LOCALHOST:9000/oauth2/m2m/token?x=1", "")}
			}},
		{name: "iat 4s ahead", ok: true,
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, at(4*time.Second), "POST", testTokenEndpoint, "")}
			}},
		{name: "wrong htm",
			proofs: func(t *testing.T) []string { return []string{mustProof(t, sg, "GET", testTokenEndpoint, "")} }},
		{name: "wrong htu path",
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, sg, "POST", "http://localhost:9000/oauth2/token", "")}
			}},
		{name: "htu https for the http endpoint",
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, sg, "POST", "https://localhost:9000"+TokenPath, "")}
			}},
		{name: "htu naming the Host header, not the issuer", target: "http://evil.example.com" + TokenPath,
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, sg, "POST", "http://evil.example.com"+TokenPath, "")}
			}},
		{name: "with ath",
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, sg, "POST", testTokenEndpoint, "some.access.token")}
			}},
		{name: "iat two minutes old",
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, at(-2*time.Minute), "POST", testTokenEndpoint, "")}
			}},
		{name: "iat a minute ahead",
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, at(time.Minute), "POST", testTokenEndpoint, "")}
			}},
		{name: "alg none", proofs: func(*testing.T) []string { return []string{none()} }},
		{name: "not a JWT", proofs: func(*testing.T) []string { return []string{"not-a-proof"} }},
		{name: "empty header", proofs: func(*testing.T) []string { return []string{""} }},
		{name: "two DPoP headers",
			proofs: func(t *testing.T) []string {
				return []string{mustProof(t, sg, "POST", testTokenEndpoint, ""), mustProof(t, sg, "POST", testTokenEndpoint, "")}
			}},
		{name: "replayed",
			proofs: func(t *testing.T) []string {
				p := mustProof(t, sg, "POST", testTokenEndpoint, "")
				if w := postToken(s.Handler(), TokenPath, []string{p}, false); w.Code != http.StatusOK {
					t.Fatalf("first use: status %d, want 200; body %s", w.Code, w.Body)
				}
				return []string{p}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := postToken(s.Handler(), cmpOr(tc.target, TokenPath), tc.proofs(t), false)
			if !tc.ok {
				refused(t, w)
				return
			}
			typ, claims := issued(t, s, clock, w)
			if typ != "DPoP" {
				t.Errorf("token_type = %q, want DPoP", typ)
			}
			if got, want := claims["cnf"], map[string]any{"jkt": sg.JKT()}; !maps.Equal(asMap(got), want) {
				t.Errorf("cnf = %v, want %v", got, want)
			}
		})
	}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// TestDPoPProofSpentOnlyOnSuccess: a request refused for its credentials or
// its scope does not spend its proof (the proof is checked last), so the
// same proof then gets a token.
func TestDPoPProofSpentOnlyOnSuccess(t *testing.T) {
	s, clock := newTestServer(t, testConfig())
	sg := newSigner(t, clock)
	p := mustProof(t, sg, "POST", testTokenEndpoint, "")
	for _, body := range []string{
		jsonBody("client_id", "demo-client", "client_secret", "wrong", "grant_type", "client_credentials"),
		jsonBody("client_id", "demo-client", "client_secret", "demo-secret", "grant_type", "client_credentials", "scope", "admin"),
	} {
		w := do(s.Handler(), http.MethodPost, TokenPath, ctJSON, body, http.Header{"Dpop": {p}})
		if w.Code == http.StatusOK || strings.Contains(w.Body.String(), ErrCodeInvalidDPoPProof) {
			t.Fatalf("status %d body %s, want a credentials or scope error", w.Code, w.Body)
		}
	}
	if typ, _ := issued(t, s, clock, postToken(s.Handler(), TokenPath, []string{p}, false)); typ != "DPoP" {
		t.Errorf("token_type = %q, want DPoP", typ)
	}
}

// TestBearerUnchanged: without a DPoP header or a client certificate the
// response and the token are exactly what they were before sender
// constraints: the same members in the same order, token_type Bearer, and
// no cnf claim.
func TestBearerUnchanged(t *testing.T) {
	s, clock := newTestServer(t, testConfig())
	w := postToken(s.Handler(), TokenPath, nil, false)
	shape := regexp.MustCompile(`^\{"access_token":"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+","token_type":"Bearer","expires_in":3600,"scope":"read:messages"\}\n$`)
	if !shape.Match(w.Body.Bytes()) {
		t.Errorf("body = %s, want the shape %s", w.Body, shape)
	}
	_, claims := issued(t, s, clock, w)
	got := slices.Sorted(maps.Keys(claims))
	if want := []string{"aud", "client_id", "exp", "iat", "iss", "jti", "nbf", "scope", "sub"}; !slices.Equal(got, want) {
		t.Errorf("claims = %v, want %v", got, want)
	}
}

// mtlsConfig is testConfig with a TLS listener beside the plain one.
func mtlsConfig() Config {
	cfg := testConfig()
	cfg.MTLSBaseURL = "https://localhost:9443"
	return cfg
}

// TestCertificateBound: a token requested over TLS with a client
// certificate names its SHA-256 thumbprint in cnf.x5t#S256 and stays
// Bearer; with a DPoP proof too it is bound to both and is DPoP. A proof sent
// over TLS names the mTLS endpoint alias, one over plain HTTP the
// token_endpoint.
func TestCertificateBound(t *testing.T) {
	s, clock := newTestServer(t, mtlsConfig())
	sg := newSigner(t, clock)
	cert := clientCert(t)
	tests := []struct {
		name     string
		overTLS  bool
		cert     bool
		proofURI string // no DPoP header when empty
		wantType string // "" for a refusal
		wantCnf  map[string]any
	}{
		{name: "client certificate", overTLS: true, cert: true, wantType: "Bearer",
			wantCnf: map[string]any{"x5t#S256": x5tS256(cert)}},
		{name: "client certificate and DPoP proof", overTLS: true, cert: true, proofURI: testMTLSEndpoint, wantType: "DPoP",
			wantCnf: map[string]any{"x5t#S256": x5tS256(cert), "jkt": sg.JKT()}},
		{name: "TLS without a client certificate", overTLS: true, wantType: "Bearer"},
		{name: "DPoP over TLS without a client certificate", overTLS: true, proofURI: testMTLSEndpoint, wantType: "DPoP",
			wantCnf: map[string]any{"jkt": sg.JKT()}},
		{name: "DPoP over plain HTTP", proofURI: testTokenEndpoint, wantType: "DPoP", wantCnf: map[string]any{"jkt": sg.JKT()}},
		{name: "proof over TLS naming the plain endpoint", overTLS: true, cert: true, proofURI: testTokenEndpoint},
		{name: "proof over plain HTTP naming the mTLS alias", proofURI: testMTLSEndpoint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var proofs []string
			if tc.proofURI != "" {
				proofs = []string{mustProof(t, sg, "POST", tc.proofURI, "")}
			}
			var certs []*x509.Certificate
			if tc.cert {
				certs = []*x509.Certificate{cert}
			}
			w := postToken(s.Handler(), TokenPath, proofs, tc.overTLS, certs...)
			if tc.wantType == "" {
				refused(t, w)
				return
			}
			typ, claims := issued(t, s, clock, w)
			if typ != tc.wantType {
				t.Errorf("token_type = %q, want %q", typ, tc.wantType)
			}
			cnf, present := claims["cnf"]
			if tc.wantCnf == nil && present {
				t.Errorf("cnf = %v, want none", cnf)
			} else if !maps.Equal(asMap(cnf), tc.wantCnf) {
				t.Errorf("cnf = %v, want %v", cnf, tc.wantCnf)
			}
		})
	}
}

// TestCertificateBoundOverTLS: over a real TLS connection that asks for a
// client certificate (as cmd/demo-idp's TLS listener), the token is bound
// to the certificate the client presented; a client without one gets an
// unbound Bearer token.
func TestCertificateBoundOverTLS(t *testing.T) {
	var h http.Handler
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	ts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	s, clock := newTestServer(t, Config{Issuer: ts.URL, MTLSBaseURL: ts.URL})
	h = s.Handler()

	pair, err := selfsigned.KeyPair("demo-client", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		certs   []tls.Certificate
		wantCnf map[string]any
	}{
		{name: "with a client certificate", certs: []tls.Certificate{pair}, wantCnf: map[string]any{"x5t#S256": x5tS256(pair.Leaf)}},
		{name: "without one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := ts.Client().Transport.(*http.Transport).Clone() // a connection of its own
			defer tr.CloseIdleConnections()
			tr.TLSClientConfig.Certificates = tc.certs
			c := &http.Client{Transport: tr}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+TokenPath, strings.NewReader(demoBody))
			req.Header.Set("Content-Type", ctJSON)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			w := httptest.NewRecorder()
			w.Code = resp.StatusCode
			if _, err := w.Body.ReadFrom(resp.Body); err != nil {
				t.Fatal(err)
			}
			typ, claims := issued(t, s, clock, w)
			if typ != "Bearer" {
				t.Errorf("token_type = %q, want Bearer", typ)
			}
			if got := asMap(claims["cnf"]); !maps.Equal(got, tc.wantCnf) {
				t.Errorf("cnf = %v, want %v", got, tc.wantCnf)
			}
		})
	}
}
