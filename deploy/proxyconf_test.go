package deploy_test

// These tests run the bundled proxy configs in the real proxies: first the
// proxies' own config checks (nginx -t, caddy validate), then end to end
// against an in-test stand-in for the ext_authz HTTP endpoint and an echoing
// backend, all on 127.0.0.1 ports picked at run time. They skip when nginx or
// caddy is not installed, unless EXTAUTHZ_REQUIRE_PEERS=1.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/extauthz/extauthz/internal/testutil"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/extauthz/extauthz/deploy/caddy"
	"github.com/extauthz/extauthz/deploy/nginx"
	"github.com/extauthz/extauthz/deploy/proxyconf"
)

// peer finds a proxy binary, or skips (fails under EXTAUTHZ_REQUIRE_PEERS=1).
func peer(t *testing.T, name string, fallbacks ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if os.Getenv("EXTAUTHZ_REQUIRE_PEERS") == "1" {
		t.Fatalf("%s not found and EXTAUTHZ_REQUIRE_PEERS=1", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

func nginxBin(t *testing.T) string { return peer(t, "nginx", "/usr/sbin/nginx") }

// headersMore is where Debian's and Ubuntu's
// libnginx-mod-http-headers-more-filter install the module.
const headersMore = "/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so"

// headersMoreModule returns the headers-more module's path, or skips: the
// module is optional (third-party, not in nginx.org's packages), so it is
// not required even under EXTAUTHZ_REQUIRE_PEERS=1.
func headersMoreModule(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(headersMore); err != nil {
		t.Skipf("nginx headers-more module not installed (apt-get install libnginx-mod-http-headers-more-filter): %v", err)
	}
	return headersMore
}
func caddyBin(t *testing.T) string { return peer(t, "caddy") }

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, bin string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
}

// TestNginxConfigTest runs `nginx -t` on the committed nginx.conf and on a
// rendering with test addresses and state directory.
func TestNginxConfigTest(t *testing.T) {
	bin := nginxBin(t)
	t.Run("committed default", func(t *testing.T) {
		dir := t.TempDir()
		conf := write(t, dir, "nginx.conf", []byte(nginx.Config))
		run(t, bin, nil, append(proxyconf.NginxArgs(conf, dir), "-t")...)
	})
	t.Run("rendered", func(t *testing.T) {
		dir := t.TempDir()
		conf, err := proxyconf.RenderNginx(proxyconf.Nginx{Listen: "127.0.0.1:18080", Backend: "127.0.0.1:18000", Authz: "127.0.0.1:19192", StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		run(t, bin, nil, append(proxyconf.NginxArgs(write(t, dir, "nginx.conf", conf), dir), "-t")...)
	})
	t.Run("rendered with headers-more", func(t *testing.T) {
		mod := headersMoreModule(t)
		dir := t.TempDir()
		conf, err := proxyconf.RenderNginx(proxyconf.Nginx{ClaimHeaders: []string{"X-Jwt-Sub", "X-User-Email"}, HeadersMoreModule: mod, StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		run(t, bin, nil, append(proxyconf.NginxArgs(write(t, dir, "nginx.conf", conf), dir), "-t")...)
	})
	t.Run("broken copy is rejected", func(t *testing.T) {
		dir := t.TempDir()
		bad := strings.Replace(nginx.Config, "auth_request /_extauthz;", "auth_request_typo /_extauthz;", 1)
		cmd := exec.CommandContext(t.Context(), bin, append(proxyconf.NginxArgs(write(t, dir, "nginx.conf", []byte(bad)), dir), "-t")...)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("nginx -t accepted an unknown directive:\n%s", out)
		}
	})
}

// TestCaddyValidate runs `caddy validate` (which adapts the Caddyfile and
// provisions every module) on the committed Caddyfile and on a rendering.
func TestCaddyValidate(t *testing.T) {
	bin := caddyBin(t)
	t.Run("committed default", func(t *testing.T) {
		dir := t.TempDir()
		run(t, bin, proxyconf.CaddyEnv(dir), proxyconf.CaddyArgs("validate", write(t, dir, "Caddyfile", []byte(caddy.Config)))...)
	})
	t.Run("rendered", func(t *testing.T) {
		dir := t.TempDir()
		conf, err := proxyconf.RenderCaddy(proxyconf.Caddy{Listen: "127.0.0.1:18080", Backend: "127.0.0.1:18000", Authz: "127.0.0.1:19192", StorageDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		run(t, bin, proxyconf.CaddyEnv(dir), proxyconf.CaddyArgs("validate", write(t, dir, "Caddyfile", conf))...)
	})
	t.Run("broken copy is rejected", func(t *testing.T) {
		dir := t.TempDir()
		bad := strings.Replace(caddy.Config, "handle_response @allowed", "handle_responze @allowed", 1)
		cmd := exec.CommandContext(t.Context(), bin, proxyconf.CaddyArgs("validate", write(t, dir, "Caddyfile", []byte(bad)))...)
		cmd.Env = append(os.Environ(), proxyconf.CaddyEnv(dir)...)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("caddy validate accepted an unknown subdirective:\n%s", out)
		}
	})
}

// check is what the stand-in ext_authz endpoint saw in one check request.
type check struct {
	Method, URI   string // what it decided on
	Header        http.Header
	BodyLen       int
	ContentLength int64
}

// authzStub stands in for the ext_authz HTTP forward-auth endpoint, with the
// contract of cmd/extauthz: the checked method and URI come from
// X-Original-URI/-Method, else X-Forwarded-Uri/-Method, else the request
// itself; 200 with claim headers allows; 401/403/503 deny with a JSON body
// and WWW-Authenticate. Tokens: "good" (sub alice, no admin scope), "admin"
// (sub root), "keys-not-loaded" (503). /public is public.
type authzStub struct {
	mu     sync.Mutex
	checks []check
}

func (s *authzStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	c := check{Method: r.Method, URI: r.URL.RequestURI(), Header: r.Header.Clone(), BodyLen: len(body), ContentLength: r.ContentLength}
	if u := r.Header.Get("X-Original-URI"); u != "" {
		c.URI, c.Method = u, r.Header.Get("X-Original-Method")
	} else if u := r.Header.Get("X-Forwarded-Uri"); u != "" {
		c.URI, c.Method = u, r.Header.Get("X-Forwarded-Method")
	}
	s.mu.Lock()
	s.checks = append(s.checks, c)
	s.mu.Unlock()

	path, _, _ := strings.Cut(c.URI, "?")
	deny := func(code int, challenge, msg string) {
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":%q}`, msg)
	}
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case path == "/public" || strings.HasPrefix(path, "/public/"):
		w.WriteHeader(http.StatusOK) // public: no claim headers
	case token == "keys-not-loaded":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"jwks_unavailable"}`)
	case token == "admin":
		w.Header().Set("X-Jwt-Sub", "root")
		w.Header().Set("X-Jwt-Payload", "eyJzdWIiOiJyb290In0")
		w.WriteHeader(http.StatusOK)
	case token == "good" && (path == "/admin" || strings.HasPrefix(path, "/admin/")):
		deny(http.StatusForbidden, `Bearer error="insufficient_scope", scope="admin"`, "insufficient_scope")
	case token == "good":
		w.Header().Set("X-Jwt-Sub", "alice")
		w.Header().Set("X-Jwt-Payload", "eyJzdWIiOiJhbGljZSJ9")
		w.WriteHeader(http.StatusOK)
	default:
		deny(http.StatusUnauthorized, `Bearer error="invalid_token"`, "invalid_token")
	}
}

func (s *authzStub) last(t *testing.T) check {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.checks) == 0 {
		t.Fatal("the proxy made no check request")
	}
	return s.checks[len(s.checks)-1]
}

func (s *authzStub) reset() {
	s.mu.Lock()
	s.checks = nil
	s.mu.Unlock()
}

// echo is the backend's view of a request.
type echo struct {
	Method string              `json:"method"`
	URI    string              `json:"uri"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

// claim returns every value the backend received for a header, counting
// names that differ only in case or in "_" for "-" as the same header, the
// way CGI-style backends do (X_Jwt_Sub and X-Jwt-Sub are both HTTP_X_JWT_SUB).
func (e echo) claim(name string) []string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) }
	var vals []string
	for k, v := range e.Header {
		if norm(k) == norm(name) {
			vals = append(vals, v...)
		}
	}
	slices.Sort(vals)
	return vals
}

// backendHandler echoes each request as JSON. An upgrade request (a
// Connection option "upgrade" and an Upgrade header) is accepted with 101;
// the backend then writes the JSON echo as one line on the upgraded
// connection and echoes back whatever the client sends.
func backendHandler(hits *int, mu *sync.Mutex) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		*hits++
		mu.Unlock()
		if up := r.Header.Get("Upgrade"); up != "" && hasOption(r.Header, "upgrade") {
			upgrade(w, r, up)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{Method: r.Method, URI: r.RequestURI, Header: r.Header, Body: string(body)})
	})
}

// hasOption reports whether h's Connection header lists option.
func hasOption(h http.Header, option string) bool {
	for _, v := range h.Values("Connection") {
		for opt := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(opt), option) {
				return true
			}
		}
	}
	return false
}

// upgrade switches r's connection to protocol up, writes the request's echo
// as one JSON line, and then echoes the client's bytes until it closes or
// goes quiet. Errors end the connection; the client side reports them.
func upgrade(w http.ResponseWriter, r *http.Request, up string) {
	rc := http.NewResponseController(w)
	conn, brw, err := rc.Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", up)
	json.NewEncoder(brw).Encode(echo{Method: r.Method, URI: r.RequestURI, Header: r.Header})
	if brw.Flush() != nil {
		return
	}
	io.Copy(conn, brw) // echo; brw holds whatever arrived with the request
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago, for the
// proxy to listen on (the proxies cannot be handed a listener).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// safeBuffer collects a process's output for error messages.
type safeBuffer = testutil.Buffer

// start runs a proxy until the test ends, stopping it with SIGTERM (both
// proxies then shut their workers down; SIGKILL would orphan nginx's
// workers), and waits until addr accepts connections.
func start(t *testing.T, addr, bin string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &safeBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited early: %v\n%s", bin, err, out)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s\n%s", bin, addr, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stack is a running proxy with its stand-ins.
type stack struct {
	url   string
	authz *authzStub
	hitMu sync.Mutex
	hits  int
}

func (s *stack) backendHits() int {
	s.hitMu.Lock()
	defer s.hitMu.Unlock()
	return s.hits
}

type proxyKind int

const (
	kindNginx proxyKind = iota
	kindCaddy
)

func (k proxyKind) String() string { return [...]string{"nginx", "caddy"}[k] }

// stackOptions vary the stack for negative tests.
type stackOptions struct {
	authzDown bool                // point the proxy at a port nothing listens on
	mutate    func(string) string // edit the rendered config before starting
	// headersMore is the headers-more module for nginx (HeadersMoreModule).
	headersMore string
}

// startStack starts the stand-ins and the proxy.
func startStack(t *testing.T, kind proxyKind, opts stackOptions) *stack {
	t.Helper()
	var bin string
	switch kind {
	case kindNginx:
		bin = nginxBin(t)
	case kindCaddy:
		bin = caddyBin(t)
	}
	s := &stack{authz: &authzStub{}}
	authzSrv := httptest.NewServer(s.authz)
	t.Cleanup(authzSrv.Close)
	backendSrv := httptest.NewServer(backendHandler(&s.hits, &s.hitMu))
	t.Cleanup(backendSrv.Close)
	authzAddr := authzSrv.Listener.Addr().String()
	if opts.authzDown {
		authzAddr = freeAddr(t)
	}
	edit := func(conf []byte) []byte {
		if opts.mutate == nil {
			return conf
		}
		mutated := opts.mutate(string(conf))
		if mutated == string(conf) {
			t.Fatal("mutation changed nothing; update the test")
		}
		return []byte(mutated)
	}
	listen := freeAddr(t)
	backendAddr := backendSrv.Listener.Addr().String()
	dir := t.TempDir()
	switch kind {
	case kindNginx:
		conf, err := proxyconf.RenderNginx(proxyconf.Nginx{Listen: listen, Backend: backendAddr, Authz: authzAddr, StateDir: dir, HeadersMoreModule: opts.headersMore})
		if err != nil {
			t.Fatal(err)
		}
		start(t, listen, bin, nil, proxyconf.NginxArgs(write(t, dir, "nginx.conf", edit(conf)), dir)...)
	case kindCaddy:
		conf, err := proxyconf.RenderCaddy(proxyconf.Caddy{Listen: listen, Backend: backendAddr, Authz: authzAddr, StorageDir: filepath.Join(dir, "storage")})
		if err != nil {
			t.Fatal(err)
		}
		start(t, listen, bin, proxyconf.CaddyEnv(dir), proxyconf.CaddyArgs("run", write(t, dir, "Caddyfile", edit(conf)))...)
	}
	s.url = "http://" + listen
	return s
}

type response struct {
	status int
	header http.Header
	body   []byte
	echo   echo // the backend's view, when the request reached it
}

func do(t *testing.T, method, url, body string, header http.Header) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v // keep the exact spelling, X_Jwt_Sub included
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, body: b}
	if res.StatusCode == http.StatusOK && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.echo); err != nil {
			t.Fatalf("backend answer: %v\n%s", err, b)
		}
	}
	return r
}

// spoofed are identity headers a client must never get to the backend.
var spoofed = http.Header{
	"X-Jwt-Sub":     {"admin"},
	"X-Jwt-Payload": {"eyJzdWIiOiJhZG1pbiJ9"},
	"X_Jwt_Sub":     {"admin-underscore"},
	"X-Jwt-Email":   {"admin@example.com"}, // not a configured claim header
}

func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = append(out[kv[i]], kv[i+1])
	}
	return out
}

func TestProxiesEndToEnd(t *testing.T) {
	for _, kind := range []proxyKind{kindNginx, kindCaddy} {
		t.Run(kind.String(), func(t *testing.T) {
			s := startStack(t, kind, stackOptions{})

			t.Run("public without token", func(t *testing.T) {
				r := do(t, "GET", s.url+"/public/headers", "", nil)
				if r.status != http.StatusOK {
					t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
				}
				if got := s.authz.last(t).URI; got != "/public/headers" {
					t.Errorf("checked URI = %q, want /public/headers", got)
				}
			})

			t.Run("public strips spoofed claims", func(t *testing.T) {
				r := do(t, "GET", s.url+"/public/headers", "", spoofed)
				if r.status != http.StatusOK {
					t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
				}
				for _, h := range []string{"X-Jwt-Sub", "X-Jwt-Payload"} {
					if got := r.echo.claim(h); len(got) != 0 {
						t.Errorf("backend received %s = %q on a public path, want none", h, got)
					}
				}
				if kind == kindCaddy {
					// nginx cannot strip by prefix; only configured claim
					// headers are overwritten there.
					if got := r.echo.claim("X-Jwt-Email"); len(got) != 0 {
						t.Errorf("backend received X-Jwt-Email = %q, want none", got)
					}
				}
			})

			t.Run("protected without token is 401", func(t *testing.T) {
				before := s.backendHits()
				r := do(t, "GET", s.url+"/protected", "", nil)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("status = %d, want 401\n%s", r.status, r.body)
				}
				if got := r.header.Values("WWW-Authenticate"); !slices.Equal(got, []string{`Bearer error="invalid_token"`}) {
					t.Errorf("WWW-Authenticate = %q, want exactly the server's challenge", got)
				}
				assertJSONError(t, r)
				if s.backendHits() != before {
					t.Error("the backend was called for a denied request")
				}
			})

			t.Run("protected with token gets verified claims only", func(t *testing.T) {
				r := do(t, "GET", s.url+"/protected/headers?x=1", "", with(spoofed, "Authorization", "Bearer good", "Cookie", "session=secret"))
				if r.status != http.StatusOK {
					t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
				}
				if got := r.echo.claim("X-Jwt-Sub"); !slices.Equal(got, []string{"alice"}) {
					t.Errorf("backend X-Jwt-Sub = %q, want [alice]", got)
				}
				if got := r.echo.claim("X-Jwt-Payload"); !slices.Equal(got, []string{"eyJzdWIiOiJhbGljZSJ9"}) {
					t.Errorf("backend X-Jwt-Payload = %q, want the verified payload", got)
				}
				c := s.authz.last(t)
				if c.URI != "/protected/headers?x=1" || c.Method != "GET" {
					t.Errorf("checked %s %s, want GET /protected/headers?x=1", c.Method, c.URI)
				}
				if c.Header.Get("Authorization") != "Bearer good" {
					t.Error("the check did not receive the Authorization header")
				}
				if c.Header.Get("Cookie") != "" {
					t.Error("the check received the client's cookies")
				}
			})

			// Connection names hop-by-hop headers, which a proxy removes
			// when it forwards (RFC 9110 section 7.6.1). Naming the claim
			// headers must not remove the verified values set after the
			// check: the request is allowed, so the backend must learn who
			// made it.
			t.Run("Connection naming the claim headers keeps the verified ones", func(t *testing.T) {
				for _, tc := range []struct {
					name string
					conn []string
				}{
					{name: "as the guide's client sends it", conn: []string{"keep-alive, X-Jwt-Sub, X-Jwt-Payload"}},
					{name: "lower case, no spaces", conn: []string{"x-jwt-sub,x-jwt-payload"}},
					{name: "upper case, tabs and spaces", conn: []string{"X-JWT-SUB ,\tX-Jwt-Payload\t, keep-alive"}},
					{name: "one option per header line", conn: []string{"keep-alive", "X-Jwt-Sub", "X-Jwt-Payload"}},
					{name: "underscore and mixed spellings", conn: []string{"X_Jwt_Sub, x-JWT_payload, X-Jwt-Payload"}},
					{name: "upgrade and claims", conn: []string{"Upgrade, X-Jwt-Sub, X-Jwt-Payload"}},
				} {
					t.Run(tc.name, func(t *testing.T) {
						h := with(spoofed, "Authorization", "Bearer good")
						h["Connection"] = tc.conn
						r := do(t, "GET", s.url+"/protected/headers", "", h)
						if r.status != http.StatusOK {
							t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
						}
						if got := r.echo.claim("X-Jwt-Sub"); !slices.Equal(got, []string{"alice"}) {
							t.Errorf("backend X-Jwt-Sub = %q, want [alice]", got)
						}
						if got := r.echo.claim("X-Jwt-Payload"); !slices.Equal(got, []string{"eyJzdWIiOiJhbGljZSJ9"}) {
							t.Errorf("backend X-Jwt-Payload = %q, want the verified payload", got)
						}
					})
				}
			})

			// The Caddyfile cuts only the claim headers out of Connection;
			// other options keep their meaning there. nginx never removes
			// the headers a client's Connection names.
			t.Run("Connection still names other hop-by-hop headers", func(t *testing.T) {
				h := http.Header{"Authorization": {"Bearer good"}, "Connection": {"X-Hop, X-Jwt-Sub"}, "X-Hop": {"1"}}
				r := do(t, "GET", s.url+"/protected/headers", "", h)
				if r.status != http.StatusOK {
					t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
				}
				if got := r.echo.claim("X-Jwt-Sub"); !slices.Equal(got, []string{"alice"}) {
					t.Errorf("backend X-Jwt-Sub = %q, want [alice]", got)
				}
				hop := r.echo.claim("X-Hop")
				switch {
				case kind == kindCaddy && len(hop) != 0:
					t.Errorf("backend received X-Hop = %q although Connection named it", hop)
				case kind == kindNginx:
					t.Logf("nginx passed X-Hop = %q on (it does not act on Connection options)", hop)
				}
			})

			t.Run("admin without scope is 403", func(t *testing.T) {
				r := do(t, "GET", s.url+"/admin", "", http.Header{"Authorization": {"Bearer good"}})
				if r.status != http.StatusForbidden {
					t.Fatalf("status = %d, want 403\n%s", r.status, r.body)
				}
				if got := r.header.Values("WWW-Authenticate"); !slices.Equal(got, []string{`Bearer error="insufficient_scope", scope="admin"`}) {
					t.Errorf("WWW-Authenticate = %q, want exactly the server's challenge", got)
				}
				assertJSONError(t, r)
			})

			t.Run("client cannot choose the checked path", func(t *testing.T) {
				s.authz.reset()
				r := do(t, "GET", s.url+"/admin", "", http.Header{
					"Authorization":      {"Bearer good"},
					"X-Original-Uri":     {"/public"},
					"X-Original-Method":  {"GET"},
					"X-Forwarded-Uri":    {"/public"},
					"X-Forwarded-Method": {"GET"},
				})
				if r.status != http.StatusForbidden {
					t.Fatalf("status = %d, want 403 (the check must see /admin)\n%s", r.status, r.body)
				}
				if c := s.authz.last(t); c.URI != "/admin" {
					t.Errorf("checked URI = %q, want /admin", c.URI)
				}
			})

			t.Run("body goes to the backend, not the check", func(t *testing.T) {
				const payload = `{"hello":"world"}`
				r := do(t, "POST", s.url+"/protected/headers", payload, http.Header{"Authorization": {"Bearer admin"}, "Content-Type": {"application/json"}})
				if r.status != http.StatusOK {
					t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
				}
				if r.echo.Body != payload {
					t.Errorf("backend body = %q, want %q", r.echo.Body, payload)
				}
				if c := s.authz.last(t); c.BodyLen != 0 || c.Method != "POST" {
					t.Errorf("check saw method %s and a %d-byte body, want POST and none", c.Method, c.BodyLen)
				}
			})

			t.Run("keys not loaded fails closed", func(t *testing.T) {
				before := s.backendHits()
				r := do(t, "GET", s.url+"/protected", "", http.Header{"Authorization": {"Bearer keys-not-loaded"}})
				if r.status != http.StatusServiceUnavailable {
					t.Fatalf("status = %d, want 503\n%s", r.status, r.body)
				}
				assertJSONError(t, r)
				if s.backendHits() != before {
					t.Error("the backend was called although no decision was made")
				}
			})
		})
	}
}

// TestProxiesUpgrade sends WebSocket upgrade requests. Caddy proxies them
// as upgrades, and the backend gets the verified claim headers even when
// Connection names them. deploy/nginx does not forward Upgrade (nginx needs
// an explicit proxy_set_header Upgrade/Connection for that), so nginx
// proxies the request as a plain GET; the identity must still arrive.
func TestProxiesUpgrade(t *testing.T) {
	for _, tc := range []struct {
		kind     proxyKind
		upgrades bool
	}{
		{kind: kindNginx, upgrades: false},
		{kind: kindCaddy, upgrades: true},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := startStack(t, tc.kind, stackOptions{})
			for _, conn := range []string{"Upgrade", "keep-alive, Upgrade", "Upgrade, X-Jwt-Sub, X-Jwt-Payload"} {
				t.Run(conn, func(t *testing.T) {
					res, e, c := rawUpgrade(t, s.url, "/protected/ws", http.Header{
						"Authorization": {"Bearer good"},
						"Connection":    {conn},
						"Upgrade":       {"websocket"},
						"X-Jwt-Sub":     {"admin"},
					})
					want := http.StatusOK
					if tc.upgrades {
						want = http.StatusSwitchingProtocols
					}
					if res.StatusCode != want {
						t.Fatalf("status = %d, want %d", res.StatusCode, want)
					}
					if got := e.claim("X-Jwt-Sub"); !slices.Equal(got, []string{"alice"}) {
						t.Errorf("backend X-Jwt-Sub = %q, want [alice]", got)
					}
					if got := e.claim("X-Jwt-Payload"); !slices.Equal(got, []string{"eyJzdWIiOiJhbGljZSJ9"}) {
						t.Errorf("backend X-Jwt-Payload = %q, want the verified payload", got)
					}
					if c := s.authz.last(t); c.Header.Get("Upgrade") != "" || hasOption(c.Header, "upgrade") {
						t.Errorf("the check request was an upgrade too: Connection %q, Upgrade %q", c.Header["Connection"], c.Header["Upgrade"])
					}
					if !tc.upgrades {
						return
					}
					if !slices.Equal(e.Header["Upgrade"], []string{"websocket"}) || !hasOption(e.Header, "upgrade") {
						t.Errorf("backend got Connection %q, Upgrade %q; want an upgrade to websocket", e.Header["Connection"], e.Header["Upgrade"])
					}
					if got := res.Header.Get("Upgrade"); got != "websocket" {
						t.Errorf("101 answer has Upgrade %q, want websocket", got)
					}
					if _, err := io.WriteString(c, "ping\n"); err != nil {
						t.Fatal(err)
					}
					line, err := c.br.ReadString('\n')
					if err != nil || line != "ping\n" {
						t.Errorf("after the upgrade read %q, %v; want the echo of ping", line, err)
					}
				})
			}
			t.Run("without a token", func(t *testing.T) {
				before := s.backendHits()
				res, _, _ := rawUpgrade(t, s.url, "/protected/ws", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}})
				if res.StatusCode != http.StatusUnauthorized {
					t.Errorf("status = %d, want 401", res.StatusCode)
				}
				if s.backendHits() != before {
					t.Error("the backend was called for a denied upgrade")
				}
			})
		})
	}
}

// rawConn is a client connection after an upgrade request.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

// rawUpgrade sends GET path with header over a new connection to base and
// reads the answer. For 101 it also reads the backend's echo line; for a
// JSON 200 it decodes the body as the echo. The connection is closed when
// the test ends.
func rawUpgrade(t *testing.T, base, path string, header http.Header) (*http.Response, echo, *rawConn) {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(t.Context(), "tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	for k, vv := range header {
		for _, v := range vv {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	c := &rawConn{Conn: conn, br: bufio.NewReader(conn)}
	res, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	var e echo
	switch {
	case res.StatusCode == http.StatusSwitchingProtocols:
		line, err := c.br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read the backend's echo after 101: %v", err)
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("backend echo: %v\n%s", err, line)
		}
	default:
		body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == http.StatusOK {
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("backend answer: %v\n%s", err, body)
			}
		}
	}
	return res, e, c
}

// TestProxiesAuthzDown: with the ext_authz endpoint unreachable, nothing gets
// through. nginx answers 503 (its auth_request 500, remapped); Caddy answers
// 502 (reverse_proxy's dial error).
func TestProxiesAuthzDown(t *testing.T) {
	for _, tc := range []struct {
		kind proxyKind
		want int
	}{
		{kind: kindNginx, want: http.StatusServiceUnavailable},
		{kind: kindCaddy, want: http.StatusBadGateway},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := startStack(t, tc.kind, stackOptions{authzDown: true})
			for _, path := range []string{"/public", "/protected"} {
				r := do(t, "GET", s.url+path, "", http.Header{"Authorization": {"Bearer good"}})
				if r.status != tc.want {
					t.Errorf("GET %s: status = %d, want %d\n%s", path, r.status, tc.want, r.body)
				}
			}
			if s.backendHits() != 0 {
				t.Error("the backend was called although ext_authz was down")
			}
		})
	}
}

// TestSpoofingTestsCanFail weakens each config in the way its comments warn
// against and shows that a forged (or bogus) claim header then reaches the
// backend, so the end-to-end assertions above are not passing by accident.
func TestSpoofingTestsCanFail(t *testing.T) {
	cases := []struct {
		name   string
		kind   proxyKind
		mutate func(string) string
		header string // the forged header that must now get through
	}{
		{
			name: "nginx without the claim overwrite", kind: kindNginx, header: "X-Jwt-Sub",
			mutate: func(c string) string {
				return strings.Replace(c, "proxy_set_header X-Jwt-Sub $extauthz_x_jwt_sub;", "", 1)
			},
		},
		{
			name: "nginx with underscores_in_headers on", kind: kindNginx, header: "X_Jwt_Sub",
			mutate: func(c string) string {
				return strings.Replace(c, "underscores_in_headers off;", "underscores_in_headers on;", 1)
			},
		},
		{
			name: "caddy without the X-Jwt-* strip", kind: kindCaddy, header: "X-Jwt-Sub",
			mutate: func(c string) string { return strings.Replace(c, "request_header -X-Jwt-*\n", "", 1) },
		},
		{
			name: "caddy without the underscore strip", kind: kindCaddy, header: "X_Jwt_Sub",
			mutate: func(c string) string { return strings.Replace(c, "request_header -X_Jwt_*\n", "", 1) },
		},
		{
			name: "caddy with copy_headers semantics", kind: kindCaddy, header: "X-Jwt-Sub",
			mutate: func(c string) string {
				return strings.Replace(c, "@has_x_jwt_sub not vars_regexp {rp.header.X-Jwt-Sub} ^$", "@has_x_jwt_sub not path /nothing", 1)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startStack(t, tc.kind, stackOptions{mutate: tc.mutate})
			r := do(t, "GET", s.url+"/public/headers", "", spoofed)
			if r.status != http.StatusOK {
				t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
			}
			var got []string
			for k, v := range r.echo.Header {
				if strings.EqualFold(k, tc.header) {
					got = append(got, v...)
				}
			}
			if len(got) == 0 || got[0] == "" {
				t.Fatalf("the weakened config still kept %s from the backend; the end-to-end test cannot tell a safe config from this one", tc.header)
			}
			t.Logf("weakened config let %s = %q through, as expected", tc.header, got)
		})
	}
}

// TestNginxUnlistedClaimHeader shows the limit of core nginx that
// deploy/nginx documents, and the headers-more option that lifts it: the
// server sets a claim header (X-Jwt-Email) that the rendered nginx.conf does
// not list. With core nginx the client's forged value reaches the backend;
// with headers-more every client-sent X-Jwt-* header is deleted, and the
// listed claim headers still arrive.
func TestNginxUnlistedClaimHeader(t *testing.T) {
	forged := with(spoofed, "Authorization", "Bearer good", "X-JWT-EMAIL", "upper@example.com")
	t.Run("core nginx", func(t *testing.T) {
		s := startStack(t, kindNginx, stackOptions{})
		r := do(t, "GET", s.url+"/protected/headers", "", forged)
		if r.status != http.StatusOK {
			t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
		}
		if got := r.echo.claim("X-Jwt-Email"); len(got) == 0 {
			t.Fatal("core nginx kept an unlisted X-Jwt-Email from the backend; deploy/nginx's CLAIM HEADERS warning and this test need updating")
		}
	})
	t.Run("headers-more", func(t *testing.T) {
		s := startStack(t, kindNginx, stackOptions{headersMore: headersMoreModule(t)})
		for _, path := range []string{"/protected/headers", "/public/headers"} {
			s.authz.reset()
			r := do(t, "GET", s.url+path, "", forged)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: status = %d, want 200\n%s", path, r.status, r.body)
			}
			if got := r.echo.claim("X-Jwt-Email"); len(got) != 0 {
				t.Errorf("GET %s: backend received X-Jwt-Email = %q, want none", path, got)
			}
			wantSub, wantPayload := []string{"alice"}, []string{"eyJzdWIiOiJhbGljZSJ9"}
			if path == "/public/headers" {
				wantSub, wantPayload = nil, nil
			}
			if got := r.echo.claim("X-Jwt-Sub"); !slices.Equal(got, wantSub) {
				t.Errorf("GET %s: backend X-Jwt-Sub = %q, want %q", path, got, wantSub)
			}
			if got := r.echo.claim("X-Jwt-Payload"); !slices.Equal(got, wantPayload) {
				t.Errorf("GET %s: backend X-Jwt-Payload = %q, want %q", path, got, wantPayload)
			}
			for k := range s.authz.last(t).Header {
				if strings.HasPrefix(strings.ToLower(k), "x-jwt-") {
					t.Errorf("GET %s: the check received the client's %s", path, k)
				}
			}
		}
	})
}

// TestConnectionTestsCanFail runs Caddy without the Connection rewrite and
// shows that the Connection cases above then fail the way Caddy 2.6 did
// before it: the request is allowed, and the backend gets it without the
// verified claim headers, over plain HTTP and over an upgrade.
func TestConnectionTestsCanFail(t *testing.T) {
	s := startStack(t, kindCaddy, stackOptions{mutate: func(c string) string {
		return regexp.MustCompile(`(?m)^\s*request_header Connection .*\n`).ReplaceAllString(c, "")
	}})
	lost := func(t *testing.T, e echo) {
		t.Helper()
		if sub, payload := e.claim("X-Jwt-Sub"), e.claim("X-Jwt-Payload"); len(sub) != 0 || len(payload) != 0 {
			t.Fatalf("without the rewrite the backend still got X-Jwt-Sub %q, X-Jwt-Payload %q; the Connection tests cannot tell the configs apart", sub, payload)
		}
	}
	t.Run("plain", func(t *testing.T) {
		r := do(t, "GET", s.url+"/protected/headers", "", http.Header{
			"Authorization": {"Bearer good"}, "Connection": {"keep-alive, X-Jwt-Sub, X-Jwt-Payload"},
		})
		if r.status != http.StatusOK {
			t.Fatalf("status = %d, want 200\n%s", r.status, r.body)
		}
		lost(t, r.echo)
	})
	t.Run("upgrade", func(t *testing.T) {
		res, e, _ := rawUpgrade(t, s.url, "/protected/ws", http.Header{
			"Authorization": {"Bearer good"}, "Connection": {"Upgrade, X-Jwt-Sub, X-Jwt-Payload"}, "Upgrade": {"websocket"},
		})
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status = %d, want 101", res.StatusCode)
		}
		lost(t, e)
	})
}

func assertJSONError(t *testing.T, r response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error == "" {
		t.Errorf("body %q is not {\"error\": ...}: %v", r.body, errors.Join(err))
	}
}
