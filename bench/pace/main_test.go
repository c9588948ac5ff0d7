package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// answer is a test ext_authz server: OK for paths under /ok, a denial
// otherwise, after an optional delay.
type answer struct {
	authv3.UnimplementedAuthorizationServer
	delay time.Duration
}

func (a answer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	time.Sleep(a.delay)
	if strings.HasPrefix(req.GetAttributes().GetRequest().GetHttp().GetPath(), "/ok") {
		return &authv3.CheckResponse{Status: &statuspb.Status{}}, nil
	}
	return &authv3.CheckResponse{Status: &statuspb.Status{Code: int32(codes.PermissionDenied)}}, nil
}

func serve(t *testing.T, a authv3.AuthorizationServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, a)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// writeData writes requests for the paths in the harness's call-data format.
func writeData(t *testing.T, paths ...string) string {
	t.Helper()
	var b []byte
	for _, p := range paths {
		msg, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: p},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		b = protowire.AppendVarint(b, uint64(len(msg)))
		b = append(b, msg...)
	}
	path := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runPace(t *testing.T, args ...string) report {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("run(%q) = %v (%s)", args, err, errOut.String())
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	return r
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		delay      time.Duration
		paths      []string
		wantErrors int64
		minP50     time.Duration
	}{
		{name: "allowed", paths: []string{"/ok/1", "/ok/2"}},
		{name: "denials are errors", paths: []string{"/ok", "/no"}, wantErrors: 100},
		{name: "server time is measured", delay: 5 * time.Millisecond, paths: []string{"/ok"}, minP50: 5 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, answer{delay: tc.delay})
			r := runPace(t, "-addr", addr, "-data", writeData(t, tc.paths...), "-rps", "1000", "-duration", "200ms")
			if r.Requests != 200 {
				t.Errorf("requests = %d, want 200 (1000/s for 200ms)", r.Requests)
			}
			if r.Errors != tc.wantErrors {
				t.Errorf("errors = %d (%v), want %d", r.Errors, r.ErrorKinds, tc.wantErrors)
			}
			if tc.wantErrors > 0 && r.ErrorKinds["denied"] != tc.wantErrors {
				t.Errorf("error kinds = %v, want %d denied", r.ErrorKinds, tc.wantErrors)
			}
			if !(tc.minP50 <= r.P50 && r.P50 <= r.P99 && r.P99 <= r.P999) || r.SendP50 > r.P50 || r.SendP99 > r.P99 {
				t.Errorf("percentiles p50 %v p99 %v p99.9 %v (from send: %v %v), want ordered, p50 >= %v, from-send <= from-schedule",
					r.P50, r.P99, r.P999, r.SendP50, r.SendP99, tc.minP50)
			}
			if r.Elapsed < 199*time.Millisecond || r.RPS <= 0 {
				t.Errorf("elapsed %v, rps %v; want at least the schedule's 200ms", r.Elapsed, r.RPS)
			}
		})
	}
}

// TestScheduledLatency pins the open-loop measure: when the server serves
// one call at a time, calls queue behind each other, and the latency from
// the scheduled time includes the queueing that the latency from the send
// does not.
func TestScheduledLatency(t *testing.T) {
	addr := serve(t, answer{delay: 4 * time.Millisecond})
	r := runPace(t, "-addr", addr, "-data", writeData(t, "/ok"), "-rps", "1000", "-duration", "100ms", "-max-inflight", "1")
	if r.Requests != 100 {
		t.Fatalf("requests = %d, want 100", r.Requests)
	}
	// 100 calls of 4 ms one at a time take 400 ms: the last is scheduled at
	// 99 ms and ends near 400 ms.
	if r.P99 < 200*time.Millisecond {
		t.Errorf("p99 from the schedule = %v, want the queueing (>= 200ms)", r.P99)
	}
	if r.SendP99 > 100*time.Millisecond {
		t.Errorf("p99 from the send = %v, want about the 4ms service time", r.SendP99)
	}
	if r.Late == 0 {
		t.Error("no call counted late; the schedule slipped by hundreds of milliseconds")
	}
}

// TestClosedLoop: with -c, pace makes exactly -n calls, never more than -c
// at once, counts denials as errors, and stops at -duration.
func TestClosedLoop(t *testing.T) {
	tests := []struct {
		name         string
		delay        time.Duration
		paths        []string
		args         []string
		wantRequests int64
		wantErrors   int64
		minElapsed   time.Duration
	}{
		{name: "allowed", paths: []string{"/ok/1", "/ok/2"}, args: []string{"-c", "4", "-n", "300"}, wantRequests: 300},
		{name: "denials are errors", paths: []string{"/ok", "/no"}, args: []string{"-c", "3", "-n", "100"}, wantRequests: 100, wantErrors: 50},
		// 2 workers × 2ms a call: 50 calls take 50ms at least.
		{name: "concurrency bounds the pace", delay: 2 * time.Millisecond, paths: []string{"/ok"}, args: []string{"-c", "2", "-n", "50"},
			wantRequests: 50, minElapsed: 50 * time.Millisecond},
		// 10ms a call on one worker: about 10 calls fit in 100ms, not 1000.
		{name: "the time bound", delay: 10 * time.Millisecond, paths: []string{"/ok"}, args: []string{"-c", "1", "-n", "1000", "-duration", "100ms"},
			wantRequests: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, answer{delay: tc.delay})
			r := runPace(t, append([]string{"-addr", addr, "-data", writeData(t, tc.paths...)}, tc.args...)...)
			switch {
			case tc.wantRequests < 0 && (r.Requests < 1 || r.Requests > 20):
				t.Errorf("requests = %d, want about 10 (cut short by -duration)", r.Requests)
			case tc.wantRequests >= 0 && r.Requests != tc.wantRequests:
				t.Errorf("requests = %d, want %d", r.Requests, tc.wantRequests)
			}
			if r.Errors != tc.wantErrors || r.ErrorKinds["denied"] != tc.wantErrors {
				t.Errorf("errors = %d (%v), want %d denied", r.Errors, r.ErrorKinds, tc.wantErrors)
			}
			if !(tc.delay <= r.P50 && r.P50 <= r.P99 && r.P99 <= r.P999) {
				t.Errorf("percentiles p50 %v p99 %v p99.9 %v, want ordered and at least %v", r.P50, r.P99, r.P999, tc.delay)
			}
			if r.Elapsed < tc.minElapsed || r.RPS <= 0 {
				t.Errorf("elapsed %v, rps %v; want at least %v", r.Elapsed, r.RPS, tc.minElapsed)
			}
		})
	}
}

// counter is a test ext_authz server that allows everything and counts the
// calls by path.
type counter struct {
	authv3.UnimplementedAuthorizationServer
	mu    sync.Mutex
	paths map[string]int
}

func (c *counter) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths[req.GetAttributes().GetRequest().GetHttp().GetPath()]++
	return &authv3.CheckResponse{Status: &statuspb.Status{}}, nil
}

// TestClosedLoopSendsEachOnce: with as many calls as requests, the closed
// loop sends each request exactly once, the connection opened without a
// call (a DPoP proof is single-use).
func TestClosedLoopSendsEachOnce(t *testing.T) {
	c := &counter{paths: map[string]int{}}
	addr := serve(t, c)
	paths := make([]string, 100)
	for i := range paths {
		paths[i] = fmt.Sprintf("/ok/%d", i)
	}
	r := runPace(t, "-addr", addr, "-data", writeData(t, paths...), "-c", "8", "-n", "100")
	if r.Requests != 100 || r.Errors != 0 {
		t.Fatalf("requests %d, errors %d; want 100 and 0", r.Requests, r.Errors)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range paths {
		if got := c.paths[p]; got != 1 {
			t.Errorf("%s sent %d times, want 1", p, got)
		}
	}
	if len(c.paths) != len(paths) {
		t.Errorf("%d paths seen, want %d", len(c.paths), len(paths))
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.bin")
	if err := os.WriteFile(corrupt, []byte{0x7f, 1, 2}, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.bin")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := writeData(t, "/ok")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no address", args: []string{"-data", good}, want: "required"},
		{name: "zero rate", args: []string{"-addr", "127.0.0.1:1", "-data", good, "-rps", "0"}, want: "-rps"},
		{name: "too many calls", args: []string{"-addr", "127.0.0.1:1", "-data", good, "-rps", "100000", "-duration", "1000s"}, want: "-rps"},
		{name: "closed loop without a count", args: []string{"-addr", "127.0.0.1:1", "-data", good, "-c", "4"}, want: "-n"},
		{name: "closed loop, too many workers", args: []string{"-addr", "127.0.0.1:1", "-data", good, "-c", "100000", "-n", "10"}, want: "-c"},
		{name: "in-flight bound", args: []string{"-addr", "127.0.0.1:1", "-data", good, "-max-inflight", "100000"}, want: "-max-inflight"},
		{name: "bad length prefix", args: []string{"-addr", "127.0.0.1:1", "-data", corrupt}, want: "bad length prefix"},
		{name: "no requests", args: []string{"-addr", "127.0.0.1:1", "-data", empty}, want: "no requests"},
		{name: "missing file", args: []string{"-addr", "127.0.0.1:1", "-data", filepath.Join(dir, "nope")}, want: "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	s := make([]time.Duration, 1000)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 500}, {99, 990}, {99.9, 999}, {100, 1000}, {0, 1}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}
