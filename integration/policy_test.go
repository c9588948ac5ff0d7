package integration_test

// Issue 11 ("Policy"), the proxy side, end to end: method and host rules
// through every front (each must tell the server the original method and
// host), the bearer token kept from the backend unless the provider has
// forward_token: true, named policies chosen by the Envoy route
// (context_extensions), and the Envoy access log's subject from ext_authz's
// dynamic metadata.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/standin"
)

func bearer(tr tokenResponse) string { return "Bearer " + tr.AccessToken }

// TestPolicyFronts runs the rules of serverRules beyond the guide's through
// every front, checks that no front passes the token on by default, and
// that the Envoy stand-in sends its routes' policies and logs the subject.
func TestPolicyFronts(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	demo, admin := s.demoAndAdmin(t, ctx)
	writer, err := s.token(ctx, "writer-client", "writer-secret")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(writer.Scope), "write:messages") || strings.Contains(demo.Scope, "write:messages") {
		t.Fatalf("scopes: writer-client %q, demo-client %q; want write:messages for the writer only", writer.Scope, demo.Scope)
	}
	missing := `{"error":"Missing or invalid Authorization header"}`
	original := func(method, host string) http.Header {
		h := http.Header{}
		if method != "" {
			h["X-Original-Method"], h["X-Forwarded-Method"] = []string{method}, []string{method}
		}
		if host != "" {
			h["X-Original-Host"], h["X-Forwarded-Host"] = []string{host}, []string{host}
		}
		return h
	}

	steps := []step{
		// Methods: GET needs read:messages, POST/PUT/PATCH/DELETE
		// write:messages. Every front must pass the original method on.
		{name: "read with a read-only token", path: "/messages/headers", auth: bearer(demo),
			want: http.StatusOK, wantSub: "demo-client"},
		{name: "write with a read-only token", method: http.MethodPost, path: "/messages/headers", auth: bearer(demo),
			want: http.StatusForbidden, wantBody: `{"error":"Insufficient scope"}`,
			wantChallenge: []string{`error="insufficient_scope"`, `scope="write:messages"`}},
		{name: "write with an admin token", method: http.MethodPut, path: "/messages/1", auth: bearer(admin),
			want: http.StatusForbidden, wantBody: `{"error":"Insufficient scope"}`},
		// The check allows it; the backend serves only GET and HEAD.
		{name: "write with a write token", method: http.MethodPost, path: "/messages/headers", auth: bearer(writer),
			want: http.StatusMethodNotAllowed, backendAnswers: true, wantSub: "writer-client"},
		{name: "write without a token", method: http.MethodDelete, path: "/messages/1",
			want: http.StatusUnauthorized, wantBody: missing},
		{name: "write posing as a read", method: http.MethodPost, path: "/messages/headers", auth: bearer(demo),
			header: original(http.MethodGet, ""), want: http.StatusForbidden},

		// Hosts: /intranet is public on intranet.example only. Every front
		// must pass the original host on, and never a client's claim of it.
		{name: "intranet on its host", path: "/intranet/headers", header: http.Header{"Host": {"intranet.example"}},
			want: http.StatusOK},
		{name: "intranet on another host", path: "/intranet/headers", auth: bearer(admin),
			want: http.StatusForbidden, wantBody: `{"error":"Access denied"}`},
		{name: "intranet host claimed by the client", path: "/intranet/headers",
			header: original("", "intranet.example"), want: http.StatusForbidden},
	}
	for _, f := range s.fronts {
		t.Run(f.name, func(t *testing.T) {
			if f.skip != "" {
				missingPeer(t, f.skip)
			}
			for _, st := range steps {
				t.Run(st.name, func(t *testing.T) { st.run(ctx, t, s, f) })
			}
			// forward_token is false: the backend never gets the token,
			// on a protected path or on a public one.
			t.Run("token kept from the backend", func(t *testing.T) {
				for _, path := range []string{"/protected/headers", "/public/headers", "/messages/headers"} {
					checkForwardedToken(ctx, t, s, f, path, bearer(demo), "demo-client", false)
				}
			})
		})
	}

	// The route, not the path, chooses the policy: a stand-in whose routes
	// name policies the way envoy.yaml's /admin route does.
	t.Run("the route chooses the policy", func(t *testing.T) {
		f := s.startStandin(t, "envoy-routes", standin.Config{Routes: []standin.Route{
			{PathSeparatedPrefix: "/protected", ContextExtensions: map[string]string{"policy": "admin"}},
			{PathSeparatedPrefix: "/typo", ContextExtensions: map[string]string{"policy": "admins"}},
		}})
		for _, st := range []step{
			// The path rules would allow any valid token here.
			{name: "policy admin on /protected", path: "/protected/headers", auth: bearer(demo),
				want: http.StatusForbidden, wantBody: `{"error":"Insufficient scope"}`, wantChallenge: []string{`scope="admin"`}},
			{name: "policy admin met", path: "/protected/headers", auth: bearer(admin),
				want: http.StatusOK, wantSub: "admin-client"},
			{name: "no policy, the path rules", path: "/other/headers", auth: bearer(demo),
				want: http.StatusOK, wantSub: "demo-client"},
			{name: "a policy the server lacks", path: "/typo/headers", auth: bearer(admin),
				want: http.StatusInternalServerError, wantBody: `{"error":"Unknown policy"}`},
		} {
			t.Run(st.name, func(t *testing.T) { st.run(ctx, t, s, f) })
		}
	})

	// envoy.yaml's access log, rendered by the stand-in that runs its
	// format: the subject and the denial reason from the dynamic metadata,
	// never the token.
	t.Run("envoy access log", func(t *testing.T) {
		f := s.front(t, "envoy-yaml")
		cases := []struct {
			name, path, auth string
			status           int
			tail             string // how the line ends
		}{
			{name: "allowed", path: "/audit-%d/headers", auth: bearer(demo), status: http.StatusOK,
				tail: "sub=demo-client authz_reason=-"},
			{name: "denied", path: "/audit-%d/headers", status: http.StatusUnauthorized,
				tail: "sub=- authz_reason=missing_token"},
			{name: "denied by the admin policy", path: "/admin/audit-%d", auth: bearer(demo), status: http.StatusForbidden,
				tail: "sub=- authz_reason=insufficient_scope"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				path := fmt.Sprintf(tc.path, reqSeq.Add(1))
				h := http.Header{}
				if tc.auth != "" {
					h.Set("Authorization", tc.auth)
				}
				// The token in the query too: the log must not show it.
				r, err := send(ctx, http.MethodGet, f.url+path+"?access_token="+demo.AccessToken, h)
				if err != nil {
					t.Fatal(err)
				}
				if r.status != tc.status {
					t.Fatalf("GET %s: %d, want %d", path, r.status, tc.status)
				}
				// The entry is written once the response is done, which
				// the client may see first.
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				line, err := waitLog(wctx, f.access, func(l string) bool { return strings.Contains(l, `"GET `+path+` `) })
				if err != nil {
					t.Fatalf("no access log line for %s: %v\n%s", path, err, f.access.tail(10))
				}
				head := fmt.Sprintf(`"GET %s HTTP/1.1" %d `, path, tc.status)
				if !strings.Contains(line, head) || !strings.HasSuffix(line, " "+tc.tail) {
					t.Errorf("access log line %q, want %q ... %q", line, head, tc.tail)
				}
				if strings.Contains(line, demo.AccessToken) || strings.Contains(line, "access_token") {
					t.Errorf("access log line shows the query and its token: %q", line)
				}
			})
		}
	})
}

// TestForwardToken runs a stack whose provider has forward_token: true:
// through every front the backend gets the client's Authorization header,
// and the claim headers as before.
func TestForwardToken(t *testing.T) {
	t.Parallel()
	s := newStackWith(t, stackOptions{authzConfig: forwardTokenConfig})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	demo, admin := s.demoAndAdmin(t, ctx)
	for _, f := range s.fronts {
		t.Run(f.name, func(t *testing.T) {
			if f.skip != "" {
				missingPeer(t, f.skip)
			}
			for _, path := range []string{"/protected/headers", "/public/headers", "/messages/headers"} {
				checkForwardedToken(ctx, t, s, f, path, bearer(demo), "demo-client", true)
			}
			checkForwardedToken(ctx, t, s, f, "/admin/headers", bearer(admin), "admin-client", true)
			// The rules still hold: forward_token changes what the
			// backend gets, not who gets in.
			step{path: "/admin/headers", auth: bearer(demo), want: http.StatusForbidden}.run(ctx, t, s, f)
			step{method: http.MethodPost, path: "/messages/headers", auth: bearer(demo), want: http.StatusForbidden}.run(ctx, t, s, f)
		})
	}
}

// checkForwardedToken sends GET path with the Authorization header auth
// through f and checks what the backend got (the tap's record and the
// backend's own echo): exactly auth when forwarded, else no Authorization
// header at all; and the verified claim headers of sub either way.
func checkForwardedToken(ctx context.Context, t *testing.T, s *stack, f *front, path, auth, sub string, forwarded bool) {
	t.Helper()
	id := fmt.Sprintf("%s-token-%d", f.name, reqSeq.Add(1))
	r, err := send(ctx, http.MethodGet, f.url+path, http.Header{"Authorization": {auth}, idHeader: {id}})
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s, want 200", path, r.status, snippet(r.body))
	}
	seen, ok := s.tap.seen(id)
	if !ok {
		t.Fatalf("GET %s: 200 without reaching the backend", path)
	}
	var echo map[string][]string
	if err := json.Unmarshal(r.body, &echo); err != nil {
		t.Fatalf("GET %s: backend echo: %v: %s", path, err, snippet(r.body))
	}
	var want []string
	if forwarded {
		want = []string{auth}
	}
	if got := seen.Values("Authorization"); !slices.Equal(got, want) {
		t.Errorf("GET %s: the backend received Authorization %s, want %s", path, redactTokens(got), redactTokens(want))
	}
	if got := echo["authorization"]; !slices.Equal(got, want) {
		t.Errorf("GET %s: the backend echoed Authorization %s, want %s", path, redactTokens(got), redactTokens(want))
	}
	for _, p := range claimProblems(seen, sub) {
		t.Errorf("GET %s: the backend received: %s", path, p)
	}
}

// redactTokens shortens bearer tokens for a failure message.
func redactTokens(vs []string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		if len(v) > 20 {
			v = v[:20] + "..."
		}
		out[i] = v
	}
	return fmt.Sprintf("%q", out)
}

// front returns the running front of that name.
func (s *stack) front(t *testing.T, name string) *front {
	t.Helper()
	for _, f := range s.fronts {
		if f.name == name {
			return f
		}
	}
	t.Fatalf("no front %q", name)
	return nil
}

// waitLog waits for a line of l that match accepts.
func waitLog(ctx context.Context, l *lineLog, match func(string) bool) (string, error) {
	for {
		line, ok, changed := l.find(match)
		if ok {
			return line, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
