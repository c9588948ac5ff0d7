package jwks_test

// Key sets fetched as HTTP resources: Cache-Control sets the next refresh,
// conditional requests turn an unchanged set into a 304, Retry-After holds
// every fetch, and a jitter moves each scheduled refresh. All in synctest
// bubbles, so that the schedule is checked to the nanosecond.

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/jwks"
)

// respondH is respond with extra header fields.
func respondH(r *http.Request, code int, body []byte, h http.Header) (*http.Response, error) {
	resp, err := respond(r, code, body)
	maps.Copy(resp.Header, h)
	return resp, err
}

// hdr builds a header from name, value pairs; a name may repeat.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// events is an EventObserver that keeps every event (and fails the test if
// the cache calls ObserveFetch instead).
type events struct {
	t      testing.TB
	notify chan jwks.Event // if set, receives each event
	mu     sync.Mutex
	ev     []jwks.Event
}

func (e *events) ObserveFetch(string, error, time.Duration, int) {
	e.t.Error("ObserveFetch called on an EventObserver")
}

func (e *events) ObserveEvent(ev jwks.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
	if e.notify != nil {
		e.notify <- ev
	}
}

func (e *events) all() []jwks.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ev)
}

// results lists the events' documents and results, as "jwks:success".
func (e *events) results() []string {
	var out []string
	for _, ev := range e.all() {
		out = append(out, string(ev.Document)+":"+string(ev.Result))
	}
	return out
}

// TestCacheControlSchedule: the next scheduled refresh is at the key set's
// max-age (less its Age), clamped to [MinRefreshInterval, RefreshInterval];
// no-cache, no-store and a max-age that is invalid or repeated count as 0.
// Without the feature, every case but "none" and "s-maxage" refreshes at
// RefreshInterval (900s).
func TestCacheControlSchedule(t *testing.T) {
	body := rsaSet(t, 0)
	tests := []struct {
		name string
		h    http.Header
		want float64 // seconds to the second fetch
	}{
		{name: "none", h: nil, want: 900},
		{name: "max-age", h: hdr("Cache-Control", "max-age=60"), want: 60},
		{name: "Google's", h: hdr("Cache-Control", "public, max-age=21039, must-revalidate, no-transform"), want: 900},
		{name: "Okta's", h: hdr("Cache-Control", "max-age=3637, must-revalidate"), want: 900},
		{name: "within bounds", h: hdr("Cache-Control", "public, max-age=300, must-revalidate"), want: 300},
		{name: "below the minimum", h: hdr("Cache-Control", "max-age=1"), want: 10},
		{name: "zero", h: hdr("Cache-Control", "max-age=0"), want: 10},
		{name: "above the maximum", h: hdr("Cache-Control", "max-age=86400"), want: 900},
		{name: "huge", h: hdr("Cache-Control", "max-age=99999999999999999999999"), want: 900},
		{name: "no-cache", h: hdr("Cache-Control", "no-cache"), want: 10},
		{name: "no-store", h: hdr("Cache-Control", "no-store"), want: 10},
		{name: "no-cache wins over max-age", h: hdr("Cache-Control", "max-age=120, no-cache"), want: 10},
		{name: "no-cache with field names", h: hdr("Cache-Control", `no-cache="Set-Cookie", max-age=120`), want: 10},
		{name: "quoted max-age", h: hdr("Cache-Control", `max-age="120"`), want: 120},
		{name: "upper case", h: hdr("Cache-Control", "MAX-AGE=120"), want: 120},
		{name: "spaces", h: hdr("Cache-Control", "public ,  max-age = 120 "), want: 120},
		{name: "invalid max-age is stale", h: hdr("Cache-Control", "max-age=abc"), want: 10},
		{name: "negative max-age is stale", h: hdr("Cache-Control", "max-age=-5"), want: 10},
		{name: "empty max-age is stale", h: hdr("Cache-Control", "max-age="), want: 10},
		{name: "repeated max-age is stale", h: hdr("Cache-Control", "max-age=60, max-age=120"), want: 10},
		{name: "s-maxage is for shared caches", h: hdr("Cache-Control", "s-maxage=30"), want: 900},
		{name: "two field lines", h: hdr("Cache-Control", "public", "Cache-Control", "max-age=60"), want: 60},
		{name: "a comma inside a quoted value", h: hdr("Cache-Control", `private="a, max-age=5", max-age=60`), want: 60},
		{name: "Age is taken off", h: hdr("Cache-Control", "max-age=300", "Age", "100"), want: 200},
		{name: "Age past max-age", h: hdr("Cache-Control", "max-age=300", "Age", "1000"), want: 10},
		{name: "invalid Age is ignored", h: hdr("Cache-Control", "max-age=300", "Age", "soon"), want: 300},
		{name: "Expires alone is not read", h: hdr("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"), want: 900},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respondH(r, 200, body, tc.h) })
				c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: 10 * time.Second, RefreshInterval: 15 * time.Minute})
				synctest.Wait()
				if want := time.Now().Add(secs(tc.want)[0]); !c.Status().NextRefresh.Equal(want) {
					t.Errorf("Status.NextRefresh: got %v, want %v", c.Status().NextRefresh, want)
				}
				time.Sleep(secs(tc.want)[0] + time.Second)
				stop()
				if got, want := idp.times(), secs(0, tc.want); !slices.Equal(got, want) {
					t.Errorf("fetch times: got %v, want %v", got, want)
				}
			})
		})
	}
}

// TestConditionalRequests: a refresh sends the validators of the set in
// force (never those of a set it refused), a 304 is a successful refresh of
// that set (same version, same keys, a fresh FetchedAt, an event of its
// own, nil to ObserveFetch), and a 304 to a request without validators is
// an error.
func TestConditionalRequests(t *testing.T) {
	setA, setB := rsaSet(t, 0), rsaSet(t, 0, 1)
	lm := "Wed, 21 Oct 2025 07:28:00 GMT"
	type request struct{ inm, ims string }
	tests := []struct {
		name string
		// answers, in order; the last repeats
		answers []func(r *http.Request) (*http.Response, error)
		// the validators each request must carry
		want []request
		// the event results, in order
		wantResults []string
		wantVersion []uint64 // after each fetch
	}{
		{
			name: "ETag and Last-Modified",
			answers: []func(r *http.Request) (*http.Response, error){
				func(r *http.Request) (*http.Response, error) {
					return respondH(r, 200, setA, hdr("ETag", `"v1"`, "Last-Modified", lm))
				},
				func(r *http.Request) (*http.Response, error) { return respondH(r, 304, nil, nil) },
				func(r *http.Request) (*http.Response, error) { return respondH(r, 200, setB, hdr("ETag", `W/"v2"`)) },
				// A set the cache refuses: its ETag must not be sent back.
				func(r *http.Request) (*http.Response, error) {
					return respondH(r, 200, []byte(`{"keys":[]}`), hdr("ETag", `"v3"`))
				},
				func(r *http.Request) (*http.Response, error) { return respondH(r, 304, nil, nil) },
			},
			want:        []request{{}, {`"v1"`, lm}, {`"v1"`, lm}, {`W/"v2"`, ""}, {`W/"v2"`, ""}},
			wantResults: []string{"jwks:success", "jwks:not_modified", "jwks:success", "jwks:error", "jwks:not_modified"},
			wantVersion: []uint64{1, 1, 2, 2, 2},
		},
		{
			name: "Last-Modified only",
			answers: []func(r *http.Request) (*http.Response, error){
				func(r *http.Request) (*http.Response, error) { return respondH(r, 200, setA, hdr("Last-Modified", lm)) },
				func(r *http.Request) (*http.Response, error) { return respondH(r, 304, nil, nil) },
			},
			want:        []request{{}, {"", lm}, {"", lm}},
			wantResults: []string{"jwks:success", "jwks:not_modified", "jwks:not_modified"},
			wantVersion: []uint64{1, 1, 1},
		},
		{
			name: "an invalid Last-Modified is not sent back",
			answers: []func(r *http.Request) (*http.Response, error){
				func(r *http.Request) (*http.Response, error) {
					return respondH(r, 200, setA, hdr("Last-Modified", "yesterday"))
				},
			},
			want:        []request{{}, {}},
			wantResults: []string{"jwks:success", "jwks:success"},
			wantVersion: []uint64{1, 2},
		},
		{
			name: "304 to an unconditional request",
			answers: []func(r *http.Request) (*http.Response, error){
				func(r *http.Request) (*http.Response, error) { return respondH(r, 304, nil, hdr("ETag", `"v1"`)) },
			},
			want:        []request{{}, {}},
			wantResults: []string{"jwks:error", "jwks:error"},
			wantVersion: []uint64{0, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var got []request
				idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
					mu.Lock()
					got = append(got, request{r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")})
					mu.Unlock()
					return tc.answers[min(n, len(tc.answers)-1)](r)
				})
				ev := &events{t: t}
				c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Minute, RefreshInterval: time.Minute, Observer: ev})
				start := time.Now()
				for i := range tc.want {
					time.Sleep(time.Until(start.Add(time.Duration(i)*time.Minute + time.Second)))
					synctest.Wait()
					if v := c.Version(); v != tc.wantVersion[i] {
						t.Errorf("after fetch %d: Version %d, want %d", i, v, tc.wantVersion[i])
					}
					st := c.Status()
					res := ev.all()[i]
					if res.Result == jwks.ResultNotModified {
						// A 304 is a successful refresh of the set in force.
						if !st.Loaded || st.LastError != nil || !st.LastSuccess.Equal(time.Now().Add(-time.Second)) ||
							!st.FetchedAt.Equal(st.LastSuccess) || st.Source != jwks.SourceFetch || res.Keys != st.Keys || res.Err != nil {
							t.Errorf("after the 304 of fetch %d: Status %+v, event %+v; want loaded, no error, fetched now", i, st, res)
						}
					}
				}
				stop()
				mu.Lock()
				defer mu.Unlock()
				if !slices.Equal(got, tc.want) {
					t.Errorf("validators sent: got %q, want %q", got, tc.want)
				}
				if got := ev.results(); !slices.Equal(got[:len(tc.wantResults)], tc.wantResults) {
					t.Errorf("events: got %v, want %v", got, tc.wantResults)
				}
				if tc.name == "304 to an unconditional request" {
					if se, ok := errors.AsType[*jwks.StatusError](c.Status().LastError); !ok || se.Code != 304 {
						t.Errorf("LastError: got %v, want a *StatusError 304", c.Status().LastError)
					}
				}
			})
		})
	}
}

// TestNotModifiedObserveFetch: an Observer that is not an EventObserver
// hears of a 304 as a success with the keys in force, and the set's version
// does not change (a verified-token cache keyed on it stays warm).
func TestNotModifiedObserveFetch(t *testing.T) {
	body := rsaSet(t, 0, 1)
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			if n == 0 {
				return respondH(r, 200, body, hdr("ETag", `"a"`))
			}
			return respondH(r, 304, nil, nil)
		})
		rec := newRecorder()
		c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, RefreshInterval: time.Minute, Observer: rec})
		time.Sleep(150 * time.Second)
		stop()
		evs := rec.all()
		if len(evs) != 3 {
			t.Fatalf("ObserveFetch calls: got %d, want 3", len(evs))
		}
		for i, ev := range evs {
			if ev.err != nil || ev.keys != 2 {
				t.Errorf("call %d: err %v keys %d, want nil, 2", i, ev.err, ev.keys)
			}
		}
		if v := c.Version(); v != 1 {
			t.Errorf("Version: got %d, want 1 (a 304 changes nothing)", v)
		}
	})
}

// TestNotModifiedCacheControl: a 304's Cache-Control sets the next refresh;
// without one, the stored response's stands (RFC 9111 section 4.3.4).
func TestNotModifiedCacheControl(t *testing.T) {
	body := rsaSet(t, 0)
	tests := []struct {
		name string
		h304 http.Header
		want []float64
	}{
		{name: "304 with its own max-age", h304: hdr("Cache-Control", "max-age=120"), want: []float64{0, 60, 180, 300}},
		{name: "304 without Cache-Control", h304: nil, want: []float64{0, 60, 120, 180}},
		{name: "304 with Age", h304: hdr("Age", "30"), want: []float64{0, 60, 90, 120}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
					if n == 0 {
						return respondH(r, 200, body, hdr("ETag", `"a"`, "Cache-Control", "max-age=60"))
					}
					return respondH(r, 304, nil, tc.h304)
				})
				_, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, RefreshInterval: time.Hour})
				time.Sleep(secs(tc.want[len(tc.want)-1])[0] + time.Second)
				stop()
				if got, want := idp.times(), secs(tc.want...); !slices.Equal(got, want) {
					t.Errorf("fetch times: got %v, want %v", got, want)
				}
			})
		})
	}
}

// TestRetryAfter: a 429 or 503 with Retry-After (seconds or an HTTP-date,
// the latter against the response's Date) delays the next fetch to it,
// capped at RefreshInterval; on another status, or unreadable, it is
// ignored and the backoff (10s) applies.
func TestRetryAfter(t *testing.T) {
	body := rsaSet(t, 0)
	date := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name string
		code int
		h    func() http.Header // built in the bubble, where time.Now is fake
		want float64            // seconds to the second fetch
		ra   float64            // seconds to Status.RetryAfter, 0 for none
	}{
		{name: "503 seconds", code: 503, h: func() http.Header { return hdr("Retry-After", "120") }, want: 120, ra: 120},
		{name: "429 seconds", code: 429, h: func() http.Header { return hdr("Retry-After", "120") }, want: 120, ra: 120},
		{name: "503 date", code: 503, h: func() http.Header { return hdr("Date", date(0), "Retry-After", date(300*time.Second)) }, want: 300, ra: 300},
		{name: "503 date from a server an hour behind", code: 503, h: func() http.Header {
			return hdr("Date", date(-time.Hour), "Retry-After", date(-time.Hour+300*time.Second))
		}, want: 300, ra: 300},
		{name: "503 date without Date", code: 503, h: func() http.Header { return hdr("Retry-After", date(200*time.Second)) }, want: 200, ra: 200},
		{name: "503 date in the past", code: 503, h: func() http.Header { return hdr("Retry-After", date(-time.Hour)) }, want: 10},
		{name: "capped at RefreshInterval", code: 503, h: func() http.Header { return hdr("Retry-After", "86400") }, want: 900, ra: 900},
		{name: "huge", code: 429, h: func() http.Header { return hdr("Retry-After", "999999999999999999999999") }, want: 900, ra: 900},
		{name: "shorter than the backoff", code: 503, h: func() http.Header { return hdr("Retry-After", "5") }, want: 10, ra: 5},
		{name: "zero", code: 503, h: func() http.Header { return hdr("Retry-After", "0") }, want: 10},
		{name: "unreadable", code: 503, h: func() http.Header { return hdr("Retry-After", "soon") }, want: 10},
		{name: "negative", code: 503, h: func() http.Header { return hdr("Retry-After", "-60") }, want: 10},
		{name: "500 is not asked to wait", code: 500, h: func() http.Header { return hdr("Retry-After", "120") }, want: 10},
		{name: "502 is not asked to wait", code: 502, h: func() http.Header { return hdr("Retry-After", "120") }, want: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
					if n == 0 {
						return respondH(r, tc.code, nil, tc.h())
					}
					return respond(r, 200, body)
				})
				c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: 10 * time.Second, RefreshInterval: 15 * time.Minute})
				synctest.Wait()
				st := c.Status()
				if se, ok := errors.AsType[*jwks.StatusError](st.LastError); !ok || se.Code != tc.code {
					t.Errorf("LastError: got %v, want a *StatusError %d", st.LastError, tc.code)
				}
				wantRA := time.Time{}
				if tc.ra > 0 {
					wantRA = time.Now().Add(secs(tc.ra)[0])
				}
				if !st.RetryAfter.Equal(wantRA) {
					t.Errorf("Status.RetryAfter: got %v, want %v", st.RetryAfter, wantRA)
				}
				time.Sleep(secs(tc.want)[0] + time.Second)
				stop()
				if got, want := idp.times(), secs(0, tc.want); !slices.Equal(got, want) {
					t.Errorf("fetch times: got %v, want %v", got, want)
				}
			})
		})
	}
}

// TestRetryAfterHoldsUnknownKID: while a Retry-After holds, an unknown kid
// fails at once and fetches nothing (the rate limit alone would allow a
// fetch every MinRefreshInterval, 1s here); once it has passed, an unknown
// kid fetches again.
func TestRetryAfterHoldsUnknownKID(t *testing.T) {
	before, after := rsaSet(t, 0), rsaSet(t, 0, 1, 2)
	t1, t2 := mint(t, key(1), "k1"), mint(t, key(2), "k2")
	synctest.Test(t, func(t *testing.T) {
		idp := newFakeIdP(func(r *http.Request, n int) (*http.Response, error) {
			switch n {
			case 0:
				return respond(r, 200, before)
			case 1:
				return respondH(r, 429, nil, hdr("Retry-After", "30"))
			}
			return respond(r, 200, after)
		})
		c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: time.Second, RefreshInterval: time.Minute})
		defer stop()
		time.Sleep(61 * time.Second) // the scheduled refresh at 60s got the 429
		synctest.Wait()
		for time.Since(idp.start) < 89*time.Second {
			start := time.Now()
			if err := verify(t.Context(), c, t1); !errors.Is(err, jwks.ErrKeyNotFound) {
				t.Fatalf("verify k1 at %v: got %v, want %v", time.Since(idp.start), err, jwks.ErrKeyNotFound)
			}
			if d := time.Since(start); d != 0 {
				t.Fatalf("verify k1 waited %v, want 0", d)
			}
			time.Sleep(2 * time.Second)
		}
		time.Sleep(2 * time.Second) // past 90s: the scheduled refresh brought k1 and k2
		if err := verify(t.Context(), c, t2); err != nil {
			t.Errorf("verify k2 after the Retry-After: got %v, want nil", err)
		}
		if got, want := idp.times(), secs(0, 60, 90); !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
		// Once it has passed, an unknown kid may fetch again.
		time.Sleep(5 * time.Second)
		_ = verify(t.Context(), c, mint(t, key(3), "k3"))
		if got, want := idp.times(), secs(0, 60, 90, 96); !slices.Equal(got, want) {
			t.Errorf("fetch times: got %v, want %v", got, want)
		}
	})
}

// TestJitter: every scheduled refresh (after a success, after a failure,
// after a Cache-Control max-age) is moved by the jitter, but never sooner
// than MinRefreshInterval nor before a Retry-After, and an unknown kid's
// refresh is not delayed by it.
func TestJitter(t *testing.T) {
	body := rsaSet(t, 0)
	tok := mint(t, key(1), "k1")
	scale := func(f float64) func(time.Duration) time.Duration {
		return func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	}
	tests := []struct {
		name   string
		jitter func(time.Duration) time.Duration
		answer func(r *http.Request, n int) (*http.Response, error)
		until  float64
		want   []float64
	}{
		{
			name: "refresh interval, +10%", jitter: scale(1.1),
			answer: func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) },
			until:  200, want: []float64{0, 66, 132, 198},
		},
		{
			name: "refresh interval, -10%", jitter: scale(0.9),
			answer: func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) },
			until:  200, want: []float64{0, 54, 108, 162},
		},
		{
			name: "max-age, -10%", jitter: scale(0.9),
			answer: func(r *http.Request, _ int) (*http.Response, error) {
				return respondH(r, 200, body, hdr("Cache-Control", "max-age=30"))
			},
			until: 100, want: []float64{0, 27, 54, 81},
		},
		{
			name: "never below MinRefreshInterval", jitter: scale(0.9),
			answer: func(r *http.Request, _ int) (*http.Response, error) {
				return respondH(r, 200, body, hdr("Cache-Control", "no-cache"))
			},
			until: 35, want: []float64{0, 10, 20, 30},
		},
		{
			name: "backoff, +10%", jitter: scale(1.1),
			answer: func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 502, nil) },
			until:  80, want: []float64{0, 11, 33, 77},
		},
		{
			name: "Retry-After, -10% is added, never taken off", jitter: scale(0.9),
			answer: func(r *http.Request, n int) (*http.Response, error) {
				if n == 0 {
					return respondH(r, 503, nil, hdr("Retry-After", "40"))
				}
				return respond(r, 200, body)
			},
			until: 45, want: []float64{0, 44},
		},
		{
			name: "Retry-After, +10% is added", jitter: scale(1.1),
			answer: func(r *http.Request, n int) (*http.Response, error) {
				if n == 0 {
					return respondH(r, 503, nil, hdr("Retry-After", "40"))
				}
				return respond(r, 200, body)
			},
			until: 45, want: []float64{0, 44},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				idp := newFakeIdP(tc.answer)
				_, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: 10 * time.Second, RefreshInterval: time.Minute}, tc.jitter)
				time.Sleep(secs(tc.until)[0])
				stop()
				if got, want := idp.times(), secs(tc.want...); !slices.Equal(got, want) {
					t.Errorf("fetch times: got %v, want %v", got, want)
				}
			})
		})
	}

	t.Run("unknown kid not delayed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) })
			c, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: 10 * time.Second, RefreshInterval: time.Minute}, scale(1.1))
			time.Sleep(20 * time.Second)
			_ = verify(t.Context(), c, tok)
			time.Sleep(10 * time.Second)
			stop()
			if got, want := idp.times(), secs(0, 20); !slices.Equal(got, want) {
				t.Errorf("fetch times: got %v, want %v", got, want)
			}
		})
	})

	t.Run("the default jitter", func(t *testing.T) {
		// A fresh draw for each refresh, within ±10% of RefreshInterval.
		synctest.Test(t, func(t *testing.T) {
			idp := newFakeIdP(func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) })
			_, stop := runInBubble(t, idp, jwks.Config{MinRefreshInterval: 10 * time.Second, RefreshInterval: 100 * time.Second}, jwks.Jitter)
			time.Sleep(50 * 110 * time.Second)
			stop()
			times := idp.times()
			if len(times) < 50 {
				t.Fatalf("fetches: got %d, want at least 50", len(times))
			}
			gaps := map[time.Duration]bool{}
			for i := 1; i < len(times); i++ {
				gap := times[i] - times[i-1]
				if gap < 90*time.Second || gap > 110*time.Second {
					t.Errorf("gap %d: %v, want 100s ± 10%%", i, gap)
				}
				gaps[gap] = true
			}
			if len(gaps) < len(times)/2 {
				t.Errorf("%d distinct gaps among %d: the jitter is not drawn afresh", len(gaps), len(times)-1)
			}
		})
	})
}

// TestJitterBounds checks the default jitter's range and mean.
func TestJitterBounds(t *testing.T) {
	const n = 10000
	d := time.Hour
	var sum float64
	lo, hi := d, time.Duration(0)
	for range n {
		j := jwks.Jitter(d)
		lo, hi = min(lo, j), max(hi, j)
		sum += float64(j)
	}
	if lo < 54*time.Minute || hi > 66*time.Minute {
		t.Errorf("range: [%v, %v], want within [54m, 66m]", lo, hi)
	}
	if lo > 55*time.Minute || hi < 65*time.Minute {
		t.Errorf("range: [%v, %v], want it to reach near both ends", lo, hi)
	}
	if mean := time.Duration(sum / n); mean < 59*time.Minute || mean > 61*time.Minute {
		t.Errorf("mean: %v, want about 1h", mean)
	}
}
