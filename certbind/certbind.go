// Package certbind reads the client certificate a token may be bound to
// (RFC 8705 §3, certificate-bound access tokens) in the forms the proxies in
// front of the server hand it over: Envoy's attributes.source.certificate and
// nginx's $ssl_client_escaped_cert (a URL-encoded PEM certificate), and the
// Hash element of Envoy's and Istio's x-forwarded-client-cert header (the
// hex SHA-256 of the certificate's DER). It owns the thumbprint a token's
// cnf["x5t#S256"] names and nothing else: which source to trust is the
// caller's configuration.
package certbind

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
)

// MaxPEMBytes bounds a certificate as the proxy sends it (URL-encoded PEM).
const MaxPEMBytes = 16 << 10

// MaxXFCCBytes bounds an x-forwarded-client-cert header.
const MaxXFCCBytes = 16 << 10

// ErrNoCertificate: the request carries no certificate in that form.
var ErrNoCertificate = errors.New("no client certificate")

// Thumbprint is the RFC 8705 §3.1 x5t#S256 of a certificate: base64url
// (no padding) of the SHA-256 of its DER.
func Thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// FromPEM returns the thumbprint of a URL-encoded PEM certificate (Envoy's
// attributes.source.certificate, nginx's $ssl_client_escaped_cert); an
// unencoded PEM is accepted too. The certificate must parse: the bytes
// hashed are those of one X.509 certificate, nothing around it.
func FromPEM(escaped string) (string, error) {
	if escaped == "" {
		return "", ErrNoCertificate
	}
	if len(escaped) > MaxPEMBytes {
		return "", errors.New("certbind: certificate larger than 16 KiB")
	}
	raw, err := url.PathUnescape(escaped) // never turns '+' (base64) into a space
	if err != nil {
		return "", errors.New("certbind: certificate is not URL-encoded PEM")
	}
	// Query-style encoders write the labels' spaces as '+'; a '+' of the
	// base64 body is %2B in that style, so only the labels need mending.
	raw = strings.NewReplacer("BEGIN+CERTIFICATE", "BEGIN CERTIFICATE", "END+CERTIFICATE", "END CERTIFICATE").Replace(raw)
	block, rest := pem.Decode([]byte(raw))
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("certbind: no PEM CERTIFICATE block")
	}
	if strings.TrimSpace(string(rest)) != "" {
		// A chain is not a client certificate: which one would bind?
		return "", errors.New("certbind: more than one PEM block")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return "", errors.New("certbind: the PEM block is not an X.509 certificate")
	}
	return Thumbprint(block.Bytes), nil
}

// FromXFCC returns the thumbprint named by the Hash element of the first
// element of an x-forwarded-client-cert header: the one the edge proxy (the
// one that terminated the client's TLS) set, proxies behind it appending
// their own (Envoy's APPEND_FORWARD). The edge must not forward a client's
// own header (Envoy's forward_client_cert_details SANITIZE_SET does that),
// which is why reading this header is an explicit choice.
func FromXFCC(v string) (string, error) {
	if v == "" {
		return "", ErrNoCertificate
	}
	if len(v) > MaxXFCCBytes {
		return "", errors.New("certbind: x-forwarded-client-cert larger than 16 KiB")
	}
	first, _ := splitQuoted(v, ',')
	var hash string
	n := 0
	for pair := first; pair != ""; {
		var kv string
		kv, pair = splitQuoted(pair, ';')
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return "", errors.New("certbind: x-forwarded-client-cert element without '='")
		}
		if strings.EqualFold(strings.TrimSpace(k), "hash") {
			n++
			hash = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	if n == 0 {
		return "", ErrNoCertificate
	}
	if n > 1 {
		return "", errors.New("certbind: x-forwarded-client-cert element with two Hash values")
	}
	sum, err := hex.DecodeString(hash)
	if err != nil || len(sum) != sha256.Size {
		return "", errors.New("certbind: x-forwarded-client-cert Hash is not a hex SHA-256")
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// splitQuoted returns s up to the first sep outside double quotes (a
// backslash escapes a quote inside them), and what follows it.
func splitQuoted(s string, sep byte) (head, tail string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
