package idp

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

func TestJWKSDocument(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	w := do(s.Handler(), http.MethodGet, JWKSPath, "", "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(raw.Keys) != 1 {
		t.Fatalf("got %d keys, want 1", len(raw.Keys))
	}
	k := raw.Keys[0]
	for member, want := range map[string]any{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": s.Keys()[0].KID} {
		if got := k[member]; got != want {
			t.Errorf("%s = %v, want %v", member, got, want)
		}
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := k[private]; ok {
			t.Errorf("JWKS carries private member %q", private)
		}
	}

	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatalf("decode: %v", err)
	}
	jwks, err := set.JWKSlice()
	if err != nil {
		t.Fatalf("jwkset: %v", err)
	}
	pub, ok := jwks[0].Key().(*rsa.PublicKey)
	if !ok {
		t.Fatalf("key type %T, want *rsa.PublicKey", jwks[0].Key())
	}
	if got := pub.N.BitLen(); got != DefaultKeyBits {
		t.Errorf("modulus = %d bits, want %d", got, DefaultKeyBits)
	}
	if got, want := thumbprint(pub), k["kid"]; got != want {
		t.Errorf("kid %v is not the RFC 7638 thumbprint %v", want, got)
	}

	if w := do(s.Handler(), http.MethodPost, JWKSPath, "", "", nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST jwks: status %d, want 405", w.Code)
	}
}

// TestThumbprint checks the kid derivation against the example in RFC 7638
// §3.1.
func TestThumbprint(t *testing.T) {
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	const e = "AQAB"
	const want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	var m jwkset.JWKMarshal
	if err := json.Unmarshal([]byte(`{"kty":"RSA","n":"`+n+`","e":"`+e+`"}`), &m); err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := thumbprint(jwk.Key().(*rsa.PublicKey)); got != want {
		t.Errorf("thumbprint = %s, want %s", got, want)
	}
}

func TestDiscovery(t *testing.T) {
	tests := []struct {
		name   string
		issuer string
		mtls   string // Config.MTLSBaseURL
		base   string
		// wantMTLS are the RFC 8705 members expected besides the others.
		wantMTLS map[string]any
	}{
		{name: "default", issuer: "", base: "http://localhost:9000"},
		{name: "path with trailing slash", issuer: "https://idp.example.com/tenant/", base: "https://idp.example.com/tenant"},
		{name: "loopback port", issuer: "http://127.0.0.1:18000", base: "http://127.0.0.1:18000"},
		{
			name: "TLS listener beside the issuer", mtls: "https://localhost:9443", base: "http://localhost:9000",
			wantMTLS: map[string]any{
				"tls_client_certificate_bound_access_tokens": true,
				"mtls_endpoint_aliases":                      map[string]any{"token_endpoint": "https://localhost:9443/oauth2/m2m/token"},
			},
		},
		{
			name: "the issuer is the TLS listener", issuer: "https://localhost:9443", mtls: "https://localhost:9443/", base: "https://localhost:9443",
			wantMTLS: map[string]any{"tls_client_certificate_bound_access_tokens": true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestServer(t, Config{Issuer: tc.issuer, MTLSBaseURL: tc.mtls})
			w := do(s.Handler(), http.MethodGet, DiscoveryPath, "", "", nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200", w.Code)
			}
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := map[string]any{
				"issuer":                                cmpOr(tc.issuer, DefaultIssuer),
				"jwks_uri":                              tc.base + "/.well-known/jwks.json",
				"token_endpoint":                        tc.base + "/oauth2/m2m/token",
				"grant_types_supported":                 []any{"client_credentials"},
				"id_token_signing_alg_values_supported": []any{"RS256"},
				"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
				"scopes_supported":                      []any{"admin", "read:messages"},
				"dpop_signing_alg_values_supported":     []any{"ES256", "RS256", "PS256", "EdDSA"},
			}
			maps.Copy(want, tc.wantMTLS)
			wb, _ := json.Marshal(want)
			gb, _ := json.Marshal(got)
			if string(gb) != string(wb) {
				t.Errorf("discovery =\n%s\nwant\n%s", gb, wb)
			}
		})
	}
}

// TestRotationSequence walks one rotation on an injected clock: the new kid
// is listed before any token carries it, the old kid stays listed until its
// last token has expired plus the margin, then it is gone, and no token ever
// carries a kid that was not already in the JWKS.
func TestRotationSequence(t *testing.T) {
	const (
		ttl    = time.Hour
		delay  = 15 * time.Second
		margin = 2 * time.Minute
	)
	s, clock := newTestServer(t, Config{TokenTTL: ttl, RotationPublishDelay: delay, RetireMargin: margin})
	ctx := t.Context()

	issue := func() string {
		t.Helper()
		w := do(s.Handler(), http.MethodPost, TokenPath, ctJSON,
			jsonBody("client_id", "demo-client", "client_secret", "demo-secret", "grant_type", "client_credentials"), nil)
		if w.Code != http.StatusOK {
			t.Fatalf("token: status %d: %s", w.Code, w.Body)
		}
		var resp tokenResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		return resp.AccessToken
	}
	listed := func() []string { return kids(t, fetchJWKS(t, s)) }
	states := func() map[string]KeyState {
		m := map[string]KeyState{}
		for _, k := range s.Keys() {
			m[k.KID] = k.State
		}
		return m
	}

	k1 := s.Keys()[0].KID
	if got := kidOf(t, issue()); got != k1 {
		t.Fatalf("first token kid = %s, want %s", got, k1)
	}

	clock.Advance(10 * time.Minute)
	info, err := s.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	k2 := info.KID
	if info.State != KeyPending || !info.SigningFrom.Equal(clock.Now().Add(delay)) {
		t.Errorf("Rotate = %+v, want pending, signing from now+%s", info, delay)
	}
	if got, want := listed(), []string{k1, k2}; !slices.Equal(got, want) {
		t.Fatalf("after rotate JWKS kids = %v, want %v (new key published at once)", got, want)
	}
	lastOld := issue() // still k1: the new key is not used before the delay
	if got := kidOf(t, lastOld); got != k1 {
		t.Fatalf("token right after rotate kid = %s, want old %s", got, k1)
	}
	lastOldExpiry := clock.Now().Add(ttl)

	clock.Advance(delay - time.Second)
	if got := kidOf(t, issue()); got != k1 {
		t.Fatalf("token 1s before the delay kid = %s, want old %s", got, k1)
	}
	lastOldExpiry = clock.Now().Add(ttl)
	jwksBeforeSwitch := fetchJWKS(t, s)

	clock.Advance(time.Second)
	newTok := issue()
	if got := kidOf(t, newTok); got != k2 {
		t.Fatalf("token after the delay kid = %s, want new %s", got, k2)
	}
	// A relying party that refreshed before the switch already knows k2.
	if _, err := verifyWith(jwksBeforeSwitch, newTok, DefaultIssuer, DefaultAudience, clock.Now); err != nil {
		t.Errorf("new-key token does not verify against a JWKS fetched before the switch: %v", err)
	}
	if got, want := states(), map[string]KeyState{k1: KeyRetiring, k2: KeySigning}; !mapsEqual(got, want) {
		t.Errorf("states = %v, want %v", got, want)
	}
	for _, k := range s.Keys() {
		if k.KID == k1 && !k.RetireAfter.Equal(lastOldExpiry.Add(margin)) {
			t.Errorf("k1 RetireAfter = %v, want %v", k.RetireAfter, lastOldExpiry.Add(margin))
		}
	}

	// Just before the old key's last token expires plus margin: still listed,
	// and that token still verifies against the served JWKS.
	clock.Advance(lastOldExpiry.Add(margin).Sub(clock.Now()) - time.Second)
	if got, want := listed(), []string{k1, k2}; !slices.Equal(got, want) {
		t.Fatalf("1s before retirement JWKS kids = %v, want %v", got, want)
	}
	if _, err := verifyWith(fetchJWKS(t, s), lastOld, DefaultIssuer, DefaultAudience,
		func() time.Time { return lastOldExpiry.Add(-time.Minute) }); err != nil {
		t.Errorf("old-key token no longer verifies while listed: %v", err)
	}

	clock.Advance(time.Second)
	if got, want := listed(), []string{k2}; !slices.Equal(got, want) {
		t.Fatalf("at retirement JWKS kids = %v, want %v", got, want)
	}
	if _, err := verifyWith(fetchJWKS(t, s), lastOld, DefaultIssuer, DefaultAudience,
		func() time.Time { return lastOldExpiry.Add(-time.Minute) }); !errors.Is(err, jwt.ErrTokenUnverifiable) {
		t.Errorf("old-key token after retirement: error %v, want %v", err, jwt.ErrTokenUnverifiable)
	}
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestRotationCases(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// run rotates and advances the clock, then returns the kids the
		// JWKS should list and the kid that should sign.
		run func(t *testing.T, s *Server, clock *fakeClock, k1 string) (wantListed []string, wantSigner string)
	}{
		{
			name: "negative delay signs at once",
			cfg:  Config{RotationPublishDelay: -1},
			run: func(t *testing.T, s *Server, clock *fakeClock, k1 string) ([]string, string) {
				mustMint(t, s) // k1 signed a token, so it must stay listed
				k2 := mustRotate(t, s).KID
				return []string{k1, k2}, k2
			},
		},
		{
			name: "superseded key that never signed is dropped at once",
			cfg:  Config{RotationPublishDelay: -1},
			run: func(t *testing.T, s *Server, clock *fakeClock, k1 string) ([]string, string) {
				k2 := mustRotate(t, s).KID
				_ = k2
				k3 := mustRotate(t, s).KID
				// k1 and k2 signed nothing.
				return []string{k3}, k3
			},
		},
		{
			name: "second rotation before the first takes effect",
			cfg:  Config{RotationPublishDelay: 10 * time.Second},
			run: func(t *testing.T, s *Server, clock *fakeClock, k1 string) ([]string, string) {
				mustMint(t, s)
				k2 := mustRotate(t, s).KID
				clock.Advance(5 * time.Second)
				k3 := mustRotate(t, s).KID
				clock.Advance(5 * time.Second) // k2 signs now, k3 pending
				mustMint(t, s)
				return []string{k1, k2, k3}, k2
			},
		},
		{
			name: "long-lived minted token keeps its key",
			cfg:  Config{RotationPublishDelay: -1, TokenTTL: time.Minute, RetireMargin: -1},
			run: func(t *testing.T, s *Server, clock *fakeClock, k1 string) ([]string, string) {
				c := s.DefaultClaims("demo-client", DefaultAudience)
				c["exp"] = clock.Now().Add(24 * time.Hour).Unix()
				if _, err := s.MintForTest(c); err != nil {
					t.Fatal(err)
				}
				k2 := mustRotate(t, s).KID
				clock.Advance(2 * time.Hour) // far past TokenTTL, before the minted exp
				return []string{k1, k2}, k2
			},
		},
		{
			name: "minted token without exp counts as TokenTTL",
			cfg:  Config{RotationPublishDelay: -1, TokenTTL: time.Minute, RetireMargin: -1},
			run: func(t *testing.T, s *Server, clock *fakeClock, k1 string) ([]string, string) {
				c := s.DefaultClaims("demo-client", DefaultAudience)
				delete(c, "exp")
				if _, err := s.MintForTest(c); err != nil {
					t.Fatal(err)
				}
				k2 := mustRotate(t, s).KID
				clock.Advance(time.Minute)
				return []string{k2}, k2
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, clock := newTestServer(t, tc.cfg)
			k1 := s.Keys()[0].KID
			wantListed, wantSigner := tc.run(t, s, clock, k1)
			if got := kids(t, fetchJWKS(t, s)); !slices.Equal(got, wantListed) {
				t.Errorf("JWKS kids = %v, want %v", got, wantListed)
			}
			if got := kidOf(t, mustMint(t, s)); got != wantSigner {
				t.Errorf("signer = %s, want %s", got, wantSigner)
			}
		})
	}
}

func mustRotate(t *testing.T, s *Server) KeyInfo {
	t.Helper()
	info, err := s.Rotate(t.Context())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return info
}

func mustMint(t *testing.T, s *Server) string {
	t.Helper()
	tok, err := s.MintForTest(s.DefaultClaims("demo-client", DefaultAudience))
	if err != nil {
		t.Fatalf("MintForTest: %v", err)
	}
	return tok
}

func TestRotateCanceled(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Rotate(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Rotate error = %v, want %v", err, context.Canceled)
	}
	if got := len(s.Keys()); got != 1 {
		t.Errorf("keys after canceled rotate = %d, want 1", got)
	}
}

// TestConcurrentRotation runs issuance, JWKS reads and rotations at once
// (for the race detector) and checks that every issued token verifies
// against the JWKS served afterwards.
func TestConcurrentRotation(t *testing.T) {
	s, clock := newTestServer(t, Config{RotationPublishDelay: -1})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		tokens []string
		errs   []error
	)
	record := func(tok string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		tokens = append(tokens, tok)
	}
	for range 4 {
		wg.Go(func() {
			for range 10 {
				record(s.MintForTest(s.DefaultClaims("demo-client", DefaultAudience)))
				_ = s.Keys()
				clock.Advance(time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for range 3 {
			_, err := s.Rotate(t.Context())
			record("", err)
		}
	})
	wg.Go(func() {
		for range 10 {
			if _, err := s.jwksJSON(t.Context()); err != nil {
				record("", err)
			}
		}
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("concurrent call failed: %v", err)
		}
	}
	jwks := fetchJWKS(t, s)
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		if _, err := verifyWith(jwks, tok, DefaultIssuer, DefaultAudience, clock.Now); err != nil {
			t.Errorf("token with kid %s does not verify: %v", kidOf(t, tok), err)
		}
	}
}

func TestAdminHandler(t *testing.T) {
	s, _ := newTestServer(t, Config{RotationPublishDelay: 15 * time.Second})
	admin := s.AdminHandler()
	k1 := s.Keys()[0].KID

	w := do(admin, http.MethodPost, RotatePath, "", "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("POST /rotate: status %d, want 200: %s", w.Code, w.Body)
	}
	var info KeyInfo
	if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if info.KID == "" || info.KID == k1 || info.State != KeyPending {
		t.Errorf("rotate answered %+v, want a new pending key", info)
	}
	if got, want := kids(t, fetchJWKS(t, s)), []string{k1, info.KID}; !slices.Equal(got, want) {
		t.Errorf("JWKS kids = %v, want %v", got, want)
	}

	w = do(admin, http.MethodGet, KeysPath, "", "", nil)
	var infos []KeyInfo
	if err := json.Unmarshal(w.Body.Bytes(), &infos); err != nil {
		t.Fatalf("decode /keys: %v", err)
	}
	if len(infos) != 2 || infos[0].State != KeySigning || infos[1].KID != info.KID {
		t.Errorf("/keys = %+v, want signing %s then pending %s", infos, k1, info.KID)
	}

	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
	}{
		{name: "GET rotate", method: http.MethodGet, path: RotatePath, wantStatus: http.StatusMethodNotAllowed},
		{name: "POST keys", method: http.MethodPost, path: KeysPath, wantStatus: http.StatusMethodNotAllowed},
		{name: "token endpoint absent", method: http.MethodPost, path: TokenPath, wantStatus: http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if w := do(admin, tc.method, tc.path, "", "", nil); w.Code != tc.wantStatus {
				t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, w.Code, tc.wantStatus)
			}
		})
	}
	if got := len(s.Keys()); got != 2 {
		t.Errorf("keys = %d, want 2 (refused requests must not rotate)", got)
	}
}
