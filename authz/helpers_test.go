package authz

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks"
)

// The fixed world every test lives in.
const (
	issuerA   = "https://a.example.com"
	issuerB   = "https://b.example.com"
	audience  = "https://api.example.com"
	audience2 = "https://other-api.example.com"
	kidA      = "a1"
	kidB      = "b1"
	subject   = "user-123"
)

// testNow is the fixed clock of every test (Config.Now).
var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// testKeys holds the package's RSA-2048 keys, generated once per test binary
// because key generation is slow under -race: keyA signs for issuer A, keyB
// for issuer B, and keyEvil belongs to nobody.
type testKeySet struct {
	keyA, keyB, keyEvil *rsa.PrivateKey
	ec                  *ecdsa.PrivateKey
}

var testKeys = sync.OnceValue(func() testKeySet {
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return testKeySet{keyA: gen(), keyB: gen(), keyEvil: gen(), ec: ec}
})

// publicPEM is the PEM of k's public key, the "secret" of the classic
// HS256-with-the-public-key confusion attack.
func publicPEM(k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// fakeKeys is a KeySource over a kid -> key map. notReady makes every call
// fail with jwks.ErrNotReady; panics makes every call panic; block makes every
// call wait for its context.
type fakeKeys struct {
	keys     map[string]any
	notReady atomic.Bool
	panics   atomic.Bool
	block    atomic.Bool
	calls    atomic.Int64
}

func newFakeKeys(kv ...any) *fakeKeys {
	f := &fakeKeys{keys: map[string]any{}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.keys[kv[i].(string)] = kv[i+1]
	}
	return f
}

func (f *fakeKeys) Key(ctx context.Context, t *jwt.Token) (any, error) {
	f.calls.Add(1)
	if f.panics.Load() {
		panic("fake key source exploded")
	}
	if f.block.Load() {
		<-ctx.Done()
		return nil, fmt.Errorf("fake: %w", ctx.Err())
	}
	if f.notReady.Load() {
		return nil, fmt.Errorf("fake: %w", jwks.ErrNotReady)
	}
	kid, _ := t.Header["kid"].(string)
	k, ok := f.keys[kid]
	if !ok {
		return nil, fmt.Errorf("fake: kid %q: %w", kid, jwks.ErrKeyNotFound)
	}
	return k, nil
}

// world is a Server with two providers and the demo rules, plus handles on
// its key sources.
type world struct {
	srv          *Server
	keysA, keysB *fakeKeys
}

// baseConfig is the configuration most tests start from: provider "a"
// (issuer A, key A as kid a1), provider "b" (issuer B, key B as kid b1), the
// demo rules and the default claim headers.
func baseConfig(keysA, keysB KeySource) Config {
	return Config{
		Providers: []Provider{
			// ForwardToken: the fixtures spell out headers_to_remove
			// without Authorization; TestForwardToken tests the default.
			{Name: "a", Issuer: issuerA, Audiences: []string{audience}, Keys: keysA, ForwardToken: true},
			{Name: "b", Issuer: issuerB, Audiences: []string{audience, audience2}, Keys: keysB, ForwardToken: true},
		},
		Rules: []Rule{
			{Path: "/public", Public: true},
			{Path: "/admin", Scopes: []string{"admin"}},
		},
		Logger: slog.New(slog.DiscardHandler),
		Now:    fixedNow,
	}
}

// newWorld builds the world; mutate (may be nil) changes the config first.
func newWorld(t testing.TB, mutate func(*Config)) world {
	t.Helper()
	k := testKeys()
	w := world{
		keysA: newFakeKeys(kidA, &k.keyA.PublicKey),
		keysB: newFakeKeys(kidB, &k.keyB.PublicKey),
	}
	cfg := baseConfig(w.keysA, w.keysB)
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w.srv = srv
	return w
}

// claimsA are valid claims for issuer A at testNow.
func claimsA() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   issuerA,
		"aud":   audience,
		"sub":   subject,
		"iat":   testNow.Add(-time.Minute).Unix(),
		"nbf":   testNow.Add(-time.Minute).Unix(),
		"exp":   testNow.Add(time.Hour).Unix(),
		"scope": "read:messages",
	}
}

// with returns a copy of c with kv set; a nil value deletes the claim.
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// tokenSpec describes a token to mint.
type tokenSpec struct {
	method jwt.SigningMethod // defaults to RS256
	key    any               // defaults to key A
	kid    string            // "-" for none; defaults to kidA
	claims jwt.MapClaims     // defaults to claimsA()
	header map[string]any    // extra header members
}

func mint(t testing.TB, s tokenSpec) string {
	t.Helper()
	if s.method == nil {
		s.method = jwt.SigningMethodRS256
	}
	if s.key == nil {
		s.key = testKeys().keyA
	}
	if s.claims == nil {
		s.claims = claimsA()
	}
	tok := jwt.NewWithClaims(s.method, s.claims)
	switch s.kid {
	case "":
		tok.Header["kid"] = kidA
	case "-":
	default:
		tok.Header["kid"] = s.kid
	}
	for k, v := range s.header {
		tok.Header[k] = v
	}
	raw, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return raw
}

// rawToken assembles a compact JWS from a header and payload (JSON objects)
// and a signature segment, for tokens golang-jwt refuses to sign.
func rawToken(t testing.TB, header, payload map[string]any, sig string) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	enc := (*jwt.Token)(nil).EncodeSegment
	return enc(h) + "." + enc(p) + "." + sig
}

func bearer(tok string) []string { return []string{"Bearer " + tok} }

// payloadOf returns the payload segment of a compact token.
func payloadOf(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	return parts[1]
}

// logBuffer is a goroutine-safe buffer for a slog JSON handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records decodes every JSON log line written so far.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newLogBuffer() (*logBuffer, *slog.Logger) {
	b := &logBuffer{}
	return b, slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lookAlike is the name a CGI/WSGI backend would give h (HTTP_X_JWT_SUB for
// both x-jwt-sub and x_jwt_sub), lower-cased with dashes.
func lookAlike(h string) string { return strings.ReplaceAll(strings.ToLower(h), "_", "-") }
