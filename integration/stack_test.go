package integration_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/deploy/proxyconf"
	"github.com/extauthz/extauthz/standin"
)

// The guide's tenant as the demo issuer names itself, and its API.
const (
	guideDomain = "localhost:9000"
	issuer      = "http://" + guideDomain // demo-idp's default --issuer; the guide's AUTHACTION_DOMAIN makes extauthz expect it
	audience    = "https://api.example.com"
)

// Timings shared by every stack.
const (
	// publishDelay is the issuer's --rotation-publish-delay: a rotated-in
	// key is in the JWKS this long before it signs.
	publishDelay = time.Second
	// minRefresh is extauthz's --jwks-min-refresh-interval. It must be
	// shorter than publishDelay for a rotation to go unnoticed (see
	// idp.DefaultRotationPublishDelay).
	minRefresh = 500 * time.Millisecond
	// clockSkew is extauthz's --clock-skew, so that a token really expires
	// within a test.
	clockSkew = time.Second
	// shortTTL is the lifetime of short-client's tokens.
	shortTTL = 3 * time.Second
	// checkTimeout bounds one check in the Envoy stand-ins. nginx and Caddy
	// get 2s from the rendered configs (proxy_read_timeout,
	// response_header_timeout); the stand-ins get the same instead of
	// Envoy's 200ms / envoy.yaml's 0.5s, because these tests assert
	// decisions, not latency, on a shared 2-core machine running -race
	// binaries.
	checkTimeout = 2 * time.Second
	// startTimeout bounds the start of one stack.
	startTimeout = 60 * time.Second
)

// idpConfig is the issuer's config file: the demo clients (a file replaces
// them, so they are listed again) and short-client, whose tokens expire
// after shortTTL.
var idpConfig = fmt.Sprintf(`audiences: [%s]
clients:
  - id: demo-client
    secret: demo-secret
    scopes: [read:messages]
  - id: admin-client
    secret: admin-secret
    scopes: [read:messages, admin]
  - id: short-client
    secret: short-secret
    scopes: [read:messages]
    token_ttl: %s
  - id: writer-client
    secret: writer-secret
    scopes: [read:messages, write:messages]
`, audience, shortTTL)

// serverRules are the server's rules and named policies in every stack.
const serverRules = `# The demo's rules: /public is public, /admin needs the admin scope,
# everything else a valid token.
rules:
  - path: /public
    public: true
  - path: /admin
    scopes: [admin]
  # Method rules: reading messages needs read:messages, writing them
  # write:messages (the fronts must tell the server the original method).
  - path: /messages
    methods: [POST, PUT, PATCH, DELETE]
    scopes: [write:messages]
  - path: /messages
    scopes: [read:messages]
  # A host rule: /intranet is public on intranet.example and denied on any
  # other host (the fronts must tell the server the original host).
  - path: /intranet
    hosts: [intranet.example]
    public: true
  - path: /intranet
    deny: true
# The policy envoy/envoy.yaml's /admin route names (context_extensions), as
# in envoy/extauthz-demo.yaml.
policies:
  admin:
    scopes: [admin]
`

// serverTimings are the timings above, in the server's config file.
var serverTimings = fmt.Sprintf(`clock_skew: %s
jwks_min_refresh_interval: %s
shutdown_grace: 1s
log_level: info
`, clockSkew, minRefresh)

// extauthzConfig is the server's config file: the rules and the timings
// above. The issuer and audience come from the guide's .env.
var extauthzConfig = serverRules + serverTimings

// forwardTokenConfig is the server's config file for a stack whose provider
// has forward_token: true: the guide's tenant written as a providers entry
// (a providers list excludes the .env and --jwks-url), then the same rules
// and timings.
func forwardTokenConfig(jwksURL string) string {
	return fmt.Sprintf(`providers:
  - name: demo
    issuer: %s
    audiences: [%s]
    jwks_url: %s
    forward_token: true
`, issuer, audience, jwksURL) + serverRules + serverTimings
}

// guideDotEnv is the guide's .env for the demo tenant, in extauthz's
// working directory.
const guideDotEnv = "AUTHACTION_DOMAIN=" + guideDomain + "\nAUTHACTION_AUDIENCE=" + audience + "\n"

// front is one proxy in front of the backend.
type front struct {
	name string
	url  string // http://127.0.0.1:port; "" when skipped
	skip string // why the front is not running ("" when it is)
	// downStatus is the status the front answers with when the ext_authz
	// server cannot be reached.
	downStatus int
	// denyBody: the client gets the ext_authz server's deny body.
	denyBody bool
	log      *lineLog
	// access is the Envoy stand-in's access log (nil for the others).
	access *lineLog
}

// stack is one set of processes: issuer, ext_authz server, backend, and
// the fronts, all on 127.0.0.1.
type stack struct {
	dir string

	idp         *proc
	idpURL      string // public listener: token endpoint, JWKS
	idpAdminURL string // POST /rotate

	authz         *proc
	authzGRPC     string // host:port
	authzHTTP     string // host:port
	authzAdminURL string // /readyz

	backend    *proc
	backendURL string
	tap        *tap

	fronts []*front
}

// tempDir is a fresh directory removed in cleanup. t.TempDir is not used
// because its name derives from the test name, and the proxy configs only
// accept plain path characters.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "extauthz-it-")
	if err != nil {
		t.Fatal(err)
	}
	// nginx's workers run as nobody when the tests run as root, and may
	// need their temp directories below this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// stackOptions change a stack from the guide's.
type stackOptions struct {
	// authzConfig, when set, is the server's config file given the
	// issuer's JWKS URL, and replaces the guide's .env, --jwks-url and
	// extauthzConfig.
	authzConfig func(jwksURL string) string
}

// newStack starts the issuer, the backend and the ext_authz server, waits
// until the server has loaded the issuer's keys, then starts every front
// and waits until each serves /public. Everything is stopped in cleanup.
func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackWith(t, stackOptions{})
}

// newStackWith is newStack with opts.
func newStackWith(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	s := &stack{dir: tempDir(t)}
	env := childEnv()

	// The issuer and the backend do not depend on each other.
	idpDir := filepath.Join(s.dir, "idp")
	idpConf := writeFile(t, filepath.Join(idpDir, "idp.yaml"), idpConfig)
	s.idp = startProc(t, "demo-idp", idpDir, env, bins.idp,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--config", idpConf,
		"--rotation-publish-delay", publishDelay.String(), "--log-format", "json")
	backendDir := filepath.Join(s.dir, "backend")
	if err := os.MkdirAll(backendDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.backend = startProc(t, "demo-backend", backendDir, env, bins.backend,
		"--addr", "127.0.0.1:0", "--log-format", "json")

	s.idpURL = "http://" + s.idp.listenAddr(ctx, t, "public")
	s.idpAdminURL = "http://" + s.idp.listenAddr(ctx, t, "admin")
	s.backendURL = "http://" + s.backend.listenAddr(ctx, t, "")
	if _, err := s.idp.waitJSON(ctx, "demo issuer ready", nil); err != nil {
		t.Fatal(err)
	}

	// The ext_authz server, configured as the guide says: its .env names
	// the tenant and the API; the JWKS is fetched from the issuer's real
	// port; the rules come from the config file.
	authzDir := filepath.Join(s.dir, "extauthz")
	jwksURL := s.idpURL + "/.well-known/jwks.json"
	args := []string{"--jwks-url", jwksURL}
	conf := extauthzConfig
	if opts.authzConfig != nil {
		args, conf = nil, opts.authzConfig(jwksURL)
		if err := os.MkdirAll(authzDir, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		writeFile(t, filepath.Join(authzDir, ".env"), guideDotEnv)
	}
	authzConf := writeFile(t, filepath.Join(authzDir, "extauthz.yaml"), conf)
	s.authz = startProc(t, "extauthz", authzDir, env, bins.extauthz, append([]string{
		"--config", authzConf,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--log-format", "json"}, args...)...)
	m, err := s.authz.waitJSON(ctx, "extauthz listening", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		dst *string
		key string
	}{{&s.authzGRPC, "grpc"}, {&s.authzHTTP, "http"}, {&s.authzAdminURL, "admin"}} {
		addr, err := loopbackAddr(m[a.key])
		if err != nil {
			t.Fatalf("extauthz %s: %v", a.key, err)
		}
		*a.dst = addr
	}
	s.authzAdminURL = "http://" + s.authzAdminURL
	if err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		r, err := send(ctx, http.MethodGet, s.authzAdminURL+"/readyz", nil)
		return err == nil && r.status == http.StatusOK, err
	}); err != nil {
		t.Fatalf("extauthz /readyz never answered 200: %v", err)
	}

	s.tap = newTap(t, s.backendURL)

	yamlRoutes, yamlAccessLog := envoyYAML(t)
	s.fronts = []*front{
		// Envoy's defaults, as cmd/demo wires the stand-in: status_on_error
		// 403, headers with underscores allowed. x_jwt_sub reaches the
		// ext_authz server, whose own stripping is what keeps it from the
		// backend.
		s.startStandin(t, "envoy", standin.Config{}),
		// envoy/envoy.yaml's settings, its routes' context_extensions (the
		// /admin route names the policy "admin") and its access log format.
		s.startStandin(t, "envoy-yaml", standin.Config{
			StatusOnError:              http.StatusServiceUnavailable,
			UseRemoteAddress:           true,
			NormalizePath:              true,
			DropHeadersWithUnderscores: true,
			DisallowedHeaders:          []string{"cookie"},
			Routes:                     yamlRoutes,
			AccessLogFormat:            yamlAccessLog,
		}),
		s.startNginx(ctx, t),
		s.startCaddy(ctx, t),
	}
	for _, f := range s.fronts {
		if f.skip == "" {
			f.waitPublic(ctx, t)
		}
	}
	return s
}

// waitPublic waits until f serves /public.
func (f *front) waitPublic(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		r, err := send(ctx, http.MethodGet, f.url+"/public", nil)
		return err == nil && r.status == http.StatusOK, err
	}); err != nil {
		t.Fatalf("front %s never served /public: %v", f.name, err)
	}
}

// startStandin runs an Envoy stand-in in the test process, checking with
// the extauthz process over gRPC and forwarding to the tap. With an
// AccessLogFormat, its access log goes to the front's access.
func (s *stack) startStandin(t *testing.T, name string, cfg standin.Config) *front {
	t.Helper()
	return s.startStandinTLS(t, name, cfg, nil)
}

// startStandinTLS is startStandin serving TLS with tc (an https front),
// or plain HTTP when tc is nil.
func (s *stack) startStandinTLS(t *testing.T, name string, cfg standin.Config, tc *tls.Config) *front {
	t.Helper()
	logs := newLineLog()
	reportOnFailure(t, name, logs)
	var access *lineLog
	if cfg.AccessLogFormat != "" {
		access = newLineLog()
		reportOnFailure(t, name+" access log", access)
		cfg.AccessLog = access
	}
	cfg.AuthzTarget = s.authzGRPC
	cfg.Upstream = s.tap.url
	cfg.Timeout = checkTimeout
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := standin.New(cfg)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if tc != nil {
		lis, scheme = tls.NewListener(lis, tc), "https"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: serve: %v", name, err)
		}
		p.Close()
	})
	status := cfg.StatusOnError
	if status == 0 {
		status = http.StatusForbidden
	}
	return &front{name: name, url: scheme + "://" + lis.Addr().String(), downStatus: status, denyBody: true, log: logs, access: access}
}

// startNginx runs the real nginx with deploy/nginx rendered for this
// stack's ports: auth_request to the server's HTTP forward-auth port.
func (s *stack) startNginx(ctx context.Context, t *testing.T) *front {
	t.Helper()
	// auth_request turns a failed check into 500, which the config answers
	// as 503 (@extauthz_unavailable); it passes 401 and 403 on but with
	// its own body.
	// denyBody: deploy/nginx turns the server's X-Extauthz-Error back into
	// the guide's body.
	f := &front{name: "nginx", downStatus: http.StatusServiceUnavailable, denyBody: true}
	bin, why := peer("nginx", "/usr/sbin/nginx")
	if bin == "" {
		f.skip = why
		return f
	}
	for attempt := 1; ; attempt++ {
		dir := filepath.Join(s.dir, fmt.Sprintf("nginx-%d", attempt))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		listen := freePort(t)
		conf, err := proxyconf.RenderNginx(proxyconf.Nginx{
			Listen:   listen,
			Backend:  strings.TrimPrefix(s.tap.url, "http://"),
			Authz:    s.authzHTTP,
			StateDir: dir,
		})
		if err != nil {
			t.Fatal(err)
		}
		path := writeFile(t, filepath.Join(dir, "nginx.conf"), string(conf))
		p := startProc(t, "nginx", dir, childEnv(), bin, proxyconf.NginxArgs(path, dir)...)
		if err := waitListening(ctx, p, listen); err != nil {
			if attempt < 3 && p.exited() && strings.Contains(p.out.tail(20), "Address already in use") {
				continue // the port was taken between freePort and nginx's bind
			}
			t.Fatalf("nginx: %v", err)
		}
		f.url, f.log = "http://"+listen, p.out
		return f
	}
}

// startCaddy runs the real Caddy with deploy/caddy rendered for this
// stack's ports: forward auth to the server's HTTP port, admin off, bound
// to 127.0.0.1, its state in the stack's directory.
func (s *stack) startCaddy(ctx context.Context, t *testing.T) *front {
	t.Helper()
	// A check that cannot connect is a 502 from Caddy's reverse_proxy.
	f := &front{name: "caddy", downStatus: http.StatusBadGateway, denyBody: true}
	bin, why := peer("caddy")
	if bin == "" {
		f.skip = why
		return f
	}
	for attempt := 1; ; attempt++ {
		dir := filepath.Join(s.dir, fmt.Sprintf("caddy-%d", attempt))
		listen := freePort(t)
		conf, err := proxyconf.RenderCaddy(proxyconf.Caddy{
			Listen:     listen,
			Backend:    strings.TrimPrefix(s.tap.url, "http://"),
			Authz:      s.authzHTTP,
			StorageDir: filepath.Join(dir, "storage"),
		})
		if err != nil {
			t.Fatal(err)
		}
		path := writeFile(t, filepath.Join(dir, "Caddyfile"), string(conf))
		p := startProc(t, "caddy", dir, childEnv(proxyconf.CaddyEnv(dir)...), bin, proxyconf.CaddyArgs("run", path)...)
		if err := waitListening(ctx, p, listen); err != nil {
			if attempt < 3 && p.exited() && strings.Contains(p.out.tail(20), "address already in use") {
				continue
			}
			t.Fatalf("caddy: %v", err)
		}
		f.url, f.log = "http://"+listen, p.out
		return f
	}
}

// waitListening waits until addr accepts connections, or p exits.
func waitListening(ctx context.Context, p *proc, addr string) error {
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited: %v", p.name, p.waitErr)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
}

// idHeader carries a test request's id from the client through the front
// to the tap, which records what arrived under that id.
const idHeader = "X-Itest-Id"

// tap is a recording reverse proxy between the fronts and the demo
// backend: it counts every request that would reach the backend and keeps
// the headers of those carrying an idHeader.
type tap struct {
	url  string
	mu   sync.Mutex
	n    int
	byID map[string]http.Header
}

func newTap(t *testing.T, backendURL string) *tap {
	t.Helper()
	target, err := url.Parse(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{byID: map[string]http.Header{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.n++
		if id := r.Header.Get(idHeader); id != "" {
			tp.byID[id] = r.Header.Clone()
		}
		tp.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tp.url = srv.URL
	return tp
}

// count is the number of requests that reached the backend so far.
func (tp *tap) count() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.n
}

// seen returns the headers the backend got for request id, if it got it.
func (tp *tap) seen(id string) (http.Header, bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	h, ok := tp.byID[id]
	return h, ok
}

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// client talks to 127.0.0.1 only: no proxy from the environment, no
// redirects followed.
var client = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
	Timeout:   20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// send makes one request. header is used as is: its keys are sent with the
// exact spelling given, so a test can send x-jwt-sub and X-JWT-SUB as
// separate header lines; a "Host" key sets the Host header.
func send(ctx context.Context, method, target string, header http.Header) (reply, error) {
	return sendWith(ctx, client, method, target, header)
}

// sendWith is send through c.
func sendWith(ctx context.Context, c *http.Client, method, target string, header http.Header) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return reply{}, err
	}
	for k, v := range header {
		if k == "Host" && len(v) == 1 {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: read body: %w", method, target, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: body}, nil
}
