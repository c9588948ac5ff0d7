package main

// tls.go: the optional TLS listener, which asks for client certificates so
// that tokens requested over it are bound to them (RFC 8705).

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/extauthz/extauthz/internal/selfsigned"
)

// generatedValidity is how long a generated certificate is valid; a new one
// is made at every start.
const generatedValidity = 30 * 24 * time.Hour

// listenTLS opens the TLS listener on --tls-addr with the certificate of
// --tls-cert and --tls-key, or a generated self-signed one, and returns it
// with the https base URL under which the issuer publishes it: the issuer's
// host name with the listener's port.
func (o options) listenTLS(issuer string, log *slog.Logger) (net.Listener, string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, "", fmt.Errorf("--issuer: %w", err)
	}
	cert, err := o.tlsCertificate(u.Hostname(), log)
	if err != nil {
		return nil, "", err
	}
	lis, err := net.Listen("tcp", o.tlsAddr)
	if err != nil {
		return nil, "", err
	}
	port := lis.Addr().(*net.TCPAddr).Port
	base := "https://" + net.JoinHostPort(u.Hostname(), fmt.Sprint(port))
	return tls.NewListener(lis, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// Any client certificate is taken, self-signed ones included, and
		// none is required: the token endpoint binds the token to whatever
		// certificate the handshake proved the client holds the key of.
		ClientAuth: tls.RequestClientCert,
	}), base, nil
}

// tlsCertificate loads --tls-cert and --tls-key, or generates a self-signed
// certificate for loopback and issuerHost, logs its fingerprint and writes
// it to --tls-cert-out, if given, for clients to trust.
func (o options) tlsCertificate(issuerHost string, log *slog.Logger) (tls.Certificate, error) {
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		return cert, nil
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if issuerHost != "" && !slices.Contains(hosts, issuerHost) {
		hosts = append(hosts, issuerHost)
	}
	certPEM, keyPEM, err := selfsigned.Generate("demo-idp", hosts, generatedValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if o.tlsCertOut != "" {
		if err := os.WriteFile(o.tlsCertOut, certPEM, 0o644); err != nil {
			return tls.Certificate{}, fmt.Errorf("--tls-cert-out: %w", err)
		}
	}
	log.Info("generated a self-signed TLS certificate", "sha256_fingerprint", selfsigned.Fingerprint(cert.Leaf.Raw),
		"hosts", hosts, "not_after", cert.Leaf.NotAfter, "written_to", o.tlsCertOut)
	return cert, nil
}
