package integration_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// bins holds the paths of the binaries TestMain built.
var bins struct {
	extauthz, idp, backend, client string
}

// skipAll is why every test skips ("" when they run).
var skipAll string

// TestMain builds the four binaries once, with the go command of the
// toolchain running the tests, from the module root found by `go env GOMOD`.
// With -race the binaries get -race too: the build cache already holds the
// race-instrumented packages the test binary was built from, so this costs
// little more than linking, and races in the real processes are caught.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		skipAll = "integration tests build and run the binaries; skipped in -short mode"
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "extauthz-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if err := build(dir); err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func build(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || root == "." {
		return fmt.Errorf("go env GOMOD: not inside a module")
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/extauthz", "./cmd/demo-idp", "./cmd/demo-backend", "./cmd/demo-client")
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "integration: built binaries (race=%v) in %v\n", raceEnabled, time.Since(start).Round(time.Millisecond))
	}
	bins.extauthz = filepath.Join(dir, "extauthz")
	bins.idp = filepath.Join(dir, "demo-idp")
	bins.backend = filepath.Join(dir, "demo-backend")
	bins.client = filepath.Join(dir, "demo-client")
	return nil
}

// requirePeers reports whether CI asked for every real peer to be present.
func requirePeers() bool { return os.Getenv("EXTAUTHZ_REQUIRE_PEERS") == "1" }

// peer returns the path of a real proxy binary, or "" and a reason when it
// is not installed. Debian puts nginx in /usr/sbin, which is not on every
// user's PATH.
func peer(name string, fallbacks ...string) (string, string) {
	if p, err := exec.LookPath(name); err == nil {
		return p, ""
	}
	for _, p := range fallbacks {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, ""
		}
	}
	return "", fmt.Sprintf("%s is not installed (apt-get install %s); its front is not tested", name, name)
}

// missingPeer skips t for a missing proxy, or fails it when
// EXTAUTHZ_REQUIRE_PEERS=1.
func missingPeer(t *testing.T, why string) {
	t.Helper()
	if requirePeers() {
		t.Fatalf("%s, and EXTAUTHZ_REQUIRE_PEERS=1 requires it", why)
	}
	t.Skip(why)
}
