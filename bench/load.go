package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/extauthz/extauthz/bench/internal/loadstat"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// checkMethod is what ghz calls.
const checkMethod = "envoy.service.auth.v3.Authorization/Check"

// load is the outcome of one load-generator run.
type load struct {
	loadstat.Stats
	// Wraps is how many times a wrk thread started its token list again
	// (miss runs: more requests than distinct tokens).
	Wraps int64 `json:"wraps,omitempty"`
	// genCPU is the load generator's CPU time.
	genCPU time.Duration
}

// processCPUTime is the user+system CPU time of a finished command.
func processCPUTime(cmd *exec.Cmd) time.Duration {
	if cmd.ProcessState == nil {
		return 0
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// writeProtoset writes the ext_authz v3 service and everything it imports
// as a FileDescriptorSet, from the descriptors compiled into this binary
// (go-control-plane), so ghz needs neither .proto files nor server
// reflection, which extauthz does not offer.
func writeProtoset(path string) error {
	seen := map[string]bool{}
	var set descriptorpb.FileDescriptorSet
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	raw, err := proto.Marshal(&set)
	if err != nil {
		return fmt.Errorf("protoset: %w", err)
	}
	return os.WriteFile(path, raw, 0o644)
}

// writeCheckData writes ghz call data: one CheckRequest per token, as
// count-prefixed (varint length) binary messages for --binary-file. ghz
// decodes them all before it starts the clock and sends message i%len to
// call i, so a run of n calls over n distinct tokens sends each token once
// and the load generator spends no time per call parsing JSON (with -D and
// a JSON array, ghz parses each element on its first use, which in a miss
// run is every call).
func writeCheckData(path string, tokens []string) error {
	reqs := make([]*authv3.CheckRequest, len(tokens))
	for i, t := range tokens {
		reqs[i] = checkRequest("Bearer " + t)
	}
	return writeRequests(path, reqs)
}

// writeRequests writes CheckRequests in ghz's --binary-file format, which
// bench/pace reads too.
func writeRequests(path string, reqs []*authv3.CheckRequest) error {
	var b []byte
	for _, r := range reqs {
		msg, err := proto.Marshal(r)
		if err != nil {
			return fmt.Errorf("check data: %w", err)
		}
		b = protowire.AppendVarint(b, uint64(len(msg)))
		b = append(b, msg...)
	}
	return os.WriteFile(path, b, 0o644)
}

// The request every target is loaded with: GET http://api.example.com/protected.
const (
	benchMethod = "GET"
	benchPath   = "/protected"
	benchHost   = "api.example.com"
	// benchURI is the request's URI as a DPoP proof names it (htu): the
	// scheme and host of the CheckRequest's attributes, and the path.
	benchURI = "http://" + benchHost + benchPath
)

// checkRequest is what Envoy sends for the bench request with the given
// Authorization header.
func checkRequest(authorization string) *authv3.CheckRequest {
	return checkRequestFor(benchMethod, benchPath, benchHost, authorization)
}

// checkRequestFor is what Envoy sends for method http://host/path with the
// given Authorization header.
func checkRequestFor(method, path, host, authorization string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: host, Scheme: "http", Protocol: "HTTP/1.1",
			Headers: map[string]string{"authorization": authorization},
		},
	}}}
}

// writeLines writes one token a line, for the wrk script.
func writeLines(path string, tokens []string) error {
	var b bytes.Buffer
	for _, t := range tokens {
		b.WriteString(t)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ghzRun is one ghz invocation.
type ghzRun struct {
	bin, protoset, data, addr, out string
	total, concurrency, conns      int
	rps                            int // 0: as fast as possible
}

func (r ghzRun) args() []string {
	a := []string{
		"--insecure", "--protoset", r.protoset, "--call", checkMethod,
		"--binary-file", r.data, "--disable-template-data", "--disable-template-functions",
		"-c", strconv.Itoa(r.concurrency), "-n", strconv.Itoa(r.total),
		"--connections", strconv.Itoa(r.conns), "--timeout", "10s",
		"--format", "json", "--output", r.out,
	}
	if r.rps > 0 {
		a = append(a, "--rps", strconv.Itoa(r.rps))
	}
	return append(a, r.addr)
}

func (r ghzRun) run(ctx context.Context) (load, error) {
	cmd := exec.CommandContext(ctx, r.bin, r.args()...)
	out := &tail{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return load{}, fmt.Errorf("ghz: %w: %s", err, strings.TrimSpace(out.String()))
	}
	defer os.Remove(r.out)
	f, err := os.Open(r.out)
	if err != nil {
		return load{}, err
	}
	defer f.Close()
	l, err := parseGhz(f)
	l.genCPU = processCPUTime(cmd)
	return l, err
}

// paceRun is one run of bench/pace: open-loop at rps, or closed-loop with
// workers making calls (at most for duration).
type paceRun struct {
	bin, addr, data  string
	rps, maxInflight int
	workers, calls   int
	duration         time.Duration
}

func (r paceRun) args() []string {
	a := []string{"-addr", r.addr, "-data", r.data, "-duration", r.duration.String()}
	if r.workers > 0 {
		return append(a, "-c", strconv.Itoa(r.workers), "-n", strconv.Itoa(r.calls))
	}
	return append(a, "-rps", strconv.Itoa(r.rps), "-max-inflight", strconv.Itoa(r.maxInflight))
}

func (r paceRun) run(ctx context.Context) (load, error) {
	out, cpu, err := runTool(ctx, "pace", r.bin, r.args())
	if err != nil {
		return load{}, err
	}
	var l load
	if err := json.Unmarshal(out, &l.Stats); err != nil {
		return load{}, fmt.Errorf("pace output: %w", err)
	}
	l.genCPU = cpu
	return l, nil
}

// runTool runs a load generator to its end and returns its standard output
// and CPU time; a failure carries the end of what it printed.
func runTool(ctx context.Context, name, bin string, args []string) ([]byte, time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	stderr := &tail{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w: %s%s", name, err, stderr.String(), stdout.String())
	}
	return stdout.Bytes(), processCPUTime(cmd), nil
}

// ghzReport is the part of ghz's JSON report the harness reads.
type ghzReport struct {
	Count   int64         `json:"count"`
	Total   time.Duration `json:"total"`
	RPS     float64       `json:"rps"`
	Details []struct {
		Latency time.Duration `json:"latency"`
		Error   string        `json:"error"`
		Status  string        `json:"status"`
	} `json:"details"`
}

// parseGhz reads ghz's JSON report. The percentiles are computed from the
// per-call details, since ghz's own distribution stops at p99. Every call
// with a status other than OK is an error.
func parseGhz(r io.Reader) (load, error) {
	var rep ghzReport
	if err := json.NewDecoder(bufio.NewReaderSize(r, 1<<20)).Decode(&rep); err != nil {
		return load{}, fmt.Errorf("ghz report: %w", err)
	}
	if len(rep.Details) == 0 {
		return load{}, errors.New("ghz report: no calls")
	}
	lat := make([]time.Duration, 0, len(rep.Details))
	l := load{Stats: loadstat.Stats{Requests: int64(len(rep.Details)), Elapsed: rep.Total, RPS: rep.RPS}}
	for _, d := range rep.Details {
		lat = append(lat, d.Latency)
		if d.Status != "OK" {
			l.Errors++
			if l.ErrorKinds == nil {
				l.ErrorKinds = map[string]int64{}
			}
			l.ErrorKinds[d.Status]++
		}
	}
	slices.Sort(lat)
	l.P50, l.P99, l.P999 = percentile(lat, 50), percentile(lat, 99), percentile(lat, 99.9)
	return l, nil
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps float error from pushing an exact rank up by one
	// (99.9% of 1000 is 999, not 1000).
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// wrkScript sends GET requests with "Authorization: Bearer <token>",
// cycling through the tokens of a file. Each thread takes every n-th token
// (its own slice), so two threads never send the same token in a miss run;
// with fewer tokens than threads (the hit file) each sends them all.
// The requests are formatted once, in init, so that the load generator
// spends its time sending. done() prints one JSON line with the counts
// and the percentiles wrk measured, p99.9 included.
const wrkScript = `
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  local all = {}
  for line in io.lines(file) do
    if line ~= "" then
      all[#all + 1] = line
    end
  end
  if #all == 0 then
    error("no tokens in " .. file)
  end
  reqs = {}
  for i, tok in ipairs(all) do
    -- Fewer tokens than threads (the hit file): every thread sends all.
    if #all < nthreads or (i - 1) % nthreads == id then
      reqs[#reqs + 1] = wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tok})
    end
  end
  all = nil
  next_req = 1
  wraps = 0
end

function request()
  local r = reqs[next_req]
  next_req = next_req + 1
  if next_req > #reqs then
    next_req = 1
    wraps = wraps + 1
  end
  return r
end

function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do
    w = w + (t:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d,"wraps":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), w))
end
`

// wrkRun is one wrk invocation.
type wrkRun struct {
	bin, script, tokens, url string
	threads, connections     int
	duration                 time.Duration
}

func (r wrkRun) args() []string {
	return []string{
		"-t", strconv.Itoa(r.threads), "-c", strconv.Itoa(r.connections),
		"-d", fmt.Sprintf("%ds", max(1, int(r.duration.Round(time.Second)/time.Second))),
		"--timeout", "10s", "-s", r.script, r.url, "--", r.tokens, strconv.Itoa(r.threads),
	}
}

func (r wrkRun) run(ctx context.Context) (load, error) {
	out, cpu, err := runTool(ctx, "wrk", r.bin, r.args())
	if err != nil {
		return load{}, err
	}
	l, err := parseWrk(string(out))
	if err != nil {
		return load{}, fmt.Errorf("%w\n%s", err, out)
	}
	l.genCPU = cpu
	return l, nil
}

// parseWrk reads the BENCHJSON line that the script's done() prints. Every
// socket error, timeout and response with a status of 400 or more is an
// error.
func parseWrk(out string) (load, error) {
	var line string
	for l := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(l, "BENCHJSON "); ok {
			line = rest
		}
	}
	if line == "" {
		return load{}, errors.New("wrk: no BENCHJSON line in the output")
	}
	var v struct {
		Requests   int64 `json:"requests"`
		DurationUS int64 `json:"duration_us"`
		Connect    int64 `json:"connect"`
		Read       int64 `json:"read"`
		Write      int64 `json:"write"`
		Status     int64 `json:"status"`
		Timeout    int64 `json:"timeout"`
		P50        int64 `json:"p50_us"`
		P99        int64 `json:"p99_us"`
		P999       int64 `json:"p999_us"`
		Wraps      int64 `json:"wraps"`
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		return load{}, fmt.Errorf("wrk: BENCHJSON: %w", err)
	}
	if v.DurationUS <= 0 {
		return load{}, errors.New("wrk: BENCHJSON: no duration")
	}
	l := load{Stats: loadstat.Stats{
		Requests: v.Requests,
		Elapsed:  time.Duration(v.DurationUS) * time.Microsecond,
		P50:      time.Duration(v.P50) * time.Microsecond,
		P99:      time.Duration(v.P99) * time.Microsecond,
		P999:     time.Duration(v.P999) * time.Microsecond,
	}, Wraps: v.Wraps}
	l.RPS = float64(v.Requests) / l.Elapsed.Seconds()
	for k, n := range map[string]int64{"connect": v.Connect, "read": v.Read, "write": v.Write, "status>=400": v.Status, "timeout": v.Timeout} {
		if n > 0 {
			if l.ErrorKinds == nil {
				l.ErrorKinds = map[string]int64{}
			}
			l.ErrorKinds[k] = n
			l.Errors += n
		}
	}
	return l, nil
}
