package selfsigned

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestKeyPair: the certificate is self-signed, names its hosts as DNS names
// or IP addresses, serves both TLS ends, and its fingerprint is the
// SHA-256 of its DER bytes.
func TestKeyPair(t *testing.T) {
	c, err := KeyPair("demo", []string{"localhost", "127.0.0.1", "::1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if leaf == nil {
		t.Fatal("Leaf is nil")
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if got, want := leaf.DNSNames, []string{"localhost"}; !slices.Equal(got, want) {
		t.Errorf("DNSNames = %v, want %v", got, want)
	}
	if got := leaf.IPAddresses; len(got) != 2 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) || !got[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v, want [127.0.0.1 ::1]", got)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("VerifyHostname: %v", err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			t.Errorf("ExtKeyUsage %v lacks %v", leaf.ExtKeyUsage, u)
		}
	}
	if time.Until(leaf.NotAfter) > time.Hour || time.Until(leaf.NotAfter) < 59*time.Minute {
		t.Errorf("NotAfter = %v, want an hour from now", leaf.NotAfter)
	}
	sum := sha256.Sum256(leaf.Raw)
	fp := Fingerprint(leaf.Raw)
	if got, want := strings.ReplaceAll(fp, ":", ""), strings.ToUpper(hex.EncodeToString(sum[:])); got != want || len(fp) != 95 {
		t.Errorf("Fingerprint = %s, want %s with colons", fp, want)
	}
}
