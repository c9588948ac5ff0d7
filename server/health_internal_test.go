package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/config"
)

// TestUpdateHealthConcurrent: with several providers, every cache's refresh
// re-evaluates health from its own goroutine, so those evaluations run
// concurrently. Options.Ready must still be called exactly once, and the
// status set last must reflect the state, not a stale evaluation. Run with
// -race: the evaluations must not race.
func TestUpdateHealthConcurrent(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "kid": "k", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(doc) }))
	defer ts.Close()

	cfg := &config.Config{JWKSRefreshInterval: time.Hour, JWKSMinRefreshInterval: time.Hour, Realm: "test"}
	for _, name := range []string{"a", "b", "c"} {
		cfg.Providers = append(cfg.Providers, config.Provider{
			Name: name, Issuer: "https://" + name + ".test", Audiences: []string{"api"},
			JWKSURL: ts.URL + "/" + name, Algorithms: []string{"RS256"},
		})
	}
	var calls atomic.Int32
	s, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), Ready: func() { calls.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var caches sync.WaitGroup
	defer func() { cancel(); caches.Wait() }()
	for _, c := range s.gen.Load().caches {
		caches.Go(func() { _ = c.Run(ctx) })
	}
	deadline := time.Now().Add(20 * time.Second)
	for !s.Ready() || calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the key sets never loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The caches are loaded and idle for an hour. Now the fetch observers
	// fire again, all at once, as when refreshes end together.
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			<-start
			s.updateHealth()
		})
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("Options.Ready called %d times, want 1", n)
	}
	resp, err := s.health.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", resp, err)
	}
}
