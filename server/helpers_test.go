package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"github.com/extauthz/extauthz/internal/testutil"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/server"
)

// waitLong bounds every wait. It only matters when something is broken, so
// it is generous: a loaded machine running -race must never reach it.
const waitLong = 20 * time.Second

const (
	testIssuer   = "https://issuer.test"
	testAudience = "https://api.test"
)

// testKeys are RSA-2048 keys, generated once per test binary because key
// generation is slow under -race.
var testKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 3)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

func key(i int) *rsa.PrivateKey { return testKeys()[i] }

// signer is a key and the kid it is published under.
type signer struct {
	key *rsa.PrivateKey
	kid string
}

// jwksServer serves a JWK Set that tests can change, hold and take down.
type jwksServer struct {
	*httptest.Server
	doc     atomic.Pointer[[]byte]
	hits    atomic.Int64
	gate    atomic.Pointer[chan struct{}] // when set, requests wait for it to close
	waiting chan struct{}                 // gets a value whenever a request starts waiting
	down    atomic.Bool                   // answer 503
}

func newJWKS(t *testing.T, signers ...signer) *jwksServer {
	t.Helper()
	j := &jwksServer{waiting: make(chan struct{}, 16)}
	j.publish(t, signers...)
	j.Server = httptest.NewServer(j)
	// Cleanups run last-in first-out: release held requests, then close.
	t.Cleanup(j.Close)
	t.Cleanup(j.release)
	return j
}

func (j *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	j.hits.Add(1)
	if g := j.gate.Load(); g != nil {
		select {
		case j.waiting <- struct{}{}:
		default:
		}
		select {
		case <-*g:
		case <-r.Context().Done():
			return
		}
	}
	if j.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(*j.doc.Load())
}

// publish replaces the served key set.
func (j *jwksServer) publish(t *testing.T, signers ...signer) {
	t.Helper()
	keys := []map[string]any{}
	for _, s := range signers {
		keys = append(keys, map[string]any{
			"kty": "RSA", "kid": s.kid, "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(s.key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(s.key.E)).Bytes()),
		})
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	j.doc.Store(&b)
}

// hold makes requests wait until release.
func (j *jwksServer) hold() {
	g := make(chan struct{})
	j.gate.Store(&g)
}

func (j *jwksServer) release() {
	if g := j.gate.Swap(nil); g != nil {
		close(*g)
	}
}

func (j *jwksServer) url() string { return j.URL + "/.well-known/jwks.json" }

// claims returns valid claims for the test issuer and audience.
func claims(sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": testIssuer,
		"aud": testAudience,
		"sub": sub,
		"iat": now.Add(-time.Minute).Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// mint signs c with s as an RS256 token.
func mint(t *testing.T, s signer, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = s.kid
	raw, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines and the test.
type syncBuffer = testutil.Buffer

// testConfig is a configuration with one provider per JWKS server, rules for
// /public (public) and /admin (scope admin), and timings that make refreshes
// prompt: an unknown kid may trigger a refresh at once, and a check waits
// long for it.
func testConfig(jwks ...*jwksServer) *config.Config {
	cfg := &config.Config{
		GRPCAddr:               "127.0.0.1:0",
		HTTPAddr:               "127.0.0.1:0",
		AdminAddr:              "127.0.0.1:0",
		Rules:                  []config.Rule{{Path: "/public", Public: true}, {Path: "/admin", Scopes: []string{"admin"}}},
		JWKSRefreshInterval:    time.Hour,
		JWKSMinRefreshInterval: time.Millisecond,
		JWKSFetchTimeout:       waitLong,
		JWKSUnknownKIDWait:     waitLong,
		JWKSMaxBytes:           1 << 20,
		JWKSMaxKeys:            100,
		ClockSkew:              time.Minute,
		MaxTokenBytes:          8192,
		Realm:                  "test",
		ShutdownGrace:          waitLong,
		LogLevel:               "debug",
		LogFormat:              "json",
	}
	for i, j := range jwks {
		p := config.Provider{Name: "test", Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: j.url(), Algorithms: []string{"RS256"}}
		if i > 0 {
			p.Name = "test" + string(rune('0'+i))
			p.Issuer = testIssuer + "/" + p.Name
		}
		cfg.Providers = append(cfg.Providers, p)
	}
	return cfg
}

// harness is a server running in-process on loopback listeners, with clients.
type harness struct {
	t          *testing.T
	srv        *server.Server
	logs       *syncBuffer
	readyCalls atomic.Int32

	grpcAddr, httpAddr, adminAddr string

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	runErr   error

	conn   *grpc.ClientConn
	authz  authv3.AuthorizationClient
	health healthpb.HealthClient
	http   *http.Client
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// start runs a server for cfg until the test ends (or h.stop). opts adjust
// the Options.
func start(t *testing.T, cfg *config.Config, opts ...func(*server.Options)) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}, done: make(chan error, 1)}
	gl, hl, al := listen(t), listen(t), listen(t)
	h.grpcAddr, h.httpAddr, h.adminAddr = gl.Addr().String(), hl.Addr().String(), al.Addr().String()
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := server.Options{
		Logger:       logger,
		GRPCListener: gl, HTTPListener: hl, AdminListener: al,
		Ready: func() { h.readyCalls.Add(1) },
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := server.New(cfg, o)
	if err != nil {
		t.Fatalf("server.New = %v", err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})

	conn, err := grpc.NewClient(h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.conn = conn
	h.authz = authv3.NewAuthorizationClient(conn)
	h.health = healthpb.NewHealthClient(conn)
	h.http = &http.Client{Timeout: waitLong, Transport: &http.Transport{}}
	t.Cleanup(h.http.CloseIdleConnections)
	return h
}

// stop cancels Run's context and waits for Run to return; it returns Run's
// result, the same on every call.
func (h *harness) stop() error {
	h.stopOnce.Do(func() {
		h.cancel()
		select {
		case h.runErr = <-h.done:
		case <-time.After(waitLong):
			h.t.Errorf("Run did not return within %v of its context ending", waitLong)
		}
	})
	return h.runErr
}

// eventually polls cond until it holds, failing the test after waitLong.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLong, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// get fetches a path of the admin port.
func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := h.http.Get("http://" + h.adminAddr + path)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func (h *harness) waitReady() {
	h.t.Helper()
	eventually(h.t, "/readyz to answer 200", func() bool {
		code, _ := h.get("/readyz")
		return code == http.StatusOK
	})
}

// checkRequest is what Envoy sends for GET path with the bearer token.
func checkRequest(path, token string) *authv3.CheckRequest {
	headers := map[string]string{":method": "GET", ":path": path, ":authority": "api.test"}
	if token != "" {
		headers["authorization"] = "Bearer " + token
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Host: "api.test", Headers: headers},
	}}}
}

func (h *harness) check(path, token string) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	return h.authz.Check(ctx, checkRequest(path, token))
}

// mustCheck is check for a call that must make a decision.
func (h *harness) mustCheck(path, token string) *authv3.CheckResponse {
	h.t.Helper()
	resp, err := h.check(path, token)
	if err != nil {
		h.t.Fatalf("Check(%s) = %v, want a decision", path, err)
	}
	return resp
}

// okHeader returns the value an allow sets for header name.
func okHeader(resp *authv3.CheckResponse, name string) (string, bool) {
	for _, o := range resp.GetOkResponse().GetHeaders() {
		if o.GetHeader().GetKey() == name {
			return o.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// deniedHeader returns the value of header name of a denial.
func deniedHeader(resp *authv3.CheckResponse, name string) string {
	for _, o := range resp.GetDeniedResponse().GetHeaders() {
		if o.GetHeader().GetKey() == name {
			return o.GetHeader().GetValue()
		}
	}
	return ""
}

// scrape parses /metrics.
func (h *harness) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	code, body := h.get("/metrics")
	if code != http.StatusOK {
		h.t.Fatalf("GET /metrics = %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader([]byte(body)))
	if err != nil {
		h.t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue finds the sample of family name whose labels include want, and
// returns its value (a histogram's sample count). ok is false when there is
// none.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
