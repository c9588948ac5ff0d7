package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const jwksPath = "/.well-known/jwks.json"

// idp serves the bench JWKS on 127.0.0.1, twice: over plain HTTP for the
// targets that take a JWKS URL, and over TLS as https://idp.bench.test (a
// certificate from a throw-away CA) for the Flask app, which builds its
// JWKS URL from the domain as the guide writes it. A CONNECT proxy on
// 127.0.0.1 tunnels idp.bench.test:443 to the TLS server and refuses
// anything else.
type idp struct {
	URL       string // http://127.0.0.1:port/.well-known/jwks.json
	ProxyURL  string // http://127.0.0.1:port, for HTTPS_PROXY
	CAPEM     []byte // the CA that signed the TLS certificate, for SSL_CERT_FILE
	plainHits atomic.Int64
	tlsHits   atomic.Int64
	tunnels   atomic.Int64

	plain, secure *http.Server
	proxy         net.Listener
	tlsAddr       string
	wg            sync.WaitGroup
}

// startIDP starts the three listeners; Close stops them.
func startIDP(body []byte) (*idp, error) {
	ca, leaf, err := newCertificates(issuerHost)
	if err != nil {
		return nil, err
	}
	p := &idp{CAPEM: ca}
	handler := func(hits *atomic.Int64) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != jwksPath {
				http.NotFound(w, r)
				return
			}
			hits.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pl.Close()
		return nil, err
	}
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pl.Close()
		tl.Close()
		return nil, err
	}
	p.URL = "http://" + pl.Addr().String() + jwksPath
	p.ProxyURL = "http://" + xl.Addr().String()
	p.tlsAddr = tl.Addr().String()
	p.plain = &http.Server{Handler: handler(&p.plainHits), ReadHeaderTimeout: 5 * time.Second}
	p.secure = &http.Server{Handler: handler(&p.tlsHits), ReadHeaderTimeout: 5 * time.Second,
		// A client that does not trust the CA is not the harness's error.
		ErrorLog:  log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}}
	p.proxy = xl
	p.wg.Go(func() { _ = p.plain.Serve(pl) })
	p.wg.Go(func() { _ = p.secure.ServeTLS(tl, "", "") })
	p.wg.Go(p.serveProxy)
	return p, nil
}

// Close stops the listeners and waits for the proxy's tunnels to end.
func (p *idp) Close() {
	p.plain.Close()
	p.secure.Close()
	p.proxy.Close()
	p.wg.Wait()
}

func (p *idp) serveProxy() {
	for {
		c, err := p.proxy.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.tunnel(c) })
	}
}

// tunnel answers one proxy connection: a CONNECT to idp.bench.test:443 is
// joined to the TLS server; any other request gets 403.
func (p *idp) tunnel(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.LimitReader(c, 64<<10))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect || req.Host != issuerHost+":443" {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	c.SetReadDeadline(time.Time{})
	up, err := net.DialTimeout("tcp", p.tlsAddr, 5*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	defer up.Close()
	p.tunnels.Add(1)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// The client sends its TLS hello only after the 200, so br holds no
	// bytes beyond the request; copy what it may hold anyway.
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// newCertificates makes a CA (returned as PEM) and a leaf certificate for
// host signed by it. Both are ECDSA P-256, valid for a day.
func newCertificates(host string) ([]byte, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "extauthz bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("leaf certificate: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, nil
}

// errNotReady is returned by waitHTTP when the deadline passes.
var errNotReady = errors.New("not ready")

// waitHTTP polls url until it answers want, ctx ends, or timeout passes.
func waitHTTP(ctx context.Context, url string, want int, timeout time.Duration) error {
	return waitHTTPEvery(ctx, url, want, timeout, 100*time.Millisecond)
}

// waitHTTPEvery is waitHTTP polling every poll.
func waitHTTPEvery(ctx context.Context, url string, want int, timeout, poll time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := httpClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %s)", url, errNotReady, last)
		case <-time.After(poll):
		}
	}
}

// httpClient is for probes and readiness checks: no proxy, short timeout.
var httpClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
}
