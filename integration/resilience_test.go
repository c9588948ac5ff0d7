package integration_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// running returns the fronts that run, after reporting each missing one as
// a skipped (or, under EXTAUTHZ_REQUIRE_PEERS=1, failed) subtest.
func (s *stack) running(t *testing.T) []*front {
	t.Helper()
	var out []*front
	for _, f := range s.fronts {
		if f.skip != "" {
			t.Run(f.name, func(t *testing.T) { missingPeer(t, f.skip) })
			continue
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Fatal("no front is running")
	}
	return out
}

// trafficStats is what the workers of TestRotationUnderTraffic saw.
type trafficStats struct {
	mu       sync.Mutex
	ok       int
	byKID    map[string]map[string]int // front -> kid -> successful requests
	failures []string                  // the first few, for the message
	failed   int
}

func (st *trafficStats) success(front, kid string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ok++
	if st.byKID[front] == nil {
		st.byKID[front] = map[string]int{}
	}
	st.byKID[front][kid]++
}

func (st *trafficStats) failure(format string, args ...any) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.failed++
	if len(st.failures) < 10 {
		st.failures = append(st.failures, fmt.Sprintf(format, args...))
	}
}

// served reports whether every front has answered at least n requests
// signed with kid.
func (st *trafficStats) served(fronts []*front, kid string, n int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, f := range fronts {
		if st.byKID[f.name][kid] < n {
			return false
		}
	}
	return true
}

// TestRotationUnderTraffic rotates the issuer's signing key twice while
// workers keep fetching fresh tokens and calling /protected through every
// front. No request may fail: the issuer publishes a new key
// --rotation-publish-delay (1s) before signing with it, longer than the
// server's --jwks-min-refresh-interval (500ms), so the server's refresh on
// the first unknown kid always finds it.
func TestRotationUnderTraffic(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	fronts := s.running(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	const (
		workers  = 4
		perKID   = 3                // requests each front must serve with each new key
		maxPhase = 20 * time.Second // longest wait for one phase
	)
	stats := &trafficStats{byKID: map[string]map[string]int{}}
	clients := [][2]string{{"demo-client", "demo-secret"}, {"admin-client", "admin-secret"}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				f := fronts[(w+i)%len(fronts)]
				c := clients[(w+i)%len(clients)]
				tr, err := s.token(ctx, c[0], c[1])
				if err != nil {
					if ctx.Err() == nil {
						stats.failure("token for %s: %v", c[0], err)
					}
					continue
				}
				kid := kidOf(tr.AccessToken)
				r, err := send(ctx, http.MethodGet, f.url+"/protected", http.Header{"Authorization": {"Bearer " + tr.AccessToken}})
				switch {
				case err != nil:
					if ctx.Err() == nil {
						stats.failure("%s: GET /protected (kid %s): %v", f.name, kid, err)
					}
				case r.status != http.StatusOK:
					stats.failure("%s: GET /protected (kid %s): %d %s %s", f.name, kid, r.status,
						r.header.Get("WWW-Authenticate"), snippet(r.body))
				case !sameJSON(r.body, fmt.Sprintf(`{"message":"This is a protected message!","sub":%q}`, c[0])):
					stats.failure("%s: GET /protected (kid %s): body %s", f.name, kid, snippet(r.body))
				default:
					stats.success(f.name, kid)
				}
			}
		})
	}
	var stopOnce sync.Once
	stopWorkers := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	defer stopWorkers()

	tr, err := s.token(ctx, "demo-client", "demo-secret")
	if err != nil {
		t.Fatal(err)
	}
	kids := []string{kidOf(tr.AccessToken)}
	waitServed := func(kid string) {
		t.Helper()
		phase, cancel := context.WithTimeout(ctx, maxPhase)
		defer cancel()
		if err := poll(phase, 20*time.Millisecond, func() (bool, error) {
			return stats.served(fronts, kid, perKID), nil
		}); err != nil {
			stats.mu.Lock()
			defer stats.mu.Unlock()
			t.Fatalf("not every front served %d requests with kid %s: %v; per front and kid: %v; failures (%d): %q",
				perKID, kid, err, stats.byKID, stats.failed, stats.failures)
		}
	}
	waitServed(kids[0])
	for range 2 {
		kid, err := s.rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kid == kids[len(kids)-1] {
			t.Fatalf("rotate returned the current kid %s", kid)
		}
		kids = append(kids, kid)
		waitServed(kid)
	}
	stopWorkers()

	stats.mu.Lock()
	defer stats.mu.Unlock()
	if stats.failed > 0 {
		t.Errorf("%d of %d requests failed during rotation, first ones: %q", stats.failed, stats.failed+stats.ok, stats.failures)
	}
	t.Logf("%d requests, kids %v, per front and kid: %v", stats.ok, kids, stats.byKID)
}

// unknownKID re-labels tok with a kid no key set has, so the server
// looks the kid up and refetches the issuer's JWKS.
func unknownKID(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.SplitN(tok, ".", 2)
	h, err := jwtPart(tok, 0)
	if err != nil {
		t.Fatal(err)
	}
	h["kid"] = "integration-test-unknown-kid"
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b) + "." + parts[1]
}

// readyz is the server's /readyz answer.
type readyz struct {
	status    int
	Ready     bool `json:"ready"`
	Providers []struct {
		Name      string `json:"name"`
		Ready     bool   `json:"ready"`
		Keys      int    `json:"keys"`
		LastError string `json:"last_error"`
	} `json:"providers"`
}

func (s *stack) readyz(ctx context.Context) (readyz, error) {
	var rz readyz
	r, err := send(ctx, http.MethodGet, s.authzAdminURL+"/readyz", nil)
	if err != nil {
		return rz, err
	}
	if err := json.Unmarshal(r.body, &rz); err != nil {
		return rz, fmt.Errorf("/readyz: %w: %s", err, snippet(r.body))
	}
	rz.status = r.status
	return rz, nil
}

// TestIssuerDown kills the issuer: tokens obtained before keep working
// through every front with the cached keys, even after the server has tried
// and failed to refetch the key set, and /readyz stays 200.
func TestIssuerDown(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	fronts := s.running(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	demo, admin := s.demoAndAdmin(t, ctx)

	s.idp.kill(t)
	if _, err := s.token(ctx, "demo-client", "demo-secret"); err == nil {
		t.Fatal("the issuer still issues tokens after being killed")
	}

	// A kid the server does not know makes it refetch the JWKS, which
	// fails now; the failure must not cost it the keys it has.
	probe := http.Header{"Authorization": {"Bearer " + unknownKID(t, demo.AccessToken)}}
	var rz readyz
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		r, err := send(ctx, http.MethodGet, "http://"+s.authzHTTP+"/protected", probe)
		if err != nil {
			return false, err
		}
		if r.status != http.StatusUnauthorized || !sameJSON(r.body, `{"error":"Unable to find matching public key"}`) {
			return false, fmt.Errorf("unknown kid: %d %s, want 401 Unable to find matching public key", r.status, snippet(r.body))
		}
		if rz, err = s.readyz(ctx); err != nil {
			return false, err
		}
		return len(rz.Providers) == 1 && rz.Providers[0].LastError != "", nil
	})
	if err != nil {
		t.Fatalf("the server never reported a failed JWKS fetch after the issuer died: %v; /readyz %+v", err, rz)
	}
	t.Logf("/readyz after the failed refetch: %+v", rz)

	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			for range 5 {
				step{path: "/protected", auth: "Bearer " + demo.AccessToken, want: http.StatusOK,
					wantBody: `{"message":"This is a protected message!","sub":"demo-client"}`, wantSub: "demo-client"}.run(ctx, t, s, f)
				step{path: "/admin", auth: "Bearer " + admin.AccessToken, want: http.StatusOK,
					wantBody: `{"message":"This is an admin message!","sub":"admin-client"}`, wantSub: "admin-client"}.run(ctx, t, s, f)
				step{path: "/protected", want: http.StatusUnauthorized}.run(ctx, t, s, f)
			}
		})
	}

	if rz, err = s.readyz(ctx); err != nil {
		t.Fatal(err)
	}
	if rz.status != http.StatusOK || !rz.Ready || len(rz.Providers) != 1 || !rz.Providers[0].Ready || rz.Providers[0].Keys < 1 {
		t.Errorf("/readyz with the issuer down = %+v, want 200, ready, with keys", rz)
	}
}

// TestAuthzKilled kills the ext_authz server: every front must fail closed,
// public paths included, and the backend must see no request at all.
func TestAuthzKilled(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	fronts := s.running(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	demo, admin := s.demoAndAdmin(t, ctx)
	// Every front allows first, so the connections to the server exist
	// (nginx and Caddy keep them alive; the stand-ins hold a gRPC channel).
	if !t.Run("allowed before the kill", func(t *testing.T) {
		for _, f := range fronts {
			step{path: "/protected", auth: "Bearer " + demo.AccessToken, want: http.StatusOK, wantSub: "demo-client"}.run(ctx, t, s, f)
		}
	}) {
		t.FailNow()
	}

	s.authz.kill(t)
	for _, addr := range []string{s.authzGRPC, s.authzHTTP} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections after the server was killed", addr)
		}
	}

	before := s.tap.count()
	spoof := spoofHeaders()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			for range 3 {
				for _, st := range []step{
					{path: "/public"},
					{path: "/public/headers", header: spoof},
					{path: "/protected", auth: "Bearer " + demo.AccessToken},
					{path: "/protected/headers", auth: "Bearer " + demo.AccessToken, header: spoof},
					{path: "/admin", auth: "Bearer " + admin.AccessToken},
					{path: "/protected"},
				} {
					st.want = f.downStatus
					st.run(ctx, t, s, f)
				}
			}
		})
	}
	if got := s.tap.count(); got != before {
		t.Errorf("the backend got %d requests while the ext_authz server was down, want 0", got-before)
	}
	// The tap still forwards and counts, so the zero above means something.
	before = s.tap.count()
	if r, err := send(ctx, http.MethodGet, s.tap.url+"/public", nil); err != nil || r.status != http.StatusOK {
		t.Errorf("GET /public through the tap: %v %v", r.status, err)
	}
	if got := s.tap.count(); got != before+1 {
		t.Errorf("the tap counted %d requests for one direct request", got-before)
	}
}
