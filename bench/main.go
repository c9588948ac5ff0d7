package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// The two modes of a run.
const (
	modeGRPC = "grpc"
	modeHTTP = "http"
)

// genPace marks the runs of the open-loop latency client (bench/pace)
// instead of ghz.
const genPace = "pace"

// The token cases of a run.
const (
	caseHit  = "hit"  // one token, repeated
	caseMiss = "miss" // each call a token not sent before
)

// config is the harness's flags.
type config struct {
	quick        bool
	repeat       int
	install      bool
	requirePeers bool
	toolsDir     string
	tokenCache   string
	out          string
	jsonOut      string
	targets      []string
	tokens       int
	fill         int
	dpopRequests int
	replayFill   int
	providers    int
	concurrency  int
	grpcRequests int
	grpcWarmup   int
	grpcConns    int
	wrkThreads   int
	wrkDuration  time.Duration
	wrkWarmup    time.Duration
	halfDuration time.Duration
	quietBelow   float64
	quietWait    time.Duration
	serverArgs   []string
	serverEnv    []string // KEY=VALUE for extauthz only
	args         []string // as given, for the report
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./bench [flags]\n\nBuilds cmd/extauthz, starts it and the peers on 127.0.0.1 one at a time, loads\neach with ghz (gRPC) and wrk (HTTP), and writes the tables of BENCHMARKS.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.repeat, "repeat", 3, "runs of extauthz, extauthz-policy and the do-nothing server per mode and case, interleaved; the median by req/s is reported (peers run once)")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: few requests, only extauthz (with and without the policy config) and the do-nothing server, no fill run; writes no file unless -out is given")
	fs.BoolVar(&c.install, "install", false, "first build ghz and the Go peers into -tools-dir, and apt-get install wrk and the Flask stack when root")
	fs.BoolVar(&c.requirePeers, "require-peers", false, "fail instead of skipping a peer that is not installed")
	fs.StringVar(&c.toolsDir, "tools-dir", defaultToolsDir(), "where ghz, the peers and the token cache live (outside the repository)")
	fs.StringVar(&c.tokenCache, "token-cache", "", `directory of the cached key and distinct tokens (default <tools-dir>/tokens; "off" mints afresh and keeps nothing)`)
	fs.StringVar(&c.out, "out", "", "markdown file whose generated section (between the bench markers) is rewritten (default BENCHMARKS.md in the module root; none with -quick)")
	fs.StringVar(&c.jsonOut, "json", "", "also write the results as JSON to this file")
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma-separated targets to run: "+strings.Join(allTargets, ", "))
	fs.IntVar(&c.tokens, "tokens", 100_000, "distinct valid tokens minted for the miss runs")
	fs.IntVar(&c.fill, "fill", 100_000, "distinct tokens of the memory run (RSS of extauthz after verifying each once); 0 skips it")
	fs.IntVar(&c.dpopRequests, "dpop-requests", 50_000, "calls per measured DPoP run (bench/pace's closed loop, -c workers): extauthz with a DPoP-bound token and a fresh proof per call, the same with a bearer token, the do-nothing server with the same requests; 0 skips them")
	fs.IntVar(&c.replayFill, "replay-fill", 150_000, "distinct DPoP proofs verified in the harness's own process to measure a dpop.ReplayCache's heap per entry; 0 skips it")
	fs.IntVar(&c.providers, "providers", 100, "providers of the many-providers start-up run (extauthz with a generated config, against a JWKS server in the harness); 0 skips it")
	fs.IntVar(&c.concurrency, "c", 50, "concurrency: ghz workers and wrk connections")
	fs.IntVar(&c.grpcRequests, "grpc-requests", 100_000, "calls per measured gRPC run (ghz -n)")
	fs.IntVar(&c.grpcWarmup, "grpc-warmup", 5_000, "calls of the gRPC warm-up before each measured run (hit token)")
	fs.IntVar(&c.grpcConns, "grpc-connections", 1, "gRPC connections ghz spreads its workers over (Envoy uses one per worker thread)")
	fs.IntVar(&c.wrkThreads, "wrk-threads", 2, "wrk threads")
	fs.DurationVar(&c.wrkDuration, "wrk-duration", 10*time.Second, "duration of each measured wrk run")
	fs.DurationVar(&c.wrkWarmup, "wrk-warmup", 3*time.Second, "duration of the wrk warm-up before each measured run (hit token)")
	fs.DurationVar(&c.halfDuration, "half-duration", 10*time.Second, "duration of the gRPC runs at half of extauthz's saturation throughput; 0 skips them")
	fs.Float64Var(&c.quietBelow, "quiet-below", 0.3, "before each run, wait until other processes use less than this share of all CPUs (0 never waits)")
	fs.DurationVar(&c.quietWait, "quiet-wait", 30*time.Second, "longest wait for a quiet machine before each run; the run then goes ahead and its other-load figure tells")
	fs.Var((*listFlag)(&c.serverArgs), "server-arg", "extra argument for extauthz (repeatable), e.g. -server-arg=--token-cache-size=50000")
	fs.Var((*listFlag)(&c.serverEnv), "server-env", "extra environment variable for extauthz only (repeatable), e.g. -server-env=GOGC=400; the peers and load generators do not get it")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		quick := map[string]func(){
			"targets":       func() { *targets = targetOurs + "," + targetPolicy + "," + targetNop },
			"tokens":        func() { c.tokens = 1_000 },
			"fill":          func() { c.fill = 0 },
			"dpop-requests": func() { c.dpopRequests = 1_000 },
			"replay-fill":   func() { c.replayFill = 2_000 },
			"grpc-requests": func() { c.grpcRequests = 1_000 },
			"grpc-warmup":   func() { c.grpcWarmup = 200 },
			"wrk-duration":  func() { c.wrkDuration = 2 * time.Second },
			"wrk-warmup":    func() { c.wrkWarmup = time.Second },
			"half-duration": func() { c.halfDuration = 0 },
			"quiet-below":   func() { c.quietBelow = 0 },
			"repeat":        func() { c.repeat = 1 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	for t := range strings.SplitSeq(*targets, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(allTargets, t) {
			return c, fmt.Errorf("-targets: unknown target %q (known: %s)", t, strings.Join(allTargets, ", "))
		}
		c.targets = append(c.targets, t)
	}
	if !slices.Contains(c.targets, targetOurs) {
		return c, fmt.Errorf("-targets must include %s: every ratio is against it", targetOurs)
	}
	switch {
	case c.repeat < 1 || c.repeat > 25:
		return c, errors.New("-repeat must be between 1 and 25")
	case c.tokens < 1 || c.tokens > 10_000_000:
		return c, errors.New("-tokens must be between 1 and 10000000")
	case c.fill < 0 || c.fill > 10_000_000:
		return c, errors.New("-fill must be between 0 and 10000000")
	case c.dpopRequests != 0 && (c.dpopRequests < c.concurrency || c.dpopRequests > 1_000_000):
		return c, errors.New("-dpop-requests must be 0 or between -c and 1000000")
	case c.replayFill < 0 || c.replayFill > 1_000_000:
		return c, errors.New("-replay-fill must be between 0 and 1000000")
	case c.providers < 0 || c.providers > 1_000:
		return c, errors.New("-providers must be between 0 and 1000")
	case c.concurrency < 1 || c.concurrency > 10_000:
		return c, errors.New("-c must be between 1 and 10000")
	case c.grpcRequests < c.concurrency:
		return c, errors.New("-grpc-requests must be at least -c")
	case c.grpcWarmup < 0 || c.grpcConns < 1 || c.wrkThreads < 1 || c.wrkThreads > c.concurrency:
		return c, errors.New("-grpc-warmup must be ≥ 0, -grpc-connections ≥ 1, and 1 ≤ -wrk-threads ≤ -c")
	case c.wrkDuration < time.Second || c.wrkWarmup < 0 || c.halfDuration < 0:
		return c, errors.New("-wrk-duration must be at least 1s; -wrk-warmup and -half-duration not negative")
	case c.quietBelow < 0 || c.quietBelow > 1 || c.quietWait < 0:
		return c, errors.New("-quiet-below must be between 0 and 1, -quiet-wait not negative")
	case c.toolsDir == "":
		return c, errors.New("-tools-dir is empty and no user cache directory is known; set it")
	}
	for _, kv := range c.serverEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return c, fmt.Errorf("-server-env %q is not KEY=VALUE", kv)
		}
	}
	if c.tokenCache == "" {
		c.tokenCache = filepath.Join(c.toolsDir, "tokens")
	}
	if c.tokenCache == "off" {
		c.tokenCache = ""
	}
	c.args = args
	return c, nil
}

// harness is one invocation's state.
type harness struct {
	cfg     config
	stdout  io.Writer
	log     io.Writer
	root    string // module root
	work    string // temporary directory, removed at the end
	runs    int
	bins    struct{ ours, nop, pace, python string }
	tools   tools
	targets map[string]*target
	order   []*target
	tokens  *tokenSet
	jwks    []byte
	idp     *idp
	files   struct{ protoset, grpcHit, grpcMiss, wrkHit, wrkMiss, wrkScript string }
	cache   cacheInfo
	results []result
	started time.Time
	loadAvg string         // /proc/loadavg when the run started
	starts  map[string]int // processes started, by target
	// The DPoP runs: the client, the call data of the current round, what
	// the first DPoP probe saw, and the replay cache's memory.
	dpop       *dpopClient
	dpopFiles  driverFiles
	dpopProbes []probeAnswer
	replay     *replayMemory
	// The many-providers runs.
	manyProviders []providerRun
}

// result is one measured run.
type result struct {
	Mode        string `json:"mode"`
	Target      string `json:"target"`
	Case        string `json:"case"`
	Concurrency int    `json:"concurrency"`
	RateLimit   int    `json:"rate_limit,omitempty"` // requests/s asked of ghz; 0: unlimited
	// RunsRPS is the req/s of every repetition when the run was repeated
	// (-repeat); the result is the median one.
	RunsRPS []float64 `json:"runs_rps,omitempty"`
	// Generator is "" for ghz (gRPC) and wrk (HTTP), genPace for the
	// open-loop latency client.
	Generator string `json:"generator,omitempty"`
	load
	Memory memory `json:"memory"`
	CPU    cpuUse `json:"cpu"`
	// MemoryBefore is the memory after the warm-up (memory runs only).
	MemoryBefore *memory `json:"memory_before,omitempty"`
	// HeapInuse is go_memstats_heap_inuse_bytes after the run (memory
	// runs of extauthz only).
	HeapInuse int64  `json:"heap_inuse,omitempty"`
	Note      string `json:"note,omitempty"`
	// QuietWait is how long the harness waited for other processes to
	// quieten before the run (see -quiet-below).
	QuietWait time.Duration `json:"quiet_wait_ns,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	h := &harness{cfg: cfg, stdout: stdout, log: stderr, started: time.Now(), loadAvg: loadAverage(), starts: map[string]int{}}
	if h.root, err = moduleRoot(ctx); err != nil {
		return err
	}
	if cfg.out == "" && !cfg.quick {
		h.cfg.out = filepath.Join(h.root, "BENCHMARKS.md")
	}
	if cfg.install {
		if err := install(ctx, cfg.toolsDir, stderr); err != nil {
			return err
		}
	}
	if h.work, err = os.MkdirTemp("", "extauthz-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(h.work)
	if err := h.prepare(ctx); err != nil {
		return err
	}
	defer h.idp.Close()
	if err := h.measureAll(ctx); err != nil {
		return err
	}
	return h.report()
}

func (h *harness) logf(format string, a ...any) {
	fmt.Fprintf(h.log, "bench: "+format+"\n", a...)
}

// runDir makes a fresh directory for one started target.
func (h *harness) runDir(name string) (string, error) {
	h.runs++
	dir := filepath.Join(h.work, fmt.Sprintf("run%02d-%s", h.runs, name))
	return dir, os.MkdirAll(dir, 0o755)
}

// prepare finds the tools, builds extauthz and the do-nothing server, mints
// the tokens, starts the JWKS servers and writes the load generators' files.
func (h *harness) prepare(ctx context.Context) error {
	var err error
	if h.tools, err = findTools(ctx, h.cfg.toolsDir); err != nil {
		return err
	}
	if h.tools.ghz == "" || h.tools.wrk == "" {
		return fmt.Errorf("the load generators are required: ghz %s, wrk %s; run `go run ./bench --install` (ghz is built into %s; wrk is the Debian package)",
			found(h.tools.ghz), found(h.tools.wrk), h.cfg.toolsDir)
	}
	bin := filepath.Join(h.work, "bin")
	h.logf("building cmd/extauthz, bench/nop and bench/pace")
	if err := goBuild(ctx, h.root, bin, "./cmd/extauthz", "./bench/nop", "./bench/pace"); err != nil {
		return err
	}
	h.bins.ours, h.bins.nop, h.bins.pace = filepath.Join(bin, "extauthz"), filepath.Join(bin, "nop"), filepath.Join(bin, "pace")
	h.cache = detectTokenCache(ctx, h.bins.ours, h.root)
	h.setupTargets()
	for _, t := range h.order {
		if t.Skip != "" {
			if t.Peer && h.cfg.requirePeers && slices.Contains(h.cfg.targets, t.Name) {
				return fmt.Errorf("%s is required (-require-peers) but %s", t.Label, t.Skip)
			}
			h.logf("skipping %s: %s", t.Label, t.Skip)
		}
	}

	need := max(h.cfg.tokens, h.cfg.fill)
	h.logf("loading %d distinct tokens (cache: %s)", need, cmpOrString(h.cfg.tokenCache, "off"))
	start := time.Now()
	if h.tokens, err = loadTokens(h.cfg.tokenCache, need, time.Now()); err != nil {
		return err
	}
	h.logf("tokens ready in %s (%d minted now)", time.Since(start).Round(time.Millisecond), h.tokens.minted)
	h.jwks = benchJWKS(&h.tokens.key.PublicKey)
	if h.dpop, err = newDPoPClient(h.tokens.key, time.Now()); err != nil {
		return err
	}
	if h.idp, err = startIDP(h.jwks); err != nil {
		return err
	}

	f := &h.files
	f.protoset = filepath.Join(h.work, "ext_authz.protoset")
	f.grpcHit = filepath.Join(h.work, "hit.bin")
	f.grpcMiss = filepath.Join(h.work, "miss.bin")
	f.wrkHit = filepath.Join(h.work, "hit.txt")
	f.wrkMiss = filepath.Join(h.work, "miss.txt")
	f.wrkScript = filepath.Join(h.work, "tokens.lua")
	miss := h.tokens.distinct[:min(h.cfg.tokens, h.cfg.grpcRequests)]
	for _, err := range []error{
		writeProtoset(f.protoset),
		writeCheckData(f.grpcHit, []string{h.tokens.hit}),
		writeCheckData(f.grpcMiss, miss),
		writeLines(f.wrkHit, []string{h.tokens.hit}),
		writeLines(f.wrkMiss, h.tokens.distinct[:h.cfg.tokens]),
		os.WriteFile(f.wrkScript, []byte(wrkScript), 0o644),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func cmpOrString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func found(p string) string {
	if p == "" {
		return "not found"
	}
	return "found"
}

// setupTargets decides which targets run, and why the others do not.
func (h *harness) setupTargets() {
	h.targets = map[string]*target{
		targetOurs: {Name: targetOurs, Label: "extauthz", GRPC: true, HTTP: true, Bin: h.bins.ours, Ver: h.cache.version, start: startOurs},
		targetPolicy: {Name: targetPolicy, Label: "extauthz (50 rules, CEL)", GRPC: true, Variant: true, Bin: h.bins.ours, Ver: h.cache.version, start: startPolicy,
			Denies: policyProbes},
		targetNop: {Name: targetNop, Label: "(a) do-nothing (grpc-go, net/http)", GRPC: true, HTTP: true,
			AllowsAll: true, Bin: h.bins.nop, Ver: "bench/nop", start: startNop},
		targetFlask: {Name: targetFlask, Label: "(b) guide's Flask app", HTTP: true, Peer: true, start: startFlask},
		targetOPA: {Name: targetOPA, Label: "(c) OPA-Envoy", GRPC: true, Peer: true,
			Bin: h.tools.opa, Ver: h.tools.opaVer, start: startOPA},
		targetOathkeeper: {Name: targetOathkeeper, Label: "(d) Oathkeeper", HTTP: true, Peer: true,
			Bin: h.tools.oathkeeper, Ver: h.tools.oathkeeperVer, start: startOathkeeper},
		targetOAuth2: {Name: targetOAuth2, Label: "(d) oauth2-proxy", HTTP: true, Peer: true,
			Bin: h.tools.oauth2, Ver: h.tools.oauth2Ver, start: startOAuth2Proxy},
	}
	py := h.targets[targetFlask]
	if h.tools.flaskErr == "" {
		py.Bin, py.Ver, h.bins.python = h.tools.python, h.tools.flaskVer, h.tools.python
	} else {
		py.Skip = h.tools.flaskErr
	}
	for _, name := range []string{targetOPA, targetOathkeeper, targetOAuth2} {
		if t := h.targets[name]; t.Bin == "" {
			t.Skip = "not installed in " + filepath.Join(h.cfg.toolsDir, "bin") + " or on PATH (go run ./bench --install builds it)"
		}
	}
	for _, name := range allTargets {
		t := h.targets[name]
		if !slices.Contains(h.cfg.targets, name) {
			t.Skip = "not selected (-targets)"
		}
		h.order = append(h.order, t)
	}
}

// measureAll runs every target in every mode and case it supports, one at
// a time. Per mode: extauthz, its variants (extauthz-policy) and the
// do-nothing server -repeat times, interleaved (the median run by req/s is
// reported, so that one noisy run decides no ratio), then each peer once;
// after gRPC, the half-saturation runs of extauthz and of the do-nothing
// server at the same rate; then the memory run.
func (h *harness) measureAll(ctx context.Context) error {
	for _, mode := range []string{modeGRPC, modeHTTP} {
		var core []*target
		for _, t := range h.order {
			if t.Skip == "" && !t.Peer && ((mode == modeGRPC && t.GRPC) || (mode == modeHTTP && t.HTTP)) {
				core = append(core, t)
			}
		}
		runs := map[string][]result{}
		for range h.cfg.repeat {
			for _, t := range core {
				hitRPS := 0.0
				for _, tc := range []string{caseHit, caseMiss} {
					r, err := h.measureCase(ctx, t, mode, tc, hitRPS)
					if err != nil {
						return fmt.Errorf("%s %s %s: %w", t.Label, mode, tc, err)
					}
					if tc == caseHit {
						hitRPS = r.RPS
					}
					runs[t.Name+"/"+tc] = append(runs[t.Name+"/"+tc], r)
				}
			}
		}
		for _, t := range core {
			for _, tc := range []string{caseHit, caseMiss} {
				h.results = append(h.results, median(runs[t.Name+"/"+tc]))
			}
		}
		for _, t := range h.order {
			if t.Skip != "" || !t.Peer || (mode == modeGRPC && !t.GRPC) || (mode == modeHTTP && !t.HTTP) {
				continue
			}
			hitRPS := 0.0
			for _, tc := range []string{caseHit, caseMiss} {
				r, err := h.measureCase(ctx, t, mode, tc, hitRPS)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if h.cfg.requirePeers {
						return fmt.Errorf("%s %s %s: %w", t.Label, mode, tc, err)
					}
					h.logf("%s %s %s failed, the peer is left out: %v", t.Label, mode, tc, err)
					t.Skip = "failed: " + firstLine(err.Error())
					break
				}
				if tc == caseHit {
					hitRPS = r.RPS
				}
				h.results = append(h.results, r)
			}
		}
		if mode == modeGRPC && h.cfg.halfDuration > 0 {
			for _, tc := range []string{caseHit, caseMiss} {
				sat, ok := h.find(modeGRPC, targetOurs, tc, false)
				if !ok {
					continue
				}
				// The do-nothing server at the same asked rate is the control:
				// its tail is what the transport, the load generator and the
				// shared CPUs add whatever the server does. Each runs under
				// ghz and under the lean open-loop client (bench/pace).
				rate := max(1, int(sat.RPS/2))
				for _, gen := range []string{"", genPace} {
					for _, name := range []string{targetOurs, targetNop} {
						t := h.targets[name]
						if t == nil || t.Skip != "" {
							continue
						}
						r, err := h.measure(ctx, t, modeGRPC, tc, rate, 0, gen)
						if err != nil {
							return fmt.Errorf("%s gRPC %s at %d/s %s: %w", t.Label, tc, rate, cmpOrString(gen, "ghz"), err)
						}
						h.results = append(h.results, r)
					}
				}
			}
		}
	}
	if h.cfg.dpopRequests > 0 {
		if err := h.dpopRuns(ctx); err != nil {
			return fmt.Errorf("DPoP runs: %w", err)
		}
	}
	if h.cfg.replayFill > 0 {
		h.logf("verifying %d DPoP proofs in process for the replay cache's memory", h.cfg.replayFill)
		m, err := measureReplayMemory(h.dpop, h.cfg.replayFill)
		if err != nil {
			return fmt.Errorf("replay cache memory: %w", err)
		}
		for _, pt := range m.Points {
			h.logf("replay cache: %d entries, heap %s, %.0f B per entry", pt.Entries, fmtBytes(pt.Heap), pt.PerEntry)
		}
		h.replay = &m
	}
	if h.cfg.providers > 0 {
		if err := h.providerRuns(ctx); err != nil {
			return fmt.Errorf("many providers: %w", err)
		}
	}
	if h.cfg.fill > 0 {
		if err := h.fillRuns(ctx); err != nil {
			return fmt.Errorf("memory run: %w", err)
		}
	}
	return nil
}

// measureCase is one saturation run. A wrk miss run lasts as long as the
// distinct tokens would at the pace of the hit run just before it (hitRPS);
// a target that turns out slower on misses (a cache) gets a second run, on a
// fresh process, as long as the tokens last at the pace just measured.
func (h *harness) measureCase(ctx context.Context, t *target, mode, tc string, hitRPS float64) (result, error) {
	var wrkDur time.Duration
	if mode == modeHTTP && tc == caseMiss && hitRPS > 0 {
		wrkDur = h.missDuration(hitRPS)
	}
	r, err := h.measure(ctx, t, mode, tc, 0, wrkDur, "")
	if err == nil && mode == modeHTTP && tc == caseMiss {
		if d := h.missDuration(r.RPS); d > r.Elapsed.Round(time.Second) {
			h.logf("%s http miss: %s at %.0f req/s uses a fraction of the tokens; measuring again for %s", t.Label, r.Elapsed.Round(time.Second), r.RPS, d)
			r, err = h.measure(ctx, t, mode, tc, 0, d, "")
		}
	}
	return r, err
}

// median returns the run with the median req/s (the upper one of an even
// count), with every run's req/s in RunsRPS, in the order they ran.
func median(runs []result) result {
	if len(runs) == 1 {
		return runs[0]
	}
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b result) int { return cmp.Compare(a.RPS, b.RPS) })
	m := sorted[len(sorted)/2]
	for _, r := range runs {
		m.RunsRPS = append(m.RunsRPS, r.RPS)
	}
	return m
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// find returns the result of a ghz or wrk run; half selects the
// half-saturation runs.
func (h *harness) find(mode, target, tc string, half bool) (result, bool) {
	return h.findGen(mode, target, tc, half, "")
}

// findGen is find for the runs of one load generator ("" or genPace).
func (h *harness) findGen(mode, target, tc string, half bool, gen string) (result, bool) {
	for _, r := range h.results {
		if r.Mode == mode && r.Target == target && r.Case == tc && (r.RateLimit > 0) == half && r.Generator == gen {
			return r, true
		}
	}
	return result{}, false
}

// missDuration is how long a wrk miss run can last at rps before it runs
// out of distinct tokens (with a margin), in whole seconds between 1s and
// -wrk-duration.
func (h *harness) missDuration(rps float64) time.Duration {
	if rps <= 0 {
		return h.cfg.wrkDuration
	}
	fits := time.Duration(int(float64(h.cfg.tokens)/(rps*1.15))) * time.Second
	return min(h.cfg.wrkDuration, max(time.Second, fits))
}

// measure starts t, probes it, warms it up with the hit token, runs the
// measured load, reads its memory and stops it. rate > 0 paces ghz; wrkDur
// > 0 sets the wrk duration of a miss run (otherwise it is derived from the
// hit run's pace).
func (h *harness) measure(ctx context.Context, t *target, mode, tc string, rate int, wrkDur time.Duration, gen string) (result, error) {
	r := result{Mode: mode, Target: t.Name, Case: tc, Concurrency: h.cfg.concurrency, RateLimit: rate, Generator: gen}
	var err error
	if r.QuietWait, err = h.waitQuiet(ctx); err != nil {
		return r, err
	}
	// The driver's call data is made after the wait: DPoP proofs expire.
	var files driverFiles
	if gen == genDriver {
		if files, err = h.driverData(t, tc); err != nil {
			return r, err
		}
	}
	in, err := t.start(ctx, h, nil)
	if err != nil {
		return r, err
	}
	defer in.stop()
	h.starts[t.Name]++
	if err := h.probeAll(ctx, in, t, mode, gen); err != nil {
		return r, in.main().failure(err)
	}
	if err := h.warmup(ctx, in, mode, files.warm); err != nil {
		return r, in.main().failure(err)
	}
	if gen == genDriver {
		// The RSS growth over the run: the replay cache's entries and the
		// garbage not yet collected.
		before, err := memoryOf(in.main().cmd.Process.Pid)
		if err != nil {
			return r, in.main().failure(err)
		}
		r.MemoryBefore = &before
	}
	before, _ := scrapeChecks(ctx, in.metricsURL)
	meter, err := startCPUMeter(in.main().cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	switch {
	case mode == modeGRPC && gen == genDriver:
		run := paceRun{bin: h.bins.pace, addr: in.grpcAddr, data: files.data, workers: h.cfg.concurrency, calls: h.cfg.dpopRequests, duration: dpopBound}
		r.load, err = run.run(ctx)
	case mode == modeGRPC && gen == genPace:
		run := paceRun{bin: h.bins.pace, addr: in.grpcAddr, data: h.files.grpcHit, rps: rate, duration: h.cfg.halfDuration, maxInflight: 1024}
		if tc == caseMiss {
			run.data = h.files.grpcMiss
			if n := int(float64(rate) * h.cfg.halfDuration.Seconds()); n > h.cfg.tokens {
				r.Note = fmt.Sprintf("%d calls over %d distinct tokens", n, h.cfg.tokens)
			}
		}
		r.Concurrency = 0 // open loop: as many in flight as the latency needs
		r.load, err = run.run(ctx)
	case mode == modeGRPC:
		run := h.ghz(in.grpcAddr, h.files.grpcHit, h.cfg.grpcRequests, rate)
		if tc == caseMiss {
			run.data = h.files.grpcMiss
			if n := min(h.cfg.tokens, h.cfg.grpcRequests); run.total > n {
				r.Note = fmt.Sprintf("%d calls over %d distinct tokens: each token sent up to %d times", run.total, n, (run.total+n-1)/n)
			}
		}
		if rate > 0 {
			run.total = max(h.cfg.concurrency, int(float64(rate)*h.cfg.halfDuration.Seconds()))
			if tc == caseMiss && run.total > min(h.cfg.tokens, h.cfg.grpcRequests) {
				n := min(h.cfg.tokens, h.cfg.grpcRequests)
				r.Note = fmt.Sprintf("%d calls over %d distinct tokens", run.total, n)
			}
		}
		r.load, err = run.run(ctx)
	case mode == modeHTTP:
		run := h.wrk(in.httpURL, h.files.wrkHit, h.cfg.wrkDuration)
		if tc == caseMiss {
			run.tokens = h.files.wrkMiss
			// wrk runs for a duration, not a count: a miss run lasts only as
			// long as the distinct tokens should last.
			switch hit, ok := h.find(modeHTTP, t.Name, caseHit, false); {
			case wrkDur > 0:
				run.duration = wrkDur
			case ok:
				run.duration = h.missDuration(hit.RPS)
			}
		}
		r.load, err = run.run(ctx)
		if err == nil && tc == caseMiss && r.Wraps > 0 {
			r.Note = fmt.Sprintf("%d requests over %d distinct tokens: tokens were sent again (raise -tokens)", r.Requests, h.cfg.tokens)
		}
	}
	if err != nil {
		return r, in.main().failure(err)
	}
	if r.CPU, err = meter.stop(r.genCPU); err != nil {
		return r, in.main().failure(err)
	}
	if r.Memory, err = memoryOf(in.main().cmd.Process.Pid); err != nil {
		return r, in.main().failure(err)
	}
	// Decisions are not visible to ghz (a denial is an OK gRPC status with
	// a denied CheckResponse): count extauthz's denials from its metrics,
	// and probe every target again after the load.
	if after, ok := scrapeChecks(ctx, in.metricsURL); ok && mode == modeGRPC {
		if denied := after.deny - before.deny; denied > 0 {
			r.Errors += int64(denied)
			if r.ErrorKinds == nil {
				r.ErrorKinds = map[string]int64{}
			}
			r.ErrorKinds["denied"] += int64(denied)
		}
	}
	if err := h.probeAll(ctx, in, t, mode, gen); err != nil {
		return r, in.main().failure(fmt.Errorf("after the run: %w", err))
	}
	if gen == genDriver {
		if err := h.checkDriverRun(r); err != nil {
			return r, in.main().failure(err)
		}
	}
	h.logf("%-36s %-4s %-4s %s", t.Label, mode, tc+rateSuffix(rate)+genSuffix(gen), summary(r))
	return r, nil
}

func genSuffix(gen string) string {
	if gen == "" {
		return ""
	}
	return " (" + gen + ")"
}

func rateSuffix(rate int) string {
	if rate == 0 {
		return ""
	}
	return fmt.Sprintf(" @%d/s", rate)
}

func summary(r result) string {
	return fmt.Sprintf("%d req in %s: %.0f req/s, p50 %s, p99 %s, p99.9 %s, errors %d, RSS %s, CPU/req %s, other load %s",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.RPS, fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.P999), r.Errors,
		fmtBytes(r.Memory.RSS), fmtCPUPerReq(r), fmtShare(r.CPU.Other))
}

func (h *harness) ghz(addr, data string, total, rate int) ghzRun {
	return ghzRun{
		bin: h.tools.ghz, protoset: h.files.protoset, data: data, addr: addr,
		out: filepath.Join(h.work, "ghz.json"), total: total, concurrency: h.cfg.concurrency,
		conns: h.cfg.grpcConns, rps: rate,
	}
}

func (h *harness) wrk(url, tokens string, d time.Duration) wrkRun {
	return wrkRun{
		bin: h.tools.wrk, script: h.files.wrkScript, tokens: tokens, url: url,
		threads: h.cfg.wrkThreads, connections: h.cfg.concurrency, duration: d,
	}
}

// probeAll is the probe of measure: the tokens' probe, and for a driver
// run of extauthz the DPoP probe too, whose first answers the report shows.
func (h *harness) probeAll(ctx context.Context, in *instance, t *target, mode, gen string) error {
	if err := in.probe(ctx, mode, h.tokens.hit, tamper(h.tokens.hit), t.AllowsAll, t.Denies); err != nil {
		return err
	}
	if gen != genDriver || t.AllowsAll {
		return nil
	}
	answers, err := h.dpopProbe(ctx, in)
	if h.dpopProbes == nil {
		h.dpopProbes = answers
	}
	return err
}

// warmup loads a started target with the hit token (over gRPC with ghz),
// or with the driver's call data when driverData is set, and fails if any
// request failed: a target that errs under light load is not measured.
func (h *harness) warmup(ctx context.Context, in *instance, mode, driverData string) error {
	var (
		l   load
		err error
	)
	switch {
	case mode == modeGRPC && driverData != "":
		if h.cfg.grpcWarmup == 0 {
			return nil
		}
		run := paceRun{bin: h.bins.pace, addr: in.grpcAddr, data: driverData, workers: h.cfg.concurrency,
			calls: max(h.cfg.grpcWarmup, h.cfg.concurrency), duration: dpopBound}
		l, err = run.run(ctx)
	case mode == modeGRPC:
		if h.cfg.grpcWarmup == 0 {
			return nil
		}
		l, err = h.ghz(in.grpcAddr, h.files.grpcHit, max(h.cfg.grpcWarmup, h.cfg.concurrency), 0).run(ctx)
	case mode == modeHTTP:
		if h.cfg.wrkWarmup < time.Second {
			return nil
		}
		l, err = h.wrk(in.httpURL, h.files.wrkHit, h.cfg.wrkWarmup).run(ctx)
	}
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if l.Errors > 0 {
		return fmt.Errorf("warm-up: %d of %d requests failed: %v", l.Errors, l.Requests, l.ErrorKinds)
	}
	return nil
}

// The memory runs' cases.
const (
	caseFill        = "fill"         // -fill distinct tokens, cache sized to hold them all
	caseFillNoCache = "fill-nocache" // the same load with the cache off: the control
)

// fillRuns sends -fill distinct tokens, once each, to a fresh extauthz and
// reports its memory before and after. When the build has a token cache
// whose size the user did not set, it runs twice: with the cache sized to
// hold every token, and with it off (size 0), so that the difference is
// what the cached entries cost.
func (h *harness) fillRuns(ctx context.Context) error {
	data := filepath.Join(h.work, "fill.bin")
	if err := writeCheckData(data, h.tokens.distinct[:h.cfg.fill]); err != nil {
		return err
	}
	defer os.Remove(data)
	userSized := slices.ContainsFunc(h.cfg.serverArgs, func(a string) bool { return strings.Contains(a, "token-cache-size") })
	type variant struct {
		name  string
		extra []string
		note  string
	}
	var runs []variant
	switch {
	case h.cache.sizeFlag == "":
		runs = []variant{{caseFill, nil, "this build has no token cache: memory after verifying every token once"}}
	case userSized:
		runs = []variant{{caseFill, nil, "cache size as given with -server-arg"}}
	default:
		size := "--" + h.cache.sizeFlag + "=" + strconv.Itoa(h.cfg.fill)
		off := "--" + h.cache.sizeFlag + "=0"
		runs = []variant{{caseFill, []string{size}, "`" + size + "`"}, {caseFillNoCache, []string{off}, "`" + off + "` (cache off: the control)"}}
	}
	for _, v := range runs {
		r, err := h.fillRun(ctx, data, v.name, v.extra)
		if err != nil {
			return err
		}
		r.Note = v.note
		h.results = append(h.results, r)
	}
	return nil
}

func (h *harness) fillRun(ctx context.Context, data, name string, extra []string) (result, error) {
	t := h.targets[targetOurs]
	r := result{Mode: modeGRPC, Target: targetOurs, Case: name, Concurrency: h.cfg.concurrency}
	in, err := t.start(ctx, h, extra)
	if err != nil {
		return r, err
	}
	defer in.stop()
	if err := h.warmup(ctx, in, modeGRPC, ""); err != nil {
		return r, in.main().failure(err)
	}
	pid := in.main().cmd.Process.Pid
	before, err := memoryOf(pid)
	if err != nil {
		return r, err
	}
	r.MemoryBefore = &before
	if r.load, err = h.ghz(in.grpcAddr, data, h.cfg.fill, 0).run(ctx); err != nil {
		return r, in.main().failure(err)
	}
	if r.Memory, err = memoryOf(pid); err != nil {
		return r, err
	}
	if v, ok := scrapeGauge(ctx, in.metricsURL, "go_memstats_heap_inuse_bytes"); ok {
		r.HeapInuse = int64(v)
	}
	if r.Errors > 0 {
		return r, fmt.Errorf("%d of %d calls failed: %v", r.Errors, r.Requests, r.ErrorKinds)
	}
	h.logf("%-36s %s %d tokens %s: RSS %s -> %s (peak %s), heap in use %s", t.Label, name, h.cfg.fill, strings.Join(extra, " "),
		fmtBytes(before.RSS), fmtBytes(r.Memory.RSS), fmtBytes(r.Memory.Peak), fmtBytes(r.HeapInuse))
	return r, nil
}

// scrapeGauge reads one unlabelled sample from a Prometheus text page.
func scrapeGauge(ctx context.Context, url, name string) (float64, bool) {
	if url == "" {
		return 0, false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// checkCounts is extauthz_checks_total summed by result.
type checkCounts struct{ allow, deny float64 }

// scrapeChecks reads extauthz_checks_total from a Prometheus text page; ok
// is false when there is no page or no such metric.
func scrapeChecks(ctx context.Context, url string) (checkCounts, bool) {
	var c checkCounts
	if url == "" {
		return c, false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return c, false
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return c, false
	}
	defer resp.Body.Close()
	found := false
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "extauthz_checks_total{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		found = true
		switch {
		case strings.Contains(line, `result="allow"`):
			c.allow += v
		case strings.Contains(line, `result="deny"`):
			c.deny += v
		}
	}
	return c, found && sc.Err() == nil
}

// waitQuiet waits, up to -quiet-wait, until the machine's busy share over
// one second is below -quiet-below. Nothing of the harness runs then, so
// the busy share is other processes'. It returns how long it waited.
func (h *harness) waitQuiet(ctx context.Context) (time.Duration, error) {
	if h.cfg.quietBelow <= 0 || h.cfg.quietWait <= 0 {
		return 0, nil
	}
	// The clock starts after the first one-second sample: a machine that
	// is quiet at once costs that second and no wait.
	var start time.Time
	for {
		busy, err := busyShare(ctx, time.Second)
		if err != nil {
			return 0, err
		}
		if start.IsZero() {
			start = time.Now()
		}
		waited := time.Since(start)
		if busy < h.cfg.quietBelow {
			return waited.Round(time.Second), nil
		}
		if waited >= h.cfg.quietWait {
			h.logf("the machine is still %.0f%% busy after %s; measuring anyway", 100*busy, waited.Round(time.Second))
			return waited.Round(time.Second), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(4 * time.Second):
		}
	}
}

// loadAverage is the 1, 5 and 15 minute load averages of /proc/loadavg.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writeJSON writes the results for machines (and the harness test).
func (h *harness) writeJSON(path string, rep *report) error {
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
