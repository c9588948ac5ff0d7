package integration_test

// The attack catalogue of SECURITY.md, end to end: the real binaries behind
// every front (the Envoy stand-ins, nginx, Caddy), attacked the way a client
// on the internet can: tokens in the wrong places, look-alike schemes,
// oversized requests, raw request targets that some backend would resolve
// into a protected path, and an identity provider that stops answering.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sendRaw writes one request with target exactly as given (no URL parsing,
// so backslashes, raw "#" and absolute forms reach the front) and reads the
// answer.
func sendRaw(ctx context.Context, frontURL, target string, header http.Header) (reply, error) {
	addr := strings.TrimPrefix(frontURL, "http://")
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > 20*time.Second {
		deadline = time.Now().Add(20 * time.Second)
	}
	_ = c.SetDeadline(deadline)
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", target, addr)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return reply{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return reply{}, fmt.Errorf("GET %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return reply{}, fmt.Errorf("GET %s: read body: %w", target, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// TestAttackFronts makes the catalogue's client-side attacks through every
// front: each must be denied before the backend, or reach it only as what it
// really is.
func TestAttackFronts(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	demo, admin := s.demoAndAdmin(t, ctx)
	bad := tamper(demo.AccessToken)
	missing := `{"error":"Missing or invalid Authorization header"}`
	protectedBody := `{"message":"This is a protected message!","sub":"demo-client"}`

	steps := []step{
		// RFC 6750 §2.3 is not supported: a token in the query is never read.
		{name: "token in the query only", path: "/protected/headers?access_token=" + demo.AccessToken,
			want: http.StatusUnauthorized, wantBody: missing},
		{name: "admin token in the query only", path: "/admin?access_token=" + admin.AccessToken,
			want: http.StatusUnauthorized, wantBody: missing},
		{name: "bad header, good query", path: "/protected?access_token=" + demo.AccessToken, auth: "Bearer " + bad,
			want: http.StatusUnauthorized},
		{name: "good header, bad query", path: "/protected?access_token=" + bad, auth: "Bearer " + demo.AccessToken,
			want: http.StatusOK, wantBody: protectedBody, wantSub: "demo-client"},
		{name: "token in a cookie", path: "/protected", header: http.Header{"Cookie": {"access_token=" + demo.AccessToken}},
			want: http.StatusUnauthorized, wantBody: missing},

		// Two tokens in one header, and look-alike schemes.
		{name: "two tokens in one header", path: "/admin", auth: "Bearer " + demo.AccessToken + " " + admin.AccessToken},
		{name: "two tokens comma-joined", path: "/admin", auth: "Bearer " + demo.AccessToken + ", Bearer " + admin.AccessToken},
		{name: "two Authorization spellings", path: "/admin",
			header: http.Header{"Authorization": {"Bearer " + demo.AccessToken}, "authorization": {"Bearer " + admin.AccessToken}}},
		{name: "Cyrillic e in Bearer", path: "/protected", auth: "B\u0435arer " + demo.AccessToken, want: http.StatusUnauthorized},
		{name: "no-break space after Bearer", path: "/protected", auth: "Bearer\u00a0" + demo.AccessToken, want: http.StatusUnauthorized},
		{name: "Token scheme", path: "/protected", auth: "Token " + demo.AccessToken, want: http.StatusUnauthorized},

		// Bounds: a clear denial, never the backend.
		// nginx refuses an 8 KiB header line itself (400); the others ask
		// the server, which answers 401 token_too_large.
		{name: "token over max_token_bytes", path: "/protected", auth: "Bearer " + strings.Repeat("a", 9000)},
		// Over Envoy's 60 KiB (the stand-ins: 431), nginx's 8 KiB line (400)
		// and the server's 64 KiB http_max_header_bytes (Caddy, whose own
		// limit is 1 MiB, passes the server's 431 on). Go's server allows
		// some slack over MaxHeaderBytes, so the pad is well over it.
		{name: "header block over every limit", path: "/protected", auth: "Bearer " + demo.AccessToken,
			header: http.Header{"X-Pad": {strings.Repeat("p", 200<<10)}}},
		{name: "still serving after the oversized request", path: "/protected", auth: "Bearer " + demo.AccessToken,
			want: http.StatusOK, wantBody: protectedBody, wantSub: "demo-client"},
	}

	// Raw request targets some backend resolves into /admin (a token
	// without the admin scope) or /protected (no token at all).
	intoAdmin := []string{
		"/public/../admin", "/public/%2e%2e/admin", "/public/..%2fadmin", "/public/..%2Fadmin",
		"/public/%252e%252e/admin", "/public/..;/admin", "/public;x/../admin", "//admin", "///admin",
		`/public\..\admin`, "/public/..%5cadmin", "/public/..%255cadmin", "/admin;x=1", "/admin%2f", "/%61dmin",
		"/admin/./", "/public#/../admin", "/public%23/../admin", "/public/%2e%2e%2fadmin",
	}
	intoProtected := []string{
		"/public/../protected", "/public/%2e%2e/protected", "/public/..%2Fprotected", "/public/%252e%252e/protected",
		"/public/..;/protected", "/public//../protected", `/public\..\protected`, "/public/%2e%2e%5cprotected",
		"//public/../protected", "/public#/../protected", "/public/.%2e/protected", "public/../protected",
	}

	for _, f := range s.fronts {
		t.Run(f.name, func(t *testing.T) {
			if f.skip != "" {
				missingPeer(t, f.skip)
			}
			for _, st := range steps {
				t.Run(st.name, func(t *testing.T) { st.run(ctx, t, s, f) })
			}
			t.Run("raw targets into admin", func(t *testing.T) {
				targets := append(slices.Clone(intoAdmin), "http://"+strings.TrimPrefix(f.url, "http://")+"/admin")
				for _, target := range targets {
					r, err := sendRaw(ctx, f.url, target, http.Header{"Authorization": {"Bearer " + demo.AccessToken}})
					if err != nil {
						t.Logf("GET %s: %v (no answer is a denial)", target, err)
						continue
					}
					if r.status == http.StatusOK && strings.Contains(string(r.body), "admin message") {
						t.Errorf("GET %s with a token lacking the admin scope: %d %s", target, r.status, snippet(r.body))
					}
				}
			})
			t.Run("variants of admin a backend may serve as admin", func(t *testing.T) {
				// Go's mux in the demo backend answers these 404, but a
				// case-insensitive router (Express, ASP.NET Core, IIS), a
				// format suffix (Rails, older Spring) or trailing-dot and
				// space trimming (Windows) would serve its admin route: with
				// a token lacking the admin scope, none may reach the backend.
				var reached []string
				for i, target := range []string{"/ADMIN", "/Admin/users", "/admin.json", "/admin.", "/admin%20"} {
					id := fmt.Sprintf("%s-variant-%d", f.name, i)
					r, err := sendRaw(ctx, f.url, target, http.Header{"Authorization": {"Bearer " + demo.AccessToken}, idHeader: {id}})
					if err != nil {
						t.Fatalf("GET %s: %v", target, err)
					}
					if _, ok := s.tap.seen(id); ok {
						reached = append(reached, fmt.Sprintf("GET %s reached the backend (%d)", target, r.status))
					}
				}
				if len(reached) > 0 {
					t.Skipf("KNOWN VULNERABILITY: path rules match only the literal, case-sensitive reading (SECURITY.md, known gaps)\nevidence: %s",
						strings.Join(reached, "; "))
				}
			})
			t.Run("raw targets into protected", func(t *testing.T) {
				for _, target := range intoProtected {
					r, err := sendRaw(ctx, f.url, target, nil)
					if err != nil {
						t.Logf("GET %s: %v (no answer is a denial)", target, err)
						continue
					}
					if r.status == http.StatusOK && strings.Contains(string(r.body), "protected message") {
						t.Errorf("GET %s without a token: %d %s", target, r.status, snippet(r.body))
					}
				}
			})
		})
	}
}

// TestAttackIssuerHangs stops the issuer (SIGSTOP: its socket still accepts,
// nothing answers), the worst JWKS endpoint for a refresh. A check for an
// unknown kid is still answered within --jwks-unknown-kid-wait (100ms by
// default; the median of several under 500ms), and tokens with a known kid
// keep working through every front.
func TestAttackIssuerHangs(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	fronts := s.running(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	demo, err := s.token(ctx, "demo-client", "demo-secret")
	if err != nil {
		t.Fatal(err)
	}

	s.idp.signalGroup(syscall.SIGSTOP)
	t.Cleanup(func() { s.idp.signalGroup(syscall.SIGCONT) }) // before the stop in startProc's cleanup

	probe := http.Header{"Authorization": {"Bearer " + unknownKID(t, demo.AccessToken)}}
	known := http.Header{"Authorization": {"Bearer " + demo.AccessToken}}
	const tries = 7
	var unknownTimes, knownTimes []time.Duration
	for range tries {
		start := time.Now()
		r, err := send(ctx, http.MethodGet, "http://"+s.authzHTTP+"/protected", probe)
		unknownTimes = append(unknownTimes, time.Since(start))
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusUnauthorized || !sameJSON(r.body, `{"error":"Unable to find matching public key"}`) {
			t.Errorf("unknown kid while the issuer hangs: %d %s, want 401 unknown kid", r.status, snippet(r.body))
		}
		start = time.Now()
		r, err = send(ctx, http.MethodGet, "http://"+s.authzHTTP+"/protected", known)
		knownTimes = append(knownTimes, time.Since(start))
		if err != nil || r.status != http.StatusOK {
			t.Errorf("known kid while the issuer hangs: %v %v, want 200", r.status, err)
		}
	}
	slices.Sort(unknownTimes)
	slices.Sort(knownTimes)
	if m := unknownTimes[tries/2]; m > 500*time.Millisecond {
		t.Errorf("unknown-kid checks while the issuer hangs: median %v (%v), want under 500ms", m, unknownTimes)
	}
	if m := knownTimes[tries/2]; m > 500*time.Millisecond {
		t.Errorf("known-kid checks while the issuer hangs: median %v (%v), want under 500ms", m, knownTimes)
	}

	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			step{path: "/protected", auth: "Bearer " + demo.AccessToken, want: http.StatusOK,
				wantBody: `{"message":"This is a protected message!","sub":"demo-client"}`, wantSub: "demo-client"}.run(ctx, t, s, f)
			step{path: "/protected", auth: probe.Get("Authorization"), want: http.StatusUnauthorized}.run(ctx, t, s, f)
		})
	}
}
