package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/demo/idp"
	"github.com/extauthz/extauthz/dpop"
	"github.com/extauthz/extauthz/internal/selfsigned"
)

// issuer is an in-process demo issuer on httptest servers.
type issuer struct {
	srv *idp.Server
	url string // what --issuer names
	ca  string // PEM file of the httptest certificate, which every httptest TLS server shares
}

// serve starts h on a new httptest server, over TLS asking for client
// certificates when overTLS, as demo-idp's TLS listener does.
func serve(t *testing.T, h http.Handler, overTLS bool) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	if overTLS {
		ts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts
}

// newIssuer starts the demo issuer. plain and overTLS choose its
// listeners; with both, the issuer is the plain one and discovery names the
// TLS one as its mutual-TLS alias.
func newIssuer(t *testing.T, plain, overTLS bool) *issuer {
	t.Helper()
	var srv *idp.Server
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { srv.Handler().ServeHTTP(w, r) })
	cfg := idp.Config{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if overTLS {
		ts := serve(t, h, true)
		cfg.Issuer, cfg.MTLSBaseURL = ts.URL, ts.URL
	}
	if plain {
		cfg.Issuer = serve(t, h, false).URL
	}
	var err error
	if srv, err = idp.New(cfg); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	ts.Close()
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &issuer{srv: srv, url: cfg.Issuer, ca: ca}
}

// seenRequest is what the resource server received and answered.
type seenRequest struct {
	auth, proof string
	status      int
	claims      jwt.MapClaims // the verified token's; nil when it did not verify
	certX5t     string        // the presented client certificate's thumbprint
}

// resourceServer is a fake protected API: it verifies the token against the
// issuer's JWKS, a DPoP token's proof with a dpop.Verifier (htm, htu, ath,
// replay, and a nonce when nonces is set), that cnf.jkt is the proof's key,
// and that cnf.x5t#S256 is the presented client certificate's thumbprint.
type resourceServer struct {
	iss      *issuer
	verifier *dpop.Verifier
	nonces   *dpop.Nonces
	url      string

	mu   sync.Mutex
	seen []seenRequest
}

func newResourceServer(t *testing.T, iss *issuer, overTLS, requireNonce bool) *resourceServer {
	t.Helper()
	rs := &resourceServer{iss: iss}
	if requireNonce {
		rs.nonces = dpop.NewNonces([]byte(rand.Text()+rand.Text()), time.Minute)
	}
	var err error
	rs.verifier, err = dpop.NewVerifier(dpop.Config{Replay: dpop.NewReplayCache(time.Minute+5*time.Second, 1<<10), Nonces: rs.nonces})
	if err != nil {
		t.Fatal(err)
	}
	rs.url = serve(t, rs, overTLS).URL
	return rs
}

func (rs *resourceServer) requests() []seenRequest {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]seenRequest(nil), rs.seen...)
}

func (rs *resourceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seen := seenRequest{auth: r.Header.Get("Authorization"), proof: strings.Join(r.Header.Values("DPoP"), ",")}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		seen.certX5t = thumbprint(r.TLS.PeerCertificates[0].Raw)
	}
	deny := func(challenge string) {
		w.Header().Set("WWW-Authenticate", challenge)
		seen.status = http.StatusUnauthorized
		http.Error(w, `{"error":"unauthorized"}`, seen.status)
	}
	defer func() {
		rs.mu.Lock()
		rs.seen = append(rs.seen, seen)
		rs.mu.Unlock()
	}()

	scheme, tok, _ := strings.Cut(seen.auth, " ")
	claims, err := rs.verifyToken(tok)
	if err != nil {
		deny(scheme + ` error="invalid_token"`)
		return
	}
	seen.claims = claims
	cnf, _ := claims["cnf"].(map[string]any)
	if x5t, bound := cnf["x5t#S256"]; bound && x5t != seen.certX5t {
		deny(scheme + ` error="invalid_token", error_description="not the certificate the token is bound to"`)
		return
	}
	switch scheme {
	case "DPoP":
		p, err := rs.verifier.Verify(seen.proof, dpop.Request{Method: r.Method, URI: rs.url + r.URL.Path, AccessToken: tok})
		switch {
		case errors.Is(err, dpop.ErrUseNonce):
			w.Header().Set("DPoP-Nonce", rs.nonces.Issue(time.Now()))
			deny(`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
			return
		case err != nil:
			deny(`DPoP error="invalid_dpop_proof"`)
			return
		case cnf["jkt"] != p.JKT:
			deny(`DPoP error="invalid_token", error_description="not the key the token is bound to"`)
			return
		}
	case "Bearer":
		if _, ok := cnf["jkt"]; ok {
			deny(`Bearer error="invalid_token", error_description="a DPoP token sent as a bearer token"`)
			return
		}
	default:
		deny(`Bearer realm="test"`)
		return
	}
	if r.URL.Path == "/forbidden" {
		seen.status = http.StatusForbidden
		http.Error(w, `{"error":"forbidden"}`, seen.status)
		return
	}
	seen.status = http.StatusOK
	fmt.Fprintf(w, `{"message":"hello","sub":%q}`, claims["sub"])
}

// verifyToken verifies an access token against the issuer's JWKS.
func (rs *resourceServer) verifyToken(tok string) (jwt.MapClaims, error) {
	rec := httptest.NewRecorder()
	rs.iss.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, idp.JWKSPath, nil))
	kf, err := keyfunc.NewJWKSetJSON(rec.Body.Bytes())
	if err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, kf.Keyfunc, jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(rs.iss.srv.Issuer()), jwt.WithAudience(idp.DefaultAudience), jwt.WithExpirationRequired())
	return claims, err
}

func thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// runClient runs the command and returns its exit code and output.
func runClient(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	code := run(t.Context(), args, &stdout, &stderr)
	t.Logf("demo-client %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

// runOK runs the command, which must exit 0 after rs saw wantRequests
// requests, and returns its output and those requests.
func runOK(t *testing.T, rs *resourceServer, wantRequests int, args ...string) (string, []seenRequest) {
	t.Helper()
	code, out, _ := runClient(t, args...)
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	seen := rs.requests()
	if len(seen) != wantRequests {
		t.Fatalf("resource server saw %d requests, want %d: %+v", len(seen), wantRequests, seen)
	}
	return out, seen
}

// outputHas reports each of wants missing from the output.
func outputHas(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestDPoP: by default the client gets a DPoP token bound to its key and
// calls the URL with a proof for its method and URL (the query dropped)
// that carries the token's hash; the resource server accepts it.
func TestDPoP(t *testing.T) {
	iss := newIssuer(t, true, false)
	rs := newResourceServer(t, iss, false, false)
	out, seen := runOK(t, rs, 1, "--issuer", iss.url, "--method", "DELETE", rs.url+"/protected?x=1")
	if got := seen[0]; got.status != http.StatusOK || !strings.HasPrefix(got.auth, "DPoP ") || got.claims["cnf"] == nil {
		t.Errorf("request = %+v, want a 200 for a DPoP token with cnf", got)
	}
	outputHas(t, out, "token_type: DPoP", `cnf: {"jkt":"`, "== DELETE "+rs.url+"/protected?x=1 (DPoP token, new proof)",
		"status: 200 OK", `body: {"message":"hello","sub":"demo-client"}`)
	if strings.Contains(out, "access_token:") || strings.Contains(out, "DPoP: ey") {
		t.Errorf("output shows the token or a proof without --print-token")
	}
}

// TestNonceRetry: answered 401 use_dpop_nonce with a DPoP-Nonce, the client
// retries once with a new proof carrying that nonce, and the exit code is
// the retry's.
func TestNonceRetry(t *testing.T) {
	iss := newIssuer(t, true, false)
	rs := newResourceServer(t, iss, false, true)
	out, seen := runOK(t, rs, 2, "--issuer", iss.url, rs.url+"/protected")
	if seen[0].status != http.StatusUnauthorized || seen[1].status != http.StatusOK {
		t.Fatalf("statuses = %d, %d; want 401, 200", seen[0].status, seen[1].status)
	}
	if seen[0].proof == seen[1].proof {
		t.Errorf("the retry sent the same proof")
	}
	if nonce := proofClaims(t, seen[1].proof)["nonce"]; nonce == nil || nonce == "" {
		t.Errorf("the retry's proof has no nonce")
	}
	outputHas(t, out, `WWW-Authenticate: DPoP error="use_dpop_nonce"`, "DPoP-Nonce: ", "(DPoP token, new proof with the server's DPoP-Nonce)")
}

// proofClaims decodes a proof's payload without verifying it.
func proofClaims(t *testing.T, proof string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(proof, claims); err != nil {
		t.Fatalf("proof %q: %v", proof, err)
	}
	return claims
}

// TestReplay: --replay sends the identical request, same token and same
// proof, which the resource server refuses as a replay; the exit code is
// the first call's.
func TestReplay(t *testing.T) {
	iss := newIssuer(t, true, false)
	rs := newResourceServer(t, iss, false, false)
	out, seen := runOK(t, rs, 2, "--issuer", iss.url, "--replay", "--print-token", rs.url+"/protected")
	if seen[0].auth != seen[1].auth || seen[0].proof != seen[1].proof || seen[0].proof == "" {
		t.Errorf("the replay differs from the first request:\n%+v\n%+v", seen[0], seen[1])
	}
	if seen[0].status != http.StatusOK || seen[1].status != http.StatusUnauthorized {
		t.Errorf("statuses = %d, %d; want 200, 401", seen[0].status, seen[1].status)
	}
	outputHas(t, out, "(replay: the same request with the same proof)", `WWW-Authenticate: DPoP error="invalid_dpop_proof"`,
		"DPoP: "+seen[0].proof, "access_token: "+strings.TrimPrefix(seen[0].auth, "DPoP "))
}

// TestBearer: with --dpop=false the client gets the guide's bearer token
// (no cnf) and sends it as "Bearer" with no DPoP header, as curl would.
func TestBearer(t *testing.T) {
	iss := newIssuer(t, true, false)
	rs := newResourceServer(t, iss, false, false)
	out, seen := runOK(t, rs, 2, "--issuer", iss.url, "--dpop=false", "--replay", rs.url+"/protected")
	for _, s := range seen {
		if !strings.HasPrefix(s.auth, "Bearer ") || s.proof != "" || s.claims["cnf"] != nil || s.status != http.StatusOK {
			t.Errorf("request = %+v, want an accepted bearer token without proof or cnf", s)
		}
	}
	outputHas(t, out, "token_type: Bearer", "cnf: none", "(Bearer token)", "(replay: the same request)")
	if strings.Contains(out, "jkt") {
		t.Errorf("output names a proof key for a bearer token")
	}
}

// TestMutualTLS: with --cert/--key/--ca the token is requested over mutual
// TLS and bound to the client certificate (cnf.x5t#S256 is its
// thumbprint), besides the DPoP key unless --dpop=false, and the same
// certificate is presented to the URL. An issuer on plain HTTP with a
// mutual-TLS alias in discovery is reached through the alias.
func TestMutualTLS(t *testing.T) {
	certFile, keyFile := writeClientCert(t)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	want := thumbprint(block.Bytes)

	tests := []struct {
		name     string
		plain    bool // the issuer also on plain HTTP, named by --issuer
		dpop     bool
		wantAuth string
	}{
		{name: "DPoP and certificate", dpop: true, wantAuth: "DPoP "},
		{name: "certificate only", dpop: false, wantAuth: "Bearer "},
		{name: "plain issuer with an mTLS alias", plain: true, dpop: true, wantAuth: "DPoP "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss := newIssuer(t, tc.plain, true)
			rs := newResourceServer(t, iss, true, false)
			out, seen := runOK(t, rs, 1, "--issuer", iss.url, "--cert", certFile, "--key", keyFile, "--ca", iss.ca,
				fmt.Sprintf("--dpop=%t", tc.dpop), rs.url+"/protected")
			if seen[0].status != http.StatusOK || !strings.HasPrefix(seen[0].auth, tc.wantAuth) {
				t.Fatalf("resource server saw %+v, want an accepted %s token", seen[0], tc.wantAuth)
			}
			cnf, _ := seen[0].claims["cnf"].(map[string]any)
			if cnf["x5t#S256"] != want || seen[0].certX5t != want {
				t.Errorf("cnf = %v, presented certificate %s; want x5t#S256 %s for both", cnf, seen[0].certX5t, want)
			}
			if _, hasJKT := cnf["jkt"]; hasJKT != tc.dpop {
				t.Errorf("cnf = %v, want jkt: %v", cnf, tc.dpop)
			}
			outputHas(t, out, "== token from https://")
		})
	}
}

// writeClientCert writes a new self-signed client certificate and its key
// and returns their files.
func writeClientCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := selfsigned.Generate("demo-client", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestPrintToken: --print-token without a URL gets the token, prints it and
// calls nothing.
func TestPrintToken(t *testing.T) {
	iss := newIssuer(t, true, false)
	code, out, _ := runClient(t, "--issuer", iss.url, "--print-token")
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	_, rest, ok := strings.Cut(out, "access_token: ")
	tok, _, _ := strings.Cut(rest, "\n")
	if !ok || strings.Count(tok, ".") != 2 {
		t.Fatalf("no token in the output")
	}
	if cnf := cnfOf(tok); !strings.Contains(out, "proof key thumbprint (jkt): ") || !strings.Contains(cnf, `"jkt"`) {
		t.Errorf("cnf = %s, want jkt", cnf)
	}
}

// TestExitCodes: usage errors are 2, a refused token or call is 1.
func TestExitCodes(t *testing.T) {
	iss := newIssuer(t, true, false)
	rs := newResourceServer(t, iss, false, false)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	cert, key := writeClientCert(t)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "no URL", args: []string{"--issuer", iss.url}, wantCode: 2, wantStderr: "URL"},
		{name: "two URLs", args: []string{rs.url, rs.url}, wantCode: 2, wantStderr: "one URL"},
		{name: "not an http URL", args: []string{"ftp://example.com/x"}, wantCode: 2, wantStderr: "http"},
		{name: "unknown flag", args: []string{"--bogus", rs.url}, wantCode: 2, wantStderr: "bogus"},
		{name: "cert without key", args: []string{"--cert", "c.pem", rs.url}, wantCode: 2, wantStderr: "--key"},
		{name: "missing cert file", args: []string{"--cert", "nope.pem", "--key", "nope.pem", rs.url}, wantCode: 2, wantStderr: "nope.pem"},
		{name: "help", args: []string{"--help"}, wantCode: 0},
		{name: "wrong secret", args: []string{"--issuer", iss.url, "--client-secret", "wrong", rs.url}, wantCode: 1, wantStderr: "invalid_client"},
		{name: "issuer down", args: []string{"--issuer", down.URL, rs.url}, wantCode: 1, wantStderr: "discovery"},
		{name: "call refused", args: []string{"--issuer", iss.url, rs.url + "/forbidden"}, wantCode: 1},
		{name: "not a key pair", args: []string{"--cert", iss.ca, "--key", iss.ca, rs.url}, wantCode: 2, wantStderr: "--cert/--key"},
		{name: "mTLS with a plain issuer without alias", args: []string{"--issuer", iss.url, "--cert", cert, "--key", key, rs.url},
			wantCode: 1, wantStderr: "no https token endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runClient(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr lacks %q", tc.wantStderr)
			}
		})
	}
}

// TestAsksForNonce: only a 401 with a DPoP-Nonce and an error parameter of
// use_dpop_nonce asks for a retry, not the words in a description.
func TestAsksForNonce(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		challenge []string
		nonce     string
		want      bool
	}{
		{name: "RFC 9449 §8 example", code: 401, challenge: []string{`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`}, nonce: "n", want: true},
		{name: "unquoted, after other parameters", code: 401, challenge: []string{`DPoP algs="ES256", error=use_dpop_nonce`}, nonce: "n", want: true},
		{name: "second challenge", code: 401, challenge: []string{`Bearer realm="x"`, `DPoP error="use_dpop_nonce"`}, nonce: "n", want: true},
		{name: "no nonce header", code: 401, challenge: []string{`DPoP error="use_dpop_nonce"`}},
		{name: "other error", code: 401, challenge: []string{`DPoP error="invalid_token"`}, nonce: "n"},
		{name: "only in the description", code: 401, challenge: []string{`DPoP error="invalid_token", error_description="not error=use_dpop_nonce here"`}, nonce: "n"},
		{name: "not a 401", code: 400, challenge: []string{`DPoP error="use_dpop_nonce"`}, nonce: "n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Www-Authenticate": tc.challenge}
			if tc.nonce != "" {
				h.Set("DPoP-Nonce", tc.nonce)
			}
			if got := asksForNonce(response{code: tc.code, header: h}); got != tc.want {
				t.Errorf("asksForNonce = %v, want %v", got, tc.want)
			}
		})
	}
}
