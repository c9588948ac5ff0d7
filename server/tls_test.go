package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/extauthz/extauthz/server"
)

// pki is a throw-away certificate authority for one test.
type pki struct {
	t    *testing.T
	dir  string
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	der  []byte
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{t: t, dir: t.TempDir(), key: key, cert: cert, der: der}
	return p
}

// caFile writes the CA certificate and returns its path.
func (p *pki) caFile() string {
	path := filepath.Join(p.dir, "ca.pem")
	writePEM(p.t, path, "CERTIFICATE", p.der)
	return path
}

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

// issue makes a leaf certificate (server: for 127.0.0.1; client otherwise)
// and writes it and its key under name; it returns the paths and the pair.
func (p *pki) issue(name string, serial int64, serverCert bool) (certFile, keyFile string, pair tls.Certificate) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if serverCert {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(p.t, certFile, "CERTIFICATE", der)
	writePEM(p.t, keyFile, "EC PRIVATE KEY", kder)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	// Write then rename, as a Secret update does, so a reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsCheck makes one Check over a new TLS connection and returns the
// server certificate's serial number it saw, or the error.
func tlsCheck(t *testing.T, addr string, cfg *tls.Config) (int64, error) {
	t.Helper()
	var serial int64
	creds := credentials.NewTLS(cfg.Clone())
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(&serialCreds{TransportCredentials: creds, serial: &serial}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest("/protected", ""))
	if err != nil {
		return 0, err
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 {
		t.Errorf("Check over TLS: status %d, want 401 (no token)", got)
	}
	return serial, nil
}

// serialCreds records the server certificate's serial number.
type serialCreds struct {
	credentials.TransportCredentials
	serial *int64
}

func (c *serialCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err == nil {
		if ti, ok := info.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			*c.serial = ti.State.PeerCertificates[0].SerialNumber.Int64()
		}
	}
	return conn, info, err
}

func (c *serialCreds) Clone() credentials.TransportCredentials {
	return &serialCreds{TransportCredentials: c.TransportCredentials.Clone(), serial: c.serial}
}

func TestTLSListeners(t *testing.T) {
	ca := newPKI(t, "test CA")
	certFile, keyFile, _ := ca.issue("server", 10, true)
	js := newJWKS(t, signer{key(0), "k1"})
	cfg := testConfig(js)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	h := start(t, cfg)

	client := &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12}
	serial, err := tlsCheck(t, h.grpcAddr, client)
	if err != nil || serial != 10 {
		t.Fatalf("gRPC over TLS: serial %d, err %v; want serial 10", serial, err)
	}
	// Plaintext gRPC is refused.
	conn, err := grpc.NewClient(h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest("/protected", "")); err == nil {
		t.Error("plaintext Check on a TLS listener succeeded")
	}

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: client}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + h.httpAddr + "/protected")
	if err != nil {
		t.Fatalf("HTTPS check: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("HTTPS check status = %d, want 401", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + h.httpAddr + "/protected"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS check port: status %d, want 400", resp.StatusCode)
		}
	}
	// The admin port stays plain HTTP, for probes and scrapers.
	if code, _ := h.get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
}

func TestMutualTLS(t *testing.T) {
	ca := newPKI(t, "test CA")
	other := newPKI(t, "other CA")
	certFile, keyFile, _ := ca.issue("server", 10, true)
	_, _, good := ca.issue("envoy", 20, false)
	_, _, stranger := other.issue("stranger", 30, false)
	js := newJWKS(t, signer{key(0), "k1"})
	cfg := testConfig(js)
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = certFile, keyFile, ca.caFile()
	h := start(t, cfg)

	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{
		{name: "client certificate from the CA", certs: []tls.Certificate{good}, wantOK: true},
		{name: "no client certificate", wantOK: false},
		{name: "client certificate from another CA", certs: []tls.Certificate{stranger}, wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := &tls.Config{RootCAs: ca.pool(), Certificates: tc.certs, MinVersion: tls.VersionTLS12}
			_, err := tlsCheck(t, h.grpcAddr, client)
			if (err == nil) != tc.wantOK {
				t.Errorf("gRPC: err = %v, want ok %v", err, tc.wantOK)
			}
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: client}}
			defer hc.CloseIdleConnections()
			resp, err := hc.Get("https://" + h.httpAddr + "/protected")
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tc.wantOK {
				t.Errorf("HTTPS: err = %v, want ok %v", err, tc.wantOK)
			}
		})
	}
}

func TestTLSReload(t *testing.T) {
	ca := newPKI(t, "test CA")
	certFile, keyFile, _ := ca.issue("server", 10, true)
	js := newJWKS(t, signer{key(0), "k1"})
	cfg := testConfig(js)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	h := start(t, cfg)
	client := &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12}
	if serial, err := tlsCheck(t, h.grpcAddr, client); err != nil || serial != 10 {
		t.Fatalf("before rotation: serial %d, err %v", serial, err)
	}

	// A broken pair on disk (a certificate without its key yet) keeps the old one.
	_, _, _ = ca.issue("server", 11, true) // rewrites server.pem and server-key.pem together
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the reloader's once-a-second look
	if serial, err := tlsCheck(t, h.grpcAddr, client); err != nil || serial != 10 {
		t.Fatalf("with a broken pair on disk: serial %d, err %v; want the old certificate (10)", serial, err)
	}
	if !strings.Contains(h.logs.String(), "do not load") {
		t.Error("a certificate change that does not load was not logged")
	}

	// The rotated pair is served to new connections, without a restart.
	ca.issue("server", 12, true)
	eventually(t, "the rotated certificate", func() bool {
		serial, err := tlsCheck(t, h.grpcAddr, client)
		return err == nil && serial == 12
	})
}

func TestTLSBadPairStopsStart(t *testing.T) {
	ca := newPKI(t, "test CA")
	certFile, _, _ := ca.issue("server", 10, true)
	_, otherKey, _ := ca.issue("other", 11, true)
	js := newJWKS(t, signer{key(0), "k1"})
	cfg := testConfig(js)
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, otherKey
	srv, err := server.New(cfg, server.Options{Logger: discardLogger(),
		GRPCListener: listen(t), HTTPListener: listen(t), AdminListener: listen(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Run(ctx); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("Run with a mismatched key = %v, want a tls error", err)
	}
}

func TestJWKSCustomCA(t *testing.T) {
	ts := httptest.NewTLSServer(newJWKS(t, signer{key(0), "k1"}))
	defer ts.Close()
	caFile := filepath.Join(t.TempDir(), "jwks-ca.pem")
	writePEM(t, caFile, "CERTIFICATE", ts.Certificate().Raw)

	for _, tc := range []struct {
		name      string
		ca        string
		wantReady bool
	}{
		{name: "trusted through --jwks-ca-file", ca: caFile, wantReady: true},
		{name: "untrusted without it", ca: "", wantReady: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(newJWKS(t, signer{key(0), "k1"}))
			cfg.Providers[0].JWKSURL = ts.URL + "/.well-known/jwks.json"
			cfg.JWKSCAFile = tc.ca
			h := start(t, cfg)
			if tc.wantReady {
				h.waitReady()
				return
			}
			eventually(t, "a failed fetch", func() bool { return strings.Contains(h.logs.String(), "certificate") })
			if h.srv.Ready() {
				t.Error("ready with an untrusted JWKS certificate")
			}
		})
	}
}
