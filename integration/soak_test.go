package integration_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
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
	"google.golang.org/grpc/codes"
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

// soakWant is what the server must answer for a reason: the status Envoy
// or the forward-auth client gets, the gRPC code of the CheckResponse, and
// the deny body's error (README's troubleshooting table).
type soakWant struct {
	status int
	code   codes.Code
	msg    string
}

var soakWants = map[string]soakWant{
	"allowed":            {http.StatusOK, codes.OK, ""},
	"missing_token":      {http.StatusUnauthorized, codes.Unauthenticated, "Missing or invalid Authorization header"},
	"bad_algorithm":      {http.StatusUnauthorized, codes.Unauthenticated, "The specified alg value is not allowed"},
	"bad_signature":      {http.StatusUnauthorized, codes.Unauthenticated, "Signature verification failed"},
	"unknown_kid":        {http.StatusUnauthorized, codes.Unauthenticated, "Unable to find matching public key"},
	"wrong_audience":     {http.StatusUnauthorized, codes.Unauthenticated, "Invalid audience"},
	"expired":            {http.StatusUnauthorized, codes.Unauthenticated, "Token has expired"},
	"insufficient_scope": {http.StatusForbidden, codes.PermissionDenied, "Insufficient scope"},
}

// soakCase is one request a worker can make, with the one right answer.
type soakCase struct {
	kind   string // valid, valid-prev, admin, no-scope, expired, wrong-aud, forged, alg-none, unknown-kid, withdrawn, missing, fresh
	token  string // "" for missing and fresh
	path   string
	reason string // the expected reason (a soakWants key)
	sub    string // the x-jwt-sub an allow must carry
}

// soakKind is a weighted group of cases of one kind.
type soakKind struct {
	weight int
	cases  []soakCase
}

// soakPhase is what the workers send while the key sets the server may
// hold do not change any expectation: every case's answer is the same
// under each of them.
type soakPhase struct {
	name   string
	kinds  []soakKind
	total  int
	signer *soakKey // signs fresh tokens
}

func (p *soakPhase) pick(r *rand.Rand) soakCase {
	n := r.IntN(p.total)
	for _, k := range p.kinds {
		if n < k.weight {
			return k.cases[r.IntN(len(k.cases))]
		}
		n -= k.weight
	}
	panic("unreachable")
}

// keyTokens are the pooled tokens of one key, minted when it was made.
type keyTokens struct {
	key                                                    *soakKey
	valid, admin, noScope, expired, wrongAud, forged, none []soakCase
}

const (
	soakAPIPath   = "/api/items"
	soakAdminPath = "/admin/panel"
)

// mintPool mints k's tokens: valid ones (several, so the verified-token
// cache holds several), admin-scoped ones, ones lacking the admin scope,
// expired ones, ones for another audience, forgeries under k's kid signed
// by forger (a key never published), and alg "none" ones under k's kid.
func mintPool(k, forger *soakKey, now time.Time) (*keyTokens, error) {
	kt := &keyTokens{key: k}
	good := soakClaims{aud: soakAudience, scope: "read", iat: now, exp: now.Add(soakTokenTTL)}
	type batch struct {
		dst    *[]soakCase
		n      int
		signer *soakKey
		claims func(i int) soakClaims
		path   string
		reason string
		kind   string
	}
	for _, b := range []batch{
		{&kt.valid, 6, k, func(i int) soakClaims { c := good; c.sub = fmt.Sprintf("user-%s-%d", k.kid, i); return c }, soakAPIPath, "allowed", "valid"},
		{&kt.admin, 2, k, func(i int) soakClaims {
			c := good
			c.sub, c.scope = fmt.Sprintf("admin-%s-%d", k.kid, i), "read admin"
			return c
		}, soakAdminPath, "allowed", "admin"},
		{&kt.noScope, 2, k, func(i int) soakClaims { c := good; c.sub = fmt.Sprintf("reader-%s-%d", k.kid, i); return c }, soakAdminPath, "insufficient_scope", "no-scope"},
		{&kt.expired, 2, k, func(i int) soakClaims {
			c := good
			c.sub, c.iat, c.exp = fmt.Sprintf("late-%s-%d", k.kid, i), now.Add(-2*time.Hour), now.Add(-time.Hour)
			return c
		}, soakAPIPath, "expired", "expired"},
		{&kt.wrongAud, 2, k, func(i int) soakClaims {
			c := good
			c.sub, c.aud = fmt.Sprintf("other-%s-%d", k.kid, i), "https://another-api.example.test"
			return c
		}, soakAPIPath, "wrong_audience", "wrong-aud"},
		{&kt.forged, 3, forger, func(i int) soakClaims {
			c := good
			c.sub, c.scope = fmt.Sprintf("mallory-%s-%d", k.kid, i), "read admin"
			return c
		}, soakAdminPath, "bad_signature", "forged"},
	} {
		for i := range b.n {
			c := b.claims(i)
			tok, err := b.signer.mint(k.kid, c)
			if err != nil {
				return nil, err
			}
			*b.dst = append(*b.dst, soakCase{kind: b.kind, token: tok, path: b.path, reason: b.reason, sub: c.sub})
		}
	}
	// alg "none": a valid token's header and payload with no signature.
	for _, v := range kt.valid[:2] {
		parts := strings.Split(v.token, ".")
		h, err := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": k.kid})
		if err != nil {
			return nil, err
		}
		tok := base64.RawURLEncoding.EncodeToString(h) + "." + parts[1] + "."
		kt.none = append(kt.none, soakCase{kind: "alg-none", token: tok, path: soakAdminPath, reason: "bad_algorithm"})
	}
	return kt, nil
}

// asWithdrawn re-labels cases of a withdrawn key: unknown kid, whatever
// they were.
func asWithdrawn(cs ...[]soakCase) []soakCase {
	var out []soakCase
	for _, c := range slices.Concat(cs...) {
		c.kind, c.reason, c.sub = "withdrawn", "unknown_kid", ""
		out = append(out, c)
	}
	return out
}

// buildPhase assembles a phase: cur signs (and is listed for the whole
// phase), prev (if any) is listed for the whole phase too (rotation
// overlap), withdrawn (if any) is listed in none of the key sets the server
// may hold during the phase.
func buildPhase(name string, cur, prev, withdrawn *keyTokens, unknown []soakCase) *soakPhase {
	p := &soakPhase{name: name, signer: cur.key}
	add := func(w int, cs ...[]soakCase) {
		all := slices.Concat(cs...)
		if len(all) > 0 && w > 0 {
			p.kinds = append(p.kinds, soakKind{weight: w, cases: all})
			p.total += w
		}
	}
	listed := []*keyTokens{cur}
	if prev != nil {
		listed = append(listed, prev)
		var prevValid []soakCase
		for _, c := range prev.valid {
			c.kind = "valid-prev"
			prevValid = append(prevValid, c)
		}
		add(8, prevValid)
	}
	add(24, cur.valid)
	for _, kt := range listed {
		add(2, kt.admin)
		add(2, kt.noScope)
		add(4, kt.expired)
		add(2, kt.wrongAud)
		add(6, kt.forged)
		add(1, kt.none)
	}
	add(14, unknown)
	if withdrawn != nil {
		add(8, asWithdrawn(withdrawn.valid, withdrawn.admin, withdrawn.forged))
	}
	add(4, []soakCase{{kind: "missing", path: soakAPIPath, reason: "missing_token"}})
	add(2, []soakCase{{kind: "fresh", path: soakAPIPath, reason: "allowed"}})
	return p
}

// soakAnswer is a decision as the client saw it.
type soakAnswer struct {
	allow  bool
	status int
	code   codes.Code // gRPC only
	msg    string
	sub    string
}

// soakStats is what workers counted; each worker has its own, merged at
// the end.
type soakStats struct {
	checks, grpc, http int
	byKind             map[string]int
	byReason           map[string]int // expected reasons of answered checks
	wrong              int
	allowedBad         int // allowed where a denial was due
	transportErrs      int
	duringFault        [numFaults]int // correct allows while each fault was on
	examples           []string
}

func newSoakStats() *soakStats {
	return &soakStats{byKind: map[string]int{}, byReason: map[string]int{}}
}

func (s *soakStats) example(format string, args ...any) {
	if len(s.examples) < 20 {
		s.examples = append(s.examples, fmt.Sprintf(format, args...))
	}
}

func (s *soakStats) merge(o *soakStats) {
	s.checks += o.checks
	s.grpc += o.grpc
	s.http += o.http
	for k, v := range o.byKind {
		s.byKind[k] += v
	}
	for k, v := range o.byReason {
		s.byReason[k] += v
	}
	s.wrong += o.wrong
	s.allowedBad += o.allowedBad
	s.transportErrs += o.transportErrs
	for i, v := range o.duringFault {
		s.duringFault[i] += v
	}
	for _, e := range o.examples {
		s.example("%s", e)
	}
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
		_, failed, err = r.fetches(wctx)
		return err == nil && failed-failed0 >= soakFaultFetches && time.Since(start) >= soakFaultMin, err
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

// check makes one check over gRPC (as Envoy) or HTTP (as nginx's
// auth_request, or as Envoy's HTTP mode).
func (r *soakRun) check(ctx context.Context, viaHTTP, nginxStyle bool, path, token string) (soakAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if viaHTTP {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		target := "http://" + r.httpAddr + path
		if nginxStyle {
			target = "http://" + r.httpAddr + "/_extauthz"
			h.Set("X-Original-URI", path)
			h.Set("X-Original-Method", http.MethodGet)
		}
		resp, err := send(ctx, http.MethodGet, target, h)
		if err != nil {
			return soakAnswer{}, err
		}
		a := soakAnswer{allow: resp.status == http.StatusOK, status: resp.status, sub: resp.header.Get("X-Jwt-Sub")}
		if !a.allow {
			var body struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(resp.body, &body); err != nil {
				return a, fmt.Errorf("deny body %q: %w", snippet(resp.body), err)
			}
			a.msg = body.Error
		}
		return a, nil
	}
	headers := map[string]string{":method": http.MethodGet, ":path": path, ":authority": "api.soak.test"}
	if token != "" {
		headers["authorization"] = "Bearer " + token
	}
	resp, err := r.checker.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: http.MethodGet, Path: path, Host: "api.soak.test", Scheme: "https", Headers: headers,
		}},
	}})
	if err != nil {
		return soakAnswer{}, err
	}
	a := soakAnswer{code: codes.Code(resp.GetStatus().GetCode())}
	if ok := resp.GetOkResponse(); ok != nil && a.code == codes.OK {
		a.allow, a.status = true, http.StatusOK
		for _, o := range ok.GetHeaders() {
			if strings.EqualFold(o.GetHeader().GetKey(), "x-jwt-sub") {
				a.sub = o.GetHeader().GetValue()
			}
		}
		return a, nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return a, fmt.Errorf("CheckResponse with code %v has no denied response", a.code)
	}
	a.status = int(d.GetStatus().GetCode())
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		return a, fmt.Errorf("deny body %q: %w", d.GetBody(), err)
	}
	a.msg = body.Error
	return a, nil
}

// wrongness says what is wrong with answer a to case c ("" if nothing).
func wrongness(c soakCase, a soakAnswer, viaHTTP bool) string {
	w := soakWants[c.reason]
	switch {
	case a.allow != (c.reason == "allowed"):
		return fmt.Sprintf("allow=%v, want %s", a.allow, c.reason)
	case a.allow && a.sub != c.sub:
		return fmt.Sprintf("allowed with x-jwt-sub %q, want %q", a.sub, c.sub)
	case a.status != w.status:
		return fmt.Sprintf("status %d (%q), want %d (%s)", a.status, a.msg, w.status, c.reason)
	case !viaHTTP && a.code != w.code:
		return fmt.Sprintf("gRPC code %v, want %v (%s)", a.code, w.code, c.reason)
	case !a.allow && a.msg != w.msg:
		return fmt.Sprintf("error %q, want %q (%s)", a.msg, w.msg, c.reason)
	}
	return ""
}

// work runs one worker until stop is closed or ctx ends.
func (r *soakRun) work(ctx context.Context, seed uint64, stop <-chan struct{}) *soakStats {
	st := newSoakStats()
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	for {
		select {
		case <-stop:
			return st
		case <-ctx.Done():
			return st
		default:
		}
		r.phaseMu.RLock()
		ph := r.phase
		c := ph.pick(rng)
		fault := jwksFault(r.fault.Load())
		viaHTTP := rng.IntN(4) == 0
		nginxStyle := rng.IntN(2) == 0
		if c.kind == "fresh" {
			now := time.Now()
			c.sub = fmt.Sprintf("fresh-%d-%d", seed, st.checks)
			tok, err := ph.signer.mint(ph.signer.kid, soakClaims{sub: c.sub, aud: soakAudience, scope: "read", iat: now, exp: now.Add(soakFreshTTL)})
			if err != nil {
				r.phaseMu.RUnlock()
				st.transportErrs++
				st.example("mint: %v", err)
				continue
			}
			c.token = tok
		}
		a, err := r.check(ctx, viaHTTP, nginxStyle, c.path, c.token)
		r.phaseMu.RUnlock()
		transport := "grpc"
		if viaHTTP {
			transport = "http"
		}
		if err != nil {
			if ctx.Err() != nil {
				return st
			}
			st.transportErrs++
			st.example("%s %s %s (%s): %v", ph.name, transport, c.kind, c.path, err)
			continue
		}
		st.checks++
		st.byKind[c.kind]++
		st.byReason[c.reason]++
		if viaHTTP {
			st.http++
		} else {
			st.grpc++
		}
		if w := wrongness(c, a, viaHTTP); w != "" {
			st.wrong++
			if a.allow {
				st.allowedBad++
			}
			st.example("%s: %s %s %s (fault %s): %s", ph.name, transport, c.kind, c.path, fault, w)
			continue
		}
		if a.allow && fault != faultNone {
			st.duringFault[fault]++
		}
	}
}

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
// token in the server's logs; goroutines, heap and RSS after the run
// within bounds of their values after the first cycle.
//
// Size: -soak.duration (default 20s, at least three cycles) and
// -soak.workers (default 8); e.g.
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
		t.Fatalf("-soak.duration=%v needs up to %v, but the test deadline is in %v: raise -timeout", duration, budget, time.Until(dl).Round(time.Second))
	}
	ctx, cancel := context.WithTimeout(t.Context(), budget)
	defer cancel()

	gen := startKeyGenerator(ctx, "soak")
	forger, err := newSoakKey("forger")
	if err != nil {
		t.Fatal(err)
	}
	var unknown []soakCase
	for i := range 4 {
		now := time.Now()
		tok, err := forger.mint(fmt.Sprintf("never-published-%d", i),
			soakClaims{sub: "mallory", aud: soakAudience, scope: "read admin", iat: now, exp: now.Add(soakTokenTTL)})
		if err != nil {
			t.Fatal(err)
		}
		unknown = append(unknown, soakCase{kind: "unknown-kid", token: tok, path: soakAdminPath, reason: "unknown_kid"})
	}
	key, err := gen.next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := mintPool(key, forger, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	allTokens := [][]soakCase{unknown}
	remember := func(kt *keyTokens) {
		allTokens = append(allTokens, kt.valid, kt.admin, kt.noScope, kt.expired, kt.wrongAud, kt.forged, kt.none)
	}
	remember(cur)

	r := &soakRun{jwks: newSoakJWKS(t)}
	if _, err := r.jwks.publish(cur.key); err != nil {
		t.Fatal(err)
	}

	// The server under test.
	dir := tempDir(t)
	conf := writeFile(t, filepath.Join(dir, "extauthz.yaml"), soakConfig)
	started := time.Now()
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
	sctx, scancel := context.WithTimeout(ctx, startTimeout)
	defer scancel()
	m, err := r.authz.waitJSON(sctx, "extauthz listening", nil)
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
	if err := poll(sctx, 50*time.Millisecond, func() (bool, error) {
		resp, err := send(sctx, http.MethodGet, r.adminURL+"/readyz", nil)
		return err == nil && resp.status == http.StatusOK, err
	}); err != nil {
		t.Fatalf("extauthz /readyz never answered 200: %v", err)
	}
	pid := r.authz.cmd.Process.Pid

	// One gRPC channel for every worker, as one Envoy worker multiplexes
	// its checks on one connection.
	r.conn, err = grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close() })
	r.checker = authv3.NewAuthorizationClient(r.conn)

	// /readyz must stay 200 throughout.
	var readyChecks, readyBad atomic.Int64
	var readyFirstBad atomic.Value
	readyStop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-readyStop:
				return
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			rz, err := func() (readyz, error) {
				var rz readyz
				resp, err := send(ctx, http.MethodGet, r.adminURL+"/readyz", nil)
				if err != nil {
					return rz, err
				}
				rz.status = resp.status
				if err := json.Unmarshal(resp.body, &rz); err != nil {
					return rz, fmt.Errorf("/readyz body %s: %w", snippet(resp.body), err)
				}
				return rz, nil
			}()
			if ctx.Err() != nil {
				return
			}
			readyChecks.Add(1)
			if err != nil || rz.status != http.StatusOK || !rz.Ready {
				readyBad.Add(1)
				readyFirstBad.CompareAndSwap(nil, fmt.Sprintf("fault %s: %+v, %v", jwksFault(r.fault.Load()), rz, err))
			}
		}
	})

	r.setPhase(buildPhase("steady "+cur.key.kid, cur, nil, nil, unknown))
	stop := make(chan struct{})
	results := make([]*soakStats, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { results[w] = r.work(ctx, uint64(w+1), stop) })
	}
	var stopOnce sync.Once
	stopAll := func() {
		stopOnce.Do(func() {
			close(stop)
			close(readyStop)
		})
		wg.Wait()
		bg.Wait()
	}
	defer stopAll()
	trafficStart := time.Now()

	hold := func() {
		select {
		case <-time.After(soakHold):
		case <-ctx.Done():
		}
	}
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
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// The schedule: each cycle rotates once, with one fault during the
	// overlap and one after the withdrawal.
	faults := []jwksFault{faultRefused, faultHang, fault503, faultNotJSON, faultEmpty}
	faultsDone := map[jwksFault]int{}
	var withdrawn *keyTokens
	var baseline resourceSample
	var baselineAt time.Duration
	cycles := 0
	hold()
	for ; ; cycles++ {
		if cycles == 1 {
			baseline = quiet("after the first cycle")
			baselineAt = time.Since(trafficStart)
			t.Logf("after the first cycle (%v): %v", baselineAt.Round(time.Millisecond), baseline)
		}
		if cycles >= soakMinCycles && time.Since(trafficStart) >= duration {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the run's budget ran out after %d cycles: %v", cycles, context.Cause(ctx))
		}
		key, err := gen.next(ctx)
		must(err)
		next, err := mintPool(key, forger, time.Now())
		must(err)
		remember(next)

		// Publish the next key beside the current one, and sign with it
		// only once the server holds it.
		v, err := r.jwks.publish(cur.key, next.key)
		must(err)
		must(r.awaitApplied(ctx, v))
		r.setPhase(buildPhase(fmt.Sprintf("overlap %s+%s", cur.key.kid, next.key.kid), next, cur, withdrawn, unknown))
		hold()
		f := faults[(2*cycles)%len(faults)]
		must(r.injectFault(ctx, f))
		faultsDone[f]++
		hold()

		// Withdraw the old key: its tokens stop first, and come back as
		// unknown kids once the server holds the set without it.
		r.setPhase(buildPhase("signing "+next.key.kid, next, nil, withdrawn, unknown))
		v, err = r.jwks.publish(next.key)
		must(err)
		must(r.awaitApplied(ctx, v))
		withdrawn, cur = cur, next
		r.setPhase(buildPhase(fmt.Sprintf("signing %s, %s withdrawn", cur.key.kid, withdrawn.key.kid), cur, nil, withdrawn, unknown))
		hold()
		f = faults[(2*cycles+1)%len(faults)]
		must(r.injectFault(ctx, f))
		faultsDone[f]++
		hold()
	}
	ran := time.Since(trafficStart)
	final := quiet("at the end")
	stopAll()

	// Everything the server counted, after the last check.
	fams, err := scrapeMetrics(ctx, r.adminURL)
	must(err)
	elapsed := time.Since(started)
	ok, failed := 0, 0
	if v, found := fams.sum("extauthz_jwks_fetches_total", map[string]string{"result": "success"}); found {
		ok = int(v)
	}
	if v, found := fams.sum("extauthz_jwks_fetches_total", map[string]string{"result": "error"}); found {
		failed = int(v)
	}
	reqs, good := r.jwks.counts()
	served := 0
	for _, n := range reqs {
		served += n
	}

	st := newSoakStats()
	for _, w := range results {
		if w != nil {
			st.merge(w)
		}
	}

	// The figures.
	kinds := slices.Sorted(maps.Keys(st.byKind))
	var perKind []string
	for _, k := range kinds {
		perKind = append(perKind, fmt.Sprintf("%s=%d", k, st.byKind[k]))
	}
	reasons := slices.Sorted(maps.Keys(st.byReason))
	var perReason []string
	for _, k := range reasons {
		perReason = append(perReason, fmt.Sprintf("%s=%d", k, st.byReason[k]))
	}
	// Every fetch start is at least soakMinRefresh after the previous one,
	// whatever triggered it (an unknown kid, the schedule, a retry after a
	// failure): so at most elapsed/soakMinRefresh + 1 fetches. That is
	// tighter than the T/X + scheduled refreshes + retries, which
	// it implies.
	bound := int(elapsed/soakMinRefresh) + 1
	fetches := ok + failed
	t.Logf("traffic %v, %d cycles (%d key rotations), %d workers; checks %d (%.0f/s; gRPC %d, HTTP %d), transport errors %d",
		ran.Round(time.Millisecond), cycles, cycles, workers, st.checks, float64(st.checks)/ran.Seconds(), st.grpc, st.http, st.transportErrs)
	t.Logf("per kind: %s", strings.Join(perKind, " "))
	t.Logf("per expected reason: %s", strings.Join(perReason, " "))
	t.Logf("wrong answers %d, allowed where a denial was due %d", st.wrong, st.allowedBad)
	t.Logf("faults injected: %v; allowed checks while each was on: refused=%d hang=%d 503=%d not-json=%d empty-set=%d",
		faultsDone, st.duringFault[faultRefused], st.duringFault[faultHang], st.duringFault[fault503], st.duringFault[faultNotJSON], st.duringFault[faultEmpty])
	t.Logf("JWKS fetches %d (success %d, error %d; %d reached the provider, %d good answers) in %v, bound %d (min refresh %v); %d unknown-kid and %d withdrawn-key checks",
		fetches, ok, failed, served, good, elapsed.Round(time.Millisecond), bound, soakMinRefresh, st.byKind["unknown-kid"], st.byKind["withdrawn"])
	t.Logf("/readyz polled %d times, %d not ready", readyChecks.Load(), readyBad.Load())
	if lk := fams.byLabel("extauthz_token_cache_lookups_total", "result"); len(lk) > 0 {
		t.Logf("token cache lookups: %v", lk)
	}
	t.Logf("before (%v in): %v", baselineAt.Round(time.Millisecond), baseline)
	t.Logf("after  (%v in): %v", ran.Round(time.Millisecond), final)

	// The assertions.
	if st.wrong > 0 || st.transportErrs > 0 {
		t.Errorf("%d wrong answers (%d allowed where a denial was due) and %d failed checks of %d; first ones:\n  %s",
			st.wrong, st.allowedBad, st.transportErrs, st.checks, strings.Join(st.examples, "\n  "))
	}
	if st.checks == 0 || st.byKind["withdrawn"] == 0 || st.byKind["valid-prev"] == 0 || st.byKind["forged"] == 0 || st.byKind["unknown-kid"] == 0 {
		t.Errorf("the mix was not sent: %s", strings.Join(perKind, " "))
	}
	for _, f := range faults {
		if faultsDone[f] == 0 || st.duringFault[f] == 0 {
			t.Errorf("fault %s: injected %d times, %d allowed checks while on; want both > 0", f, faultsDone[f], st.duringFault[f])
		}
	}
	if n := readyBad.Load(); n > 0 || readyChecks.Load() == 0 {
		first, _ := readyFirstBad.Load().(string)
		t.Errorf("/readyz: %d of %d polls not 200 and ready; first: %s", n, readyChecks.Load(), first)
	}
	if fetches > bound || served > bound {
		t.Errorf("JWKS fetches: server counted %d, provider saw %d, in %v; want at most %d (one per %v)", fetches, served, elapsed, bound, soakMinRefresh)
	}
	if fetches < 2*cycles+1 {
		t.Errorf("JWKS fetches %d: fewer than the %d the rotations alone needed", fetches, 2*cycles+1)
	}
	// The server's own count of each reason must be the test's: every check
	// was answered and counted once.
	if st.transportErrs == 0 {
		got := fams.byLabel("extauthz_checks_total", "reason")
		for reason, n := range got {
			if n == 0 {
				delete(got, reason)
			}
		}
		want := map[string]float64{}
		for k, v := range st.byReason {
			want[k] = float64(v)
		}
		if !maps.Equal(got, want) {
			t.Errorf("extauthz_checks_total by reason = %v, want the test's %v", got, want)
		}
	}
	// Resources: no growth in goroutines beyond a small slack (connections
	// come and go); heap within twice the baseline plus a few MiB (a
	// baseline taken just after a GC and a final one just before the next
	// differ by up to the GC's growth factor); RSS likewise, with room for
	// the race detector's shadow memory.
	const goroutineSlack = 10
	if final.goroutines > baseline.goroutines+goroutineSlack {
		t.Errorf("goroutines grew from %d to %d (slack %d)", baseline.goroutines, final.goroutines, goroutineSlack)
	}
	if limit := 2*baseline.heapInuse + 8<<20; final.heapInuse > limit {
		t.Errorf("heap in use grew from %s to %s (limit %s)", mib(baseline.heapInuse), mib(final.heapInuse), mib(limit))
	}
	if limit := 2*baseline.vmRSS + 64<<20; final.vmRSS > limit {
		t.Errorf("RSS grew from %s to %s (limit %s)", mib(baseline.vmRSS), mib(final.vmRSS), mib(limit))
	}
	// Never a token in the server's output.
	for _, cs := range allTokens {
		for _, c := range cs {
			sig := c.token[strings.LastIndexByte(c.token, '.')+1:]
			if len(sig) < 16 {
				continue // alg none: no signature to look for
			}
			if line, found, _ := r.authz.out.find(func(l string) bool { return strings.Contains(l, sig) }); found {
				t.Errorf("a %s token is in the server's output: %s", c.kind, snippet([]byte(line)))
			}
		}
	}
	t.Logf("SUMMARY soak %v x%d: %d checks, %d wrong, %d forgeries allowed, JWKS fetches %d/%d bound, goroutines %d->%d, heap inuse %s->%s, RSS %s->%s, /readyz %d/%d ok",
		ran.Round(time.Second), workers, st.checks, st.wrong, st.allowedBad, fetches, bound,
		baseline.goroutines, final.goroutines, mib(baseline.heapInuse), mib(final.heapInuse), mib(baseline.vmRSS), mib(final.vmRSS),
		readyChecks.Load()-readyBad.Load(), readyChecks.Load())
}
