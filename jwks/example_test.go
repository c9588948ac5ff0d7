package jwks_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/jwks"
)

// A Cache for one identity provider: New checks the configuration, Run
// (started and stopped by main) fetches and refreshes the key set, and
// Keyfunc verifies tokens with the request's context.
func Example() {
	// The identity provider: one RSA key, published as a JWK Set.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "2026-01", "alg": "RS256", "use": "sig",
		"n": b64(priv.N.Bytes()), "e": b64(big.NewInt(int64(priv.E)).Bytes()),
	}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(set)
	}))
	defer idp.Close()

	cache, err := jwks.New(jwks.Config{
		Name:   "example",
		URL:    idp.URL + "/.well-known/jwks.json",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cache.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); !cache.Ready() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // main would report not-ready meanwhile
	}
	fmt.Println("ready:", cache.Ready(), "keys:", cache.Status().Keys)

	// A token the provider issued.
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "2026-01"
	raw, _ := tok.SignedString(priv)

	// Verify it as a request handler would, with the request's context.
	parsed, err := jwt.Parse(raw, func(t *jwt.Token) (any, error) { return cache.Key(ctx, t) }, jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		fmt.Println("denied:", err)
	} else {
		sub, _ := parsed.Claims.GetSubject()
		fmt.Println("allowed:", sub)
	}

	stop()
	fmt.Println("run:", <-done)
	// Output:
	// ready: true keys: 1
	// allowed: alice
	// run: <nil>
}
