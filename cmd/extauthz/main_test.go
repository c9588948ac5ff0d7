package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/logging"
	"github.com/extauthz/extauthz/server"
)

// waitLong bounds every wait; only a broken build reaches it.
const waitLong = 20 * time.Second

// TestMain lets TestSignals run the real main in a child process: the test
// binary re-executes itself with runMainEnv set and the server's arguments.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const runMainEnv = "EXTAUTHZ_TEST_RUN_MAIN"

// env is a fake process environment.
type env map[string]string

// environ is e as os.Environ returns the environment.
func (e env) environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// syncBuffer collects stderr from the server's goroutines.
type syncBuffer = testutil.Buffer

// inDir runs the test in a fresh working directory holding the given files.
func inDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	return dir
}

func TestRunConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   env
		files map[string]string
		wants []string // substrings of the one line
	}{
		{name: "no issuer", wants: []string{"no issuer", "--issuer", "AUTHZ_ISSUER", "AUTHACTION_DOMAIN"}},
		{name: "no audience", args: []string{"--issuer", "https://tenant.example.com"}, wants: []string{"no audience", "--audience", "AUTHZ_AUDIENCE", "AUTHACTION_AUDIENCE"}},
		{name: "no audience with the guide's domain in .env", files: map[string]string{".env": "AUTHACTION_DOMAIN=tenant.example.com\n"}, wants: []string{"--audience", "AUTHACTION_AUDIENCE"}},
		{name: "bad flag", args: []string{"--isuer", "https://tenant.example.com"}, wants: []string{"isuer"}},
		{name: "stray argument", args: []string{"--issuer", "https://tenant.example.com", "--audience", "a", "serve"}, wants: []string{`"serve"`}},
		{
			name:  "bad config file",
			args:  []string{"--config", "extauthz.yaml"},
			files: map[string]string{"extauthz.yaml": "issuer: https://tenant.example.com\naudience: a\nrules:\n  - path: /x\n    scope: [admin]\n"},
			wants: []string{"extauthz.yaml:5:", "scope"},
		},
		{
			name:  "bad config file named in .env",
			files: map[string]string{".env": "AUTHZ_CONFIG=c.yaml\n", "c.yaml": "providers:\n  - issuer: https://a.example.com\n"},
			wants: []string{"c.yaml:2:", "audiences"},
		},
		{name: "bad value in .env", files: map[string]string{".env": "AUTHZ_ISSUER=https://i.example.com\nAUTHZ_AUDIENCE=a\nAUTHZ_CLOCK_SKEW=soon\n"}, wants: []string{"AUTHZ_CLOCK_SKEW", "soon"}},
		{name: "bad value in the environment", env: env{"AUTHZ_ISSUER": "https://i.example.com", "AUTHZ_AUDIENCE": "a", "AUTHZ_LOG_LEVEL": "loud"}, wants: []string{"AUTHZ_LOG_LEVEL", "loud"}},
		{name: "malformed .env", files: map[string]string{".env": "AUTHZ_ISSUER='unterminated\n"}, wants: []string{".env"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inDir(t, tc.files)
			var stderr syncBuffer
			ctx, cancel := context.WithTimeout(t.Context(), waitLong)
			defer cancel()
			if code := run(ctx, tc.args, tc.env.environ(), io.Discard, &stderr, nil); code != 2 {
				t.Errorf("run = %d, want 2", code)
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") || !strings.HasPrefix(out, "extauthz: ") {
				t.Errorf("stderr = %q, want one line starting extauthz: ", out)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("stderr %q does not contain %q", out, w)
				}
			}
		})
	}
}

// flags are every flag of the server with its variable.
var flags = []string{
	"config", "issuer", "audience", "jwks-url", "grpc-addr", "http-addr", "admin-addr", "public-paths",
	"jwks-refresh-interval", "jwks-min-refresh-interval", "jwks-fetch-timeout", "jwks-unknown-kid-wait",
	"jwks-max-bytes", "jwks-max-keys", "clock-skew", "max-token-bytes", "realm", "shutdown-grace",
	"log-level", "log-format",
}

func TestRunHelp(t *testing.T) {
	inDir(t, nil)
	for _, arg := range []string{"-h", "--help"} {
		t.Run(arg, func(t *testing.T) {
			var stderr syncBuffer
			if code := run(t.Context(), []string{arg}, nil, io.Discard, &stderr, nil); code != 0 {
				t.Errorf("run(%s) = %d, want 0", arg, code)
			}
			out := stderr.String()
			if !strings.HasPrefix(out, "Usage: extauthz") {
				t.Errorf("usage does not start with Usage: extauthz:\n%s", out)
			}
			for _, f := range flags {
				v := "AUTHZ_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
				// Each flag's entry is "  -name string\n    \tusage [$VAR] ...".
				i := strings.Index(out, "  -"+f+" ")
				if i < 0 {
					t.Errorf("usage does not list -%s", f)
					continue
				}
				entry := out[i+3:]
				if j := strings.Index(entry, "\n  -"); j >= 0 {
					entry = entry[:j]
				}
				if !strings.Contains(entry, "[$"+v+"]") {
					t.Errorf("usage of -%s does not name $%s: %q", f, v, entry)
				}
			}
			for _, w := range []string{"(default \":9191\")", "(default \":9192\")", "(default \":9090\")", "(default 15m)", "(default 10s)", ".env"} {
				if !strings.Contains(out, w) {
					t.Errorf("usage does not contain %s", w)
				}
			}
			// Each flag shows the type its value is read as, as the flag
			// package shows its own: a duration is no string.
			for _, w := range []string{"  -jwks-refresh-interval duration\n", "  -clock-skew duration\n", "  -jwks-max-keys int\n",
				"  -max-token-bytes int\n", "  -token-cache-size int\n", "  -issuer string\n", "  -admin-pprof\n", "  -version\n"} {
				if !strings.Contains(out, w) {
					t.Errorf("usage does not contain %q", w)
				}
			}
		})
	}
}

// TestRunVersion: --version prints the module version ((devel) for a test
// binary), the revision when recorded, the Go version and platform, on
// stdout, and exits 0 whatever else is missing (no issuer here).
func TestRunVersion(t *testing.T) {
	inDir(t, nil)
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--log-level", "debug", "--version"}} {
		var stdout, stderr syncBuffer
		if code := run(t.Context(), args, nil, &stdout, &stderr, nil); code != 0 {
			t.Errorf("run(%q) = %d, want 0; stderr %q", args, code, stderr.String())
		}
		want := "extauthz (devel) " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
		if b := server.ReadBuildInfo(); b.Revision != "" || b.Version != "(devel)" {
			want = versionLine(b) + "\n"
		}
		if got := stdout.String(); got != want || stderr.String() != "" {
			t.Errorf("run(%q): stdout %q, stderr %q; want %q and nothing", args, got, stderr.String(), want)
		}
	}
	for _, tc := range []struct {
		b    server.BuildInfo
		want string
	}{
		{b: server.BuildInfo{Version: "(devel)", GoVersion: "go1.26.8"}, want: "extauthz (devel) go1.26.8 "},
		{b: server.BuildInfo{Version: "v1.2.3", GoVersion: "go1.26.8", Revision: "0123abcd-dirty"}, want: "extauthz v1.2.3 revision 0123abcd-dirty go1.26.8 "},
	} {
		if got := versionLine(tc.b); !strings.HasPrefix(got, tc.want) {
			t.Errorf("versionLine(%+v) = %q, want it to start %q", tc.b, got, tc.want)
		}
	}
}

// TestRunWarnings: an AUTHZ_* variable that names no setting and a .env line
// that sets no variable are named, with the setting meant; before the
// error when the configuration does not load (they may be its cause), as
// WARN log lines when it does.
func TestRunWarnings(t *testing.T) {
	dotenv := "AUTHZ_ISSUER=http://127.0.0.1:1\nAUTHACTION_AUDIENCE https://api.example.com\nAUTHZ_REALMS=x\n"
	t.Run("before a config error", func(t *testing.T) {
		inDir(t, map[string]string{".env": dotenv})
		var stderr syncBuffer
		if code := run(t.Context(), nil, env{"AUTHZ_AUDIENCES": "https://api.example.com"}.environ(), io.Discard, &stderr, nil); code != 2 {
			t.Errorf("run = %d, want 2", code)
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		want := []string{
			"extauthz: warning: AUTHZ_AUDIENCES names no setting and is ignored; did you mean AUTHZ_AUDIENCE? (-h lists the variables)",
			`extauthz: warning: .env:2: "AUTHACTION_AUDIENCE https" is not a variable name, so the line sets nothing: write NAME=value`,
			"extauthz: warning: .env:3: AUTHZ_REALMS names no setting and is ignored; did you mean AUTHZ_REALM? (-h lists the variables)",
		}
		if len(lines) != len(want)+1 || !strings.HasPrefix(lines[len(lines)-1], "extauthz: no audience configured") {
			t.Fatalf("stderr:\n%s\nwant %d warnings, then the error", stderr.String(), len(want))
		}
		for i, w := range want {
			if lines[i] != w {
				t.Errorf("line %d = %q, want %q", i+1, lines[i], w)
			}
		}
	})
	t.Run("logged at start", func(t *testing.T) {
		inDir(t, map[string]string{".env": dotenv})
		args := []string{"--audience", "a", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
		var stderr syncBuffer
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		exited := make(chan int, 1)
		go func() { exited <- run(ctx, args, env{"AUTHZ_LOG_LEVELS": "debug"}.environ(), io.Discard, &stderr, nil) }()
		addrs(t, &stderr, exited)
		cancel()
		<-exited
		var details []string
		for line := range strings.SplitSeq(stderr.String(), "\n") {
			var rec struct{ Level, Msg, Detail string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "environment entry ignored" {
				if rec.Level != "WARN" {
					t.Errorf("%q: level %s, want WARN", line, rec.Level)
				}
				details = append(details, rec.Detail)
			}
		}
		if len(details) != 3 || !strings.Contains(details[0], "AUTHZ_LOG_LEVELS") || !strings.Contains(details[0], "AUTHZ_LOG_LEVEL?") ||
			!strings.HasPrefix(details[1], ".env:2: ") || !strings.HasPrefix(details[2], ".env:3: AUTHZ_REALMS") {
			t.Errorf("warnings logged: %q; want AUTHZ_LOG_LEVELS, .env:2 and .env:3 AUTHZ_REALMS\nstderr:\n%s", details, stderr.String())
		}
	})
}

// idp is a JWKS endpoint on loopback with one RS256 key.
type idp struct {
	*httptest.Server
	key *rsa.PrivateKey
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "kid": "demo", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return &idp{Server: s, key: k}
}

func (p *idp) port() string {
	_, port, _ := net.SplitHostPort(p.Listener.Addr().String())
	return port
}

func (p *idp) token(t *testing.T, iss, aud, sub string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": iss, "aud": aud, "sub": sub,
		"iat": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "demo"
	raw, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// addrs waits for the "extauthz listening" log line and returns the
// addresses it names.
func addrs(t *testing.T, stderr *syncBuffer, exited <-chan int) (grpcAddr, httpAddr, adminAddr string) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for time.Now().Before(deadline) {
		for line := range strings.SplitSeq(stderr.String(), "\n") {
			var rec struct{ Msg, GRPC, HTTP, Admin string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "extauthz listening" {
				return rec.GRPC, rec.HTTP, rec.Admin
			}
		}
		select {
		case code := <-exited:
			t.Fatalf("run exited with %d before listening; stderr:\n%s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no listening line within %v; stderr:\n%s", waitLong, stderr.String())
	return
}

// TestRunGuideDotEnv is the seed guide's setup: a .env with AUTHACTION_DOMAIN
// (a loopback issuer, so http) and AUTHACTION_AUDIENCE. The server becomes
// ready, allows a token of that issuer and audience, and exits 0 when its
// context ends. A variable of the environment wins over the .env.
func TestRunGuideDotEnv(t *testing.T) {
	p := newIDP(t)
	domain := "localhost:" + p.port()
	inDir(t, map[string]string{".env": "# the guide's .env\n" +
		"AUTHACTION_DOMAIN=" + domain + "\n" +
		"AUTHACTION_AUDIENCE=https://api.example.com\n" +
		"AUTHZ_REALM=from-dotenv\n" +
		"AUTHZ_ADMIN_ADDR=127.0.0.1:0\n"})
	process := env{"AUTHZ_REALM": "from-env", "AUTHZ_HTTP_ADDR": "127.0.0.1:0"}
	args := []string{"--grpc-addr", "127.0.0.1:0", "--shutdown-grace", "5s"}

	var stderr syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, args, process.environ(), io.Discard, &stderr, nil) }()
	_, httpAddr, adminAddr := addrs(t, &stderr, exited)
	if want := `"msg":"extauthz starting","version":"` + server.ReadBuildInfo().Version + `","goversion":"` + runtime.Version() + `"`; !strings.Contains(stderr.String(), want) {
		t.Errorf("no start line with %s; stderr:\n%s", want, stderr.String())
	}

	client := &http.Client{Timeout: waitLong, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(waitLong)
	for {
		resp, err := client.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %v; stderr:\n%s", waitLong, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	check := func(token string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Original-URI", "/protected")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := check(p.token(t, "http://"+domain, "https://api.example.com", "demo-client"))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Jwt-Sub") != "demo-client" {
		t.Errorf("valid token: %d, X-Jwt-Sub %q; want 200, demo-client\nstderr:\n%s", resp.StatusCode, resp.Header.Get("X-Jwt-Sub"), stderr.String())
	}
	for _, tc := range []struct{ name, iss, aud string }{
		{name: "https issuer", iss: "https://" + domain, aud: "https://api.example.com"},
		{name: "other audience", iss: "http://" + domain, aud: "https://other.example.com"},
	} {
		if resp := check(p.token(t, tc.iss, tc.aud, "demo-client")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", tc.name, resp.StatusCode)
		}
	}
	resp = check("")
	if got, want := resp.Header.Get("WWW-Authenticate"), `realm="from-env"`; resp.StatusCode != http.StatusUnauthorized || !strings.Contains(got, want) {
		t.Errorf("no token: %d, WWW-Authenticate %q; want 401 with %s (the environment over .env)", resp.StatusCode, got, want)
	}

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("run = %d after the context ended, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(waitLong):
		t.Fatal("run did not return after its context ended")
	}
	if strings.Contains(stderr.String(), "Bearer ") {
		t.Error("stderr holds a bearer token")
	}
}

// TestRunListenError: a port in use ends the run with exit 1 and a log line.
func TestRunListenError(t *testing.T) {
	inDir(t, nil)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	args := []string{"--issuer", "http://127.0.0.1:1", "--audience", "a",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", busy.Addr().String(), "--admin-addr", "127.0.0.1:0"}
	var stderr syncBuffer
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	if code := run(ctx, args, nil, io.Discard, &stderr, nil); code != 1 {
		t.Errorf("run = %d, want 1", code)
	}
	if out := stderr.String(); !strings.Contains(out, "--http-addr "+busy.Addr().String()+": address already in use") || !strings.Contains(out, "extauthz stopped") {
		t.Errorf("stderr = %q, want a log line naming --http-addr %s", out, busy.Addr())
	}
}

// TestSignals runs main in a child process and stops it with SIGTERM and
// SIGINT: it logs the shutdown and exits 0.
func TestSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "--issuer", "http://127.0.0.1:1", "--audience", "a",
				"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
			cmd.Dir = t.TempDir() // no .env
			// A clean environment: no AUTHZ_* or AUTHACTION_* of the caller.
			cmd.Env = []string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			deadline := time.Now().Add(waitLong)
			for !strings.Contains(stderr.String(), "extauthz listening") {
				select {
				case err := <-waited:
					t.Fatalf("the child exited (%v) before listening; stderr:\n%s", err, stderr.String())
				default:
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatalf("the child never listened; stderr:\n%s", stderr.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-waited:
				if err != nil {
					t.Errorf("after %v the child exited with %v, want 0; stderr:\n%s", sig, err, stderr.String())
				}
			case <-time.After(waitLong):
				_ = cmd.Process.Kill()
				t.Fatalf("the child did not exit within %v of %v", waitLong, sig)
			}
			if !strings.Contains(stderr.String(), "extauthz shutting down") {
				t.Errorf("no shutdown line; stderr:\n%s", stderr.String())
			}
		})
	}
}

// TestRunFileErrorsFoundByAuthz covers file settings that authz refuses:
// config.Load asks authz about them (authz.CheckRules, authz.CheckRealm, the
// claim headers through authz.New), so the run stops with exit 2 and one
// line naming the file's line and the bad value.
func TestRunFileErrorsFoundByAuthz(t *testing.T) {
	single := "issuer: https://tenant.example.com\naudience: a\n"
	tests := []struct {
		name string
		body string
		line int    // the line at fault
		want string // the bad value
	}{
		{name: "forbidden claim header", body: single + "claim_headers:\n  authorization: sub\n", line: 4, want: "authorization"},
		{name: "colliding claim headers", body: single + "claim_headers:\n  x_jwt_sub: sub\n  x-jwt-sub: email\n", line: 4, want: "x_jwt_sub"},
		{name: "dot segment in a rule path", body: single + "rules:\n  - path: /a/../admin\n    public: true\n", line: 4, want: "/a/../admin"},
		{name: "scope with a space", body: single + "rules:\n  - path: /admin\n    scopes: [\"read admin\"]\n", line: 4, want: "read admin"},
		{name: "quote in realm", body: single + "realm: 'a\"b'\n", line: 3, want: "realm"},
		{name: "shadowed rule", body: single + "rules:\n  - path: /admin\n  - path: /admin/x\n    scopes: [admin]\n", line: 5, want: "never used"},
		{name: "syntax error below its construct", body: single + "rules:\n  - path: /a\n  - path: /b\n    scopes: [x]\n   hosts: [a]\n", line: 7, want: "indicator"},
		{name: "type error names the field", body: single + "rules:\n  - path: /a\n    scopes: admin\n", line: 5, want: "rules[0].scopes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inDir(t, map[string]string{"c.yaml": tc.body})
			var stderr syncBuffer
			ctx, cancel := context.WithTimeout(t.Context(), waitLong)
			defer cancel()
			if code := run(ctx, []string{"--config", "c.yaml"}, nil, io.Discard, &stderr, nil); code != 2 {
				t.Errorf("run = %d, want 2", code)
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("stderr = %q, want one line naming %q", out, tc.want)
			}
			t.Run("names file:line", func(t *testing.T) {
				if at := "c.yaml:" + fmt.Sprint(tc.line) + ":"; !strings.Contains(out, at) {
					t.Errorf("stderr = %q, want it to name %s", out, at)
				}
			})
		})
	}
}

// TestSignalReload runs main in a child process and sends SIGHUP after
// changing its config file (whose watch is off): the server reloads the file,
// with the same flags, and the new realm answers.
func TestSignalReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	body := func(realm string) string {
		return "issuer: http://127.0.0.1:1\naudience: a\nconfig_watch_interval: 0s\nrealm: " + realm + "\n"
	}
	if err := os.WriteFile(file, []byte(body("first")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "--config", file,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Dir = dir
	cmd.Env = []string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-waited:
			if err != nil {
				t.Errorf("the child exited with %v after SIGTERM, want 0; stderr:\n%s", err, stderr.String())
			}
		case <-time.After(waitLong):
			_ = cmd.Process.Kill()
			t.Errorf("the child did not exit within %v of SIGTERM", waitLong)
		}
	}()
	// waitLine waits for a log line with msg and returns it.
	waitLine := func(msg string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(waitLong)
		for {
			for line := range strings.SplitSeq(stderr.String(), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
					return rec
				}
			}
			select {
			case err := <-waited:
				t.Fatalf("the child exited (%v); stderr:\n%s", err, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q line within %v; stderr:\n%s", msg, waitLong, stderr.String())
			}
		}
	}
	listening := waitLine("extauthz listening")
	httpAddr, _ := listening["http"].(string)
	realm := func() string {
		t.Helper()
		resp, err := (&http.Client{Timeout: waitLong}).Get("http://" + httpAddr + "/protected")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("WWW-Authenticate")
	}
	if got := realm(); !strings.Contains(got, `realm="first"`) {
		t.Fatalf("WWW-Authenticate %q, want realm first", got)
	}
	if err := os.WriteFile(file, []byte(body("second")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if rec := waitLine("config reloaded"); rec["trigger"] != "signal" {
		t.Errorf("reload line %v, want trigger signal", rec)
	}
	if got := realm(); !strings.Contains(got, `realm="second"`) {
		t.Errorf("WWW-Authenticate after SIGHUP %q, want realm second", got)
	}
}

// TestTuneGoRuntime pins the server's GOGC default and that an explicit
// GOGC is left alone.
func TestTuneGoRuntime(t *testing.T) {
	prevGC := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(prevGC)
		debug.SetMemoryLimit(prevLimit)
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
		log  string
	}{
		{name: "no GOGC: the server's default", env: map[string]string{}, want: defaultGCPercent, log: `"gogc":"400 (default)"`},
		{name: "GOGC set: left to the runtime", env: map[string]string{"GOGC": "100"}, want: 100, log: `"gogc":"100"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			var out syncBuffer
			tuneGoRuntime(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, logging.New(&out, slog.LevelInfo, "json"))
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent = %d, want %d", got, tc.want)
			}
			if !strings.Contains(out.String(), tc.log) || !strings.Contains(out.String(), `"msg":"go runtime"`) {
				t.Errorf("log = %q, want a go runtime line with %s", out.String(), tc.log)
			}
		})
	}
}
