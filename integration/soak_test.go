package integration_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var (
	soakDuration = flag.Duration("soak.duration", 20*time.Second,
		"how long TestSoak drives traffic (at least three rotation cycles run whatever the value); "+
			"for long runs raise -timeout too, e.g. -soak.duration=10m -timeout=30m")
	soakWorkers = flag.Int("soak.workers", 8, "concurrent checkers in TestSoak")
)

// The soak test's provider, and the ext_authz settings it runs with.
const (
	soakIssuer   = "https://soak-idp.example.test"
	soakAudience = "https://soak-api.example.test"

	// soakMinRefresh is --jwks-min-refresh-interval: with unknown kids sent
	// continuously, the server fetches about this often, and never more.
	soakMinRefresh = 500 * time.Millisecond
	// soakRefresh is --jwks-refresh-interval: scheduled refreshes happen
	// too, and must still fit in the bound.
	soakRefresh = 5 * time.Second
	// soakFetchTimeout is --jwks-fetch-timeout; the hanging provider holds a
	// fetch until this gives up.
	soakFetchTimeout = 750 * time.Millisecond
	// soakUnknownKIDWait is --jwks-unknown-kid-wait, the default.
	soakUnknownKIDWait = 100 * time.Millisecond
	soakSkew           = 5 * time.Second

	// soakHold is how long traffic runs in each steady step of a cycle.
	soakHold = 750 * time.Millisecond
	// soakFaultMin is the least time a fault lasts; it also lasts until
	// the server has failed soakFaultFetches fetches under it.
	soakFaultMin     = time.Second
	soakFaultFetches = 2
	// soakStepTimeout bounds every wait of the schedule (a refresh to be
	// applied, a fault to be seen): far more than a few soakMinRefresh.
	soakStepTimeout = 20 * time.Second
	// soakMinCycles is the least number of rotation cycles, each with two
	// faults: three cover all five kinds of fault.
	soakMinCycles = 3
	// soakTokenTTL is the lifetime of the pooled valid tokens: far longer
	// than the few cycles a key's tokens are used in, so no pooled token
	// expires while it is sent as valid.
	soakTokenTTL = 15 * time.Minute
	// soakFreshTTL is the lifetime of tokens minted per request (each one a
	// verified-token cache miss); short, so that their cache entries
	// (kept until exp plus the skew) reach a steady number within the
	// first cycle instead of growing with the run.
	soakFreshTTL = 5 * time.Second
)

// The soak test's rules: /admin needs the admin scope; anything else a
// valid token.
const soakConfig = `rules:
  - path: /admin
    scopes: [admin]
shutdown_grace: 1s
`

// TestSoak is the soak and fault test (issue 4): workers send a steady mix
// of valid, rotated, expired, forged, unknown-kid, wrong-audience, alg-none,
// scope-lacking and missing tokens, over gRPC and HTTP forward auth, to the
// real extauthz binary, while its identity provider rotates keys and fails
// in every way it can (connection refused, a fetch hanging past the
// timeout, 503, a non-JSON body, an empty key set) and recovers.
//
// Every answer is compared with the one right answer for that token at
// that moment. The schedule makes that answer exact: a new key is
// published, and the server is seen to have applied it, before anything
// is signed with it; the old key stays listed through an overlap; old-key
// tokens stop before the key is withdrawn and come back, as unknown kids,
// only once the server has applied the set without it. Faults change no
// answer: the cached keys keep working.
//
// Asserted: no wrong answer and no allowed forgery; /readyz 200 throughout;
// JWKS fetches within the rate limit's bound although unknown kids arrive
// all the time; the server's per-reason counters equal the test's; no
// token in the server's output; goroutines, heap and RSS at the end within
// bounds of their values after the first cycle.
//
// Size: -soak.duration (default 20s, at least three cycles) and
// -soak.workers (default 8); by hand, for example:
//
//	go test ./integration -run Soak -soak.duration=10m -timeout=30m -v
func TestSoak(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	duration, workers := *soakDuration, *soakWorkers
	if duration <= 0 || duration > 24*time.Hour || workers < 1 || workers > 1024 {
		t.Fatalf("-soak.duration=%v -soak.workers=%d: want a duration in (0, 24h] and 1 to 1024 workers", duration, workers)
	}
	// The whole run's budget: the traffic, the schedule's waits, starting
	// and stopping.
	budget := 2*duration + 3*time.Minute
	if dl, ok := t.Deadline(); ok && time.Until(dl) < budget {
		t.Fatalf("-soak.duration=%v needs up to %v, but the test deadline is in %v: raise -timeout",
			duration, budget, time.Until(dl).Round(time.Second))
	}
	ctx, cancel := context.WithTimeout(t.Context(), budget)
	defer cancel()

	sched := newSoakSchedule(ctx, t)
	r := startSoakServer(ctx, t, sched.cur.key)
	pid := r.authz.cmd.Process.Pid
	ready := r.watchReady(ctx)
	r.setPhase(buildPhase("steady "+sched.cur.key.kid, sched.cur, nil, nil, sched.unknown))
	traffic := r.startTraffic(ctx, workers)
	defer traffic.stop()
	defer ready.stop()

	// quiet holds every worker off (the phase lock) while it samples.
	quiet := func(what string) resourceSample {
		t.Helper()
		r.phaseMu.Lock()
		defer r.phaseMu.Unlock()
		s, err := quietSample(ctx, r.adminURL, pid, 500*time.Millisecond, 150*time.Millisecond, 5)
		if err != nil {
			t.Fatalf("sample %s: %v", what, err)
		}
		return s
	}

	fig := soakFigures{workers: workers}
	sched.hold(ctx)
	for ; ; fig.cycles++ {
		if fig.cycles == 1 {
			// The baseline: after one whole cycle, so that every kind of
			// work (rotation, two faults, the caches) has run once.
			fig.beforeAt = time.Since(traffic.start)
			fig.before = quiet("after the first cycle")
			t.Logf("after the first cycle (%v): %v", fig.beforeAt.Round(time.Millisecond), fig.before)
		}
		if fig.cycles >= soakMinCycles && time.Since(traffic.start) >= duration {
			break
		}
		if err := sched.cycle(ctx, r); err != nil {
			t.Fatalf("cycle %d: %v", fig.cycles+1, err)
		}
	}
	fig.ran = time.Since(traffic.start)
	fig.after = quiet("at the end")
	fig.stats = traffic.stop()
	fig.readyPolls, fig.readyBad, fig.readyFirstBad = ready.stop()
	fig.faults = sched.faults

	// What the server counted, after the last check.
	fams, err := scrapeMetrics(ctx, r.adminURL)
	if err != nil {
		t.Fatal(err)
	}
	fig.elapsed = time.Since(r.started)
	fig.fetchOK = metricInt(fams, "extauthz_jwks_fetches_total", map[string]string{"result": "success"})
	fig.fetchFailed = metricInt(fams, "extauthz_jwks_fetches_total", map[string]string{"result": "error"})
	reqs, good := r.jwks.counts()
	fig.good = good
	for _, n := range reqs {
		fig.served += n
	}
	fig.serverReasons = fams.byLabel("extauthz_checks_total", "reason")
	fig.cacheLookups = fams.byLabel("extauthz_token_cache_lookups_total", "result")

	fig.log(t)
	fig.check(t)
	// Never a token in the server's output.
	for _, c := range sched.minted {
		sig := c.token[strings.LastIndexByte(c.token, '.')+1:]
		if len(sig) < 16 {
			continue // alg none: no signature to look for
		}
		if line, found, _ := r.authz.out.find(func(l string) bool { return strings.Contains(l, sig) }); found {
			t.Errorf("a %s token is in the server's output: %s", c.kind, snippet([]byte(line)))
		}
	}
	t.Log(fig.summary())
}

// soakSchedule rotates the provider's keys and injects its faults.
type soakSchedule struct {
	gen            *keyGenerator
	forger         *soakKey   // signs forgeries; never published
	unknown        []soakCase // tokens whose kids are never published
	cur, withdrawn *keyTokens // the signing key's tokens, the last withdrawn key's
	minted         []soakCase // every pooled token, to look for in the server's output
	faults         map[jwksFault]int
	next           int // index in soakFaultOrder of the next fault
}

// soakFaultOrder is the order faults are injected in, two per cycle.
var soakFaultOrder = []jwksFault{faultRefused, faultHang, fault503, faultNotJSON, faultEmpty}

// newSoakSchedule makes the forger, the unknown-kid tokens and the first
// key with its tokens.
func newSoakSchedule(ctx context.Context, t *testing.T) *soakSchedule {
	t.Helper()
	s := &soakSchedule{gen: startKeyGenerator(ctx, "soak"), faults: map[jwksFault]int{}}
	var err error
	if s.forger, err = newSoakKey("forger"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 4 {
		tok, err := s.forger.mint(fmt.Sprintf("never-published-%d", i),
			soakClaims{sub: "mallory", aud: soakAudience, scope: "read admin", iat: now, exp: now.Add(soakTokenTTL)})
		if err != nil {
			t.Fatal(err)
		}
		s.unknown = append(s.unknown, soakCase{kind: "unknown-kid", token: tok, path: soakAdminPath, reason: "unknown_kid"})
	}
	s.minted = append(s.minted, s.unknown...)
	if s.cur, err = s.nextKey(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// nextKey takes the next generated key and mints its tokens.
func (s *soakSchedule) nextKey(ctx context.Context) (*keyTokens, error) {
	key, err := s.gen.next(ctx)
	if err != nil {
		return nil, err
	}
	kt, err := mintPool(key, s.forger, time.Now())
	if err != nil {
		return nil, err
	}
	s.minted = slices.Concat(s.minted, kt.valid, kt.admin, kt.noScope, kt.expired, kt.wrongAud, kt.forged, kt.none)
	return kt, nil
}

func (s *soakSchedule) hold(ctx context.Context) {
	select {
	case <-time.After(soakHold):
	case <-ctx.Done():
	}
}

func (s *soakSchedule) fault(ctx context.Context, r *soakRun) error {
	f := soakFaultOrder[s.next%len(soakFaultOrder)]
	s.next++
	if err := r.injectFault(ctx, f); err != nil {
		return err
	}
	s.faults[f]++
	return nil
}

// cycle is one rotation with two faults: publish the next key beside the
// current one, and sign with it once the server holds it (the old key's
// tokens still valid: the overlap); a fault; stop the old key's tokens,
// withdraw it, and send them again, as unknown kids, once the server holds
// the set without it; another fault.
func (s *soakSchedule) cycle(ctx context.Context, r *soakRun) error {
	next, err := s.nextKey(ctx)
	if err != nil {
		return err
	}
	v, err := r.jwks.publish(s.cur.key, next.key)
	if err != nil {
		return err
	}
	if err := r.awaitApplied(ctx, v); err != nil {
		return err
	}
	r.setPhase(buildPhase(fmt.Sprintf("overlap %s+%s", s.cur.key.kid, next.key.kid), next, s.cur, s.withdrawn, s.unknown))
	s.hold(ctx)
	if err := s.fault(ctx, r); err != nil {
		return err
	}
	s.hold(ctx)

	r.setPhase(buildPhase("signing "+next.key.kid, next, nil, s.withdrawn, s.unknown))
	if v, err = r.jwks.publish(next.key); err != nil {
		return err
	}
	if err := r.awaitApplied(ctx, v); err != nil {
		return err
	}
	s.withdrawn, s.cur = s.cur, next
	r.setPhase(buildPhase(fmt.Sprintf("signing %s, %s withdrawn", s.cur.key.kid, s.withdrawn.key.kid), s.cur, nil, s.withdrawn, s.unknown))
	s.hold(ctx)
	if err := s.fault(ctx, r); err != nil {
		return err
	}
	s.hold(ctx)
	return ctx.Err()
}

// startSoakServer starts the soak's provider, publishing first, and the
// extauthz binary against it, and waits until the server is ready.
func startSoakServer(ctx context.Context, t *testing.T, first *soakKey) *soakRun {
	t.Helper()
	r := &soakRun{jwks: newSoakJWKS(t)}
	if _, err := r.jwks.publish(first); err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t)
	conf := writeFile(t, filepath.Join(dir, "extauthz.yaml"), soakConfig)
	r.started = time.Now()
	r.authz = startProc(t, "extauthz", dir, childEnv(), bins.extauthz,
		"--config", conf,
		"--issuer", soakIssuer, "--audience", soakAudience, "--jwks-url", r.jwks.url(),
		"--jwks-refresh-interval", soakRefresh.String(),
		"--jwks-min-refresh-interval", soakMinRefresh.String(),
		"--jwks-fetch-timeout", soakFetchTimeout.String(),
		"--jwks-unknown-kid-wait", soakUnknownKIDWait.String(),
		"--clock-skew", soakSkew.String(),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--log-format", "json")
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	m, err := r.authz.waitJSON(ctx, "extauthz listening", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		dst *string
		key string
	}{{&r.grpcAddr, "grpc"}, {&r.httpAddr, "http"}, {&r.adminURL, "admin"}} {
		if *a.dst, err = loopbackAddr(m[a.key]); err != nil {
			t.Fatalf("extauthz %s: %v", a.key, err)
		}
	}
	r.adminURL = "http://" + r.adminURL
	if err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		resp, err := send(ctx, http.MethodGet, r.adminURL+"/readyz", nil)
		return err == nil && resp.status == http.StatusOK, err
	}); err != nil {
		t.Fatalf("extauthz /readyz never answered 200: %v", err)
	}
	// One gRPC channel for every worker, as one Envoy worker multiplexes
	// its checks on one connection.
	r.conn, err = grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close() })
	r.checker = authv3.NewAuthorizationClient(r.conn)
	return r
}

// readyWatch polls /readyz, which must answer 200 and ready throughout.
type readyWatch struct {
	stopc    chan struct{}
	done     chan struct{}
	polls    atomic.Int64
	bad      atomic.Int64
	firstBad atomic.Value // string
	stopOnce sync.Once
}

func (r *soakRun) watchReady(ctx context.Context) *readyWatch {
	w := &readyWatch{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stopc:
				return
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			var rz readyz
			resp, err := send(ctx, http.MethodGet, r.adminURL+"/readyz", nil)
			if err == nil {
				rz.status = resp.status
				if err = json.Unmarshal(resp.body, &rz); err != nil {
					err = fmt.Errorf("/readyz body %s: %w", snippet(resp.body), err)
				}
			}
			if ctx.Err() != nil {
				return
			}
			w.polls.Add(1)
			if err != nil || rz.status != http.StatusOK || !rz.Ready {
				w.bad.Add(1)
				w.firstBad.CompareAndSwap(nil, fmt.Sprintf("fault %s: %+v, %v", jwksFault(r.fault.Load()), rz, err))
			}
		}
	}()
	return w
}

// stop ends the polling and returns the number of polls, of bad answers,
// and the first bad one.
func (w *readyWatch) stop() (polls, bad int64, firstBad string) {
	w.stopOnce.Do(func() { close(w.stopc) })
	<-w.done
	first, _ := w.firstBad.Load().(string)
	return w.polls.Load(), w.bad.Load(), first
}

// soakTraffic is the running workers.
type soakTraffic struct {
	start    time.Time
	stopc    chan struct{}
	wg       sync.WaitGroup
	results  []*soakStats
	stopOnce sync.Once
}

func (r *soakRun) startTraffic(ctx context.Context, workers int) *soakTraffic {
	tr := &soakTraffic{start: time.Now(), stopc: make(chan struct{}), results: make([]*soakStats, workers)}
	for w := range workers {
		tr.wg.Go(func() { tr.results[w] = r.work(ctx, uint64(w+1), tr.stopc) })
	}
	return tr
}

// stop stops the workers, waits for their last checks, and returns their
// merged counts.
func (tr *soakTraffic) stop() *soakStats {
	tr.stopOnce.Do(func() { close(tr.stopc) })
	tr.wg.Wait()
	st := newSoakStats()
	for _, w := range tr.results {
		st.merge(w)
	}
	return st
}

func metricInt(fams metricFamilies, name string, labels map[string]string) int {
	v, _ := fams.sum(name, labels)
	return int(v)
}

// soakFigures is what a soak run measured.
type soakFigures struct {
	workers, cycles int
	ran, elapsed    time.Duration // traffic; since the server started
	stats           *soakStats
	faults          map[jwksFault]int

	fetchOK, fetchFailed int // as the server counted them
	served, good         int // requests that reached the provider; good answers among them

	readyPolls, readyBad int64
	readyFirstBad        string

	serverReasons map[string]float64 // extauthz_checks_total by reason
	cacheLookups  map[string]float64 // extauthz_token_cache_lookups_total by result

	beforeAt      time.Duration
	before, after resourceSample
}

// fetchBound is the most JWKS fetches the run may cause. Every fetch
// starts at least soakMinRefresh after the previous one, whatever
// triggered it (an unknown kid, the schedule, a retry after a failure), so
// at most elapsed/soakMinRefresh + 1. That is tighter than the T/X
// + scheduled refreshes + retries, and implies it.
func (f *soakFigures) fetchBound() int { return int(f.elapsed/soakMinRefresh) + 1 }

func (f *soakFigures) fetches() int { return f.fetchOK + f.fetchFailed }

func counts[V int | float64](m map[string]V) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(out, " ")
}

func (f *soakFigures) log(t *testing.T) {
	t.Helper()
	st := f.stats
	t.Logf("traffic %v, %d cycles (one key rotation and two faults each), %d workers; checks %d (%.0f/s; gRPC %d, HTTP %d), failed checks %d",
		f.ran.Round(time.Millisecond), f.cycles, f.workers, st.checks, float64(st.checks)/f.ran.Seconds(), st.grpc, st.http, st.transportErrs)
	t.Logf("per kind: %s", counts(st.byKind))
	t.Logf("per expected reason: %s", counts(st.byReason))
	t.Logf("wrong answers %d, allowed where a denial was due %d", st.wrong, st.allowedBad)
	t.Logf("faults injected: %v; allowed checks while each was on: refused=%d hang=%d 503=%d not-json=%d empty-set=%d",
		f.faults, st.duringFault[faultRefused], st.duringFault[faultHang], st.duringFault[fault503], st.duringFault[faultNotJSON], st.duringFault[faultEmpty])
	t.Logf("JWKS fetches %d (success %d, error %d; %d reached the provider, %d good answers) in %v: bound %d (one per %v); meanwhile %d unknown-kid and %d withdrawn-key checks",
		f.fetches(), f.fetchOK, f.fetchFailed, f.served, f.good, f.elapsed.Round(time.Millisecond), f.fetchBound(), soakMinRefresh,
		st.byKind["unknown-kid"], st.byKind["withdrawn"])
	t.Logf("/readyz polled %d times, %d not ready", f.readyPolls, f.readyBad)
	if len(f.cacheLookups) > 0 {
		t.Logf("token cache lookups: %s", counts(f.cacheLookups))
	}
	t.Logf("before (%v in): %v", f.beforeAt.Round(time.Millisecond), f.before)
	t.Logf("after  (%v in): %v", f.ran.Round(time.Millisecond), f.after)
}

// Resource bounds. Goroutines: a small slack (connections come and go).
// Heap in use: twice the baseline plus a few MiB, since a baseline taken
// just after a GC and a final one just before the next differ by up to the
// GC's growth factor. RSS: one and a half times plus 32 MiB, with room for
// the race detector's shadow memory.
const (
	soakGoroutineSlack = 10
	soakHeapSlack      = 8 << 20
	soakRSSSlack       = 32 << 20
)

func (f *soakFigures) check(t *testing.T) {
	t.Helper()
	st := f.stats
	if st.wrong > 0 || st.transportErrs > 0 {
		t.Errorf("%d wrong answers (%d allowed where a denial was due) and %d failed checks of %d; first ones:\n  %s",
			st.wrong, st.allowedBad, st.transportErrs, st.checks, strings.Join(st.examples, "\n  "))
	}
	for _, k := range []string{"valid", "valid-prev", "admin", "no-scope", "expired", "wrong-aud", "forged", "alg-none", "unknown-kid", "withdrawn", "missing", "fresh"} {
		if st.byKind[k] == 0 {
			t.Errorf("no %s token was sent: %s", k, counts(st.byKind))
		}
	}
	for _, fault := range soakFaultOrder {
		if f.faults[fault] == 0 || st.duringFault[fault] == 0 {
			t.Errorf("fault %s: injected %d times, %d allowed checks while on; want both > 0", fault, f.faults[fault], st.duringFault[fault])
		}
	}
	if f.readyBad > 0 || f.readyPolls == 0 {
		t.Errorf("/readyz: %d of %d polls not 200 and ready; first: %s", f.readyBad, f.readyPolls, f.readyFirstBad)
	}
	if bound := f.fetchBound(); f.fetches() > bound || f.served > bound {
		t.Errorf("JWKS fetches: the server counted %d, the provider saw %d, in %v; want at most %d (one per %v)",
			f.fetches(), f.served, f.elapsed, bound, soakMinRefresh)
	}
	if need := 4*f.cycles + 1; f.fetchOK < need {
		t.Errorf("successful JWKS fetches %d: fewer than the %d the schedule waited for", f.fetchOK, need)
	}
	// The server's count of each reason must be the test's: every check
	// was answered, and counted, once.
	if st.transportErrs == 0 {
		got := maps.Clone(f.serverReasons)
		maps.DeleteFunc(got, func(_ string, n float64) bool { return n == 0 })
		want := map[string]float64{}
		for k, v := range st.byReason {
			want[k] = float64(v)
		}
		if !maps.Equal(got, want) {
			t.Errorf("extauthz_checks_total by reason = %s, want the test's %s", counts(got), counts(want))
		}
	}
	b, a := f.before, f.after
	if a.goroutines > b.goroutines+soakGoroutineSlack {
		t.Errorf("goroutines grew from %d to %d (slack %d)", b.goroutines, a.goroutines, soakGoroutineSlack)
	}
	if limit := 2*b.heapInuse + soakHeapSlack; a.heapInuse > limit {
		t.Errorf("heap in use grew from %s to %s (limit %s)", mib(b.heapInuse), mib(a.heapInuse), mib(limit))
	}
	if limit := b.vmRSS*3/2 + soakRSSSlack; a.vmRSS > limit {
		t.Errorf("RSS grew from %s to %s (limit %s)", mib(b.vmRSS), mib(a.vmRSS), mib(limit))
	}
}

// summary is the run in one line.
func (f *soakFigures) summary() string {
	return fmt.Sprintf("SUMMARY soak %v x%d, %d cycles: %d checks, %d wrong, %d forgeries allowed, %d failed; JWKS fetches %d (bound %d); /readyz %d/%d ok; goroutines %d->%d, heap inuse %s->%s, RSS %s->%s",
		f.ran.Round(time.Second), f.workers, f.cycles, f.stats.checks, f.stats.wrong, f.stats.allowedBad, f.stats.transportErrs,
		f.fetches(), f.fetchBound(), f.readyPolls-f.readyBad, f.readyPolls,
		f.before.goroutines, f.after.goroutines, mib(f.before.heapInuse), mib(f.after.heapInuse), mib(f.before.vmRSS), mib(f.after.vmRSS))
}

// soakRun is one soak: the server under test, its provider, the traffic.
type soakRun struct {
	authz    *proc
	grpcAddr string
	httpAddr string
	adminURL string
	jwks     *soakJWKS
	conn     *grpc.ClientConn
	checker  authv3.AuthorizationClient
	phaseMu  sync.RWMutex // workers hold it shared for each check; setPhase and quiet moments exclusively
	phase    *soakPhase
	fault    atomic.Int32 // the jwksFault in force
	started  time.Time    // when the server process was started
}

// setPhase switches the workers to p. When it returns no check of an
// earlier phase is in flight.
func (r *soakRun) setPhase(p *soakPhase) {
	r.phaseMu.Lock()
	r.phase = p
	r.phaseMu.Unlock()
}

// fetches returns the server's JWKS fetch counts from its metrics.
func (r *soakRun) fetches(ctx context.Context) (ok, failed int, err error) {
	fams, err := scrapeMetrics(ctx, r.adminURL)
	if err != nil {
		return 0, 0, err
	}
	s, _ := fams.sum("extauthz_jwks_fetches_total", map[string]string{"result": "success"})
	e, _ := fams.sum("extauthz_jwks_fetches_total", map[string]string{"result": "error"})
	return int(s), int(e), nil
}

// awaitGood waits until the server has applied the good answer with
// ordinal n or a later one. Good answers are the only fetches that
// succeed, and the server applies them in order and counts each after
// applying it, so a success count of n means the set of answer n (or of a
// later one, if an earlier good answer failed in transit) is in force.
func (r *soakRun) awaitGood(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, soakStepTimeout)
	defer cancel()
	return poll(ctx, 25*time.Millisecond, func() (bool, error) {
		ok, _, err := r.fetches(ctx)
		return err == nil && ok >= n, err
	})
}

// awaitApplied waits until the server holds published version v.
func (r *soakRun) awaitApplied(ctx context.Context, v int) error {
	ctx, cancel := context.WithTimeout(ctx, soakStepTimeout)
	defer cancel()
	var n int
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		var ok bool
		n, ok = r.jwks.firstGoodWith(v)
		return ok, nil
	}); err != nil {
		return fmt.Errorf("key set version %d was never fetched: %w", v, err)
	}
	if err := r.awaitGood(ctx, n); err != nil {
		return fmt.Errorf("key set version %d (good answer %d) was never applied: %w", v, n, err)
	}
	return nil
}

// injectFault turns fault f on for at least soakFaultMin and until the
// server has failed soakFaultFetches fetches under it, then recovers and
// waits until a fetch after the recovery succeeded.
func (r *soakRun) injectFault(ctx context.Context, f jwksFault) error {
	_, failed0, err := r.fetches(ctx)
	if err != nil {
		return err
	}
	req0, _ := r.jwks.counts()
	if err := r.jwks.setFault(f); err != nil {
		return err
	}
	r.fault.Store(int32(f))
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, soakStepTimeout)
	defer cancel()
	var failed int
	err = poll(wctx, 25*time.Millisecond, func() (bool, error) {
		var ferr error
		_, failed, ferr = r.fetches(wctx)
		return ferr == nil && failed-failed0 >= soakFaultFetches && time.Since(start) >= soakFaultMin, ferr
	})
	held := time.Since(start)
	r.fault.Store(int32(faultNone))
	if rerr := r.jwks.setFault(faultNone); rerr != nil {
		return rerr
	}
	if err != nil {
		return fmt.Errorf("fault %s: the server failed %d fetches in %v, want %d: %w", f, failed-failed0, held.Round(time.Millisecond), soakFaultFetches, err)
	}
	if req1, _ := r.jwks.counts(); f != faultRefused && req1[f] == req0[f] {
		return fmt.Errorf("fault %s: no fetch reached the provider while it was on", f)
	}
	_, good := r.jwks.counts()
	if err := r.awaitGood(ctx, good+1); err != nil {
		return fmt.Errorf("after fault %s: no successful fetch: %w", f, err)
	}
	return nil
}
