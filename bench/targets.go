package main

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// The targets, by the names --targets takes.
const (
	targetOurs       = "extauthz"
	targetPolicy     = "extauthz-policy"
	targetNop        = "nop"
	targetFlask      = "flask"
	targetOPA        = "opa-envoy"
	targetOathkeeper = "oathkeeper"
	targetOAuth2     = "oauth2-proxy"
)

// allTargets is the order of the tables.
var allTargets = []string{targetOurs, targetPolicy, targetNop, targetFlask, targetOPA, targetOathkeeper, targetOAuth2}

// flaskPort is the guide's: app.run(port=5000).
const flaskAddr = "127.0.0.1:5000"

// flaskApp holds the guide's two files as the guide writes them.
//
//go:embed flaskapp/app.py flaskapp/auth/jwt_validator.py
var flaskApp embed.FS

// target is one server the harness measures.
type target struct {
	Name  string
	Label string // in the tables
	GRPC  bool
	HTTP  bool
	Peer  bool   // skipped when not installed, unless --require-peers
	Bin   string // the binary; "" when not installed
	Ver   string // version, as reported by the binary or its build info
	Skip  string // why the target does not run ("" when it runs)
	// AllowsAll marks the do-nothing server: its probe expects no denial.
	AllowsAll bool
	// Variant marks a configuration of extauthz (not a peer): it is run
	// and reported like extauthz, and not in the ratios against peers.
	Variant bool
	// Denies are requests with the hit token that the probe expects
	// denied with a 403 (gRPC PERMISSION_DENIED): what a policy refuses.
	Denies []probeRequest
	start  func(ctx context.Context, h *harness, extra []string) (*instance, error)
}

// probeRequest is a request the probe sends with the hit token.
type probeRequest struct {
	Method, Path, Host string
	Why                string // for the error
}

// instance is a running target.
type instance struct {
	procs      []*proc
	grpcAddr   string // host:port of the ext_authz gRPC service
	httpURL    string // the URL wrk loads
	metricsURL string // Prometheus metrics with extauthz_checks_total, if any
	conn       *grpc.ClientConn
}

func (in *instance) stop() {
	if in.conn != nil {
		in.conn.Close()
	}
	for i := len(in.procs) - 1; i >= 0; i-- {
		in.procs[i].stop(5 * time.Second)
	}
}

// main is the process whose memory is reported.
func (in *instance) main() *proc { return in.procs[0] }

// launch starts a process and waits until ready succeeds; on failure the
// process is stopped and the error carries its output.
func launch(ctx context.Context, name, dir string, env []string, ready func(context.Context) error, bin string, args ...string) (*proc, error) {
	p, err := startProc(name, dir, env, bin, args...)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done: // a crash ends the wait at once
			cancel()
		case <-rctx.Done():
		}
	}()
	if err := ready(rctx); err != nil {
		p.stop(5 * time.Second)
		return nil, p.failure(fmt.Errorf("%s did not become ready: %w", name, err))
	}
	return p, nil
}

func readyURL(url string, want int, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error { return waitHTTP(ctx, url, want, timeout) }
}

func ports(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		a, err := freePort()
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// startOurs runs extauthz with its defaults, plus the loopback addresses and
// the bench identity, in an empty directory (it reads ./.env).
func startOurs(ctx context.Context, h *harness, extra []string) (*instance, error) {
	dir, err := h.runDir("extauthz")
	if err != nil {
		return nil, err
	}
	return serveOurs(ctx, h, dir, extra)
}

// startPolicy runs extauthz as startOurs does, with --config naming the
// policy config (bench/policy.go), written into its run directory.
func startPolicy(ctx context.Context, h *harness, extra []string) (*instance, error) {
	dir, err := h.runDir(targetPolicy)
	if err != nil {
		return nil, err
	}
	path, err := writePolicyConfig(dir)
	if err != nil {
		return nil, err
	}
	return serveOurs(ctx, h, dir, append([]string{"--config", path}, extra...))
}

// serveOurs starts extauthz in dir, with the loopback addresses, the bench
// identity, -server-arg and extra.
func serveOurs(ctx context.Context, h *harness, dir string, extra []string) (*instance, error) {
	in, _, err := launchOurs(ctx, h, dir, []string{"--issuer", issuer, "--audience", audience, "--jwks-url", h.idp.URL}, extra, 100*time.Millisecond)
	return in, err
}

// launchOurs starts extauthz in dir, with the loopback addresses, then
// identity, -server-arg and extra, and polls its /readyz every poll until it
// answers 200; it returns when that answer came.
func launchOurs(ctx context.Context, h *harness, dir string, identity, extra []string, poll time.Duration) (*instance, time.Time, error) {
	addr, err := ports(3)
	if err != nil {
		return nil, time.Time{}, err
	}
	args := append([]string{"--grpc-addr", addr[0], "--http-addr", addr[1], "--admin-addr", addr[2]}, identity...)
	args = append(append(args, h.cfg.serverArgs...), extra...)
	var ready time.Time
	wait := func(ctx context.Context) error {
		err := waitHTTPEvery(ctx, "http://"+addr[2]+"/readyz", http.StatusOK, 30*time.Second, poll)
		ready = time.Now()
		return err
	}
	p, err := launch(ctx, "extauthz", dir, childEnv(h.cfg.serverEnv...), wait, h.bins.ours, args...)
	if err != nil {
		return nil, ready, err
	}
	return &instance{procs: []*proc{p}, grpcAddr: addr[0], httpURL: "http://" + addr[1] + "/protected", metricsURL: "http://" + addr[2] + "/metrics"}, ready, nil
}

func startNop(ctx context.Context, h *harness, _ []string) (*instance, error) {
	addr, err := ports(2)
	if err != nil {
		return nil, err
	}
	dir, err := h.runDir("nop")
	if err != nil {
		return nil, err
	}
	p, err := launch(ctx, "nop", dir, childEnv(), readyURL("http://"+addr[1]+"/", http.StatusOK, 30*time.Second), h.bins.nop,
		"--grpc-addr", addr[0], "--http-addr", addr[1])
	if err != nil {
		return nil, err
	}
	return &instance{procs: []*proc{p}, grpcAddr: addr[0], httpURL: "http://" + addr[1] + "/protected"}, nil
}

// startFlask writes the guide's app and .env into a fresh directory and
// runs `/usr/bin/python3 app.py`: the Flask development server on
// 127.0.0.1:5000, as the guide runs it. httpx reaches
// https://idp.bench.test/.well-known/jwks.json through the harness's
// CONNECT proxy and trusts its CA through SSL_CERT_FILE.
func startFlask(ctx context.Context, h *harness, _ []string) (*instance, error) {
	if !portFree(flaskAddr) {
		return nil, fmt.Errorf("%s is in use; the guide's app listens there", flaskAddr)
	}
	dir, err := h.runDir("flask")
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(flaskApp, "flaskapp")
	if err != nil {
		return nil, err
	}
	if err := os.CopyFS(dir, sub); err != nil {
		return nil, err
	}
	env := "AUTHACTION_DOMAIN=" + issuerHost + "\nAUTHACTION_AUDIENCE=" + audience + "\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env), 0o644); err != nil {
		return nil, err
	}
	ca := filepath.Join(dir, "bench-ca.pem")
	if err := os.WriteFile(ca, h.idp.CAPEM, 0o644); err != nil {
		return nil, err
	}
	p, err := launch(ctx, "flask", dir,
		childEnv("HTTPS_PROXY="+h.idp.ProxyURL, "SSL_CERT_FILE="+ca, "PYTHONDONTWRITEBYTECODE=1"),
		readyURL("http://"+flaskAddr+"/public", http.StatusOK, 30*time.Second), h.bins.python, "app.py")
	if err != nil {
		return nil, err
	}
	return &instance{procs: []*proc{p}, httpURL: "http://" + flaskAddr + "/protected"}, nil
}

// opaPolicy verifies the bearer token with io.jwt.decode_verify against the
// inline JWKS, issuer and audience: the same check as every other target.
const opaPolicy = `package envoy.authz

import input.attributes.request.http as http_request

default allow := false

jwks := ` + "`%s`" + `

bearer := t if {
	auth := http_request.headers.authorization
	startswith(auth, "Bearer ")
	t := substring(auth, 7, -1)
}

verified := [valid, payload] if {
	[valid, _, payload] := io.jwt.decode_verify(bearer, {"cert": jwks, "iss": %q, "aud": %q})
}

allow if verified[0]
`

func startOPA(ctx context.Context, h *harness, _ []string) (*instance, error) {
	addr, err := ports(2)
	if err != nil {
		return nil, err
	}
	dir, err := h.runDir("opa")
	if err != nil {
		return nil, err
	}
	policy := fmt.Sprintf(opaPolicy, h.jwks, issuer, audience)
	config := fmt.Sprintf("plugins:\n  envoy_ext_authz_grpc:\n    addr: %s\n    path: envoy/authz/allow\n    enable-reflection: false\n", addr[0])
	if err := writeFiles(dir, map[string]string{"policy.rego": policy, "config.yaml": config}); err != nil {
		return nil, err
	}
	p, err := launch(ctx, "opa-envoy-plugin", dir, childEnv(),
		readyURL("http://"+addr[1]+"/health?plugins", http.StatusOK, 60*time.Second), h.targets[targetOPA].Bin,
		"run", "--server", "--disable-telemetry", "--addr", addr[1], "--log-level", "error",
		"--config-file", "config.yaml", "policy.rego")
	if err != nil {
		return nil, err
	}
	return &instance{procs: []*proc{p}, grpcAddr: addr[0]}, nil
}

func startOathkeeper(ctx context.Context, h *harness, _ []string) (*instance, error) {
	addr, err := ports(3)
	if err != nil {
		return nil, err
	}
	dir, err := h.runDir("oathkeeper")
	if err != nil {
		return nil, err
	}
	hp := func(a string) (string, string) { host, port, _ := strings.Cut(a, ":"); return host, port }
	ah, ap := hp(addr[0])
	ph, pp := hp(addr[1])
	mh, mp := hp(addr[2])
	config := fmt.Sprintf(`serve:
  api: {host: %s, port: %s}
  proxy: {host: %s, port: %s}
  prometheus: {host: %s, port: %s}
log:
  level: error
access_rules:
  matching_strategy: glob
  repositories: ["file://%s"]
authenticators:
  jwt:
    enabled: true
    config:
      jwks_urls: ["file://%s"]
      trusted_issuers: [%q]
      target_audience: [%q]
      allowed_algorithms: [RS256]
authorizers:
  allow: {enabled: true}
mutators:
  noop: {enabled: true}
`, ah, ap, ph, pp, mh, mp, filepath.Join(dir, "rules.json"), filepath.Join(dir, "jwks.json"), issuer, audience)
	rules := `[{"id":"bench","match":{"url":"<**>","methods":["GET"]},` +
		`"authenticators":[{"handler":"jwt"}],"authorizer":{"handler":"allow"},"mutators":[{"handler":"noop"}]}]`
	if err := writeFiles(dir, map[string]string{"config.yaml": config, "rules.json": rules, "jwks.json": string(h.jwks)}); err != nil {
		return nil, err
	}
	p, err := launch(ctx, "oathkeeper", dir, childEnv(),
		readyURL("http://"+addr[0]+"/health/ready", http.StatusOK, 60*time.Second), h.targets[targetOathkeeper].Bin,
		"serve", "--sqa-opt-out", "-c", filepath.Join(dir, "config.yaml"))
	if err != nil {
		return nil, err
	}
	return &instance{procs: []*proc{p}, httpURL: "http://" + addr[0] + "/decisions/protected"}, nil
}

func startOAuth2Proxy(ctx context.Context, h *harness, _ []string) (*instance, error) {
	addr, err := ports(1)
	if err != nil {
		return nil, err
	}
	dir, err := h.runDir("oauth2-proxy")
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(16) // 32 bytes of hex: an AES-256 cookie secret
	if err != nil {
		return nil, err
	}
	jwksBase := strings.TrimSuffix(h.idp.URL, jwksPath)
	p, err := launch(ctx, "oauth2-proxy", dir, childEnv(),
		readyURL("http://"+addr[0]+"/ping", http.StatusOK, 60*time.Second), h.targets[targetOAuth2].Bin,
		"--http-address="+addr[0], "--provider=oidc", "--oidc-issuer-url="+issuer, "--skip-oidc-discovery",
		"--login-url="+jwksBase+"/login", "--redeem-url="+jwksBase+"/token", "--oidc-jwks-url="+h.idp.URL,
		"--client-id="+audience, "--client-secret=bench", "--cookie-secret="+secret,
		"--email-domain=*", "--oidc-email-claim=sub", "--skip-jwt-bearer-tokens",
		"--bearer-token-login-fallback=false", "--upstream=static://200",
		"--request-logging=false", "--auth-logging=false")
	if err != nil {
		return nil, err
	}
	return &instance{procs: []*proc{p}, httpURL: "http://" + addr[0] + "/oauth2/auth"}, nil
}

func writeFiles(dir string, files map[string]string) error {
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// probe checks that a started target decides as it should before it is
// loaded: the hit token is allowed and a tampered token is denied, over
// each protocol the run uses, and over gRPC each of denies, with the hit
// token, is denied with PERMISSION_DENIED. A target that allows everything,
// or nothing, is not measured.
func (in *instance) probe(ctx context.Context, mode, good, bad string, allowsAll bool, denies []probeRequest) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch mode {
	case modeGRPC:
		if in.conn == nil {
			conn, err := grpc.NewClient("passthrough:///"+in.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			in.conn = conn
		}
		c := authv3.NewAuthorizationClient(in.conn)
		for _, tc := range []struct {
			token string
			allow bool
		}{{good, true}, {bad, allowsAll}} {
			resp, err := c.Check(ctx, checkRequest("Bearer "+tc.token))
			if err != nil {
				return fmt.Errorf("probe Check: %w", err)
			}
			if got := resp.GetStatus().GetCode() == 0; got != tc.allow {
				return fmt.Errorf("probe Check: allowed %v, want %v (status %d)", got, tc.allow, resp.GetStatus().GetCode())
			}
		}
		for _, d := range denies {
			resp, err := c.Check(ctx, checkRequestFor(d.Method, d.Path, d.Host, "Bearer "+good))
			if err != nil {
				return fmt.Errorf("probe Check %s %s: %w", d.Method, d.Path, err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != codes.PermissionDenied {
				return fmt.Errorf("probe Check %s %s on %s (%s): status %s, want %s", d.Method, d.Path, d.Host, d.Why, got, codes.PermissionDenied)
			}
		}
	case modeHTTP:
		for _, tc := range []struct {
			token string
			allow bool
		}{{good, true}, {bad, allowsAll}} {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.httpURL, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tc.token)
			resp, err := httpClient.Do(req)
			if err != nil {
				return fmt.Errorf("probe GET: %w", err)
			}
			resp.Body.Close()
			allowed := resp.StatusCode >= 200 && resp.StatusCode < 300
			denied := resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden
			if tc.allow && !allowed || !tc.allow && !denied {
				return fmt.Errorf("probe GET %s: status %d, want %s", in.httpURL, resp.StatusCode, map[bool]string{true: "2xx", false: "401 or 403"}[tc.allow])
			}
		}
	}
	return nil
}
