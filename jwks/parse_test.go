package jwks_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"

	"github.com/extauthz/extauthz/jwks"
)

// Small keys that are cheap to generate, once per test binary.
var (
	rsa1024 = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		return k
	})
	ecP256 = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	ecP384 = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
	ed     = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// ecJWK returns the public JWK of k with the given kid and alg (omitted when
// empty).
func ecJWK(k *ecdsa.PrivateKey, kid, alg string) map[string]any {
	pt, err := k.PublicKey.Bytes()
	if err != nil {
		panic(err)
	}
	size := (len(pt) - 1) / 2
	crv := map[int]string{32: "P-256", 48: "P-384", 66: "P-521"}[size]
	m := map[string]any{"kty": "EC", "kid": kid, "crv": crv, "x": b64(pt[1 : 1+size]), "y": b64(pt[1+size:])}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

func edJWK(k ed25519.PrivateKey, kid string) map[string]any {
	return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA", "x": b64(k.Public().(ed25519.PublicKey))}
}

// with returns a copy of m with the members in kv set (a nil value deletes).
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// evenModulus is k's modulus with its lowest bit cleared, base64url-encoded.
func evenModulus(k *rsa.PrivateKey) string {
	n := new(big.Int).SetBit(k.N, 0, 0)
	return b64(n.Bytes())
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kids(keys []jwkset.JWK) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Marshal().KID)
	}
	return out
}

func TestParse(t *testing.T) {
	rs256 := []string{"RS256"}
	good := rsaJWK(key(0), "good")
	tests := []struct {
		name        string
		doc         []byte
		algs        []string
		maxKeys     int
		wantErr     error // nil means success
		wantKIDs    []string
		wantSkipped int
	}{
		{name: "rsa 2048", doc: set(t, good), algs: rs256, wantKIDs: []string{"good"}},
		{name: "rsa 2048 without use or alg", doc: set(t, with(good, "use", nil, "alg", nil)), algs: rs256, wantKIDs: []string{"good"}},
		{name: "rsa 2048 for PS256", doc: set(t, with(good, "alg", nil)), algs: []string{"PS256"}, wantKIDs: []string{"good"}},
		{name: "rsa 1024 skipped", doc: set(t, rsaJWK(rsa1024(), "small")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "rsa 1024 skipped next to a good key", doc: set(t, rsaJWK(rsa1024(), "small"), good), algs: rs256, wantKIDs: []string{"good"}, wantSkipped: 1},
		// crypto/rsa refuses to verify with these keys, so they cannot be
		// usable: a set of only such keys must not replace a good one.
		{name: "rsa exponent 1 skipped", doc: set(t, with(good, "e", "AQ")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "rsa exponent even skipped", doc: set(t, with(good, "e", "AAEAAA")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "rsa exponent over 2^31-1 skipped", doc: set(t, with(good, "e", "gAAAAQ")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "rsa modulus even skipped", doc: set(t, with(good, "n", evenModulus(key(0)))), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "rsa exponent 3 ok", doc: set(t, with(good, "e", "Aw")), algs: rs256, wantKIDs: []string{"good"}},
		{name: "use enc skipped", doc: set(t, with(good, "use", "enc")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "use unregistered skipped", doc: set(t, with(good, "use", "signature")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "alg not allowed skipped", doc: set(t, with(good, "alg", "RS384")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "alg none skipped", doc: set(t, with(good, "alg", "none")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "rsa key claiming an EC alg skipped", doc: set(t, with(good, "alg", "ES256")), algs: []string{"RS256", "ES256"}, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{
			name:    "hmac oct skipped even if HS256 is asked for",
			doc:     set(t, map[string]any{"kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}),
			algs:    []string{"RS256", "HS256"},
			wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1,
		},
		{name: "ec P-256 with ES256 allowed", doc: set(t, ecJWK(ecP256(), "ec", "ES256")), algs: []string{"RS256", "ES256"}, wantKIDs: []string{"ec"}},
		{name: "ec P-256 without alg, ES256 allowed", doc: set(t, ecJWK(ecP256(), "ec", "")), algs: []string{"ES256"}, wantKIDs: []string{"ec"}},
		{name: "ec P-256 with ES256 not allowed", doc: set(t, ecJWK(ecP256(), "ec", "ES256")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "ec P-256 without alg, only RS256 allowed", doc: set(t, ecJWK(ecP256(), "ec", "")), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "ec P-256 claiming ES384 skipped", doc: set(t, ecJWK(ecP256(), "ec", "ES384")), algs: []string{"ES256", "ES384"}, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{name: "ec P-384 with ES384", doc: set(t, ecJWK(ecP384(), "ec", "ES384")), algs: []string{"ES384"}, wantKIDs: []string{"ec"}},
		{name: "ed25519 with EdDSA", doc: set(t, edJWK(ed(), "ed")), algs: []string{"EdDSA"}, wantKIDs: []string{"ed"}},
		{name: "ed25519 without EdDSA", doc: set(t, edJWK(ed(), "ed")), algs: []string{"RS256", "ES256"}, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{
			name:    "x25519 is not a signing key",
			doc:     set(t, map[string]any{"kty": "OKP", "kid": "x", "crv": "X25519", "x": b64(make([]byte, 32))}),
			algs:    []string{"EdDSA"},
			wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1,
		},
		{name: "duplicate kid keeps the first", doc: set(t, good, rsaJWK(key(1), "good")), algs: rs256, wantKIDs: []string{"good"}, wantSkipped: 1},
		{name: "keys without kid are all kept", doc: set(t, rsaJWK(key(1), ""), rsaJWK(key(2), "")), algs: rs256, wantKIDs: []string{"", ""}},
		{name: "invalid key does not claim its kid", doc: set(t, with(good, "n", "!!"), rsaJWK(key(1), "good")), algs: rs256, wantKIDs: []string{"good"}, wantSkipped: 1},
		{name: "mixed set", doc: set(t, good, rsaJWK(rsa1024(), "small"), with(rsaJWK(key(1), "enc"), "use", "enc"), ecJWK(ecP256(), "ec", "ES256"), rsaJWK(key(2), "good2")), algs: rs256, wantKIDs: []string{"good", "good2"}, wantSkipped: 3},
		{name: "not JSON", doc: []byte("<html>login</html>"), algs: rs256, wantErr: jwks.ErrParse},
		{name: "truncated JSON", doc: set(t, good)[:100], algs: rs256, wantErr: jwks.ErrParse},
		{name: "empty document", doc: []byte{}, algs: rs256, wantErr: jwks.ErrParse},
		{name: "JSON array", doc: []byte(`[{"kty":"RSA"}]`), algs: rs256, wantErr: jwks.ErrParse},
		{name: "JSON null", doc: []byte(`null`), algs: rs256, wantErr: jwks.ErrParse},
		{name: "no keys member", doc: []byte(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`), algs: rs256, wantErr: jwks.ErrParse},
		{name: "keys is null", doc: []byte(`{"keys":null}`), algs: rs256, wantErr: jwks.ErrParse},
		{name: "keys is an object", doc: []byte(`{"keys":{"kty":"RSA"}}`), algs: rs256, wantErr: jwks.ErrParse},
		{name: "keys is empty", doc: []byte(`{"keys":[]}`), algs: rs256, wantErr: jwks.ErrNoUsableKeys},
		{name: "keys are not objects", doc: []byte(`{"keys":[1,"x",null,[],true]}`), algs: rs256, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 5},
		{name: "too many keys", doc: set(t, good, rsaJWK(key(1), "b"), rsaJWK(key(2), "c")), algs: rs256, maxKeys: 2, wantErr: jwks.ErrParse},
		{name: "too many counts unusable keys too", doc: []byte(`{"keys":[{},{},{}]}`), algs: rs256, maxKeys: 2, wantErr: jwks.ErrParse},
		{name: "exactly max keys", doc: set(t, good, rsaJWK(key(1), "b")), algs: rs256, maxKeys: 2, wantKIDs: []string{"good", "b"}},
		{name: "max keys zero means no limit", doc: set(t, good, rsaJWK(key(1), "b"), rsaJWK(key(2), "c")), algs: rs256, maxKeys: 0, wantKIDs: []string{"good", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := jwks.Parse(tc.doc, tc.algs, tc.maxKeys)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Parse: got error %v, want nil", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse: got error %v, want %v", err, tc.wantErr)
			}
			if got := kids(res.Keys); !slices.Equal(got, tc.wantKIDs) {
				t.Errorf("kids: got %q, want %q", got, tc.wantKIDs)
			}
			if got := len(res.Skipped); got != tc.wantSkipped {
				t.Errorf("skipped: got %d %q, want %d", got, res.Skipped, tc.wantSkipped)
			}
		})
	}
}

// TestParseSentinelsAreDistinct checks that a caller can tell a broken
// document from a well-formed set without usable keys.
func TestParseSentinelsAreDistinct(t *testing.T) {
	_, err := jwks.Parse([]byte(`{"keys":[]}`), []string{"RS256"}, 0)
	if errors.Is(err, jwks.ErrParse) {
		t.Errorf("empty set: got %v, which matches ErrParse; want only ErrNoUsableKeys", err)
	}
	_, err = jwks.Parse([]byte(`nope`), []string{"RS256"}, 0)
	if errors.Is(err, jwks.ErrNoUsableKeys) {
		t.Errorf("not JSON: got %v, which matches ErrNoUsableKeys; want only ErrParse", err)
	}
}

func TestParseDuplicateKIDKeepsFirstKey(t *testing.T) {
	res, err := jwks.Parse(set(t, rsaJWK(key(0), "dup"), rsaJWK(key(1), "dup")), []string{"RS256"}, 0)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(res.Keys) != 1 {
		t.Fatalf("keys: got %d, want 1", len(res.Keys))
	}
	pub, ok := res.Keys[0].Key().(*rsa.PublicKey)
	if !ok || !pub.Equal(&key(0).PublicKey) {
		t.Errorf("kept key: got %T that is not the first key, want the first key", res.Keys[0].Key())
	}
}

// TestParseIgnoresPrivateMembers checks that a JWKS that leaks private key
// material yields public keys only, for every key type.
func TestParseIgnoresPrivateMembers(t *testing.T) {
	ecPriv, err := ecP256().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		jwk  map[string]any
		algs []string
		want any // the public key Parse must return
	}{
		{name: "rsa", jwk: withPrivate(rsaJWK(key(0), "k"), key(0)), algs: []string{"RS256"}, want: &key(0).PublicKey},
		{name: "rsa with only d", jwk: with(rsaJWK(key(0), "k"), "d", b64(key(0).D.Bytes())), algs: []string{"RS256"}, want: &key(0).PublicKey},
		{name: "ec", jwk: with(ecJWK(ecP256(), "k", "ES256"), "d", b64(ecPriv)), algs: []string{"ES256"}, want: &ecP256().PublicKey},
		{name: "ed25519", jwk: with(edJWK(ed(), "k"), "d", b64(ed().Seed())), algs: []string{"EdDSA"}, want: ed().Public()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := jwks.Parse(set(t, tc.jwk), tc.algs, 0)
			if err != nil {
				t.Fatalf("Parse: got %v, want nil", err)
			}
			if len(res.Keys) != 1 {
				t.Fatalf("keys: got %d, want 1", len(res.Keys))
			}
			got := res.Keys[0].Key()
			eq, ok := got.(interface{ Equal(crypto.PublicKey) bool })
			if !ok || !eq.Equal(tc.want) {
				t.Errorf("Key(): got %T, want the public key %T", got, tc.want)
			}
			m := res.Keys[0].Marshal()
			if m.D != "" || m.P != "" || m.Q != "" || m.DP != "" || m.DQ != "" || m.QI != "" || len(m.OTH) != 0 {
				t.Errorf("Marshal() kept private members: d=%t p=%t q=%t", m.D != "", m.P != "", m.Q != "")
			}
		})
	}
	t.Run("rsa key is *rsa.PublicKey", func(t *testing.T) {
		res, err := jwks.Parse(set(t, withPrivate(rsaJWK(key(0), "k"), key(0))), []string{"RS256"}, 0)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if _, ok := res.Keys[0].Key().(*rsa.PublicKey); !ok {
			t.Errorf("Key(): got %T, want *rsa.PublicKey", res.Keys[0].Key())
		}
	})
}

// TestParseNeverFetchesX5U serves a certificate URL that counts hits and
// checks that parsing a key that names it never calls it.
func TestParseNeverFetchesX5U(t *testing.T) {
	var hits atomic.Int64
	count := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	})
	plain := httptest.NewServer(count)
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(count)
	t.Cleanup(tlsSrv.Close)

	tests := []struct {
		name     string
		x5u      string
		wantKIDs []string
	}{
		// jwkset refuses an x5u that is not https, so the key is skipped;
		// what matters is that it is not fetched.
		{name: "http", x5u: plain.URL + "/cert.pem", wantKIDs: nil},
		{name: "https", x5u: tlsSrv.URL + "/cert.pem", wantKIDs: []string{"x5u"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := set(t, with(rsaJWK(key(0), "x5u"), "x5u", tc.x5u))
			res, _ := jwks.Parse(doc, []string{"RS256"}, 0)
			if got := kids(res.Keys); !slices.Equal(got, tc.wantKIDs) {
				t.Errorf("kids: got %q, want %q", got, tc.wantKIDs)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("x5u hits: got %d, want 0", n)
	}
}

func TestParseDeeplyNested(t *testing.T) {
	const depth = 1 << 20
	deep := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	tests := []struct {
		name string
		doc  string
	}{
		{name: "keys", doc: `{"keys":` + deep + `}`},
		{name: "key member", doc: `{"keys":[{"kty":"RSA","x5c":` + deep + `}]}`},
		{name: "unknown member", doc: `{"other":` + deep + `,"keys":[]}`},
		{name: "objects", doc: strings.Repeat(`{"keys":`, depth) + strings.Repeat("}", depth)},
		{name: "unterminated", doc: `{"keys":` + strings.Repeat("[", depth)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jwks.Parse([]byte(tc.doc), []string{"RS256"}, 0)
			if !errors.Is(err, jwks.ErrParse) {
				t.Errorf("Parse: got %v, want %v", err, jwks.ErrParse)
			}
		})
	}
}

// TestParseDuplicateKeysMember checks a document with two "keys" members. A
// parser must not merge them (a second member could smuggle keys past a
// reviewer who reads the first). RFC 7517 section 5 lets a parser take the
// last or refuse the document; parsers differ, so Parse refuses it.
func TestParseDuplicateKeysMember(t *testing.T) {
	first := `[` + string(mustJSON(t, rsaJWK(key(0), "first"))) + `]`
	last := `[` + string(mustJSON(t, rsaJWK(key(1), "last"))) + `]`
	doc := `{"keys":` + first + `,"keys":` + last + `}`
	res, err := jwks.Parse([]byte(doc), []string{"RS256"}, 0)
	if !errors.Is(err, jwks.ErrParse) {
		t.Fatalf("Parse: got %v with kids %q, want %v", err, kids(res.Keys), jwks.ErrParse)
	}
	if len(res.Keys) != 0 {
		t.Errorf("kids: got %q, want none", kids(res.Keys))
	}
}

// TestParseFixtures parses the static sets under testdata.
func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file        string
		algs        []string
		wantKIDs    []string
		wantSkipped int
		wantErr     error
	}{
		{file: "rsa.jwks.json", algs: []string{"RS256"}, wantKIDs: []string{"rsa-1", "rsa-2"}},
		{file: "ec.jwks.json", algs: []string{"RS256"}, wantErr: jwks.ErrNoUsableKeys, wantSkipped: 1},
		{file: "ec.jwks.json", algs: []string{"ES256"}, wantKIDs: []string{"ec-1"}},
		// rsa-1024 is too small, rsa-enc is an encryption key, hmac is
		// symmetric, ec-1 and ed-1 need algorithms that are not allowed.
		{file: "mixed.jwks.json", algs: []string{"RS256"}, wantKIDs: []string{"rsa-good"}, wantSkipped: 5},
		{file: "mixed.jwks.json", algs: []string{"RS256", "ES256", "EdDSA"}, wantKIDs: []string{"rsa-good", "ec-1", "ed-1"}, wantSkipped: 3},
	}
	for _, tc := range tests {
		t.Run(tc.file+" "+strings.Join(tc.algs, ","), func(t *testing.T) {
			doc, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			res, err := jwks.Parse(doc, tc.algs, 100)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse: got %v, want %v", err, tc.wantErr)
			}
			if got := kids(res.Keys); !slices.Equal(got, tc.wantKIDs) {
				t.Errorf("kids: got %q, want %q", got, tc.wantKIDs)
			}
			if got := len(res.Skipped); got != tc.wantSkipped {
				t.Errorf("skipped: got %d %q, want %d", got, res.Skipped, tc.wantSkipped)
			}
		})
	}
}

// TestParseSkipReasonsAreBounded checks that attacker-chosen strings reach
// the skip reasons (and so the logs) only truncated.
func TestParseSkipReasonsAreBounded(t *testing.T) {
	long := strings.Repeat("A", 10000)
	doc := set(t, with(rsaJWK(key(0), "a"), "use", long), with(rsaJWK(key(0), "b"), "alg", long), map[string]any{"kty": long})
	res, err := jwks.Parse(doc, []string{"RS256"}, 0)
	if !errors.Is(err, jwks.ErrNoUsableKeys) {
		t.Fatalf("Parse: got %v, want %v", err, jwks.ErrNoUsableKeys)
	}
	if len(res.Skipped) != 3 {
		t.Fatalf("skipped: got %d, want 3", len(res.Skipped))
	}
	for _, s := range res.Skipped {
		if len(s) > 200 {
			t.Errorf("skip reason is %d bytes long, want at most 200: %.80q...", len(s), s)
		}
	}
}

// TestParseKeyOps: a key whose key_ops (RFC 7517 section 4.3) is present and
// does not list "verify" may not verify signatures, whatever its use says, so
// it is skipped as a key whose use is not sig is. When use and key_ops are
// both present they must agree.
func TestParseKeyOps(t *testing.T) {
	rs256, es256 := []string{"RS256"}, []string{"ES256"}
	good := rsaJWK(key(0), "k")
	noUse := with(good, "use", nil)
	tests := []struct {
		name       string
		jwk        map[string]any
		algs       []string
		wantKept   bool
		wantReason string // in the skip reason, when the key is skipped
	}{
		{name: "encrypt and wrapKey, no use", jwk: with(noUse, "key_ops", []string{"encrypt", "wrapKey"}), algs: rs256, wantReason: "key_ops"},
		{name: "sign only, no use", jwk: with(noUse, "key_ops", []string{"sign"}), algs: rs256, wantReason: "key_ops"},
		{name: "empty, no use", jwk: with(noUse, "key_ops", []string{}), algs: rs256, wantReason: "key_ops"},
		{name: "verify, no use", jwk: with(noUse, "key_ops", []string{"verify"}), algs: rs256, wantKept: true},
		{name: "sign and verify, no use", jwk: with(noUse, "key_ops", []string{"sign", "verify"}), algs: rs256, wantKept: true},
		{name: "null is absent", jwk: with(noUse, "key_ops", json.RawMessage("null")), algs: rs256, wantKept: true},
		{name: "use sig, key_ops encrypt", jwk: with(good, "key_ops", []string{"encrypt"}), algs: rs256, wantReason: "key_ops"},
		{name: "use sig, key_ops empty", jwk: with(good, "key_ops", []string{}), algs: rs256, wantReason: "key_ops"},
		{name: "use sig, key_ops verify", jwk: with(good, "key_ops", []string{"verify"}), algs: rs256, wantKept: true},
		{name: "use enc, key_ops verify", jwk: with(good, "use", "enc", "key_ops", []string{"verify"}), algs: rs256, wantReason: "use"},
		{name: "key_ops a string", jwk: with(noUse, "key_ops", "verify"), algs: rs256, wantReason: "JSON object"},
		{name: "verify in another case", jwk: with(noUse, "key_ops", []string{"Verify"}), algs: rs256, wantReason: "key_ops"},
		{name: "ec key for deriveKey", jwk: with(ecJWK(ecP256(), "k", "ES256"), "key_ops", []string{"deriveKey", "deriveBits"}), algs: es256, wantReason: "key_ops"},
		{name: "ec key for verify", jwk: with(ecJWK(ecP256(), "k", "ES256"), "key_ops", []string{"verify"}), algs: es256, wantKept: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := jwks.Parse(set(t, tc.jwk), tc.algs, 0)
			if tc.wantKept {
				if err != nil {
					t.Fatalf("Parse: got error %v (skipped %q), want nil", err, res.Skipped)
				}
				if got := kids(res.Keys); !slices.Equal(got, []string{"k"}) {
					t.Errorf("kids: got %q, want [k]", got)
				}
				return
			}
			if !errors.Is(err, jwks.ErrNoUsableKeys) {
				t.Fatalf("Parse: got error %v, keys %q, want %v", err, kids(res.Keys), jwks.ErrNoUsableKeys)
			}
			if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], tc.wantReason) {
				t.Errorf("skipped: got %q, want one reason naming %q", res.Skipped, tc.wantReason)
			}
		})
	}
}

// TestParseDuplicateMembers: RFC 7517 lets a parser either refuse duplicate
// member names or keep the last one. A document whose meaning depends on
// which parser reads it must not decide which keys verify tokens: a key
// holding duplicate names (at any depth), names that encoding/json (and so
// jwkset) folds onto a JWK member, or invalid UTF-8 is skipped, and a set
// document with duplicate or folded top-level names is refused as a whole.
func TestParseDuplicateMembers(t *testing.T) {
	good := string(mustJSON(t, rsaJWK(key(0), "good")))
	other := string(mustJSON(t, rsaJWK(key(1), "other")))
	noUse := mustJSON(t, with(rsaJWK(key(1), "dup"), "use", nil))
	// dup is the key noUse with members put first.
	dup := func(members string) string { return "{" + members + "," + string(noUse[1:]) }
	// keys is a set of the good key and k.
	keys := func(k string) string { return `{"keys":[` + good + `,` + k + `]}` }
	tests := []struct {
		name       string
		doc        string
		wantErr    error
		wantKIDs   []string
		wantReason string // in the one skip reason
	}{
		{name: "use enc then sig", doc: keys(dup(`"use":"enc","use":"sig"`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "use sig then enc", doc: keys(dup(`"use":"sig","use":"enc"`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "kty twice", doc: keys(dup(`"kty":"EC"`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "kid twice", doc: keys(dup(`"kid":"good"`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "alg twice", doc: keys(dup(`"alg":"none"`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "n twice", doc: keys(dup(`"n":"` + b64(key(2).N.Bytes()) + `"`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "key_ops twice", doc: keys(dup(`"key_ops":["encrypt"],"key_ops":["verify"]`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "duplicate names in a nested object", doc: keys(dup(`"oth":[{"r":"AQ","r":"Aw","d":"AQ","t":"AQ"}]`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "duplicate unknown member", doc: keys(dup(`"x-note":"a","x-note":"b"`)), wantKIDs: []string{"good"}, wantReason: "duplicate member names"},
		{name: "use enc then USE sig", doc: keys(dup(`"use":"enc","USE":"sig"`)), wantKIDs: []string{"good"}, wantReason: "case-insensitive"},
		{name: "Use alone", doc: keys(dup(`"Use":"sig"`)), wantKIDs: []string{"good"}, wantReason: "case-insensitive"},
		{name: "kid in another case", doc: keys(dup(`"KID":"good"`)), wantKIDs: []string{"good"}, wantReason: "case-insensitive"},
		{name: "kty with a Kelvin sign", doc: keys(dup(`"\u212aty":"EC"`)), wantKIDs: []string{"good"}, wantReason: "case-insensitive"},
		{name: "invalid UTF-8 in a member", doc: keys(dup("\"x-note\":\"\xff\"")), wantKIDs: []string{"good"}, wantReason: "UTF-8"},
		{name: "invalid UTF-8 in a member name", doc: keys(dup("\"ki\xffd\":\"good\"")), wantKIDs: []string{"good"}, wantReason: "UTF-8"},
		{name: "unknown members differing in case are kept", doc: keys(dup(`"x-note":"a","X-NOTE":"b"`)), wantKIDs: []string{"good", "dup"}},
		{name: "the same names in two keys are kept", doc: keys(other), wantKIDs: []string{"good", "other"}},

		{name: "keys twice", doc: `{"keys":[` + good + `],"keys":[` + other + `]}`, wantErr: jwks.ErrParse},
		{name: "keys twice, the second empty", doc: `{"keys":[` + good + `],"keys":[]}`, wantErr: jwks.ErrParse},
		{name: "keys twice, the first null", doc: `{"keys":null,"keys":[` + good + `]}`, wantErr: jwks.ErrParse},
		{name: "keys and Keys", doc: `{"keys":[` + good + `],"Keys":[` + other + `]}`, wantErr: jwks.ErrParse},
		{name: "KEYS alone", doc: `{"KEYS":[` + good + `]}`, wantErr: jwks.ErrParse},
		{name: "another top-level member twice", doc: `{"x-note":1,"keys":[` + good + `],"x-note":2}`, wantErr: jwks.ErrParse},
		{name: "invalid UTF-8 in a top-level name", doc: "{\"keys\":[" + good + "],\"x\xff\":1}", wantErr: jwks.ErrParse},
		{name: "trailing data", doc: `{"keys":[` + good + `]} {"keys":[]}`, wantErr: jwks.ErrParse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := jwks.Parse([]byte(tc.doc), []string{"RS256"}, 0)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Parse: got error %v, keys %q, want %v", err, kids(res.Keys), tc.wantErr)
				}
				if len(res.Keys) != 0 {
					t.Errorf("kids: got %q with an error, want none", kids(res.Keys))
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: got error %v, want nil", err)
			}
			if got := kids(res.Keys); !slices.Equal(got, tc.wantKIDs) {
				t.Errorf("kids: got %q, want %q", got, tc.wantKIDs)
			}
			if tc.wantReason == "" {
				if len(res.Skipped) != 0 {
					t.Errorf("skipped: got %q, want none", res.Skipped)
				}
				return
			}
			if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], tc.wantReason) {
				t.Errorf("skipped: got %q, want one reason naming %q", res.Skipped, tc.wantReason)
			}
		})
	}
}
