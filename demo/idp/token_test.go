package idp

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	ctJSON = "application/json"
	ctForm = "application/x-www-form-urlencoded"
)

func jsonBody(kv ...string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func formBody(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

// testConfig has two audiences so that audience rules can be exercised:
// demo-client and admin-client are limited to the API, multi-client may ask
// for either, and odd-client has a secret that needs form-urlencoding in
// Basic auth.
func testConfig() Config {
	return Config{
		Issuer:    "http://localhost:9000",
		Audiences: []string{"https://api.example.com", "https://other.example.com"},
		Clients: []Client{
			{ID: "demo-client", Secret: "demo-secret", Scopes: []string{"read:messages"}, Audiences: []string{"https://api.example.com"}},
			{ID: "admin-client", Secret: "admin-secret", Scopes: []string{"read:messages", "admin"}, Audiences: []string{"https://api.example.com"}},
			{ID: "multi-client", Secret: "multi-secret", Scopes: []string{"read:messages"}},
			{ID: "odd:client", Secret: "p@ss:w rd+%", Scopes: []string{"read:messages"}, Audiences: []string{"https://api.example.com"}},
		},
	}
}

func TestTokenSuccess(t *testing.T) {
	s, clock := newTestServer(t, testConfig())
	tests := []struct {
		name        string
		contentType string
		body        string
		header      http.Header
		wantSub     string
		wantAud     string
		wantScope   string
	}{
		{
			name:        "guide JSON body",
			contentType: ctJSON,
			body:        jsonBody("client_id", "demo-client", "client_secret", "demo-secret", "audience", "https://api.example.com", "grant_type", "client_credentials"),
			wantSub:     "demo-client", wantAud: "https://api.example.com", wantScope: "read:messages",
		},
		{
			name:        "JSON with charset and no audience (single allowed)",
			contentType: "application/json; charset=utf-8",
			body:        jsonBody("client_id", "admin-client", "client_secret", "admin-secret", "grant_type", "client_credentials"),
			wantSub:     "admin-client", wantAud: "https://api.example.com", wantScope: "read:messages admin",
		},
		{
			name:        "form with credentials in body",
			contentType: ctForm,
			body:        formBody("grant_type", "client_credentials", "client_id", "demo-client", "client_secret", "demo-secret", "audience", "https://api.example.com"),
			wantSub:     "demo-client", wantAud: "https://api.example.com", wantScope: "read:messages",
		},
		{
			name:        "form with Basic auth",
			contentType: ctForm,
			body:        formBody("grant_type", "client_credentials"),
			header:      basicAuth("admin-client", "admin-secret"),
			wantSub:     "admin-client", wantAud: "https://api.example.com", wantScope: "read:messages admin",
		},
		{
			name:        "Basic auth with form-urlencoded id and secret",
			contentType: ctForm,
			body:        formBody("grant_type", "client_credentials"),
			header:      basicAuth(url.QueryEscape("odd:client"), url.QueryEscape("p@ss:w rd+%")),
			wantSub:     "odd:client", wantAud: "https://api.example.com", wantScope: "read:messages",
		},
		{
			name:        "JSON with Basic auth and matching client_id",
			contentType: ctJSON,
			body:        jsonBody("grant_type", "client_credentials", "client_id", "demo-client"),
			header:      basicAuth("demo-client", "demo-secret"),
			wantSub:     "demo-client", wantAud: "https://api.example.com", wantScope: "read:messages",
		},
		{
			name:        "narrowed scope",
			contentType: ctForm,
			body:        formBody("grant_type", "client_credentials", "scope", "admin admin"),
			header:      basicAuth("admin-client", "admin-secret"),
			wantSub:     "admin-client", wantAud: "https://api.example.com", wantScope: "admin",
		},
		{
			name:        "RFC 8707 resource parameter",
			contentType: ctForm,
			body:        formBody("grant_type", "client_credentials", "resource", "https://other.example.com"),
			header:      basicAuth("multi-client", "multi-secret"),
			wantSub:     "multi-client", wantAud: "https://other.example.com", wantScope: "read:messages",
		},
		{
			name:        "audience and resource agree",
			contentType: ctJSON,
			body:        jsonBody("grant_type", "client_credentials", "client_id", "multi-client", "client_secret", "multi-secret", "audience", "https://api.example.com", "resource", "https://api.example.com"),
			wantSub:     "multi-client", wantAud: "https://api.example.com", wantScope: "read:messages",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := do(s.Handler(), http.MethodPost, TokenPath, tc.contentType, tc.body, tc.header)
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", w.Code, w.Body)
			}
			for h, want := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"} {
				if got := w.Header().Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			var resp map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got, want := resp["token_type"], "Bearer"; got != want {
				t.Errorf("token_type = %v, want %v", got, want)
			}
			if got, want := resp["expires_in"], float64(3600); got != want {
				t.Errorf("expires_in = %v, want %v", got, want)
			}
			if got := resp["scope"]; got != tc.wantScope {
				t.Errorf("scope = %v, want %v", got, tc.wantScope)
			}
			raw, _ := resp["access_token"].(string)
			tok, err := verifyWith(fetchJWKS(t, s), raw, "http://localhost:9000", tc.wantAud, clock.Now)
			if err != nil {
				t.Fatalf("token does not verify against the served JWKS: %v", err)
			}
			if got, want := tok.Header["typ"], "JWT"; got != want {
				t.Errorf("typ = %v, want %v", got, want)
			}
			if got, want := tok.Header["kid"], s.Keys()[0].KID; got != want {
				t.Errorf("kid = %v, want %v", got, want)
			}
			claims := tok.Claims.(jwt.MapClaims)
			now := float64(clock.Now().Unix())
			wantClaims := map[string]any{
				"iss": "http://localhost:9000", "sub": tc.wantSub, "client_id": tc.wantSub,
				"aud": tc.wantAud, "scope": tc.wantScope,
				"iat": now, "nbf": now, "exp": now + 3600,
			}
			for k, want := range wantClaims {
				if got := claims[k]; got != want {
					t.Errorf("claim %s = %v, want %v", k, got, want)
				}
			}
			if jti, _ := claims["jti"].(string); len(jti) < 16 {
				t.Errorf("jti = %q, want a random id", jti)
			}
		})
	}
}

// TestClientTokenTTL: a client's own token_ttl sets exp and expires_in for
// its tokens only; the others keep the server's lifetime.
func TestClientTokenTTL(t *testing.T) {
	cfg := Config{
		TokenTTL: 10 * time.Minute,
		Clients: []Client{
			{ID: "short", Secret: "s", TokenTTL: 2*time.Second + 900*time.Millisecond}, // truncated to 2s
			{ID: "plain", Secret: "p"},
		},
	}
	s, clock := newTestServer(t, cfg)
	tests := []struct {
		name    string
		client  string
		secret  string
		wantTTL int64
	}{
		{name: "client lifetime", client: "short", secret: "s", wantTTL: 2},
		{name: "server lifetime", client: "plain", secret: "p", wantTTL: 600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := do(s.Handler(), http.MethodPost, TokenPath, ctJSON,
				jsonBody("client_id", tc.client, "client_secret", tc.secret, "grant_type", "client_credentials"), nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", w.Code, w.Body)
			}
			var resp struct {
				AccessToken string  `json:"access_token"`
				ExpiresIn   float64 `json:"expires_in"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := int64(resp.ExpiresIn); got != tc.wantTTL {
				t.Errorf("expires_in = %d, want %d", got, tc.wantTTL)
			}
			tok, err := verifyWith(fetchJWKS(t, s), resp.AccessToken, DefaultIssuer, DefaultAudience, clock.Now)
			if err != nil {
				t.Fatalf("token does not verify: %v", err)
			}
			claims := tok.Claims.(jwt.MapClaims)
			if got, want := claims["exp"], float64(clock.Now().Unix()+tc.wantTTL); got != want {
				t.Errorf("exp = %v, want %v", got, want)
			}
			if got := s.DefaultClaims(tc.client, DefaultAudience)["exp"]; got != clock.Now().Unix()+tc.wantTTL {
				t.Errorf("DefaultClaims exp = %v, want now+%d", got, tc.wantTTL)
			}
		})
	}
}

func TestTokenJTIUnique(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	seen := map[string]bool{}
	for range 5 {
		c := s.DefaultClaims("demo-client", DefaultAudience)
		jti := c["jti"].(string)
		if seen[jti] {
			t.Fatalf("jti %q repeated", jti)
		}
		seen[jti] = true
	}
}

func TestTokenErrors(t *testing.T) {
	s, _ := newTestServer(t, testConfig())
	goodJSON := func(kv ...string) string {
		base := []string{"client_id", "demo-client", "client_secret", "demo-secret", "grant_type", "client_credentials"}
		return jsonBody(append(base, kv...)...)
	}
	tests := []struct {
		name          string
		method        string // POST when empty
		target        string // TokenPath when empty
		contentType   string
		body          string
		header        http.Header
		wantStatus    int
		wantError     string
		wantChallenge bool
	}{
		{name: "GET", method: http.MethodGet, wantStatus: http.StatusMethodNotAllowed, wantError: ErrCodeInvalidRequest},
		{name: "PUT", method: http.MethodPut, contentType: ctJSON, body: goodJSON(), wantStatus: http.StatusMethodNotAllowed, wantError: ErrCodeInvalidRequest},
		{name: "no content type", body: goodJSON(), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "text/plain", contentType: "text/plain", body: goodJSON(), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "malformed content type", contentType: "application/json; =", body: goodJSON(), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "bad JSON", contentType: ctJSON, body: `{"client_id":`, wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "JSON array", contentType: ctJSON, body: `[]`, wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "JSON number parameter", contentType: ctJSON, body: `{"client_id":5,"client_secret":"demo-secret","grant_type":"client_credentials"}`, wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "JSON trailing data", contentType: ctJSON, body: goodJSON() + `{}`, wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "JSON body too large", contentType: ctJSON, body: goodJSON("pad", strings.Repeat("x", MaxBodyBytes)), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "form body too large", contentType: ctForm, body: formBody("grant_type", "client_credentials", "pad", strings.Repeat("x", MaxBodyBytes)), header: basicAuth("demo-client", "demo-secret"), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "form malformed", contentType: ctForm, body: "grant_type=%zz", header: basicAuth("demo-client", "demo-secret"), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "form repeated parameter", contentType: ctForm, body: formBody("grant_type", "client_credentials", "audience", "https://api.example.com", "audience", "https://other.example.com"), header: basicAuth("multi-client", "multi-secret"), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "missing grant_type", contentType: ctJSON, body: jsonBody("client_id", "demo-client", "client_secret", "demo-secret"), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "Basic and client_secret in body", contentType: ctForm, body: formBody("grant_type", "client_credentials", "client_secret", "demo-secret"), header: basicAuth("demo-client", "demo-secret"), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "Basic and different client_id in body", contentType: ctForm, body: formBody("grant_type", "client_credentials", "client_id", "admin-client"), header: basicAuth("demo-client", "demo-secret"), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "two Authorization headers", contentType: ctForm, body: formBody("grant_type", "client_credentials"), header: http.Header{"Authorization": {basicAuth("demo-client", "demo-secret").Get("Authorization"), basicAuth("admin-client", "admin-secret").Get("Authorization")}}, wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "audience and resource differ", contentType: ctJSON, body: jsonBody("client_id", "multi-client", "client_secret", "multi-secret", "grant_type", "client_credentials", "audience", "https://api.example.com", "resource", "https://other.example.com"), wantStatus: 400, wantError: ErrCodeInvalidRequest},
		{name: "wrong secret", contentType: ctJSON, body: jsonBody("client_id", "demo-client", "client_secret", "admin-secret", "grant_type", "client_credentials"), wantStatus: 401, wantError: ErrCodeInvalidClient},
		{name: "secret prefix", contentType: ctJSON, body: jsonBody("client_id", "demo-client", "client_secret", "demo-secre", "grant_type", "client_credentials"), wantStatus: 401, wantError: ErrCodeInvalidClient},
		{name: "unknown client", contentType: ctJSON, body: jsonBody("client_id", "nobody", "client_secret", "demo-secret", "grant_type", "client_credentials"), wantStatus: 401, wantError: ErrCodeInvalidClient},
		{name: "no credentials", contentType: ctJSON, body: jsonBody("grant_type", "client_credentials"), wantStatus: 401, wantError: ErrCodeInvalidClient},
		{name: "client_id without secret", contentType: ctForm, body: formBody("grant_type", "client_credentials", "client_id", "demo-client"), wantStatus: 401, wantError: ErrCodeInvalidClient},
		{name: "credentials only in URL query", target: TokenPath + "?client_id=demo-client&client_secret=demo-secret", contentType: ctForm, body: formBody("grant_type", "client_credentials"), wantStatus: 401, wantError: ErrCodeInvalidClient},
		{name: "JSON null body", contentType: ctJSON, body: `null`, wantStatus: 401, wantError: ErrCodeInvalidClient},
		{name: "Basic wrong secret", contentType: ctForm, body: formBody("grant_type", "client_credentials"), header: basicAuth("demo-client", "wrong"), wantStatus: 401, wantError: ErrCodeInvalidClient, wantChallenge: true},
		{name: "Basic not urlencoded", contentType: ctForm, body: formBody("grant_type", "client_credentials"), header: basicAuth("odd:client", "p@ss:w rd+%"), wantStatus: 401, wantError: ErrCodeInvalidClient, wantChallenge: true},
		{name: "Basic bad base64", contentType: ctForm, body: formBody("grant_type", "client_credentials"), header: http.Header{"Authorization": {"Basic !!!"}}, wantStatus: 401, wantError: ErrCodeInvalidClient, wantChallenge: true},
		{name: "Bearer scheme", contentType: ctForm, body: formBody("grant_type", "client_credentials"), header: http.Header{"Authorization": {"Bearer abc"}}, wantStatus: 401, wantError: ErrCodeInvalidClient, wantChallenge: true},
		{name: "unsupported grant_type", contentType: ctJSON, body: jsonBody("client_id", "demo-client", "client_secret", "demo-secret", "grant_type", "password"), wantStatus: 400, wantError: ErrCodeUnsupportedGrantType},
		{name: "unknown audience", contentType: ctJSON, body: goodJSON("audience", "https://evil.example.com"), wantStatus: 400, wantError: ErrCodeInvalidTarget},
		{name: "audience not allowed for client", contentType: ctJSON, body: goodJSON("audience", "https://other.example.com"), wantStatus: 400, wantError: ErrCodeInvalidTarget},
		{name: "audience required with several allowed", contentType: ctForm, body: formBody("grant_type", "client_credentials"), header: basicAuth("multi-client", "multi-secret"), wantStatus: 400, wantError: ErrCodeInvalidTarget},
		{name: "scope not allowed", contentType: ctJSON, body: goodJSON("scope", "read:messages admin"), wantStatus: 400, wantError: ErrCodeInvalidScope},
		{name: "scope with empty token", contentType: ctJSON, body: goodJSON("scope", "read:messages  read:messages"), wantStatus: 400, wantError: ErrCodeInvalidScope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := cmpOr(tc.method, http.MethodPost)
			target := cmpOr(tc.target, TokenPath)
			w := do(s.Handler(), method, target, tc.contentType, tc.body, tc.header)
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d; body %s", w.Code, tc.wantStatus, w.Body)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("decode %q: %v", w.Body, err)
			}
			if got := body["error"]; got != tc.wantError {
				t.Errorf("error = %v, want %v", got, tc.wantError)
			}
			if d, _ := body["error_description"].(string); d == "" {
				t.Errorf("error_description missing")
			}
			if _, ok := body["access_token"]; ok {
				t.Errorf("error response carries an access_token")
			}
			challenge := w.Header().Get("WWW-Authenticate")
			if tc.wantChallenge != strings.HasPrefix(challenge, "Basic realm=") {
				t.Errorf("WWW-Authenticate = %q, want Basic challenge: %v", challenge, tc.wantChallenge)
			}
			if tc.wantStatus == http.StatusMethodNotAllowed {
				if got := w.Header().Get("Allow"); got != http.MethodPost {
					t.Errorf("Allow = %q, want POST", got)
				}
			} else if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		})
	}
}

func TestMintForTest(t *testing.T) {
	s, clock := newTestServer(t, Config{})
	base := func(edit func(map[string]any)) map[string]any {
		c := s.DefaultClaims("demo-client", DefaultAudience, "read:messages")
		edit(c)
		return c
	}
	tests := []struct {
		name    string
		claims  map[string]any
		wantErr error
		check   func(t *testing.T, claims jwt.MapClaims)
	}{
		{
			name:   "default claims verify",
			claims: base(func(map[string]any) {}),
		},
		{
			name:    "expired",
			claims:  base(func(c map[string]any) { c["exp"] = clock.Now().Add(-time.Minute).Unix() }),
			wantErr: jwt.ErrTokenExpired,
		},
		{
			name:    "not yet valid",
			claims:  base(func(c map[string]any) { c["nbf"] = clock.Now().Add(time.Hour).Unix() }),
			wantErr: jwt.ErrTokenNotValidYet,
		},
		{
			name:    "foreign issuer",
			claims:  base(func(c map[string]any) { c["iss"] = "https://elsewhere.example.com" }),
			wantErr: jwt.ErrTokenInvalidIssuer,
		},
		{
			name:   "no scope",
			claims: base(func(c map[string]any) { delete(c, "scope") }),
			check: func(t *testing.T, claims jwt.MapClaims) {
				if _, ok := claims["scope"]; ok {
					t.Errorf("scope present, want absent")
				}
			},
		},
		{
			name:   "audience list",
			claims: base(func(c map[string]any) { c["aud"] = []string{"x", DefaultAudience} }),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := s.MintForTest(tc.claims)
			if err != nil {
				t.Fatalf("MintForTest: %v", err)
			}
			tok, err := verifyWith(fetchJWKS(t, s), raw, DefaultIssuer, DefaultAudience, clock.Now)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("verify error = %v, want %v", err, tc.wantErr)
			}
			if errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable) {
				t.Fatalf("signature did not verify: %v", err)
			}
			if tc.check != nil {
				tc.check(t, tok.Claims.(jwt.MapClaims))
			}
		})
	}
}

func TestExpiryOf(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name   string
		exp    any
		want   time.Time
		wantOK bool
	}{
		{name: "int64", exp: at.Unix(), want: at, wantOK: true},
		{name: "int", exp: int(at.Unix()), want: at, wantOK: true},
		{name: "float64 rounds up", exp: float64(at.Unix()) + 0.25, want: at.Add(time.Second), wantOK: true},
		{name: "json.Number", exp: json.Number("1800000000"), want: at, wantOK: true},
		{name: "NumericDate", exp: jwt.NewNumericDate(at), want: at, wantOK: true},
		{name: "nil NumericDate", exp: (*jwt.NumericDate)(nil)},
		{name: "string", exp: "1800000000"},
		{name: "absent", exp: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := expiryOf(map[string]any{"exp": tc.exp})
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Errorf("expiryOf(%v) = %v, %v; want %v, %v", tc.exp, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestNoAdminRoutesOnPublicHandler(t *testing.T) {
	s, _ := newTestServer(t, Config{})
	before := s.Keys()
	for _, path := range []string{RotatePath, KeysPath} {
		w := do(s.Handler(), http.MethodPost, path, "", "", nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("POST %s on public handler: status %d, want 404", path, w.Code)
		}
	}
	if got := s.Keys(); !slices.Equal(got, before) {
		t.Errorf("keys changed through the public handler: %v -> %v", before, got)
	}
}
