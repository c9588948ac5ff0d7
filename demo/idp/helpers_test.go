package idp

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// fakeClock is an injected Config.Now that only moves when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestServer builds a Server on a fake clock; cfg.Now and cfg.Logger
// are filled in when empty.
func newTestServer(t testing.TB, cfg Config) (*Server, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, clock
}

// do sends one request through h and returns the recorded response.
func do(h http.Handler, method, target, contentType, body string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, vs := range header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// fetchJWKS returns the JWKS document the server serves right now.
func fetchJWKS(t testing.TB, s *Server) []byte {
	t.Helper()
	w := do(s.Handler(), http.MethodGet, JWKSPath, "", "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", JWKSPath, w.Code)
	}
	b, _ := io.ReadAll(w.Body)
	return b
}

// kids lists the kids in a JWKS document, in order.
func kids(t testing.TB, jwks []byte) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &doc); err != nil {
		t.Fatalf("decode jwks: %v", err)
	}
	out := []string{}
	for _, k := range doc.Keys {
		out = append(out, k.KID)
	}
	return out
}

// verifyWith parses tok the way a relying party would: keys only from the
// given JWKS document (via keyfunc), RS256 only, issuer, audience and exp
// required, time from now.
func verifyWith(jwks []byte, tok, issuer, audience string, now func() time.Time) (*jwt.Token, error) {
	kf, err := keyfunc.NewJWKSetJSON(jwks)
	if err != nil {
		return nil, err
	}
	return jwt.Parse(tok, kf.Keyfunc,
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
	)
}

// kidOf reads the kid from a token's header without verifying it.
func kidOf(t testing.TB, tok string) string {
	t.Helper()
	head, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("decode header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("decode header: %v", err)
	}
	kid, _ := h["kid"].(string)
	return kid
}

func basicAuth(id, secret string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))}}
}
