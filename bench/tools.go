package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// The pinned versions of the load generator and the peers (issue 5; see
// PEERS.md for why each is built the way it is).
const (
	ghzModule        = "github.com/bojand/ghz"
	ghzVersion       = "v0.120.0"
	opaModule        = "github.com/open-policy-agent/opa-envoy-plugin"
	opaVersion       = "v1.0.0-envoy"
	oathkeeperModule = "github.com/ory/oathkeeper"
	oathkeeperVer    = "v0.40.9"
	oauth2Module     = "github.com/oauth2-proxy/oauth2-proxy/v7"
	oauth2Version    = "v7.15.6"
	systemPython     = "/usr/bin/python3"
)

// debianPackages are what -install asks apt for: wrk and the guide's stack,
// importable from Debian's /usr/bin/python3 (not a pyenv python3 on PATH).
var debianPackages = []string{"wrk", "python3-flask", "python3-jose", "python3-httpx", "python3-dotenv"}

func defaultToolsDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "extauthz-bench")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "extauthz-bench")
}

// tools are the programs found, with their versions.
type tools struct {
	ghz, ghzVer               string
	wrk, wrkVer               string
	opa, opaVer               string
	oathkeeper, oathkeeperVer string
	oauth2, oauth2Ver         string
	python, flaskVer          string
	flaskErr                  string // why the Flask app cannot run ("" when it can)
}

// lookTool finds name in dir/bin, then on PATH.
func lookTool(dir, name string) string {
	p := filepath.Join(dir, "bin", name)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

func findTools(ctx context.Context, dir string) (tools, error) {
	var t tools
	t.ghz = lookTool(dir, "ghz")
	t.ghzVer = modVersion(ctx, t.ghz, ghzModule)
	if t.wrk, _ = exec.LookPath("wrk"); t.wrk != "" {
		// wrk -v prints its version and exits 1.
		out, _ := exec.CommandContext(ctx, t.wrk, "-v").CombinedOutput()
		if m := regexp.MustCompile(`wrk (\S+)`).FindSubmatch(out); m != nil {
			t.wrkVer = string(m[1])
		}
	}
	t.opa = lookTool(dir, "opa-envoy-plugin")
	t.opaVer = modVersion(ctx, t.opa, opaModule)
	t.oathkeeper = lookTool(dir, "oathkeeper")
	t.oathkeeperVer = modVersion(ctx, t.oathkeeper, oathkeeperModule)
	t.oauth2 = lookTool(dir, "oauth2-proxy")
	t.oauth2Ver = modVersion(ctx, t.oauth2, oauth2Module)

	t.python = systemPython
	out, err := exec.CommandContext(ctx, systemPython, "-c",
		"import flask, jose, httpx, dotenv, importlib.metadata as m, sys; "+
			"print('Python %d.%d.%d, Flask %s, python-jose %s, httpx %s, python-dotenv %s' % (sys.version_info[:3] + "+
			"(m.version('flask'), m.version('python-jose'), httpx.__version__, m.version('python-dotenv'))))").CombinedOutput()
	if err != nil {
		t.flaskErr = fmt.Sprintf("%s cannot import flask, jose, httpx, dotenv (apt-get install %s): %s",
			systemPython, strings.Join(debianPackages[1:], " "), lastLine(string(out)))
	} else {
		t.flaskVer = strings.TrimSpace(string(out))
	}
	return t, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// modVersion reads the version of module from bin's build info: go-built
// peers print "dev" or nothing for --version (PEERS.md).
func modVersion(ctx context.Context, bin, module string) string {
	if bin == "" {
		return ""
	}
	out, err := exec.CommandContext(ctx, goTool(), "version", "-m", bin).Output()
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[0] == "mod" || f[0] == "dep") && f[1] == module {
			return f[2]
		}
	}
	return "unknown"
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// moduleRoot is the directory of the go.mod the harness runs in.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the harness inside the extauthz module (go run ./bench)")
	}
	return filepath.Dir(gomod), nil
}

func goBuild(ctx context.Context, root, outDir string, pkgs ...string) error {
	args := append([]string{"build", "-o", outDir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// cacheInfo is what the harness learnt about the server build: its token
// cache settings, from --help, since a build may or may not have one.
type cacheInfo struct {
	flags    []string // the --token-cache* flags
	sizeFlag string   // "token-cache-size" when present
	version  string   // git describe of the working tree
}

func detectTokenCache(ctx context.Context, bin, root string) cacheInfo {
	var c cacheInfo
	cmd := exec.CommandContext(ctx, bin, "--help")
	cmd.Env = childEnv()
	cmd.Dir = os.TempDir()
	out, _ := cmd.CombinedOutput()
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*-{1,2}(token-cache[a-z0-9-]*)`).FindAllSubmatch(out, -1) {
		name := string(m[1])
		if !seen[name] {
			seen[name] = true
			c.flags = append(c.flags, name)
		}
		if name == "token-cache-size" {
			c.sizeFlag = name
		}
	}
	desc := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	desc.Dir = root
	if raw, err := desc.Output(); err == nil {
		c.version = strings.TrimSpace(string(raw))
	}
	return c
}

// install builds ghz and the Go peers into dir/bin (each once: an existing
// binary is kept), each from a throw-away wrapper module under dir/src, the
// recipe of PEERS.md, and installs the Debian packages when running as root.
func install(ctx context.Context, dir string, log io.Writer) error {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	env := append(childEnv(), "GOBIN="+bin, "GOTOOLCHAIN=local", "GOWORK=off")
	steps := []struct {
		name   string
		env    []string
		module string // a wrapper module is made for it when set
		cmds   [][]string
	}{
		{name: "ghz", cmds: [][]string{{"install", ghzModule + "/cmd/ghz@" + ghzVersion}}},
		{
			// The proxy answers 403 for @latest and the version list, so
			// `go install pkg@version` fails; the checksum database does
			// not know this version.
			name: "opa-envoy-plugin", module: "benchpeer/opa",
			env: []string{"GONOSUMDB=" + opaModule},
			cmds: [][]string{
				{"get", opaModule + "/cmd/opa-envoy-plugin@" + opaVersion},
				{"build", "-o", filepath.Join(bin, "opa-envoy-plugin"), opaModule + "/cmd/opa-envoy-plugin"},
			},
		},
		{
			// Oathkeeper's go.mod replaces go-sqlite3; replace directives
			// of a dependency do not apply, so the wrapper repeats it.
			name: "oathkeeper", module: "benchpeer/oathkeeper",
			cmds: [][]string{
				{"mod", "edit", "-replace", "github.com/mattn/go-sqlite3=github.com/mattn/go-sqlite3@v1.14.10"},
				{"get", oathkeeperModule + "@" + oathkeeperVer},
				{"build", "-o", filepath.Join(bin, "oathkeeper"), oathkeeperModule},
			},
		},
		{name: "oauth2-proxy", cmds: [][]string{{"install", oauth2Module + "@" + oauth2Version}}},
	}
	for _, s := range steps {
		if _, err := os.Stat(filepath.Join(bin, s.name)); err == nil {
			fmt.Fprintf(log, "bench: %s already in %s\n", s.name, bin)
			continue
		}
		wd := dir
		if s.module != "" {
			wd = filepath.Join(dir, "src", s.name)
			if err := os.MkdirAll(wd, 0o755); err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(wd, "go.mod")); err != nil {
				mod := fmt.Sprintf("module %s\n\ngo %s\n", s.module, strings.TrimPrefix(runtime.Version(), "go"))
				if err := os.WriteFile(filepath.Join(wd, "go.mod"), []byte(mod), 0o644); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(log, "bench: building %s (a few minutes on a cold module cache)\n", s.name)
		start := time.Now()
		for _, args := range s.cmds {
			cmd := exec.CommandContext(ctx, goTool(), args...)
			cmd.Dir = wd
			cmd.Env = append(env, s.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("install %s: go %s: %w\n%s", s.name, strings.Join(args, " "), err, tailString(out, 3000))
			}
		}
		fmt.Fprintf(log, "bench: built %s in %s\n", s.name, time.Since(start).Round(time.Second))
	}
	return installDebian(ctx, log)
}

func installDebian(ctx context.Context, log io.Writer) error {
	_, wrkErr := exec.LookPath("wrk")
	pyErr := exec.CommandContext(ctx, systemPython, "-c", "import flask, jose, httpx, dotenv").Run()
	if wrkErr == nil && pyErr == nil {
		return nil
	}
	cmdline := "apt-get install -y --no-install-recommends " + strings.Join(debianPackages, " ")
	if os.Geteuid() != 0 {
		fmt.Fprintf(log, "bench: not root; install the Debian packages with: sudo %s\n", cmdline)
		return nil
	}
	fmt.Fprintf(log, "bench: %s\n", cmdline)
	for _, args := range [][]string{{"apt-get", "update"}, append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, debianPackages...)} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(childEnv(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, tailString(out, 3000))
		}
	}
	return nil
}

func tailString(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
