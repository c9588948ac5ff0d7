package authz_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/jwks"
)

// staticKeys is a KeySource holding one key. In a real server it is a
// *jwks.Cache, which fetches and refreshes the provider's JWKS.
type staticKeys struct {
	kid string
	key *rsa.PublicKey
}

func (s staticKeys) Key(_ context.Context, t *jwt.Token) (any, error) {
	if kid, _ := t.Header["kid"].(string); kid != s.kid {
		return nil, jwks.ErrKeyNotFound
	}
	return s.key, nil
}

func ExampleServer_Decide() {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	srv, err := authz.New(authz.Config{
		Providers: []authz.Provider{{
			Name:      "demo",
			Issuer:    "https://issuer.example.com",
			Audiences: []string{"https://api.example.com"},
			Keys:      staticKeys{kid: "k1", key: &priv.PublicKey},
		}},
		Rules: []authz.Rule{
			{Path: "/public", Public: true},
			{Path: "/admin", Scopes: []string{"admin"}},
		},
		ClaimHeaders: map[string]string{"x-jwt-sub": "sub"},
		Logger:       slog.New(slog.DiscardHandler),
		Now:          func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}

	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss":   "https://issuer.example.com",
		"aud":   "https://api.example.com",
		"sub":   "alice",
		"scope": "read:messages",
		"exp":   now.Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString(priv)
	if err != nil {
		panic(err)
	}
	bearer := []string{"Bearer " + raw}

	for _, r := range []authz.Request{
		{Method: "GET", Path: "/protected", Authorization: bearer},
		{Method: "GET", Path: "/protected"},
		{Method: "GET", Path: "/admin", Authorization: bearer},
		{Method: "GET", Path: "/public/%2e%2e/admin"},
		{Method: "GET", Path: "/public", HeaderNames: []string{"x_jwt_sub"}},
	} {
		d := srv.Decide(context.Background(), r)
		fmt.Printf("%s %s -> %d %s\n", r.Method, r.Path, d.Status(), d.Reason)
		if d.Allowed() {
			fmt.Printf("  set %v, remove %v\n", d.Headers, d.Remove)
		} else {
			fmt.Printf("  WWW-Authenticate: %s\n", d.WWWAuthenticate)
		}
	}
	// Output:
	// GET /protected -> 200 allowed
	//   set [{x-jwt-sub alice}], remove [authorization]
	// GET /protected -> 401 missing_token
	//   WWW-Authenticate: Bearer realm="extauthz"
	// GET /admin -> 403 insufficient_scope
	//   WWW-Authenticate: Bearer realm="extauthz", error="insufficient_scope", error_description="Insufficient scope", scope="admin"
	// GET /public/%2e%2e/admin -> 401 missing_token
	//   WWW-Authenticate: Bearer realm="extauthz"
	// GET /public -> 200 public
	//   set [], remove [x-jwt-sub x_jwt_sub]
}
