package main

// The DPoP runs: extauthz with a DPoP-bound token and a fresh proof per
// request, the same driver with a bearer token, the do-nothing server with
// the same requests; and the replay cache's memory per proof.

import (
	"context"
	"crypto/rsa"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/dpop"
)

const (
	// caseDPoP: each call carries the DPoP-bound token and a proof not
	// sent before.
	caseDPoP = "dpop"
	// genDriver marks the runs of bench/pace in its closed loop (-c, -n).
	genDriver = "driver"
	// dpopBound is the longest a driver run may last. The server accepts a
	// proof for 60s after its iat (dpop_max_age's default), and the proofs
	// are signed just before the target starts.
	dpopBound = 40 * time.Second
)

// dpopClient is the client of the DPoP runs: an ES256 key and an RS256
// access token bound to it (cnf.jkt), from the bench issuer.
type dpopClient struct {
	signer *dpop.Signer
	token  string
}

func newDPoPClient(key *rsa.PrivateKey, now time.Time) (*dpopClient, error) {
	s, err := dpop.GenerateSigner()
	if err != nil {
		return nil, err
	}
	claims := benchClaims("bench-dpop", fmt.Sprintf("dpop-%d", now.UnixNano()), now, now.Add(tokenLifetime))
	claims["cnf"] = map[string]string{"jkt": s.JKT()}
	tok, err := signRS256(key, keyID, claims)
	if err != nil {
		return nil, err
	}
	return &dpopClient{signer: s, token: tok}, nil
}

// proof is a fresh proof for the bench request with the bound token.
func (c *dpopClient) proof(uri string) (string, error) {
	return c.signer.Proof(benchMethod, uri, c.token, "")
}

// request is the bench request with the bound token under the DPoP scheme
// (scheme "Bearer" when bearer), and proof in the DPoP header unless "".
func (c *dpopClient) request(proof string, bearer bool) *authv3.CheckRequest {
	scheme := "DPoP "
	if bearer {
		scheme = "Bearer "
	}
	r := checkRequest(scheme + c.token)
	if proof != "" {
		r.Attributes.Request.Http.Headers["dpop"] = proof
	}
	return r
}

// driverFiles are the call data of one driver run: the warm-up's and the
// measured run's.
type driverFiles struct{ warm, data string }

// driverData returns the call data of a driver run of tc. A DPoP run of
// extauthz gets proofs signed now (each a new jti, iat now), one per call,
// warm-up included; the do-nothing server gets the same requests as the
// last DPoP run of extauthz, when there was one. Any other case sends the
// hit token as a bearer token.
func (h *harness) driverData(t *target, tc string) (driverFiles, error) {
	if tc != caseDPoP {
		return driverFiles{warm: h.files.grpcHit, data: h.files.grpcHit}, nil
	}
	if t.AllowsAll && h.dpopFiles.data != "" {
		return h.dpopFiles, nil
	}
	warm := 0
	if h.cfg.grpcWarmup > 0 {
		warm = max(h.cfg.grpcWarmup, h.cfg.concurrency)
	}
	start := time.Now()
	proofs, err := onEveryCPU(warm+h.cfg.dpopRequests, func(int) (string, error) { return h.dpop.proof(benchURI) })
	if err != nil {
		return driverFiles{}, fmt.Errorf("sign DPoP proofs: %w", err)
	}
	reqs := make([]*authv3.CheckRequest, len(proofs))
	for i, p := range proofs {
		reqs[i] = h.dpop.request(p, false)
	}
	f := driverFiles{warm: filepath.Join(h.work, "dpop-warm.bin"), data: filepath.Join(h.work, "dpop.bin")}
	if err := writeRequests(f.warm, reqs[:warm]); err != nil {
		return f, err
	}
	if err := writeRequests(f.data, reqs[warm:]); err != nil {
		return f, err
	}
	h.logf("signed %d DPoP proofs (ES256) in %s", len(proofs), time.Since(start).Round(time.Millisecond))
	h.dpopFiles = f
	return f, nil
}

// dpopProbe checks that the running extauthz enforces DPoP: the bound token
// with a fresh proof is allowed, and denied with UNAUTHENTICATED when the
// same proof comes again, without a proof, as a bearer token, and with a
// proof for another URI. It returns what each answer was, for the report.
func (h *harness) dpopProbe(ctx context.Context, in *instance) ([]probeAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	fresh, err := h.dpop.proof(benchURI)
	if err != nil {
		return nil, err
	}
	other, err := h.dpop.proof("http://" + benchHost + "/other")
	if err != nil {
		return nil, err
	}
	c := authv3.NewAuthorizationClient(in.conn)
	var out []probeAnswer
	for _, p := range []struct {
		what  string
		req   *authv3.CheckRequest
		allow bool
	}{
		{what: "a fresh proof", req: h.dpop.request(fresh, false), allow: true},
		{what: "the same proof again (a replay)", req: h.dpop.request(fresh, false)},
		{what: "no DPoP header", req: h.dpop.request("", false)},
		{what: "the bound token as a bearer token", req: h.dpop.request("", true)},
		{what: "a proof for another URI", req: h.dpop.request(other, false)},
	} {
		resp, err := c.Check(ctx, p.req)
		if err != nil {
			return out, fmt.Errorf("DPoP probe, %s: %w", p.what, err)
		}
		got := codes.Code(resp.GetStatus().GetCode())
		want := codes.Unauthenticated
		if p.allow {
			want = codes.OK
		}
		if got != want {
			return out, fmt.Errorf("DPoP probe, %s: status %s, want %s", p.what, got, want)
		}
		out = append(out, probeAnswer{What: p.what, Code: got.String(), Body: resp.GetDeniedResponse().GetBody()})
	}
	return out, nil
}

// probeAnswer is one answer of the DPoP probe.
type probeAnswer struct {
	What string `json:"what"`
	Code string `json:"code"`
	Body string `json:"body,omitempty"`
}

// dpopRuns measures, -repeat times interleaved, extauthz with DPoP, the
// same with the hit token as a bearer token, and the do-nothing server with
// the DPoP requests, all under bench/pace's closed loop; the median run of
// each by req/s is reported.
func (h *harness) dpopRuns(ctx context.Context) error {
	type run struct {
		t  *target
		tc string
	}
	var order []run
	for _, r := range []run{{h.targets[targetOurs], caseDPoP}, {h.targets[targetOurs], caseHit}, {h.targets[targetNop], caseDPoP}} {
		if r.t != nil && r.t.Skip == "" {
			order = append(order, r)
		}
	}
	runs := map[string][]result{}
	for range h.cfg.repeat {
		h.dpopFiles = driverFiles{} // fresh proofs for each round
		for _, o := range order {
			r, err := h.measure(ctx, o.t, modeGRPC, o.tc, 0, 0, genDriver)
			if err != nil {
				return fmt.Errorf("%s %s (driver): %w", o.t.Label, o.tc, err)
			}
			runs[o.t.Name+"/"+o.tc] = append(runs[o.t.Name+"/"+o.tc], r)
		}
	}
	for _, o := range order {
		h.results = append(h.results, median(runs[o.t.Name+"/"+o.tc]))
	}
	return nil
}

// checkDriverRun fails a driver run that did not make every call, or whose
// calls were not all allowed: a DPoP row must measure a server that
// verified every proof and allowed the request.
func (h *harness) checkDriverRun(r result) error {
	if r.Errors > 0 {
		return fmt.Errorf("%d of %d calls were not allowed: %v", r.Errors, r.Requests, r.ErrorKinds)
	}
	if r.Requests < int64(h.cfg.dpopRequests) {
		return fmt.Errorf("%d of %d calls made within %s (the proofs' lifetime bounds the run): lower -dpop-requests", r.Requests, h.cfg.dpopRequests, dpopBound)
	}
	return nil
}

// replayMemory is the Go heap a dpop.ReplayCache holds as it remembers
// more proofs.
type replayMemory struct {
	Size   int           `json:"size"`   // the cache's bound: the server's default
	Window time.Duration `json:"window"` // how long it remembers a proof
	Points []replayPoint `json:"points"`
}

// replayPoint is the cache's heap when it held Entries proofs.
type replayPoint struct {
	Entries  int     `json:"entries"`
	Heap     int64   `json:"heap_bytes"`
	PerEntry float64 `json:"bytes_per_entry"`
}

// measureReplayMemory verifies n distinct proofs, in this process, with a
// dpop.Verifier over a dpop.ReplayCache made as the server makes it with
// its defaults (--dpop-replay-cache-size, dpop_max_age + dpop_max_ahead),
// and reports how much the heap grew from before the first proof when the
// cache held 1/8, 1/4, 1/2, 3/4 and all of them:
// runtime.MemStats.HeapAlloc after collecting garbage, with the proofs
// signed beforehand and live throughout.
func measureReplayMemory(c *dpopClient, n int) (replayMemory, error) {
	m := replayMemory{Size: authz.DefaultDPoPReplayCacheSize, Window: authz.DefaultDPoPMaxAge + authz.DefaultDPoPMaxAhead}
	proofs, err := onEveryCPU(n, func(int) (string, error) { return c.proof(benchURI) })
	if err != nil {
		return m, err
	}
	cache := dpop.NewReplayCache(m.Window, m.Size)
	v, err := dpop.NewVerifier(dpop.Config{Replay: cache})
	if err != nil {
		return m, err
	}
	req := dpop.Request{Method: benchMethod, URI: benchURI, AccessToken: c.token}
	var before, now runtime.MemStats
	settle()
	runtime.ReadMemStats(&before)
	done := 0
	for _, eighths := range []int{1, 2, 4, 6, 8} {
		upto := n * eighths / 8
		if upto <= done {
			continue
		}
		batch := proofs[done:upto]
		if _, err := onEveryCPU(len(batch), func(i int) (string, error) {
			_, err := v.Verify(batch[i], req)
			return "", err
		}); err != nil {
			return m, fmt.Errorf("verify: %w", err)
		}
		done = upto
		settle()
		runtime.ReadMemStats(&now)
		pt := replayPoint{Entries: cache.Len(), Heap: int64(now.HeapAlloc) - int64(before.HeapAlloc)}
		if pt.Entries > 0 {
			pt.PerEntry = float64(pt.Heap) / float64(pt.Entries)
		}
		m.Points = append(m.Points, pt)
	}
	runtime.KeepAlive(proofs)
	runtime.KeepAlive(cache)
	return m, nil
}

// settle collects garbage twice: objects in sync.Pools (the JSON and JWT
// libraries' buffers) survive one collection in the pools' victim caches.
func settle() {
	runtime.GC()
	runtime.GC()
}
