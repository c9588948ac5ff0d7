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
			stages: []Stage{StageRoute, StageToken, StageVerify, StageAuthorize, StageRender}},
		{name: "missing token", r: Request{Path: "/protected"}, stages: []Stage{StageRoute, StageToken, StageAuthorize}},
		{name: "scope", r: Request{Path: "/admin", Authorization: bearer(valid)}, stages: []Stage{StageRoute, StageToken, StageVerify, StageAuthorize}},
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
				got = append(got, s.Stage)
				if s.Detail == "" {
					t.Errorf("stage %s without detail", s.Stage)
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
