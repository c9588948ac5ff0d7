package certbind

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

func testCert(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestFromPEM(t *testing.T) {
	der := testCert(t)
	sum := sha256.Sum256(der)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	other := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testCert(t)}))
	tests := []struct {
		name, in string
		want     string
		wantErr  bool
	}{
		{"Envoy's URL-encoded PEM", url.QueryEscape(p), want, false},
		{"path-escaped (nginx)", url.PathEscape(p), want, false},
		{"plain PEM", p, want, false},
		{"absent", "", "", true},
		{"two certificates", url.QueryEscape(p + other), "", true},
		{"a key block", url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))), "", true},
		{"not a certificate", url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))), "", true},
		{"bad escape", "%zz", "", true},
		{"too large", strings.Repeat("a", MaxPEMBytes+1), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromPEM(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("FromPEM = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := FromPEM(""); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("FromPEM(\"\"): %v, want ErrNoCertificate", err)
	}
}

func TestFromXFCC(t *testing.T) {
	der := testCert(t)
	sum := sha256.Sum256(der)
	h := hex.EncodeToString(sum[:])
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	tests := []struct {
		name, in string
		want     string
		wantErr  bool
	}{
		{"Envoy's element", `By=spiffe://cluster.local/ns/api/sa/api;Hash=` + h + `;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://cluster.local/ns/app/sa/app`, want, false},
		{"upper-case hex, quoted", `hash="` + strings.ToUpper(h) + `"`, want, false},
		{"first element counts", `Hash=` + h + `,By=spiffe://b;Hash=` + strings.Repeat("00", 32), want, false},
		{"a comma inside quotes", `Subject="CN=a,b";Hash=` + h, want, false},
		{"the second element's Hash is not the edge's", `By=spiffe://a,Hash=` + h, "", true},
		{"no Hash", `By=spiffe://a;URI=spiffe://b`, "", true},
		{"two Hash", `Hash=` + h + `;Hash=` + h, "", true},
		{"short hash", `Hash=abcd`, "", true},
		{"not hex", `Hash=` + strings.Repeat("zz", 32), "", true},
		{"no =", `Hash`, "", true},
		{"absent", "", "", true},
		{"too large", strings.Repeat("a", MaxXFCCBytes+1), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromXFCC(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("FromXFCC = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// FuzzFromPEM: any input is a thumbprint of one parsed certificate or an
// error, never a panic.
func FuzzFromPEM(f *testing.F) {
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testCert(f)}))
	for _, s := range []string{url.QueryEscape(p), p, "", "%", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := FromPEM(in)
		if err == nil && len(got) != 43 {
			t.Fatalf("thumbprint %q is not 43 base64url characters", got)
		}
	})
}

// FuzzFromXFCC: any header is a 32-byte thumbprint or an error, never a
// panic.
func FuzzFromXFCC(f *testing.F) {
	for _, s := range []string{`Hash=` + strings.Repeat("ab", 32), `a="\"",Hash=1`, `"`, `;;,,`, `Subject="x;y";Hash=` + strings.Repeat("0", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := FromXFCC(in)
		if err == nil {
			if b, derr := base64.RawURLEncoding.DecodeString(got); derr != nil || len(b) != 32 {
				t.Fatalf("thumbprint %q is not base64url of 32 bytes", got)
			}
		}
	})
}
