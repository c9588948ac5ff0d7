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
	"os"
	"strings"
	"sync/atomic"
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

// A Cache that finds the key set through OpenID Connect discovery and keeps
// the last good one on disk: a second start, with the provider down, is
// ready at once from the stored set.
func Example_discovery() {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "2026-01", "alg": "RS256", "use": "sig",
		"n": b64(priv.N.Bytes()), "e": b64(big.NewInt(int64(priv.E)).Bytes()),
	}}})
	var up atomic.Bool
	up.Store(true)
	var idp *httptest.Server
	idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !up.Load():
			http.Error(w, "down", http.StatusServiceUnavailable)
		case r.URL.Path == "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": idp.URL + "/", "jwks_uri": idp.URL + "/keys"})
		case r.URL.Path == "/keys":
			_, _ = w.Write(set)
		}
	}))
	defer idp.Close()
	dir, err := os.MkdirTemp("", "jwks-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	start := func() (*jwks.Cache, func()) {
		cache, err := jwks.New(jwks.Config{
			Name: "example", Issuer: idp.URL + "/", Discovery: true,
			CacheDir: dir, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			panic(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cache.Run(ctx) }()
		for deadline := time.Now().Add(10 * time.Second); cache.Status().LastSuccess.IsZero() && cache.Status().LastError == nil && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		return cache, func() { stop(); <-done }
	}

	cache, stop := start()
	st := cache.Status()
	fmt.Println("first start:", cache.Ready(), st.Source, strings.TrimPrefix(st.KeySetURL, idp.URL))
	stop()

	up.Store(false)
	cache, stop = start()
	st = cache.Status()
	fmt.Println("provider down:", cache.Ready(), st.Source, st.LastError != nil)
	stop()
	// Output:
	// first start: true fetch /keys
	// provider down: true disk true
}
