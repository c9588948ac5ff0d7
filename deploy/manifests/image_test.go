package manifests_test

// The container image, checked without a container engine: the Dockerfile
// is parsed, and what it says is compared with go.mod, the packages the
// tests build, the build context .dockerignore leaves, the server's default
// addresses, and the Kubernetes manifests and Helm values that run it.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/extauthz/extauthz/config"
)

const (
	moduleRoot = "../.."
	dockerfile = moduleRoot + "/Dockerfile"
)

// imageBinaries are the packages the Dockerfile builds, the ones
// integration's TestMain builds for the tests: each is a final stage of
// its own name.
var imageBinaries = []string{"./cmd/extauthz", "./cmd/demo-idp", "./cmd/demo-backend"}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // of its first line
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// stage is a FROM and the instructions up to the next one.
type stage struct {
	name, base string
	insts      []instruction
}

// dockerImage is a parsed Dockerfile: the ARGs before the first FROM
// (name -> default) and the stages in order.
type dockerImage struct {
	globalArgs map[string]string
	stages     []*stage
}

// parseDockerfile reads the instructions of a Dockerfile: comments and
// blank lines dropped, lines ending in \ joined (comment lines inside a
// continuation skipped, as BuildKit does).
func parseDockerfile(r io.Reader) (*dockerImage, error) {
	img := &dockerImage{globalArgs: map[string]string{}}
	sc := bufio.NewScanner(r)
	var cur *instruction
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cont := strings.HasSuffix(text, "\\")
		text = strings.TrimSpace(strings.TrimSuffix(text, "\\"))
		if cur == nil {
			cmd, args, _ := strings.Cut(text, " ")
			cur = &instruction{line: n, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		} else {
			cur.args += " " + text
		}
		if cont {
			continue
		}
		in := *cur
		cur = nil
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				return nil, fmt.Errorf("line %d: FROM without an image", in.line)
			}
			st := &stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			img.stages = append(img.stages, st)
		case len(img.stages) == 0:
			if in.cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
			}
			name, def, _ := strings.Cut(in.args, "=")
			img.globalArgs[name] = def
		default:
			st := img.stages[len(img.stages)-1]
			st.insts = append(st.insts, in)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: continued past the end", cur.line)
	}
	return img, sc.Err()
}

func (img *dockerImage) stage(name string) *stage {
	for _, s := range img.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

// all returns the arguments of the stage's instructions cmd.
func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.insts {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the arguments of the stage's last instruction cmd (the one
// that counts for USER, ENTRYPOINT), "" without one.
func (s *stage) last(cmd string) string {
	in := s.all(cmd)
	if len(in) == 0 {
		return ""
	}
	return in[len(in)-1].args
}

func readDockerfile(t *testing.T) *dockerImage {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := parseDockerfile(f)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return img
}

// goDirective is go.mod's go line.
func goDirective(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(moduleRoot + "/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// TestDockerfileBuild: the build stage compiles the binaries the tests
// build, with go.mod's Go version, without cgo (the final images have no
// libc), and every final stage runs one of them.
func TestDockerfileBuild(t *testing.T) {
	img := readDockerfile(t)
	if got, want := img.globalArgs["GO_VERSION"], goDirective(t); got != want {
		t.Errorf("Dockerfile ARG GO_VERSION=%s, want go.mod's %s: the image would build with another toolchain than the tests", got, want)
	}
	build := img.stage("build")
	if build == nil {
		t.Fatal("no build stage")
	}
	if build.base != "golang:${GO_VERSION}" {
		t.Errorf("build stage FROM %s, want golang:${GO_VERSION}", build.base)
	}
	var goBuild string
	for _, in := range build.all("RUN") {
		if strings.Contains(in.args, " go build ") {
			goBuild = in.args
		}
	}
	f := strings.Fields(goBuild)
	if goBuild == "" || !slices.Contains(f, "CGO_ENABLED=0") {
		t.Fatalf("build stage: the go build %q does not set CGO_ENABLED=0", goBuild)
	}
	// Its packages: the arguments after the flags.
	i := slices.Index(f, "build")
	var pkgs []string
	for _, a := range f[i+1:] {
		if strings.HasPrefix(a, "./") {
			pkgs = append(pkgs, a)
		}
	}
	if !slices.Equal(pkgs, imageBinaries) {
		t.Errorf("go build %q, want %q (what integration's TestMain builds and the final stages copy)", pkgs, imageBinaries)
	}
	if !slices.Contains(f, "-o") || !slices.Contains(f, "/out/") {
		t.Errorf("go build %q does not write to /out/, where the final stages copy from", goBuild)
	}
	// Each binary is a final stage named after it, copying it from /out;
	// the server's is last, so that a plain `docker build .` makes it.
	for _, pkg := range imageBinaries {
		name := path.Base(pkg)
		st := img.stage(name)
		if st == nil {
			t.Errorf("no stage %s for %s", name, pkg)
			continue
		}
		if want := "--from=build /out/" + name + " /usr/local/bin/" + name; st.last("COPY") != want {
			t.Errorf("stage %s: COPY %s, want %s", name, st.last("COPY"), want)
		}
		if want := `["/usr/local/bin/` + name + `"]`; st.last("ENTRYPOINT") != want {
			t.Errorf("stage %s: ENTRYPOINT %s, want %s (exec form, no shell in the image)", name, st.last("ENTRYPOINT"), want)
		}
	}
	if last := img.stages[len(img.stages)-1]; last.name != "extauthz" {
		t.Errorf("last stage %s, want extauthz: docker build . builds the last", last.name)
	}
}

// TestDockerBuildContext: .dockerignore leaves in the build context every
// file the binaries compile from (their Go and embedded files in this
// module, go.mod and go.sum), and keeps out the secrets and local state it
// lists. `go list` is the same toolchain the tests run with.
func TestDockerBuildContext(t *testing.T) {
	data, err := os.ReadFile(moduleRoot + "/.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	ignore := parseDockerignore(data)
	args := append([]string{"list", "-deps", "-json=Dir,Module,Standard,GoFiles,EmbedFiles"}, imageBinaries...)
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	root, err := filepath.Abs(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			Dir                 string
			Standard            bool
			Module              *struct{ Main bool }
			GoFiles, EmbedFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue // from GOROOT or the module cache (go mod download)
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(p.GoFiles, p.EmbedFiles...) {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %q", needed)
	}
	for _, f := range needed {
		if ignore(f) {
			t.Errorf(".dockerignore leaves %s out of the build context; the image build needs it", f)
		}
	}
	for _, f := range []string{".env", ".env.local", "deploy/kubernetes/secret.pem", "config/testdata/full.yaml", "cmd/extauthz/main_test.go", ".git/config"} {
		if !ignore(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// parseDockerignore returns whether a context path (slash-separated,
// relative) is excluded: Docker's rules for the patterns this file uses
// (*, ?, ** across directories, a trailing / ignored, a pattern excluding a
// directory excluding what is in it, ! re-including, the last match
// winning).
func parseDockerignore(data []byte) func(string) bool {
	type rule struct {
		re     *regexp.Regexp
		negate bool
	}
	var rules []rule
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := rule{}
		if p, ok := strings.CutPrefix(line, "!"); ok {
			r.negate, line = true, p
		}
		line = strings.Trim(path.Clean("/"+line), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(/.*)?$") // the path itself, or inside it
		r.re = regexp.MustCompile(re.String())
		rules = append(rules, r)
	}
	return func(p string) bool {
		excluded := false
		for _, r := range rules {
			if r.re.MatchString(p) {
				excluded = !r.negate
			}
		}
		return excluded
	}
}

// TestImageRuntime: the server image's user, ports and entrypoint agree
// with what runs it: the user is the pod's runAsUser/runAsGroup in
// deploy/kubernetes and the chart's values (runAsNonRoot can verify a
// numeric USER only); EXPOSE lists exactly the container ports of both and
// the server's default addresses; no manifest overrides the entrypoint.
func TestImageRuntime(t *testing.T) {
	img := readDockerfile(t)
	st := img.stage("extauthz")
	if st == nil {
		t.Fatal("no extauthz stage")
	}
	user, group, ok := strings.Cut(st.last("USER"), ":")
	uid, uerr := strconv.ParseInt(user, 10, 64)
	gid, gerr := strconv.ParseInt(group, 10, 64)
	if !ok || uerr != nil || gerr != nil || uid == 0 {
		t.Fatalf("extauthz stage USER %q, want numeric non-root uid:gid", st.last("USER"))
	}
	var exposed []int32
	for _, in := range st.all("EXPOSE") {
		for _, p := range strings.Fields(in.args) {
			n, err := strconv.ParseInt(strings.TrimSuffix(p, "/tcp"), 10, 32)
			if err != nil {
				t.Fatalf("EXPOSE %q: %v", in.args, err)
			}
			exposed = append(exposed, int32(n))
		}
	}
	slices.Sort(exposed)

	// The server's own defaults: the ports it listens on with no flags.
	cfg, err := config.Load([]string{"--issuer", "https://i.example.com", "--audience", "a"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var defaults []int32
	for _, a := range []string{cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminAddr} {
		_, port, _ := strings.Cut(a, ":")
		n, err := strconv.ParseInt(port, 10, 32)
		if err != nil {
			t.Fatalf("default address %q: %v", a, err)
		}
		defaults = append(defaults, int32(n))
	}
	slices.Sort(defaults)
	if !slices.Equal(exposed, defaults) {
		t.Errorf("EXPOSE %v, want the server's default ports %v", exposed, defaults)
	}

	t.Run("deploy/kubernetes", func(t *testing.T) {
		w, _, err := checkKubernetes(readYAMLFiles(t, kubeDir))
		if err != nil {
			t.Fatal(err)
		}
		pod := w.deployment.Spec.Template.Spec
		c := w.container()
		if c == nil {
			t.Fatal("no extauthz container")
		}
		checkPodAgainstImage(t, pod.SecurityContext, c, uid, gid, exposed)
	})
	t.Run("chart values", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Ports              map[string]int32          `json:"ports"`
			PodSecurityContext corev1.PodSecurityContext `json:"podSecurityContext"`
		}
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		c := &corev1.Container{Name: "extauthz"}
		for name, p := range v.Ports {
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: name, ContainerPort: p})
		}
		checkPodAgainstImage(t, &v.PodSecurityContext, c, uid, gid, exposed)
		// The template sets no command either: the image's entrypoint runs.
		tpl, err := os.ReadFile(filepath.Join(chartDir, "templates", "deployment.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?m)^\s+(command|args):`).Match(tpl) {
			t.Error("the chart's Deployment sets command or args: the image's ENTRYPOINT would not run as documented")
		}
	})
	if st.last("ENTRYPOINT") != `["/usr/local/bin/extauthz"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/usr/local/bin/extauthz\"]", st.last("ENTRYPOINT"))
	}
}

func checkPodAgainstImage(t *testing.T, sc *corev1.PodSecurityContext, c *corev1.Container, uid, gid int64, exposed []int32) {
	t.Helper()
	id := func(p *int64) string {
		if p == nil {
			return "unset"
		}
		return strconv.FormatInt(*p, 10)
	}
	if sc == nil {
		sc = &corev1.PodSecurityContext{}
	}
	if id(sc.RunAsUser) != strconv.FormatInt(uid, 10) || id(sc.RunAsGroup) != strconv.FormatInt(gid, 10) {
		t.Errorf("pod runAsUser %s, runAsGroup %s; want %d and %d, the image's USER", id(sc.RunAsUser), id(sc.RunAsGroup), uid, gid)
	}
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	slices.Sort(ports)
	if !slices.Equal(ports, exposed) {
		t.Errorf("container ports %v, want the image's EXPOSE %v", ports, exposed)
	}
	if len(c.Command) > 0 || len(c.Args) > 0 {
		t.Errorf("container command %q args %q: the image's ENTRYPOINT would not run as documented", c.Command, c.Args)
	}
}

// TestParseDockerfile pins the parser on the shapes the Dockerfile uses.
func TestParseDockerfile(t *testing.T) {
	img, err := parseDockerfile(strings.NewReader("# syntax=docker/dockerfile:1\nARG V=1.2\n\nFROM --platform=$BUILDPLATFORM golang:${V} AS build\nRUN --mount=type=cache,target=/x \\\n    # a comment inside\n    go build -o /out/ \\\n        ./cmd/a\nFROM scratch AS a\nUSER 1:1\nUSER 2:2\nEXPOSE 1 2/tcp\nENTRYPOINT [\"/a\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if img.globalArgs["V"] != "1.2" || len(img.stages) != 2 || img.stages[0].base != "golang:${V}" || img.stage("a").last("USER") != "2:2" {
		t.Errorf("parsed %+v", img)
	}
	if run := img.stage("build").last("RUN"); run != "--mount=type=cache,target=/x go build -o /out/ ./cmd/a" {
		t.Errorf("RUN = %q", run)
	}
	ignore := parseDockerignore([]byte("deploy/\n**/*_test.go\n.env.*\n!keep.env.x\n"))
	for p, want := range map[string]bool{"deploy/x/y.yaml": true, "a/b_test.go": true, "b_test.go": true, "config/config.go": false, ".env.prod": true, "keep.env.x": false, "deployment": false} {
		if got := ignore(p); got != want {
			t.Errorf("ignore(%s) = %v, want %v", p, got, want)
		}
	}
}
