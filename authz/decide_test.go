package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventLog is an Observer that keeps every Event.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) ObserveCheck(_ context.Context, e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) last(t *testing.T) Event {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == 0 {
		t.Fatal("no event recorded")
	}
	return l.events[len(l.events)-1]
}

// TestDecideRecordsEveryOutcome: every decision reaches the observer once,
// as one Event carrying what metrics, spans and logs need, including what
// the adapters find (ambiguous or incomplete forward-auth requests) and
// panics, which were denied without a metric before.
func TestDecideRecordsEveryOutcome(t *testing.T) {
	obs := &eventLog{}
	w := newWorld(t, func(c *Config) { c.Observer = obs; c.ForwardAuthSource = SourceAuto })
	valid := mint(t, tokenSpec{})

	d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/admin/x?access_token=secret", Authorization: bearer(valid)})
	e := obs.last(t)
	if d.Reason != InsufficientScope || e.Reason != InsufficientScope || e.Provider != "a" || e.Rule != "/admin" ||
		e.Method != "GET" || e.Path != "/admin/x" || e.KID != kidA {
		t.Errorf("scoped denial: event %+v", e)
	}

	d = w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/public/x", Authorization: bearer(mint(t, tokenSpec{kid: "nope"}))})
	if e := obs.last(t); d.Reason != Public || e.Rule != "/public" || e.TokenIgnored != UnknownKID {
		t.Errorf("public with a bad token: event %+v", e)
	}

	// An ambiguous forward-auth request: recorded through the pipeline.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/check", nil)
	req.Header.Set("X-Original-Uri", "/a")
	req.Header.Set("X-Forwarded-Uri", "/b")
	w.srv.ServeHTTP(rec, req)
	if e := obs.last(t); rec.Code != 400 || e.Reason != AmbiguousRequest || e.Path != "/check" || e.Duration < 0 {
		t.Errorf("ambiguous: %d, event %+v", rec.Code, e)
	}

	// A panic in a stage (the key source): an Internal denial, recorded.
	w.keysA.panics.Store(true)
	n := len(obs.events)
	d = w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/protected", Authorization: bearer(mint(t, tokenSpec{claims: with(claimsA(), "sub", "fresh")}))})
	if e := obs.last(t); d.Reason != Internal || e.Reason != Internal || e.Path != "/protected" || len(obs.events) != n+1 {
		t.Errorf("panic: %q, event %+v, %d events (want one more)", d.Reason, e, len(obs.events)-n)
	}
}

// TestDecideTrace: with a Trace, Decide collects one step per stage it ran,
// in pipeline order, and decides exactly as without one.
func TestDecideTrace(t *testing.T) {
	w := newWorld(t, nil)
	valid := mint(t, tokenSpec{})
	tests := []struct {
		name   string
		r      Request
		stages []Stage
	}{
		{name: "allowed", r: Request{Path: "/protected", Authorization: bearer(valid)},
			stages: []Stage{StageRoute, StageToken, StageVerify, StageBind, StageAuthorize, StageRender}},
		{name: "missing token", r: Request{Path: "/protected"}, stages: []Stage{StageRoute, StageToken, StageAuthorize}},
		{name: "scope", r: Request{Path: "/admin", Authorization: bearer(valid)}, stages: []Stage{StageRoute, StageToken, StageVerify, StageBind, StageAuthorize}},
		{name: "public", r: Request{Path: "/public"}, stages: []Stage{StageRoute, StageToken, StageAuthorize, StageRender}},
		{name: "no path", r: Request{}, stages: []Stage{StageRequest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plain := w.srv.Decide(t.Context(), tc.r)
			tr := &Trace{}
			r := tc.r
			r.Trace = tr
			traced := w.srv.Decide(t.Context(), r)
			if traced.Reason != plain.Reason || traced.Status() != plain.Status() {
				t.Errorf("traced decision %q, untraced %q", traced.Reason, plain.Reason)
			}
			var got []Stage
			for _, s := range tr.Steps {
				if len(got) == 0 || got[len(got)-1] != s.Stage {
					got = append(got, s.Stage)
				}
				if s.Detail == "" || s.Check == "" {
					t.Errorf("stage %s without check or detail: %+v", s.Stage, s)
				}
			}
			if !slices.Equal(got, tc.stages) {
				t.Errorf("stages %v, want %v", got, tc.stages)
			}
		})
	}
}

// BenchmarkDecideTrace compares a cache hit with the trace off (as traffic
// is served) and on (as explain will run it).
func BenchmarkDecideTrace(b *testing.B) {
	w := newWorld(b, nil)
	r := Request{Method: "GET", Path: "/protected", Authorization: bearer(mint(b, tokenSpec{}))}
	w.srv.Decide(b.Context(), r)
	b.Run("off", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w.srv.Decide(b.Context(), r)
		}
	})
	b.Run("on", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t := r
			t.Trace = &Trace{}
			w.srv.Decide(b.Context(), t)
		}
	})
}

// TestREADMENamesEveryReason: the README's metrics table lists every reason
// label extauthz_checks_total can carry, and no other.
func TestREADMENamesEveryReason(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for line := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(line, "| `extauthz_checks_total`") {
			row = line
		}
	}
	_, list, ok := strings.Cut(row, "`reason` is one of ")
	if !ok {
		t.Fatalf("README has no extauthz_checks_total row naming its reasons: %q", row)
	}
	var named []string
	for i, span := range strings.Split(list, "`") {
		if i%2 == 1 {
			named = append(named, span)
		}
	}
	var want []string
	for _, r := range Reasons() {
		want = append(want, string(r))
	}
	if !sameSet(named, want) {
		t.Errorf("README names reasons %q, want %q", named, want)
	}
}

// TestDecideTraceShowsTheChecks: a traced decision shows the token decoded
// (never verified by the trace itself), the provider, the signature, every
// time claim and the audience, every reading of the path with its rule, and
// the scopes required and granted.
func TestDecideTraceShowsTheChecks(t *testing.T) {
	w := newWorld(t, nil)
	tok := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
	tr := &Trace{}
	d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/public/%2e%2e/admin", Authorization: bearer(tok), Trace: tr})
	if d.Reason != Expired {
		t.Fatalf("reason %q", d.Reason)
	}
	checks := map[string]Step{}
	for _, s := range tr.Steps {
		checks[string(s.Stage)+"/"+s.Check] = s
	}
	for key, ok := range map[string]bool{"verify/issuer": true, "verify/algorithm": true, "verify/key": true, "verify/signature": true,
		"verify/exp": false, "verify/aud": true, "verify/result": false, "route/reading": true, "authorize/decision": false} {
		s, found := checks[key]
		if !found || s.OK != ok {
			t.Errorf("%s: %+v (found %v), want ok %v", key, s, found, ok)
		}
	}
	if tr.Verified || tr.Claims["sub"] != subject || tr.Header["kid"] != kidA {
		t.Errorf("decoded token: verified %v, claims %v, header %v", tr.Verified, tr.Claims, tr.Header)
	}
	if !strings.Contains(checks["route/merged"].Detail, `scopes ["admin"]`) {
		t.Errorf("merged route %+v does not require admin", checks["route/merged"])
	}
}

// TestShadow: a rule with enforce: false, or the whole server with
// --enforce=false, turns denials into shadow allows: the decision is made
// and recorded (reason, shadow), the request passes, and no claim header is
// set from a token that did not verify.
func TestShadow(t *testing.T) {
	obs := &eventLog{}
	valid := mint(t, tokenSpec{})
	t.Run("per rule", func(t *testing.T) {
		w := newWorld(t, func(c *Config) {
			c.Observer = obs
			c.Rules = []Rule{{Path: "/new", Scopes: []string{"admin"}, Shadow: true}, {Path: "/admin", Scopes: []string{"admin"}}}
		})
		d := w.srv.Decide(t.Context(), Request{Path: "/new/x", Authorization: bearer(valid)})
		e := obs.last(t)
		if !d.Allowed() || d.Status() != 200 || !d.Shadow || d.Reason != InsufficientScope || !e.Shadow || e.Reason != InsufficientScope {
			t.Errorf("shadow rule: %+v, event %+v", d, e)
		}
		if len(d.Headers) == 0 || d.Headers[0].Name != "x-jwt-payload" {
			t.Errorf("a valid token's claim headers are set on a shadow allow: %+v", d.Headers)
		}
		d = w.srv.Decide(t.Context(), Request{Path: "/new", Authorization: bearer(mint(t, tokenSpec{key: testKeys().keyEvil}))})
		if !d.Allowed() || d.Reason != BadSignature || len(d.Headers) != 0 || !slices.Contains(d.Remove, "x-jwt-sub") {
			t.Errorf("shadow rule, forged token: %+v (no claim header may be set, all removed)", d)
		}
		if d := w.srv.Decide(t.Context(), Request{Path: "/admin", Authorization: bearer(valid)}); d.Allowed() {
			t.Errorf("an enforced rule let %q through", d.Reason)
		}
		// A reading that meets an enforced rule keeps the denial.
		if d := w.srv.Decide(t.Context(), Request{Path: "/new/%2e%2e/admin", Authorization: bearer(valid)}); d.Allowed() {
			t.Errorf("a path reaching an enforced rule through dot segments was let through (%q)", d.Reason)
		}
		// A shadowed deny rule lets the request on anonymously: the
		// client's copy of a claim header is removed as on any allow.
		sw := newWorld(t, func(c *Config) { c.Rules = []Rule{{Path: "/internal", Deny: true, Shadow: true}} })
		sd := sw.srv.Decide(t.Context(), Request{Path: "/internal", Authorization: bearer(valid), HeaderNames: []string{"x-jwt-sub", "x_jwt_sub"}})
		if !sd.Allowed() || sd.Reason != PolicyDenied || len(sd.Headers) != 0 || !slices.Contains(sd.Remove, "x-jwt-sub") || !slices.Contains(sd.Remove, "x_jwt_sub") {
			t.Errorf("shadowed deny rule: %+v", sd)
		}
		res := CheckResponse(w.srv.Decide(t.Context(), Request{Path: "/new", Authorization: bearer(valid)}))
		if res.GetOkResponse() == nil {
			t.Errorf("shadow allow over gRPC: %v", res)
		}
	})
	t.Run("server", func(t *testing.T) {
		w := newWorld(t, func(c *Config) { c.Observer = obs; c.Shadow = true })
		for _, r := range []Request{{Path: "/protected"}, {Path: "/admin", Authorization: bearer(valid)}, {Path: "/protected", Authorization: bearer("x.y.z")}} {
			d := w.srv.Decide(t.Context(), r)
			if !d.Allowed() || !d.Shadow || obs.last(t).Reason == Allowed {
				t.Errorf("%s: %+v", r.Path, d)
			}
		}
		w.keysA.panics.Store(true)
		if d := w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(mint(t, tokenSpec{claims: with(claimsA(), "jti", "p")}))}); d.Allowed() {
			t.Errorf("an internal error was shadowed: %+v", d)
		}
	})
}

// TestDenyDetail: --deny-detail names the reason in X-Extauthz-Reason on
// denials, over gRPC and HTTP; off by default.
func TestDenyDetail(t *testing.T) {
	for _, on := range []bool{false, true} {
		w := newWorld(t, func(c *Config) { c.DenyDetail = on; c.ForwardAuthSource = SourceRequest })
		expired := mint(t, tokenSpec{claims: with(claimsA(), "exp", testNow.Add(-time.Hour).Unix())})
		res := CheckResponse(w.srv.Decide(t.Context(), Request{Path: "/protected", Authorization: bearer(expired)}))
		got := ""
		for _, h := range res.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-extauthz-reason" {
				got = h.GetHeader().GetValue()
			}
		}
		r := doHTTP(t, startHTTP(t, w.srv), "GET", "/protected", http.Header{"Authorization": bearer(expired)})
		want := ""
		if on {
			want = "expired"
		}
		if got != want || r.header.Get("X-Extauthz-Reason") != want {
			t.Errorf("deny detail %v: gRPC %q, HTTP %q, want %q", on, got, r.header.Get("X-Extauthz-Reason"), want)
		}
	}
}
