package jwks_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"
	jsonv2 "github.com/go-json-experiment/json"

	"github.com/extauthz/extauthz/jwks"
)

// FuzzParse feeds arbitrary documents to Parse, which reads bytes an
// identity provider (or whoever answers in its place) controls. Seeds: the
// JWK Sets under testdata (the providers' included), the first of them with
// key_ops,
// duplicate and case-folded member names and invalid UTF-8 put in, garbage
// and the empty document; the fuzzer's own finds are kept under
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	names := []string{"rsa.jwks.json", "ec.jwks.json", "mixed.jwks.json"}
	providerSets, _ := filepath.Glob(filepath.Join("testdata", "providers", "*", "jwks.json"))
	for _, p := range providerSets {
		names = append(names, strings.TrimPrefix(p, "testdata"+string(filepath.Separator)))
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	doc, err := os.ReadFile(filepath.Join("testdata", "rsa.jwks.json"))
	if err != nil {
		f.Fatal(err)
	}
	// Members put at the start of the first key, a usable RS256 key.
	firstKey := bytes.Index(doc, []byte("{\n      \"alg\""))
	if firstKey < 0 {
		f.Fatal("testdata/rsa.jwks.json: the first key does not start with alg")
	}
	for _, members := range []string{
		`"key_ops":["encrypt","wrapKey"],`,
		`"key_ops":["verify"],`,
		`"key_ops":[],`,
		`"key_ops":null,`,
		`"key_ops":["sign","verify"],"use":"enc",`,
		`"key_ops":["encrypt"],"key_ops":["verify"],`,
		`"use":"enc",`,
		`"USE":"enc",`,
		`"Kid":"rsa-2",`,
		`"\u212aty":"EC",`,
		`"kty":"EC",`,
		"\"x\":\"\xff\",",
		`"oth":[{"r":"AQ","r":"Aw"}],`,
	} {
		f.Add(slices.Concat(doc[:firstKey+1], []byte(members), doc[firstKey+1:]))
	}
	// Top-level names: the whole document is refused.
	f.Add(slices.Concat([]byte(`{"keys":[],`), doc[1:]))
	f.Add(slices.Concat([]byte(`{"Keys":[],`), doc[1:]))
	f.Add(slices.Concat([]byte(`{"x":1,"x":2,`), doc[1:]))
	f.Add(slices.Concat(doc, []byte(`{"keys":[]}`)))
	for _, s := range []string{
		"",
		"\x00\xff garbage \x7f",
		"{",
		"null",
		`{"keys":null}`,
		`{"keys":[]}`,
		`{"keys":[{}]}`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"RSA","kid":"a","use":"enc","n":"AQAB","e":"AQAB"}],"keys":[]}`,
		`{"keys":[{"kty":"RSA","use":"enc","use":"sig","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"RSA","key_ops":["encrypt","wrapKey"],"n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`,
	} {
		f.Add([]byte(s))
	}
	const maxKeys = 100
	f.Fuzz(func(t *testing.T, data []byte) {
		// Only RS256 allowed, as the service is configured by default.
		res, err := jwks.Parse(data, []string{"RS256"}, maxKeys)
		checkParse(t, res, err, maxKeys, func(k any) bool {
			rk, ok := k.(*rsa.PublicKey)
			return ok && rsaUsable(rk)
		})
		for _, k := range res.Keys {
			if a := k.Marshal().ALG; a != "" && a != "RS256" {
				t.Errorf("key %q: alg %q, want RS256 or none", k.Marshal().KID, a)
			}
		}

		// Every algorithm allowed: each key is still a public key of a
		// signing type.
		res, err = jwks.Parse(data, []string{"RS256", "PS512", "ES256", "ES384", "ES512", "EdDSA"}, maxKeys)
		checkParse(t, res, err, maxKeys, func(k any) bool {
			switch k := k.(type) {
			case *rsa.PublicKey:
				return rsaUsable(k)
			case *ecdsa.PublicKey, ed25519.PublicKey:
				return true
			}
			return false
		})
	})
}

// checkParse checks what must hold for any Parse result: keys only with a
// nil error, only sentinel errors, at most maxKeys keys, distinct kids (kid-less keys may repeat), no
// use but sig, no key_ops without verify, no private material, and every key
// accepted by ok.
func checkParse(t *testing.T, res jwks.ParseResult, err error, maxKeys int, ok func(any) bool) {
	t.Helper()
	switch {
	case err == nil:
		if len(res.Keys) == 0 {
			t.Fatal("Parse: nil error and no keys")
		}
	case errors.Is(err, jwks.ErrParse), errors.Is(err, jwks.ErrNoUsableKeys):
		if len(res.Keys) != 0 {
			t.Fatalf("Parse: error %v with %d keys, want none", err, len(res.Keys))
		}
	default:
		t.Fatalf("Parse: error %v wraps neither ErrParse nor ErrNoUsableKeys", err)
	}
	if len(res.Keys)+len(res.Skipped) > maxKeys {
		t.Errorf("Parse: %d keys and %d skipped, more than maxKeys %d", len(res.Keys), len(res.Skipped), maxKeys)
	}
	seen := make(map[string]bool)
	for _, k := range res.Keys {
		m := k.Marshal()
		if m.KID != "" && seen[m.KID] {
			t.Errorf("kid %q returned twice", m.KID)
		}
		seen[m.KID] = true
		if m.USE != "" && m.USE != jwkset.UseSig {
			t.Errorf("key %q: use %q, want sig or none", m.KID, m.USE)
		}
		if m.KEYOPS != nil && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
			t.Errorf("key %q: key_ops %q, want verify among them or none", m.KID, m.KEYOPS)
		}
		if m.D != "" || m.P != "" || m.Q != "" || m.K != "" {
			t.Errorf("key %q: private or symmetric material kept", m.KID)
		}
		switch k.Key().(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, []byte:
			t.Errorf("key %q: got %T, want a public key", m.KID, k.Key())
		}
		if !ok(k.Key()) {
			t.Errorf("key %q: %T is not an allowed signing key", m.KID, k.Key())
		}
	}
}

// rsaUsable reports whether crypto/rsa can verify signatures with k (the
// checks of its checkPublicKey) and k is large enough.
func rsaUsable(k *rsa.PublicKey) bool {
	return k.N.BitLen() >= jwks.MinRSABits && k.N.Bit(0) == 1 && k.E >= 3 && k.E%2 == 1 && k.E <= 1<<31-1
}

// FuzzDiscovery feeds arbitrary documents to ParseDiscovery, the other
// function that reads bytes a provider controls, and checks that what it
// accepts is bounded, well formed and read the same by encoding/json (which
// matches names case-insensitively and keeps the last of duplicates) and by
// go-json-experiment's strict decoder: a document parsers could read as
// naming two issuers or two key sets is never accepted. Seeds: the
// providers' documents under testdata and the tricks TestParseDiscovery
// lists; inputs that fail are kept under testdata/fuzz/FuzzDiscovery.
func FuzzDiscovery(f *testing.F) {
	docs, _ := filepath.Glob(filepath.Join("testdata", "providers", "*", "*openid-configuration.json"))
	if len(docs) == 0 {
		f.Fatal("no discovery documents under testdata/providers")
	}
	for _, p := range docs {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"null",
		"{}",
		"[]",
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}`,
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","issuer":"https://evil.test"}`,
		`{"Issuer":"https://evil.test","issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}`,
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","JWKS_URI":"https://evil.test/jwks"}`,
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","iſſuer":"https://evil.test"}`,
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","m":{"a":1,"a":2}}`,
		`{"issuer":"https://idp.test","jwks_uri":"https://u:p@idp.test/jwks"}`,
		`{"issuer":"https://idp.test","jwks_uri":"/jwks"}`,
		`{"issuer":"https:\/\/idp.test","jwks_uri":"https://idp.test/jwks\u0000"}`,
		"{\"issuer\":\"https://idp.test\",\"jwks_uri\":\"https://idp.test/jwks\",\"x\":\"\xff\"}",
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"} {}`,
		`{"issuer":1,"jwks_uri":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := jwks.ParseDiscovery(data)
		if err != nil {
			if !errors.Is(err, jwks.ErrDiscovery) {
				t.Fatalf("ParseDiscovery: error %v does not wrap ErrDiscovery", err)
			}
			if d != (jwks.Discovery{}) {
				t.Fatalf("ParseDiscovery: error %v with %+v", err, d)
			}
			return
		}
		if len(data) > jwks.MaxDiscoveryBytes {
			t.Fatalf("ParseDiscovery accepted %d bytes, over MaxDiscoveryBytes", len(data))
		}
		if d.Issuer == "" {
			t.Fatal("ParseDiscovery accepted an empty issuer")
		}
		if err := jwks.CheckURL(d.JWKSURI); err != nil {
			t.Fatalf("ParseDiscovery accepted jwks_uri %q: %v", d.JWKSURI, err)
		}
		if u, err := url.Parse(d.JWKSURI); err != nil || u.User != nil {
			t.Fatalf("ParseDiscovery accepted jwks_uri %q with user info (%v)", d.JWKSURI, err)
		}
		var std struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("ParseDiscovery accepted what encoding/json refuses: %v", err)
		}
		if std.Issuer != d.Issuer || std.JWKSURI != d.JWKSURI {
			t.Fatalf("ParseDiscovery read %+v, encoding/json %+v", d, std)
		}
		var strict struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := jsonv2.Unmarshal(data, &strict); err != nil {
			t.Fatalf("ParseDiscovery accepted what a strict decoder refuses: %v", err)
		}
		if strict.Issuer != d.Issuer || strict.JWKSURI != d.JWKSURI {
			t.Fatalf("ParseDiscovery read %+v, a strict decoder %+v", d, strict)
		}
	})
}
