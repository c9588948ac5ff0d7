package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate, key and client CA bundle from disk,
// reloading them when the files change, so that rotated certificates (cert-
// manager, a mounted Secret) take effect without a restart. It looks at the
// files at most once per reloadEvery, during a handshake; a change that does
// not load (a half-written file, a key that does not match) is logged and the
// previous material kept.
type certReloader struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger
	now                       func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamp   string // mod times and sizes of the files as last loaded
	cert    *tls.Certificate
	pool    *x509.CertPool
}

const reloadEvery = time.Second

func newCertReloader(certFile, keyFile, caFile string, log *slog.Logger, now func() time.Time) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, caFile: caFile, log: log, now: now}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) stampNow() string {
	var s string
	for _, f := range []string{r.certFile, r.keyFile, r.caFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		} else {
			s += "missing;"
		}
	}
	return s
}

// load reads the files; the caller holds mu or is the constructor.
func (r *certReloader) load() error {
	stamp := r.stampNow()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s / %s: %w", r.certFile, r.keyFile, err)
	}
	var pool *x509.CertPool
	if r.caFile != "" {
		pool, err = loadPool(r.caFile)
		if err != nil {
			return err
		}
	}
	r.cert, r.pool, r.stamp = &cert, pool, stamp
	return nil
}

func (r *certReloader) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= reloadEvery {
		r.checked = now
		if r.stampNow() != r.stamp {
			if err := r.load(); err != nil {
				r.log.Error("tls: certificate files changed but do not load; keeping the previous ones", "error", err.Error())
			} else {
				r.log.Info("tls: certificates reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, r.pool
}

// config returns the server TLS configuration: TLS 1.2 or later, and, when a
// client CA bundle is set, client certificates required and verified against
// it (mutual TLS).
func (r *certReloader) config(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := r.current()
			c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos, Certificates: []tls.Certificate{*cert}}
			if pool != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = pool
			}
			return c, nil
		},
		// Set so that net/http's ServeTLS accepts the config; the per-client
		// config above is what handshakes use.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, _ := r.current()
			return cert, nil
		},
	}
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// jwksClient returns the HTTP client for JWKS fetches: the system roots plus,
// when caFile is set, the certificates in it.
func jwksClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("jwks CA: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("jwks CA: " + caFile + " holds no PEM certificate")
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: t}, nil
}
