package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/standin"
)

// A real OpenID provider, Ory Hydra v2.3.0 (PEERS.md §9), issuing JWT access
// tokens for the client-credentials grant, in front of which the server
// runs with discovery: true. HYDRA_BIN names the binary (.ci/run builds it);
// without it the test skips, or fails under EXTAUTHZ_REQUIRE_PEERS=1.

const (
	hydraClientID     = "demo"
	hydraClientSecret = "demo-secret-for-hydra"
	// hydraAccessKeys is the key set Hydra signs JWT access tokens with.
	hydraAccessKeys = "hydra.jwt.access-token"
)

// hydra is one running Hydra: its public (token, discovery, JWKS) and admin
// (clients, keys, health) URLs.
type hydra struct {
	proc      *proc
	publicURL string // also its issuer, URLS_SELF_ISSUER
	adminURL  string
}

// hydraBin returns HYDRA_BIN, or skips (fails under EXTAUTHZ_REQUIRE_PEERS=1).
func hydraBin(t *testing.T) string {
	t.Helper()
	const how = "build Ory Hydra v2.3.0 as .ci/run does (PEERS.md §9) and set HYDRA_BIN"
	bin := os.Getenv("HYDRA_BIN")
	if bin == "" {
		missingPeer(t, "HYDRA_BIN is not set ("+how+"); the Hydra test is not run")
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		missingPeer(t, fmt.Sprintf("HYDRA_BIN=%s is not an executable file (%v; %s); the Hydra test is not run", bin, err, how))
	}
	return bin
}

// startHydra runs `hydra serve all --dev` in memory on two free loopback
// ports and waits until its admin API reports ready.
func startHydra(ctx context.Context, t *testing.T, bin, dir string) *hydra {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		public, admin := freePort(t), freePort(t)
		publicHost, publicPort, _ := strings.Cut(public, ":")
		adminHost, adminPort, _ := strings.Cut(admin, ":")
		h := &hydra{publicURL: "http://" + public, adminURL: "http://" + admin}
		env := childEnv(
			"SECRETS_SYSTEM="+hex.EncodeToString(secret), // without it: "global secret is not configured"
			"DSN=memory", // needs -tags sqlite at build time
			"STRATEGIES_ACCESS_TOKEN=jwt",
			"SERVE_PUBLIC_HOST="+publicHost, "SERVE_PUBLIC_PORT="+publicPort,
			"SERVE_ADMIN_HOST="+adminHost, "SERVE_ADMIN_PORT="+adminPort,
			"URLS_SELF_ISSUER="+h.publicURL,
		)
		h.proc = startProc(t, "hydra", dir, env, bin, "serve", "all", "--dev", "--sqa-opt-out")
		err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
			if h.proc.exited() {
				return false, fmt.Errorf("hydra exited: %v", h.proc.waitErr)
			}
			r, err := send(ctx, http.MethodGet, h.adminURL+"/health/ready", nil)
			if err == nil && r.status != http.StatusOK {
				err = fmt.Errorf("/health/ready: %d %s", r.status, snippet(r.body))
			}
			return err == nil, err
		})
		if err == nil {
			return h
		}
		if attempt < 3 && h.proc.exited() && strings.Contains(h.proc.out.tail(40), "address already in use") {
			continue // a port was taken between freePort and Hydra's bind
		}
		t.Fatalf("hydra never became ready: %v", err)
	}
}

// postJSON posts body as JSON and decodes a 2xx answer into out.
func postJSON(ctx context.Context, target string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	status, resp, err := post(ctx, target, "application/json", string(raw))
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return fmt.Errorf("POST %s: status %d: %s", target, status, snippet(resp))
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			return fmt.Errorf("POST %s: %w: %s", target, err, snippet(resp))
		}
	}
	return nil
}

// getJSON fetches target and decodes a 200 answer into out.
func getJSON(ctx context.Context, target string, out any) error {
	r, err := send(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", target, r.status, snippet(r.body))
	}
	return json.Unmarshal(r.body, out)
}

// token runs the guide's step 1 against Hydra: the client-credentials grant
// as a form, for the API's audience and the given scopes.
func (h *hydra) token(ctx context.Context, scope string) (string, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {hydraClientID},
		"client_secret": {hydraClientSecret},
		"scope":         {scope},
		"audience":      {audience},
	}
	status, raw, err := post(ctx, h.publicURL+"/oauth2/token", "application/x-www-form-urlencoded", form.Encode())
	if err != nil {
		return "", err
	}
	var tr tokenResponse
	if status != http.StatusOK || json.Unmarshal(raw, &tr) != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("hydra token (scope %q): status %d: %s", scope, status, snippet(raw))
	}
	return tr.AccessToken, nil
}

// kids lists the kids of Hydra's published key set.
func (h *hydra) kids(ctx context.Context) ([]string, error) {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := getJSON(ctx, h.publicURL+"/.well-known/jwks.json", &set); err != nil {
		return nil, err
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids, nil
}

// startAuthz runs the extauthz binary with conf as its config file and
// waits until /readyz answers 200 (every provider has a key set). It
// returns the gRPC check address.
func startAuthz(ctx context.Context, t *testing.T, dir, conf string) (grpcAddr string, p *proc) {
	t.Helper()
	s := startAuthzNamed(ctx, t, "extauthz", dir, conf)
	return s.authzGRPC, s.authz
}

// startAuthzNamed is startAuthz for a process called name in the test's
// logs. It returns a stack holding only the server: its process and its
// gRPC, HTTP and admin addresses.
func startAuthzNamed(ctx context.Context, t *testing.T, name, dir, conf string) *stack {
	t.Helper()
	path := writeFile(t, filepath.Join(dir, "extauthz.yaml"), conf)
	s := &stack{dir: dir}
	s.authz = startProc(t, name, dir, childEnv(), bins.extauthz,
		"--config", path,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--log-format", "json")
	m, err := s.authz.waitJSON(ctx, "extauthz listening", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		dst *string
		key string
	}{{&s.authzGRPC, "grpc"}, {&s.authzHTTP, "http"}, {&s.authzAdminURL, "admin"}} {
		if *a.dst, err = loopbackAddr(m[a.key]); err != nil {
			t.Fatalf("%s %s: %v", name, a.key, err)
		}
	}
	s.authzAdminURL = "http://" + s.authzAdminURL
	var last reply
	if err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		r, err := send(ctx, http.MethodGet, s.authzAdminURL+"/readyz", nil)
		last = r
		return err == nil && r.status == http.StatusOK, err
	}); err != nil {
		t.Fatalf("%s /readyz never answered 200: %v (last: %d %s)", name, err, last.status, snippet(last.body))
	}
	return s
}

// TestHydra: tokens from a real OpenID provider, Ory Hydra, verified by the
// server found through discovery, behind the Envoy stand-in, the demo
// backend upstream: /public, /protected with the subject, the admin scope
// from Hydra's scp claim, and a signing-key rotation at Hydra (a new kid
// allowed at once, the old key's tokens still allowed while Hydra lists it).
func TestHydra(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	bin := hydraBin(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := tempDir(t)
	for _, d := range []string{"hydra", "extauthz", "backend"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// The backend does not depend on Hydra; start it first.
	backend := startProc(t, "demo-backend", filepath.Join(dir, "backend"), childEnv(), bins.backend,
		"--addr", "127.0.0.1:0", "--log-format", "json")

	start := time.Now()
	h := startHydra(ctx, t, bin, filepath.Join(dir, "hydra"))
	t.Logf("hydra ready in %v (public %s, admin %s)", time.Since(start).Round(time.Millisecond), h.publicURL, h.adminURL)

	// The issuer as Hydra writes it: its discovery document and its tokens
	// must carry URLS_SELF_ISSUER exactly, no trailing slash, since the
	// server compares both byte for byte.
	hydraIssuer := h.publicURL
	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, h.publicURL+"/.well-known/openid-configuration", &disco); err != nil {
		t.Fatal(err)
	}
	if disco.Issuer != hydraIssuer {
		t.Fatalf("discovery issuer = %q, want %q", disco.Issuer, hydraIssuer)
	}

	// A client for the client-credentials grant, through the admin API.
	if err := postJSON(ctx, h.adminURL+"/admin/clients", map[string]any{
		"client_id":                  hydraClientID,
		"client_secret":              hydraClientSecret,
		"grant_types":                []string{"client_credentials"},
		"scope":                      "read:messages admin",
		"audience":                   []string{audience},
		"token_endpoint_auth_method": "client_secret_post",
	}, nil); err != nil {
		t.Fatal(err)
	}
	readTok, err := h.token(ctx, "read:messages")
	if err != nil {
		t.Fatal(err)
	}
	adminTok, err := h.token(ctx, "read:messages admin")
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwtPart(readTok, 1)
	if err != nil {
		t.Fatalf("Hydra's access token is not a JWT (STRATEGIES_ACCESS_TOKEN=jwt?): %v", err)
	}
	if claims["iss"] != hydraIssuer || claims["sub"] != hydraClientID {
		t.Fatalf("token claims iss=%v sub=%v, want %q and %q", claims["iss"], claims["sub"], hydraIssuer, hydraClientID)
	}
	if aud, _ := claims["aud"].([]any); !slices.Contains(aud, any(audience)) {
		t.Fatalf("token aud = %v, want it to hold %q", claims["aud"], audience)
	}
	if scp, _ := claims["scp"].([]any); !slices.Equal(scp, []any{"read:messages"}) {
		t.Fatalf("token scp = %v, want [read:messages]", claims["scp"])
	}
	oldKID := kidOf(readTok)
	if oldKID == "" || kidOf(adminTok) != oldKID {
		t.Fatalf("kids of the first tokens: %q, %q", oldKID, kidOf(adminTok))
	}

	// The server: one provider, found through discovery.
	backendURL := backend.listenAddr(ctx, t, "")
	conf := fmt.Sprintf(`providers:
  - name: hydra
    issuer: %s
    audiences: [%s]
    discovery: true
rules:
  - path: /public
    public: true
  - path: /admin
    scopes: [admin]
clock_skew: %s
shutdown_grace: 1s
log_level: info
# Hydra asks for its key set to be polled as often as allowed
# (Cache-Control: no-cache): the server does so every 10s, the default, and
# a rotation must still be seen at the new key's first token. The wait for
# that fetch is longer than the default 100ms, so that a slow machine
# cannot make the first check miss it.
jwks_min_refresh_interval: 10s
jwks_unknown_kid_wait: 3s
`, hydraIssuer, audience, clockSkew)
	grpcAddr, _ := startAuthz(ctx, t, filepath.Join(dir, "extauthz"), conf)

	// The Envoy stand-in in front of the demo backend, through the tap.
	s := &stack{dir: dir, authzGRPC: grpcAddr, tap: newTap(t, "http://"+backendURL)}
	f := s.startStandin(t, "envoy", standin.Config{})

	n := 0
	call := func(path, tok string) (reply, http.Header) {
		t.Helper()
		n++
		id := fmt.Sprintf("hydra-%d", n)
		hdr := http.Header{idHeader: {id}}
		if tok != "" {
			hdr.Set("Authorization", "Bearer "+tok)
		}
		r, err := send(ctx, http.MethodGet, f.url+path, hdr)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		seen, _ := s.tap.seen(id)
		return r, seen
	}
	expect := func(what, path, tok string, want int) http.Header {
		t.Helper()
		r, seen := call(path, tok)
		if r.status != want {
			t.Errorf("%s: GET %s = %d, want %d: %s", what, path, r.status, want, snippet(r.body))
		}
		if want == http.StatusOK && seen == nil {
			t.Errorf("%s: GET %s: the backend never saw it", what, path)
		}
		if want != http.StatusOK && seen != nil {
			t.Errorf("%s: GET %s = %d but the backend saw it", what, path, r.status)
		}
		return seen
	}
	wantSub := func(what string, seen http.Header) {
		t.Helper()
		if got := seen.Values("X-Jwt-Sub"); !slices.Equal(got, []string{hydraClientID}) {
			t.Errorf("%s: the backend got x-jwt-sub %q, want %q", what, got, hydraClientID)
		}
	}

	expect("no token", "/public", "", http.StatusOK)
	expect("no token", "/protected", "", http.StatusUnauthorized)
	r, seen := call("/protected", readTok)
	if r.status != http.StatusOK {
		t.Fatalf("Hydra's token on /protected = %d, want 200: %s", r.status, snippet(r.body))
	}
	wantSub("read token on /protected", seen)
	var body struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Sub != hydraClientID {
		t.Errorf("backend's answer %s: sub %q, want %q (%v)", snippet(r.body), body.Sub, hydraClientID, err)
	}
	expect("tampered token", "/protected", tamper(readTok), http.StatusUnauthorized)
	expect("token without admin in scp", "/admin", readTok, http.StatusForbidden)
	wantSub("admin token on /admin", expect("token with admin in scp", "/admin", adminTok, http.StatusOK))

	// Rotation at Hydra: a new key in the access-token set signs the next
	// tokens. The server has never seen its kid and fetches at once.
	before, err := h.kids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(before, oldKID) {
		t.Fatalf("Hydra's JWKS %v does not list its signing kid %q", before, oldKID)
	}
	var created struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	newKIDWant := fmt.Sprintf("rotated-%d", time.Now().UnixNano())
	if err := postJSON(ctx, h.adminURL+"/admin/keys/"+hydraAccessKeys,
		map[string]string{"alg": "RS256", "use": "sig", "kid": newKIDWant}, &created); err != nil {
		t.Fatal(err)
	}
	if len(created.Keys) == 0 || created.Keys[0].KID == "" {
		t.Fatalf("POST /admin/keys/%s created no key: %+v", hydraAccessKeys, created)
	}
	newKID := created.Keys[0].KID
	newTok, err := h.token(ctx, "read:messages admin")
	if err != nil {
		t.Fatal(err)
	}
	if got := kidOf(newTok); got != newKID {
		t.Fatalf("the token after the rotation is signed with kid %q, want the new %q (old %q)", got, newKID, oldKID)
	}
	// Hydra signs with the new key the moment it exists (no publish delay)
	// and answers its key set with Cache-Control: no-cache, so the server
	// polls it every jwks_min_refresh_interval (10s here). The new kid's
	// first token still refreshes the set at once: a poll made while no
	// unknown kid was asked for does not count against the unknown-kid
	// rate limit. So the very first check of the new key's token allows.
	rotated := time.Now()
	first, seenNew := call("/protected", newTok)
	if first.status != http.StatusOK {
		t.Fatalf("new key's first token on /protected = %d %s %v after it was issued, want 200 at once (unknown kid: one fetch)",
			first.status, snippet(first.body), time.Since(rotated).Round(time.Millisecond))
	}
	t.Logf("new key's first token allowed %v after it was issued", time.Since(rotated).Round(time.Millisecond))
	wantSub("new key's token on /protected", seenNew)
	expect("new key's token", "/admin", newTok, http.StatusOK)

	after, err := h.kids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(after, newKID) || !slices.Contains(after, oldKID) {
		t.Fatalf("Hydra's JWKS after the rotation %v, want both %q and %q", after, oldKID, newKID)
	}
	// The old key is still published, so its tokens still verify, after
	// the refresh the new kid caused.
	wantSub("old key's token after the rotation", expect("old key's token after the rotation", "/protected", readTok, http.StatusOK))
	expect("old key's admin token after the rotation", "/admin", adminTok, http.StatusOK)
	expect("old key's read token after the rotation", "/admin", readTok, http.StatusForbidden)
	t.Logf("kids before the rotation %v, after %v; %d requests through the stand-in", before, after, n)
}
