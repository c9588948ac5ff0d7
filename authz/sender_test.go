package authz

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/certbind"
	"github.com/extauthz/extauthz/dpop"
)

// The request every sender test makes, as the client sent it.
const (
	bindHost   = "api.example.com"
	bindPath   = "/protected"
	bindURI    = "https://" + bindHost + bindPath
	dpopAlgs   = `DPoP algs="ES256 RS256 PS256 EdDSA"`
	bearerRlm  = `Bearer realm="extauthz"`
	dpopScheme = "DPoP "
)

// bindReq is one request of a sender test, whatever the transport.
type bindReq struct {
	method, path, host string
	auth               string   // the whole Authorization value
	proofs             []string // DPoP header values
	cert               string   // attributes.source.certificate (gRPC only)
	headers            map[string]string
}

// bindAnswer is what the client would see.
type bindAnswer struct {
	status  int
	headers map[string]string // lower-case names: response headers (allow) or the denial's
}

// transports runs a bindReq through Check (as Envoy sends it) or ServeHTTP
// (as nginx's auth_request sends it: X-Original-*, X-Forwarded-Proto).
var transports = map[string]func(t *testing.T, s *Server, r bindReq) bindAnswer{
	"grpc": func(t *testing.T, s *Server, r bindReq) bindAnswer {
		t.Helper()
		h := map[string]string{":authority": r.host, ":path": r.path, ":method": r.method}
		if r.auth != "" {
			h["authorization"] = r.auth
		}
		if len(r.proofs) > 0 {
			h["dpop"] = strings.Join(r.proofs, ",") // as Envoy joins repeats
		}
		for k, v := range r.headers {
			h[k] = v
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Certificate: r.cert},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: r.method, Path: r.path, Host: r.host, Scheme: "https", Headers: h,
			}},
		}}
		resp, err := s.Check(t.Context(), req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		a := bindAnswer{status: 200, headers: map[string]string{}}
		if ok := resp.GetOkResponse(); ok != nil {
			for _, o := range ok.GetResponseHeadersToAdd() {
				a.headers[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
			}
			return a
		}
		d := resp.GetDeniedResponse()
		a.status = int(d.GetStatus().GetCode())
		for _, o := range d.GetHeaders() {
			a.headers[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		return a
	},
	"http": func(t *testing.T, s *Server, r bindReq) bindAnswer {
		t.Helper()
		req := httptest.NewRequest("GET", "/_extauthz", nil)
		req.Header.Set("X-Original-Uri", r.path)
		req.Header.Set("X-Original-Method", r.method)
		req.Header.Set("X-Original-Host", r.host)
		req.Header.Set("X-Forwarded-Proto", "https")
		if r.auth != "" {
			req.Header.Set("Authorization", r.auth)
		}
		for _, p := range r.proofs {
			req.Header.Add("DPoP", p)
		}
		for k, v := range r.headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		a := bindAnswer{status: rec.Code, headers: map[string]string{}}
		for k, v := range rec.Header() {
			a.headers[strings.ToLower(k)] = strings.Join(v, ", ")
		}
		return a
	},
}

// proofSigner is a client's DPoP key, on the tests' clock.
func proofSigner(t testing.TB) *dpop.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dpop.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = fixedNow
	return s
}

func mustProof(t testing.TB, s *dpop.Signer, method, uri, token, nonce string) string {
	t.Helper()
	p, err := s.Proof(method, uri, token, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// boundTo mints a token of provider a whose cnf is cnf (nil: none).
func boundTo(t testing.TB, cnf map[string]any) string {
	t.Helper()
	c := claimsA()
	if cnf != nil {
		c["cnf"] = cnf
	}
	return mint(t, tokenSpec{claims: c})
}

// clientCert is a self-signed client certificate: its URL-encoded PEM (as
// Envoy's source.certificate) and its x5t#S256.
func clientCert(t testing.TB) (escaped, x5t string, der []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "client"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return url.QueryEscape(string(p)), certbind.Thumbprint(der), der
}

func withSender(constraint string, d DPoP) func(*Config) {
	return func(c *Config) {
		c.Providers[0].SenderConstraint = constraint
		c.Providers[0].DPoP = d
	}
}

// madeAt is a request with a token bound to a key of its own and a proof
// by that key made at testNow+d.
func madeAt(d time.Duration) func(t *testing.T) bindReq {
	return func(t *testing.T) bindReq {
		s := proofSigner(t)
		s.Now = func() time.Time { return testNow.Add(d) }
		tok := boundTo(t, map[string]any{"jkt": s.JKT()})
		return bindReq{auth: dpopScheme + tok, proofs: []string{mustProof(t, s, "GET", bindURI, tok, "")}}
	}
}

// TestSenderDPoP: every rule of RFC 9449 §7 the bind stage applies, through
// Check and ServeHTTP, each a case that fails without it.
func TestSenderDPoP(t *testing.T) {
	alice, mallory := proofSigner(t), proofSigner(t)
	bound := boundTo(t, map[string]any{"jkt": alice.JKT()})
	plain := boundTo(t, nil)
	other := mint(t, tokenSpec{claims: with(claimsA(), "cnf", map[string]any{"jkt": alice.JKT()}, "sub", "someone-else")})
	tests := []struct {
		name    string
		mutate  func(*Config)
		req     func(t *testing.T) bindReq
		status  int
		reason  Reason
		www     string // a prefix of WWW-Authenticate ("" when allowed)
		wantHdr string // a response header that must be present
	}{
		{
			name: "bound token with its proof",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 200, reason: Allowed,
		},
		{
			name: "the scheme is case-insensitive",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: "dpop " + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 200, reason: Allowed,
		},
		{
			name: "bound token as a bearer token (RFC 9449 §7.2)",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: "Bearer " + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 401, reason: DPoPBindingMismatch, www: dpopAlgs + `, error="invalid_token"`,
		},
		{
			name:   "bound token without a proof",
			req:    func(t *testing.T) bindReq { return bindReq{auth: dpopScheme + bound} },
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name: "two proofs",
			req: func(t *testing.T) bindReq {
				p := mustProof(t, alice, "GET", bindURI, bound, "")
				return bindReq{auth: dpopScheme + bound, proofs: []string{p, mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name: "a proof by another key",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, mallory, "GET", bindURI, bound, "")}}
			},
			status: 401, reason: DPoPBindingMismatch, www: dpopAlgs + `, error="invalid_token"`,
		},
		{
			name: "a proof for another method",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "POST", bindURI, bound, "")}}
			},
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name: "a proof for another host",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", "https://evil.example.com"+bindPath, bound, "")}}
			},
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name: "a proof for another path",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", "https://"+bindHost+"/admin", bound, "")}}
			},
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name: "a proof for http where the client used https",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", "http://"+bindHost+bindPath, bound, "")}}
			},
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name: "the query is not part of htu",
			req: func(t *testing.T) bindReq {
				r := bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI+"?page=2", bound, "")}}
				r.path = bindPath + "?page=2"
				return r
			},
			status: 200, reason: Allowed,
		},
		{
			name: "a proof for another token (ath)",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, other, "")}}
			},
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name:   "a proof made 61s ago",
			req:    madeAt(-61 * time.Second),
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name:   "a proof made 31s ago, dpop_max_age 30s",
			mutate: withSender(SenderOptional, DPoP{MaxAge: 30 * time.Second}),
			req:    madeAt(-31 * time.Second),
			status: 401, reason: DPoPInvalid, www: dpopAlgs + `, error="invalid_dpop_proof"`,
		},
		{
			name:   "a proof made 31s ago, the default window",
			req:    madeAt(-31 * time.Second),
			status: 200, reason: Allowed,
		},
		{
			name:   "a proof 10s ahead, dpop_max_ahead 15s",
			mutate: withSender(SenderOptional, DPoP{MaxAhead: 15 * time.Second}),
			req:    madeAt(10 * time.Second),
			status: 200, reason: Allowed,
		},
		{
			name:   "a proof 10s ahead, the default 5s",
			req:    madeAt(10 * time.Second),
			status: 401, reason: DPoPInvalid,
		},
		{
			name: "a plain token with the DPoP scheme",
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + plain, proofs: []string{mustProof(t, alice, "GET", bindURI, plain, "")}}
			},
			status: 401, reason: DPoPBindingMismatch, www: dpopAlgs + `, error="invalid_token"`,
		},
		{
			name:   "a plain bearer token, optional",
			req:    func(t *testing.T) bindReq { return bindReq{auth: "Bearer " + plain} },
			status: 200, reason: Allowed,
		},
		{
			name:   "a plain bearer token, required",
			mutate: withSender(SenderRequired, DPoP{}),
			req:    func(t *testing.T) bindReq { return bindReq{auth: "Bearer " + plain} },
			status: 401, reason: TokenNotBound,
			www: dpopAlgs + `, error="invalid_token", error_description="Token must be sender-constrained", ` + bearerRlm + `, error="invalid_token"`,
		},
		{
			name:   "no token, required: both challenges",
			mutate: withSender(SenderRequired, DPoP{}),
			req:    func(t *testing.T) bindReq { return bindReq{} },
			status: 401, reason: MissingToken, www: bearerRlm + ", " + dpopAlgs,
		},
		{
			name:   "a bound token as a bearer token, off (unsafe)",
			mutate: withSender(SenderOff, DPoP{}),
			req:    func(t *testing.T) bindReq { return bindReq{auth: "Bearer " + bound} },
			status: 200, reason: Allowed,
		},
		{
			name:   "the DPoP scheme, off",
			mutate: withSender(SenderOff, DPoP{}),
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 401, reason: DPoPBindingMismatch,
		},
		{
			name:   "an algorithm the provider does not take",
			mutate: withSender(SenderOptional, DPoP{Algorithms: []string{"EdDSA"}}),
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 401, reason: DPoPInvalid, www: `DPoP algs="EdDSA", error="invalid_dpop_proof"`,
		},
		{
			name:   "nonce required, none given",
			mutate: withSender(SenderOptional, DPoP{Nonce: true, NonceKey: make([]byte, 32)}),
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 401, reason: UseDPoPNonce, www: dpopAlgs + `, error="use_dpop_nonce"`, wantHdr: "dpop-nonce",
		},
		{
			name:   "nonce required and given: a fresh one on allow",
			mutate: withSender(SenderOptional, DPoP{Nonce: true, NonceKey: make([]byte, 32)}),
			req: func(t *testing.T) bindReq {
				n := dpop.NewNonces(make([]byte, 32), dpopNonceStep).Issue(testNow)
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, n)}}
			},
			status: 200, reason: Allowed, wantHdr: "dpop-nonce",
		},
		{
			name:   "public base URL pins scheme and host",
			mutate: withSender(SenderOptional, DPoP{PublicBaseURL: "https://public.example.com"}),
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", "https://public.example.com"+bindPath, bound, "")}}
			},
			status: 200, reason: Allowed,
		},
		{
			name:   "public base URL: the internal host is not it",
			mutate: withSender(SenderOptional, DPoP{PublicBaseURL: "https://public.example.com"}),
			req: func(t *testing.T) bindReq {
				return bindReq{auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			},
			status: 401, reason: DPoPInvalid,
		},
		{
			name: "a public path ignores a proofless bound token",
			req: func(t *testing.T) bindReq {
				return bindReq{path: "/public", auth: dpopScheme + bound}
			},
			status: 200, reason: Public,
		},
		{
			name: "a DPoP token without the scope: a DPoP challenge",
			req: func(t *testing.T) bindReq {
				return bindReq{path: "/admin", auth: dpopScheme + bound, proofs: []string{mustProof(t, alice, "GET", "https://"+bindHost+"/admin", bound, "")}}
			},
			status: 403, reason: InsufficientScope, www: dpopAlgs + `, error="insufficient_scope", error_description="Insufficient scope", scope="admin"`,
		},
		{
			name:   "cnf that is not an object",
			req:    func(t *testing.T) bindReq { return bindReq{auth: "Bearer " + boundTo(t, map[string]any{"jkt": 7})} },
			status: 401, reason: InvalidClaims,
		},
	}
	for name, send := range transports {
		for _, tc := range tests {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				obs := &recordingObserver{}
				w := newWorld(t, func(c *Config) {
					c.Observer = obs
					if tc.mutate != nil {
						tc.mutate(c)
					}
				})
				r := tc.req(t)
				r.method = cmp.Or(r.method, "GET")
				r.path = cmp.Or(r.path, bindPath)
				r.host = cmp.Or(r.host, bindHost)
				a := send(t, w.srv, r)
				if a.status != tc.status {
					t.Errorf("status %d, want %d (headers %v)", a.status, tc.status, a.headers)
				}
				if got := obs.last().reason; got != tc.reason {
					t.Errorf("reason %q, want %q", got, tc.reason)
				}
				if www := a.headers["www-authenticate"]; !strings.HasPrefix(www, tc.www) || (tc.www == "" && tc.status == 200 && www != "") {
					t.Errorf("WWW-Authenticate %q, want it to start with %q", www, tc.www)
				}
				if tc.wantHdr != "" && a.headers[tc.wantHdr] == "" {
					t.Errorf("no %s header: %v", tc.wantHdr, a.headers)
				}
			})
		}
	}
}

// TestSenderReplay: a proof is good once, through either transport, and a
// cached token's proof is still checked on every request.
func TestSenderReplay(t *testing.T) {
	alice := proofSigner(t)
	bound := boundTo(t, map[string]any{"jkt": alice.JKT()})
	for name, send := range transports {
		t.Run(name, func(t *testing.T) {
			keys := &versionedFake{fakeKeys: newFakeKeys(kidA, &testKeys().keyA.PublicKey)}
			w := newWorld(t, func(c *Config) { c.Providers[0].Keys = keys })
			r := bindReq{method: "GET", path: bindPath, host: bindHost, auth: dpopScheme + bound,
				proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}}
			if a := send(t, w.srv, r); a.status != 200 {
				t.Fatalf("first use: %d %v", a.status, a.headers)
			}
			a := send(t, w.srv, r)
			if a.status != 401 || !strings.HasPrefix(a.headers["www-authenticate"], dpopAlgs+`, error="invalid_dpop_proof", error_description="DPoP proof replayed"`) {
				t.Errorf("replay: %d %q, want 401 invalid_dpop_proof replayed", a.status, a.headers["www-authenticate"])
			}
			// The token is now in the verified-token cache: a fresh proof
			// allows, none denies.
			r.proofs = []string{mustProof(t, alice, "GET", bindURI, bound, "")}
			if a := send(t, w.srv, r); a.status != 200 {
				t.Errorf("fresh proof, cached token: %d", a.status)
			}
			r.proofs = nil
			if a := send(t, w.srv, r); a.status != 401 {
				t.Errorf("no proof, cached token: %d, want 401", a.status)
			}
			if st := w.srv.CacheStats(); st.Hits == 0 {
				t.Errorf("the token was never answered from the cache: %+v", st)
			}
		})
	}
}

// TestSenderCertificate: a certificate-bound token (RFC 8705 §3) is
// accepted only with its client certificate, from the source the provider
// names.
func TestSenderCertificate(t *testing.T) {
	escaped, x5t, der := clientCert(t)
	otherEscaped, _, _ := clientCert(t)
	bound := boundTo(t, map[string]any{"x5t#S256": x5t})
	sum := sha256.Sum256(der)
	xfcc := `By=spiffe://cluster.local/ns/api/sa/api;Hash=` + hex.EncodeToString(sum[:]) + `;Subject="CN=client"`
	fromXFCC := func(c *Config) { c.Providers[0].ClientCertFrom = CertFromXFCC }
	fromHeader := func(c *Config) { c.Providers[0].ClientCertHeader = "X-Client-Cert" }
	tests := []struct {
		name       string
		transports []string
		mutate     func(*Config)
		req        bindReq
		status     int
		reason     Reason
		missing    bool // no certificate where the provider reads it
	}{
		{name: "Envoy's peer certificate", transports: []string{"grpc"}, req: bindReq{cert: escaped}, status: 200, reason: Allowed},
		{name: "no certificate", transports: []string{"grpc", "http"}, req: bindReq{}, status: 401, reason: CertBindingMismatch, missing: true},
		{name: "another certificate", transports: []string{"grpc"}, req: bindReq{cert: otherEscaped}, status: 401, reason: CertBindingMismatch},
		{name: "XFCC not trusted by default", transports: []string{"grpc", "http"}, req: bindReq{headers: map[string]string{"x-forwarded-client-cert": xfcc}}, status: 401, reason: CertBindingMismatch, missing: true},
		{name: "XFCC when trusted", transports: []string{"grpc", "http"}, mutate: fromXFCC, req: bindReq{headers: map[string]string{"x-forwarded-client-cert": xfcc}}, status: 200, reason: Allowed},
		{name: "XFCC trusted, peer certificate ignored", transports: []string{"grpc"}, mutate: fromXFCC, req: bindReq{cert: escaped}, status: 401, reason: CertBindingMismatch, missing: true},
		{name: "the front's header", transports: []string{"grpc", "http"}, mutate: fromHeader, req: bindReq{headers: map[string]string{"x-client-cert": escaped}}, status: 200, reason: Allowed},
		{name: "the front's header, another certificate", transports: []string{"grpc", "http"}, mutate: fromHeader, req: bindReq{headers: map[string]string{"x-client-cert": otherEscaped}}, status: 401, reason: CertBindingMismatch},
	}
	for _, tc := range tests {
		for _, name := range tc.transports {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				obs := &recordingObserver{}
				w := newWorld(t, func(c *Config) {
					c.Observer = obs
					if tc.mutate != nil {
						tc.mutate(c)
					}
				})
				r := tc.req
				r.method, r.path, r.host, r.auth = "GET", bindPath, bindHost, "Bearer "+bound
				a := transports[name](t, w.srv, r)
				if a.status != tc.status || obs.last().reason != tc.reason {
					t.Errorf("got %d %s, want %d %s", a.status, obs.last().reason, tc.status, tc.reason)
				}
				msg := tc.reason.Message()
				if tc.missing {
					msg = msgNoClientCert
				}
				if tc.status == 401 && a.headers["www-authenticate"] != bearerRlm+`, error="invalid_token", error_description="`+msg+`"` {
					t.Errorf("WWW-Authenticate %q", a.headers["www-authenticate"])
				}
			})
		}
	}
}

// TestSenderSettings: what New refuses.
func TestSenderSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Provider
		want string
	}{
		{"constraint", Provider{SenderConstraint: "sometimes"}, "sender_constraint"},
		{"cert source", Provider{ClientCertFrom: "header"}, "client_cert_from"},
		{"cert header", Provider{ClientCertHeader: "x client"}, "client_cert_header"},
		{"HMAC proofs", Provider{DPoP: DPoP{Algorithms: []string{"HS256"}}}, "asymmetric"},
		{"none proofs", Provider{DPoP: DPoP{Algorithms: []string{"none"}}}, "asymmetric"},
		{"base URL with a path", Provider{DPoP: DPoP{PublicBaseURL: "https://api.example.com/v1"}}, "dpop_public_base_url"},
		{"base URL without a scheme", Provider{DPoP: DPoP{PublicBaseURL: "api.example.com"}}, "dpop_public_base_url"},
		{"short nonce key", Provider{DPoP: DPoP{Nonce: true, NonceKey: []byte("short")}}, "32 bytes"},
		{"negative window", Provider{DPoP: DPoP{MaxAge: -time.Second}}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSender(tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckSender: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if err := CheckSender(Provider{SenderConstraint: SenderRequired, DPoP: DPoP{PublicBaseURL: "https://api.example.com/"}}); err != nil {
		t.Errorf("a good provider: %v", err)
	}
}

// TestSenderReload: a reload keeps the replay cache (a proof used before it
// is still a replay after) and a generated nonce key (nonces issued before
// it stay good).
func TestSenderReload(t *testing.T) {
	alice := proofSigner(t)
	bound := boundTo(t, map[string]any{"jkt": alice.JKT()})
	nonce := func(c *Config) { c.Providers[0].DPoP.Nonce = true }
	w := newWorld(t, nonce)
	r := bindReq{method: "GET", path: bindPath, host: bindHost, auth: dpopScheme + bound}
	a := transports["http"](t, w.srv, bindReq{method: "GET", path: bindPath, host: bindHost, auth: dpopScheme + bound,
		proofs: []string{mustProof(t, alice, "GET", bindURI, bound, "")}})
	n := a.headers["dpop-nonce"]
	if a.status != 401 || n == "" {
		t.Fatalf("no nonce: %d %v", a.status, a.headers)
	}
	r.proofs = []string{mustProof(t, alice, "GET", bindURI, bound, n)}
	if a := transports["http"](t, w.srv, r); a.status != 200 {
		t.Fatalf("with the nonce: %d %v", a.status, a.headers)
	}
	cfg := baseConfig(w.keysA, w.keysB)
	nonce(&cfg)
	cfg.Previous = w.srv
	next, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a := transports["http"](t, next, r); a.status != 401 || !strings.Contains(a.headers["www-authenticate"], "replayed") {
		t.Errorf("the same proof after a reload: %d %q, want 401 replayed", a.status, a.headers["www-authenticate"])
	}
	r.proofs = []string{mustProof(t, alice, "GET", bindURI, bound, n)}
	if a := transports["http"](t, next, r); a.status != 200 {
		t.Errorf("a fresh proof with the nonce issued before the reload: %d %v", a.status, a.headers)
	}
}

// last is the latest decision observed.
func (o *recordingObserver) last() observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.obs) == 0 {
		return observation{}
	}
	return o.obs[len(o.obs)-1]
}
