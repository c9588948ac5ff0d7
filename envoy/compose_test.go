package envoy_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/envoy"
)

const composeProject = "extauthz-demo"

// loadCompose parses compose text the way `docker compose` does (schema
// validation, interpolation, normalisation), with relative paths resolved
// against this directory. No engine is needed, and the process environment is
// not consulted, so the result does not depend on the machine.
func loadCompose(t *testing.T, content string) (*types.Project, error) {
	t.Helper()
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "docker-compose.yaml"), Content: []byte(content)}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName(composeProject, true)
		o.ResolvePaths = true
	})
}

// envoyImage is an exact Envoy release: "envoyproxy/envoy:v1.40.0" or a
// variant such as "distroless-v1.40.0". Floating tags ("latest",
// "v1.40-latest", "dev") are refused.
var envoyImage = regexp.MustCompile(`^envoyproxy/envoy:(?:distroless-)?v(\d+)\.(\d+)\.(\d+)$`)

// goControlPlaneEnvoy returns the major.minor of the go-control-plane Envoy
// API module (github.com/envoyproxy/go-control-plane/envoy, versioned like
// Envoy itself) that envoy_test.go validates against, as go.mod requires it.
// (Test binaries carry no dependency list in their build info.)
func goControlPlaneEnvoy() (string, error) {
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/envoyproxy/go-control-plane/envoy v(\d+)\.(\d+)\.`).FindSubmatch(gomod)
	if m == nil {
		return "", errors.New("go.mod does not require github.com/envoyproxy/go-control-plane/envoy")
	}
	return string(m[1]) + "." + string(m[2]), nil
}

// published returns the service's published ports, keyed by target port.
func published(s types.ServiceConfig) map[uint32]types.ServicePortConfig {
	out := map[uint32]types.ServicePortConfig{}
	for _, p := range s.Ports {
		out[p.Target] = p
	}
	return out
}

func env(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

// flagValue returns the value after --name (or -name) in args, or after
// --name=.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, p := range []string{"--" + name, "-" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// checkCompose asserts the demo's wiring and hardening, returning every
// problem found.
func checkCompose(p *types.Project) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	repoRoot, _ := filepath.Abs("..")
	here, _ := filepath.Abs(".")

	want := []string{"backend", "demo-idp", "envoy", "extauthz"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		fail("services = %v, want %v", sorted(got), want)
	}
	svc := func(name string) types.ServiceConfig {
		s, ok := p.Services[name]
		if !ok {
			fail("no service %q", name)
		}
		return s
	}
	envoySvc, authz, backend, idp := svc("envoy"), svc("extauthz"), svc("backend"), svc("demo-idp")

	// Hardening and images, for every service.
	for _, name := range want {
		s := p.Services[name]
		if !s.ReadOnly {
			fail("%s: read_only is not true", name)
		}
		if !slices.Contains(s.CapDrop, "ALL") {
			fail("%s: cap_drop lacks ALL", name)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			fail("%s: security_opt lacks no-new-privileges:true", name)
		}
		if s.User == "root" || s.User == "0" || strings.HasPrefix(s.User, "0:") {
			fail("%s: runs as root", name)
		}
		if s.Privileged {
			fail("%s: privileged", name)
		}
		if s.NetworkMode == "host" {
			fail("%s: host networking", name)
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				fail("%s: port %d published on %q, want the host's loopback 127.0.0.1", name, port.Target, port.HostIP)
			}
		}
		if s.Image != "" && (strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image, ":")) {
			fail("%s: image %q floats (latest)", name, s.Image)
		}
	}

	// Envoy: official image pinned to the release whose API go-control-plane
	// describes, the config mounted read-only where -c points, 8080 published.
	if m := envoyImage.FindStringSubmatch(envoySvc.Image); m == nil {
		fail("envoy image %q is not an exact envoyproxy/envoy release tag", envoySvc.Image)
	} else if api, err := goControlPlaneEnvoy(); err != nil {
		fail("envoy: %v", err)
	} else if got := m[1] + "." + m[2]; got != api {
		fail("envoy image is Envoy %s but envoy_test.go validates against go-control-plane/envoy %s: bump them together", got, api)
	}
	if envoySvc.User == "" {
		fail("envoy: no explicit non-root user")
	}
	cfgPath, ok := flagValue(envoySvc.Command, "c")
	if !ok {
		fail("envoy: command %v has no -c", envoySvc.Command)
	}
	mounted := false
	for _, v := range envoySvc.Volumes {
		if v.Target != cfgPath {
			continue
		}
		mounted = true
		if v.Source != filepath.Join(here, "envoy.yaml") {
			fail("envoy: %s is mounted from %s, want envoy/envoy.yaml", cfgPath, v.Source)
		}
		if !v.ReadOnly {
			fail("envoy: config mount is writable")
		}
	}
	if !mounted {
		fail("envoy: nothing mounted at -c %q", cfgPath)
	}
	if pp, ok := published(envoySvc)[8080]; !ok || pp.Published != "8080" {
		fail("envoy: 8080 not published as 8080 (got %+v)", envoySvc.Ports)
	}
	if len(envoySvc.Ports) != 1 {
		fail("envoy: publishes %d ports, want only 8080 (admin stays inside)", len(envoySvc.Ports))
	}

	// The Envoy config's clusters must be these services on the ports they
	// listen on, and its listener the port compose publishes.
	if b, err := decode(envoy.GRPCConfig); err != nil {
		fail("envoy.yaml: %v", err)
	} else {
		if _, port := socketAddr(b.GetStaticResources().GetListeners()[0].GetAddress()); port != 8080 {
			fail("envoy.yaml listens on %d, compose publishes 8080", port)
		}
		for _, c := range b.GetStaticResources().GetClusters() {
			for _, le := range c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints() {
				host, port := socketAddr(le.GetEndpoint().GetAddress())
				s, ok := p.Services[host]
				if !ok {
					fail("envoy.yaml cluster %s points at %q, which is not a compose service", c.GetName(), host)
					continue
				}
				if !slices.Contains(s.Expose, strconv.Itoa(int(port))) {
					fail("envoy.yaml cluster %s uses %s:%d, but %s exposes %v", c.GetName(), host, port, host, s.Expose)
				}
			}
		}
	}

	// Built services: our Dockerfile at the repository root, one target each.
	for name, target := range map[string]string{"extauthz": "extauthz", "backend": "demo-backend", "demo-idp": "demo-idp"} {
		s := p.Services[name]
		if s.Build == nil {
			fail("%s: not built from the repository", name)
			continue
		}
		if s.Build.Context != repoRoot {
			fail("%s: build context %s, want the repository root %s", name, s.Build.Context, repoRoot)
		}
		if s.Build.Target != target {
			fail("%s: build target %q, want %q", name, s.Build.Target, target)
		}
		df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
		if _, err := os.Stat(df); err != nil {
			fail("%s: %v", name, err)
		} else if text, err := os.ReadFile(df); err == nil && !regexp.MustCompile(`(?m)^FROM .* AS `+regexp.QuoteMeta(target)+`$`).Match(text) {
			fail("%s: %s has no stage %q", name, df, target)
		}
	}

	// Only Envoy and the IdP are reachable from the host (plus the ext_authz
	// admin port, read-only); the backend publishes nothing.
	if len(backend.Ports) != 0 {
		fail("backend publishes %v; it must only be reachable through Envoy", backend.Ports)
	}
	for _, pp := range authz.Ports {
		if pp.Target != 9090 {
			fail("extauthz publishes %d; only the admin port 9090 may be published", pp.Target)
		}
	}
	if pp, ok := published(idp)[9000]; !ok || pp.Published != "9000" {
		fail("demo-idp: 9000 not published as 9000, the guide's token URL is http://localhost:9000/oauth2/m2m/token")
	}

	// Issuer and JWKS wiring: the issuer ext_authz expects is the iss the
	// IdP writes, and the JWKS URL reaches the IdP service over the compose
	// network on the port it listens on.
	issuer, ok := flagValue(idp.Command, "issuer")
	if !ok {
		fail("demo-idp: no --issuer in command %v", idp.Command)
	}
	if got := env(authz, "AUTHZ_ISSUER"); got != issuer || issuer != "http://localhost:9000" {
		fail("extauthz AUTHZ_ISSUER = %q, demo-idp --issuer = %q, want both http://localhost:9000", got, issuer)
	}
	if got := env(authz, "AUTHZ_AUDIENCE"); got != "https://api.example.com" {
		fail("extauthz AUTHZ_AUDIENCE = %q, want https://api.example.com", got)
	}
	if u, err := url.Parse(env(authz, "AUTHZ_JWKS_URL")); err != nil || u.Scheme != "http" || u.Path != "/.well-known/jwks.json" {
		fail("extauthz AUTHZ_JWKS_URL = %q, want http://demo-idp:9000/.well-known/jwks.json", env(authz, "AUTHZ_JWKS_URL"))
	} else {
		if _, ok := p.Services[u.Hostname()]; !ok || u.Hostname() != "demo-idp" {
			fail("extauthz AUTHZ_JWKS_URL host %q is not the demo-idp service", u.Hostname())
		}
		if !slices.Contains(idp.Expose, u.Port()) {
			fail("extauthz AUTHZ_JWKS_URL port %q is not a port demo-idp exposes (%v)", u.Port(), idp.Expose)
		}
	}
	if _, ok := authz.DependsOn["demo-idp"]; !ok {
		fail("extauthz does not depend on demo-idp")
	}

	// The config file ext_authz reads is mounted read-only from the repo.
	cfg := env(authz, "AUTHZ_CONFIG")
	found := false
	for _, v := range authz.Volumes {
		if v.Target != cfg {
			continue
		}
		found = true
		if !v.ReadOnly {
			fail("extauthz: config mount is writable")
		}
		rel, err := filepath.Rel(repoRoot, v.Source)
		if err != nil || strings.HasPrefix(rel, "..") {
			fail("extauthz: config %s is outside the repository", v.Source)
		} else if _, err := os.Stat(v.Source); err != nil {
			fail("extauthz: config %v", err)
		}
	}
	if cfg == "" || !found {
		fail("extauthz: AUTHZ_CONFIG %q is not a mounted file", cfg)
	}
	return errors.Join(errs...)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestCompose(t *testing.T) {
	p, err := loadCompose(t, envoy.ComposeFile)
	if err != nil {
		t.Fatalf("load docker-compose.yaml: %v", err)
	}
	if p.Name != composeProject {
		t.Errorf("project name = %q, want %q", p.Name, composeProject)
	}
	if err := checkCompose(p); err != nil {
		t.Errorf("docker-compose.yaml:\n%v", err)
	}
}

// TestComposeRejectMistakes shows that the checks can fail: each mutated copy
// must be rejected, by the loader or by checkCompose.
func TestComposeRejectMistakes(t *testing.T) {
	cases := []struct {
		name string
		old  string
		new  string
	}{
		{name: "unknown key", old: "    read_only: true\n", new: "    readonly: true\n"},
		{name: "latest envoy", old: "envoyproxy/envoy:distroless-v1.40.0", new: "envoyproxy/envoy:latest"},
		{name: "floating minor", old: "envoyproxy/envoy:distroless-v1.40.0", new: "envoyproxy/envoy:distroless-v1.40-latest"},
		{name: "other envoy minor", old: "envoyproxy/envoy:distroless-v1.40.0", new: "envoyproxy/envoy:distroless-v1.31.0"},
		{name: "backend published", old: "      target: demo-backend\n    expose: [\"8000\"]\n", new: "      target: demo-backend\n    expose: [\"8000\"]\n    ports: [\"127.0.0.1:8000:8000\"]\n"},
		{name: "published on all interfaces", old: "\"127.0.0.1:8080:8080\"", new: "\"8080:8080\""},
		{name: "jwks via localhost", old: "http://demo-idp:9000/.well-known/jwks.json", new: "http://localhost:9000/.well-known/jwks.json"},
		{name: "issuer mismatch", old: "AUTHZ_ISSUER: http://localhost:9000", new: "AUTHZ_ISSUER: http://demo-idp:9000"},
		{name: "config not mounted", old: "      - ./extauthz-demo.yaml:/etc/extauthz/config.yaml:ro\n", new: "      - ./extauthz-demo.yaml:/etc/extauthz/other.yaml:ro\n"},
		{name: "config missing", old: "./extauthz-demo.yaml:", new: "./no-such-file.yaml:"},
		{name: "writable envoy config", old: "./envoy.yaml:/etc/envoy/envoy.yaml:ro", new: "./envoy.yaml:/etc/envoy/envoy.yaml"},
		{name: "capabilities kept", old: "    cap_drop: [ALL]\n", new: "    cap_drop: [NET_RAW]\n"},
		{name: "wrong build target", old: "target: demo-idp", new: "target: demo-backend"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(envoy.ComposeFile, tc.old) {
				t.Fatalf("docker-compose.yaml does not contain %q; update the test case", tc.old)
			}
			p, err := loadCompose(t, strings.Replace(envoy.ComposeFile, tc.old, tc.new, 1))
			if err == nil {
				err = checkCompose(p)
			}
			if err == nil {
				t.Fatal("mutated compose file accepted, want a failure")
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}

// TestComposeV1 runs docker-compose 1.29 (Debian's docker-compose package),
// which CI uses and which predates the newest Compose-Spec keys, when it is
// installed.
func TestComposeV1(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("EXTAUTHZ_REQUIRE_PEERS") == "1" {
			t.Fatalf("docker-compose not found and EXTAUTHZ_REQUIRE_PEERS=1: %v", err)
		}
		t.Skipf("docker-compose not installed: %v", err)
	}
	run := func(file string) ([]byte, error) {
		cmd := exec.CommandContext(t.Context(), bin, "-f", file, "config", "-q")
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix:///nonexistent") // no engine needed, never contact one
		return cmd.CombinedOutput()
	}
	if out, err := run("docker-compose.yaml"); err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, out)
	}
	// The same tool must reject a broken copy, or the check above proves nothing.
	bad := filepath.Join(t.TempDir(), "docker-compose.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(envoy.ComposeFile, "    read_only: true\n", "    readonly: true\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(bad); err == nil {
		t.Fatalf("docker-compose config -q accepted an unknown key:\n%s", out)
	}
}

// TestDemoAuthzConfig checks that the rules mounted into ext_authz are the
// demo's: /public public, /admin needs the admin scope, nothing else; and
// that the policy envoy.yaml's /admin route names asks for the same.
func TestDemoAuthzConfig(t *testing.T) {
	type rule struct {
		Path   string   `yaml:"path"`
		Public bool     `yaml:"public"`
		Scopes []string `yaml:"scopes"`
	}
	var cfg struct {
		Rules        []rule            `yaml:"rules"`
		Policies     map[string]rule   `yaml:"policies"`
		ClaimHeaders map[string]string `yaml:"claim_headers"`
	}
	dec := yaml.NewDecoder(strings.NewReader(envoy.DemoAuthzConfig))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("extauthz-demo.yaml: %v", err)
	}
	want := []rule{{Path: "/public", Public: true}, {Path: "/admin", Scopes: []string{"admin"}}}
	if !slices.EqualFunc(cfg.Rules, want, func(a, b rule) bool {
		return a.Path == b.Path && a.Public == b.Public && slices.Equal(a.Scopes, b.Scopes)
	}) {
		t.Errorf("rules = %+v, want %+v", cfg.Rules, want)
	}
	if len(cfg.Policies) != 1 || !slices.Equal(cfg.Policies["admin"].Scopes, []string{"admin"}) ||
		cfg.Policies["admin"].Public || cfg.Policies["admin"].Path != "" {
		t.Errorf("policies = %+v, want only admin: {scopes: [admin]} (envoy.yaml's /admin route names it)", cfg.Policies)
	}
	// The proxies copy exactly the default claim headers (x-jwt-sub,
	// x-jwt-payload); a claim_headers block would need matching proxy changes.
	if cfg.ClaimHeaders != nil {
		t.Errorf("claim_headers = %v; the bundled proxy configs only copy the defaults", cfg.ClaimHeaders)
	}
}

// TestComposeExtauthzSettingsLoad feeds the extauthz service's environment
// and mounted config file to the server's own loader (config.Load), so that
// a variable name, issuer or rule the server would reject fails here rather
// than at `docker compose up`.
func TestComposeExtauthzSettingsLoad(t *testing.T) {
	p, err := loadCompose(t, envoy.ComposeFile)
	if err != nil {
		t.Fatal(err)
	}
	svc := p.Services["extauthz"]
	env := map[string]string{}
	for k, v := range svc.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	// The container path of the config file is the host file mounted there.
	for _, v := range svc.Volumes {
		if v.Target == env["AUTHZ_CONFIG"] {
			env["AUTHZ_CONFIG"] = v.Source
		}
	}
	args := slices.Clone(svc.Command) // the image's entrypoint is the binary
	cfg, err := config.Load(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatalf("config.Load with the compose environment: %v", err)
	}
	if len(cfg.Providers) != 1 {
		t.Fatalf("got %d providers, want 1", len(cfg.Providers))
	}
	pr := cfg.Providers[0]
	if pr.Issuer != "http://localhost:9000" || pr.JWKSURL != "http://demo-idp:9000/.well-known/jwks.json" || !slices.Equal(pr.Audiences, []string{"https://api.example.com"}) {
		t.Errorf("provider = %+v, want issuer http://localhost:9000, JWKS from demo-idp, audience https://api.example.com", pr)
	}
	// The ports Envoy's clusters use are the server's listen ports.
	for _, tc := range []struct{ name, addr, wantPort string }{
		{name: "grpc", addr: cfg.GRPCAddr, wantPort: "9191"},
		{name: "http", addr: cfg.HTTPAddr, wantPort: "9192"},
		{name: "admin", addr: cfg.AdminAddr, wantPort: "9090"},
	} {
		if _, port, err := net.SplitHostPort(tc.addr); err != nil || port != tc.wantPort {
			t.Errorf("%s listens on %q, want port %s (envoy.yaml and the compose ports use it)", tc.name, tc.addr, tc.wantPort)
		}
	}
	var public, admin bool
	for _, r := range cfg.Rules {
		public = public || (r.Path == "/public" && r.Public)
		admin = admin || (r.Path == "/admin" && slices.Equal(r.Scopes, []string{"admin"}))
	}
	if !public || !admin {
		t.Errorf("rules = %+v, want /public public and /admin needing scope admin", cfg.Rules)
	}
}

// TestDockerfileTargets checks that the Dockerfile the compose file builds
// compiles packages that exist, and that .dockerignore keeps what the build
// needs. (There is no Docker engine in CI to build it.)
func TestDockerfileTargets(t *testing.T) {
	df, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`go build [^\n]*\\\n\s+((?:\./cmd/[a-z-]+\s*)+)`).FindSubmatch(df)
	if build == nil {
		t.Fatal("no `go build ... ./cmd/...` line in the Dockerfile")
	}
	pkgs := strings.Fields(string(build[1]))
	for _, pkg := range []string{"./cmd/extauthz", "./cmd/demo-idp", "./cmd/demo-backend"} {
		if !slices.Contains(pkgs, pkg) {
			t.Errorf("the Dockerfile does not build %s", pkg)
		}
		main, err := os.ReadFile(filepath.Join("..", pkg, "main.go"))
		if err != nil {
			t.Errorf("%s: %v", pkg, err)
		} else if !regexp.MustCompile(`(?m)^package main$`).Match(main) {
			t.Errorf("%s is not a main package", pkg)
		}
		name := filepath.Base(pkg)
		if !regexp.MustCompile(`(?m)^FROM \S+ AS ` + regexp.QuoteMeta(name) + `\n(?:.*\n)*?COPY --from=build /out/` + regexp.QuoteMeta(name) + ` `).Match(df) {
			t.Errorf("no final stage %q copying /out/%s", name, name)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`, "--mount=type=cache,target=/go/pkg/mod", "USER 65532:65532"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("the Dockerfile lacks %s", want)
		}
	}
	for _, from := range regexp.MustCompile(`(?m)^FROM (?:--platform=\S+ )?(\S+)`).FindAllSubmatch(df, -1) {
		if img := string(from[1]); strings.HasSuffix(img, ":latest") || !strings.Contains(img, ":") {
			t.Errorf("base image %s floats", img)
		}
	}
	ignore, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		line = strings.TrimSpace(line)
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "cmd/extauthz/main.go", "*.go", "**/*.go"} {
			if line == needed || line == needed+"/" {
				t.Errorf(".dockerignore excludes %s, which the build needs", line)
			}
		}
	}
	for _, secret := range []string{".env", ".git"} {
		if !slices.Contains(strings.Split(string(ignore), "\n"), secret) {
			t.Errorf(".dockerignore does not exclude %s", secret)
		}
	}
}
