// Command pace is the benchmark's own gRPC load client: it sends Envoy
// ext_authz v3 Check calls over one gRPC connection and reports the
// throughput and latency percentiles as JSON. By default it runs open-loop,
// at a fixed rate; with -c it runs closed-loop, -c workers making -n calls.
//
// ghz measures throughput well, but on a small machine its own cost per call
// (dynamic messages, per-call bookkeeping) shares the CPUs with the server
// and shows in the tail. pace is the lean client for the latency target: the
// requests are decoded once before the clock starts, each call is sent at its
// scheduled time from its own goroutine, and its latency is measured from
// that scheduled time, not from when it was actually sent. A client or
// server stall therefore counts against every call it delays (no
// coordinated omission, as wrk2 measures). The latency from the actual send
// is reported beside it.
//
// The closed loop is for the DPoP runs: each request there carries its own
// single-use proof, which ghz cannot sign per call, so the harness signs them
// all before the run and pace sends message i as call i. Each worker sends
// its next call as soon as its previous one is answered, and the run stops
// after -n calls or at -duration, whichever comes first (the calls made are
// reported, so a run cut short shows).
//
// A call fails when the RPC fails or when its CheckResponse is not OK (a
// denial). It is started by the harness (go run ./bench); it is not a
// product.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/extauthz/extauthz/bench/internal/loadstat"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "pace:", err)
		os.Exit(1)
	}
}

// report is what pace prints: the harness reads it as one load run.
type report = loadstat.Stats

// Bounds: a run is at most maxCalls calls, and at most maxInflight calls
// wait at once (past that the schedule slips, and the slip is measured).
const (
	maxCalls    = 10_000_000
	maxInflight = 4096
	maxDataSize = 1 << 30
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "gRPC address of the ext_authz server (host:port)")
	data := fs.String("data", "", "CheckRequests as count-prefixed binary messages (ghz --binary-file format); call i sends message i mod len")
	rate := fs.Int("rps", 1000, "calls per second")
	dur := fs.Duration("duration", 10*time.Second, "open loop: how long to send; closed loop: the longest the run may last")
	inflight := fs.Int("max-inflight", 1024, "most calls waiting at once")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of one call")
	workers := fs.Int("c", 0, "closed loop: this many workers, each sending its next call when the previous one is answered (0: open loop at -rps)")
	calls := fs.Int64("n", 0, "closed loop: calls to make; the run stops earlier at -duration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	n := int64(float64(*rate) * dur.Seconds())
	switch {
	case *addr == "" || *data == "":
		return errors.New("-addr and -data are required")
	case *workers < 0 || *workers > maxInflight:
		return fmt.Errorf("-c must be from 0 to %d", maxInflight)
	case *workers > 0 && (*calls < 1 || *calls > maxCalls || *dur <= 0):
		return fmt.Errorf("with -c, -n must be from 1 to %d and -duration positive", maxCalls)
	case *workers == 0 && (*rate <= 0 || n <= 0 || n > maxCalls):
		return fmt.Errorf("-rps × -duration must be from 1 to %d calls", maxCalls)
	case *inflight <= 0 || *inflight > maxInflight:
		return fmt.Errorf("-max-inflight must be from 1 to %d", maxInflight)
	}
	reqs, err := readRequests(*data)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	var r report
	if *workers > 0 {
		// The connection is opened before the clock starts, without a
		// call: each request is sent once (a DPoP proof is single-use).
		if err := connect(ctx, conn, *timeout); err != nil {
			return err
		}
		r = drive(ctx, client, reqs, *calls, *workers, *dur, *timeout)
	} else {
		// One call to open the connection before the clock starts.
		if _, err := client.Check(ctx, reqs[0], grpc.WaitForReady(true)); err != nil {
			return fmt.Errorf("first call: %w", err)
		}
		r = send(ctx, client, reqs, n, time.Second/time.Duration(*rate), *inflight, *timeout)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(r)
}

// send makes n calls, call i scheduled at start + i×interval, and measures
// them.
func send(ctx context.Context, client authv3.AuthorizationClient, reqs []*authv3.CheckRequest, n int64, interval time.Duration, inflight int, timeout time.Duration) report {
	sched := make([]time.Duration, n) // latency from the scheduled time
	sent := make([]time.Duration, n)  // latency from the actual send
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		kinds     = map[string]int64{}
		errs      atomic.Int64
		late      int64
		slots     = make(chan struct{}, inflight)
		start     = time.Now()
		completed int64
	)
	for i := int64(0); i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		slots <- struct{}{}
		if time.Since(at) > time.Millisecond {
			late++
		}
		wg.Add(1)
		go func(i int64, at time.Time) {
			defer wg.Done()
			defer func() { <-slots }()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			t0 := time.Now()
			resp, err := client.Check(cctx, reqs[i%int64(len(reqs))])
			end := time.Now()
			sched[i], sent[i] = end.Sub(at), end.Sub(t0)
			if kind := failure(resp, err); kind != "" {
				errs.Add(1)
				mu.Lock()
				kinds[kind]++
				mu.Unlock()
			}
		}(i, at)
		completed = i + 1
	}
	wg.Wait()
	elapsed := time.Since(start)
	sched, sent = sched[:completed], sent[:completed]
	slices.Sort(sched)
	slices.Sort(sent)
	r := report{
		Requests: completed, Elapsed: elapsed, RPS: float64(completed) / elapsed.Seconds(),
		P50: percentile(sched, 50), P99: percentile(sched, 99), P999: percentile(sched, 99.9),
		SendP50: percentile(sent, 50), SendP99: percentile(sent, 99), SendP999: percentile(sent, 99.9),
		Errors: errs.Load(), Late: late,
	}
	if len(kinds) > 0 {
		r.ErrorKinds = kinds
	}
	return r
}

// connect opens conn and waits until it is ready, at most timeout.
func connect(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn.Connect()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			return fmt.Errorf("connect: %w (state %s)", ctx.Err(), st)
		}
	}
	return nil
}

// drive makes n calls from workers goroutines, each sending its next call
// (call i sends reqs[i mod len]) when its previous one is answered, until
// the n calls are made or bound has passed.
func drive(ctx context.Context, client authv3.AuthorizationClient, reqs []*authv3.CheckRequest, n int64, workers int, bound, timeout time.Duration) report {
	lat := make([]time.Duration, n)
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		mu    sync.Mutex
		kinds = map[string]int64{}
		errs  int64
		start = time.Now()
		stop  = start.Add(bound)
	)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(stop) {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				t0 := time.Now()
				resp, err := client.Check(cctx, reqs[i%int64(len(reqs))])
				lat[i] = time.Since(t0)
				cancel()
				if kind := failure(resp, err); kind != "" {
					mu.Lock()
					errs++
					kinds[kind]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Every index taken below n is a call made, and a worker stopped by the
	// bound took none: the calls made are the first min(next, n).
	made := min(next.Load(), n)
	lat = lat[:made]
	slices.Sort(lat)
	r := report{
		Requests: made, Elapsed: elapsed, RPS: float64(made) / elapsed.Seconds(),
		P50: percentile(lat, 50), P99: percentile(lat, 99), P999: percentile(lat, 99.9),
		Errors: errs,
	}
	if len(kinds) > 0 {
		r.ErrorKinds = kinds
	}
	return r
}

// failure is the kind of a failed call: its gRPC status when the RPC
// failed, "denied" when the CheckResponse is not OK, "" for an allowed call.
func failure(resp *authv3.CheckResponse, err error) string {
	switch {
	case err != nil:
		return status.Code(err).String()
	case codes.Code(resp.GetStatus().GetCode()) != codes.OK:
		return "denied"
	}
	return ""
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// readRequests decodes the call data: varint-length-prefixed CheckRequests.
func readRequests(path string) ([]*authv3.CheckRequest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDataSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDataSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxDataSize)
	}
	var reqs []*authv3.CheckRequest
	for len(b) > 0 {
		size, k := protowire.ConsumeVarint(b)
		if k < 0 || size > uint64(len(b)-k) {
			return nil, fmt.Errorf("%s: message %d: bad length prefix", path, len(reqs))
		}
		req := &authv3.CheckRequest{}
		if err := proto.Unmarshal(b[k:k+int(size)], req); err != nil {
			return nil, fmt.Errorf("%s: message %d: %w", path, len(reqs), err)
		}
		reqs = append(reqs, req)
		b = b[k+int(size):]
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("%s: no requests", path)
	}
	return reqs, nil
}
