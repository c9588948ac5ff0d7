package jwks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/jwks"
)

// discoveryDoc is a discovery document of issuer naming jwksURI, with the
// members a provider typically lists besides.
func discoveryDoc(t testing.TB, issuer, jwksURI string) []byte {
	t.Helper()
	base := strings.TrimSuffix(issuer, "/")
	return mustJSON(t, map[string]any{
		"issuer":                                issuer,
		"authorization_endpoint":                base + "/authorize",
		"token_endpoint":                        base + "/token",
		"jwks_uri":                              jwksURI,
		"response_types_supported":              []string{"code", "id_token", "token id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"mtls_endpoint_aliases":                 map[string]any{"token_endpoint": base + "/mtls/token"},
	})
}

func TestParseDiscovery(t *testing.T) {
	big := `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","x":"` + strings.Repeat("a", jwks.MaxDiscoveryBytes) + `"}`
	tests := []struct {
		name    string
		doc     string
		want    jwks.Discovery
		wantErr bool
	}{
		{name: "minimal", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}`,
			want: jwks.Discovery{Issuer: "https://idp.test", JWKSURI: "https://idp.test/jwks"}},
		{name: "other members of any type", doc: `{"a":1,"issuer":"https://idp.test/","b":[{"c":null}],"jwks_uri":"https://keys.test/k?appid=1","d":{"e":true}}`,
			want: jwks.Discovery{Issuer: "https://idp.test/", JWKSURI: "https://keys.test/k?appid=1"}},
		{name: "escaped strings", doc: `{"issuer":"https:\/\/idp.test\u002f","jwks_uri":"https://idp.test/jwks"}`,
			want: jwks.Discovery{Issuer: "https://idp.test/", JWKSURI: "https://idp.test/jwks"}},
		{name: "an issuer the cache will refuse is still parsed", doc: `{"issuer":"https://login.microsoftonline.com/{tenantid}/v2.0","jwks_uri":"https://login.microsoftonline.com/common/discovery/v2.0/keys"}`,
			want: jwks.Discovery{Issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", JWKSURI: "https://login.microsoftonline.com/common/discovery/v2.0/keys"}},
		{name: "whitespace around", doc: " \n{\"issuer\":\"https://idp.test\",\"jwks_uri\":\"http://127.0.0.1/jwks\"}\n",
			want: jwks.Discovery{Issuer: "https://idp.test", JWKSURI: "http://127.0.0.1/jwks"}},

		{name: "empty", doc: ``, wantErr: true},
		{name: "null", doc: `null`, wantErr: true},
		{name: "array", doc: `[{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}]`, wantErr: true},
		{name: "truncated", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"`, wantErr: true},
		{name: "data after", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}{}`, wantErr: true},
		{name: "too large", doc: big, wantErr: true},
		{name: "issuer twice", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","issuer":"https://evil.test"}`, wantErr: true},
		{name: "jwks_uri twice", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","jwks_uri":"https://evil.test/jwks"}`, wantErr: true},
		{name: "another member twice", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","scopes":[],"scopes":[]}`, wantErr: true},
		{name: "a nested member twice", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","m":{"a":1,"a":2}}`, wantErr: true},
		{name: "Issuer", doc: `{"Issuer":"https://evil.test","issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}`, wantErr: true},
		{name: "JWKS_URI", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","JWKS_URI":"https://evil.test/jwks"}`, wantErr: true},
		{name: "long s folds onto issuer", doc: `{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","iſſuer":"https://evil.test"}`, wantErr: true},
		{name: "invalid UTF-8", doc: "{\"issuer\":\"https://idp.test\",\"jwks_uri\":\"https://idp.test/jwks\",\"x\":\"\xff\"}", wantErr: true},
		{name: "no issuer", doc: `{"jwks_uri":"https://idp.test/jwks"}`, wantErr: true},
		{name: "empty issuer", doc: `{"issuer":"","jwks_uri":"https://idp.test/jwks"}`, wantErr: true},
		{name: "null issuer", doc: `{"issuer":null,"jwks_uri":"https://idp.test/jwks"}`, wantErr: true},
		{name: "issuer a number", doc: `{"issuer":1,"jwks_uri":"https://idp.test/jwks"}`, wantErr: true},
		{name: "no jwks_uri", doc: `{"issuer":"https://idp.test"}`, wantErr: true},
		{name: "jwks_uri an array", doc: `{"issuer":"https://idp.test","jwks_uri":["https://idp.test/jwks"]}`, wantErr: true},
		{name: "relative jwks_uri", doc: `{"issuer":"https://idp.test","jwks_uri":"/jwks"}`, wantErr: true},
		{name: "jwks_uri without host", doc: `{"issuer":"https://idp.test","jwks_uri":"https:///jwks"}`, wantErr: true},
		{name: "file jwks_uri", doc: `{"issuer":"https://idp.test","jwks_uri":"file:///etc/passwd"}`, wantErr: true},
		{name: "jwks_uri with user info", doc: `{"issuer":"https://idp.test","jwks_uri":"https://u:p@idp.test/jwks"}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jwks.ParseDiscovery([]byte(tc.doc))
			if tc.wantErr {
				if !errors.Is(err, jwks.ErrDiscovery) {
					t.Errorf("ParseDiscovery: got %+v, %v; want an error wrapping %v", got, err, jwks.ErrDiscovery)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseDiscovery: got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestDiscoveryLocation(t *testing.T) {
	tests := []struct{ issuer, override, want string }{
		{"https://idp.test", "", "https://idp.test/.well-known/openid-configuration"},
		{"https://idp.test/", "", "https://idp.test/.well-known/openid-configuration"},
		{"https://idp.test/realms/demo", "", "https://idp.test/realms/demo/.well-known/openid-configuration"},
		{"https://idp.test/realms/demo/", "", "https://idp.test/realms/demo/.well-known/openid-configuration"},
		{"https://login.microsoftonline.com/abc/v2.0", "", "https://login.microsoftonline.com/abc/v2.0/.well-known/openid-configuration"},
		{"https://idp.test", "https://other.test/config.json", "https://other.test/config.json"},
	}
	for _, tc := range tests {
		if got := jwks.DiscoveryLocation(tc.issuer, tc.override); got != tc.want {
			t.Errorf("DiscoveryLocation(%q, %q) = %q, want %q", tc.issuer, tc.override, got, tc.want)
		}
	}
}

func TestCheckIssuer(t *testing.T) {
	for _, ok := range []string{"https://idp.test", "https://idp.test/", "https://idp.test:8443/realms/a", "http://127.0.0.1:4444/"} {
		if err := jwks.CheckIssuer(ok); err != nil {
			t.Errorf("CheckIssuer(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "idp.test", "/realms/a", "ftp://idp.test", "https://idp.test?x=1", "https://idp.test/#f", "https://idp.test/?", "https://u:s3cret@idp.test"} {
		err := jwks.CheckIssuer(bad)
		if err == nil {
			t.Errorf("CheckIssuer(%q) = nil, want an error", bad)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("CheckIssuer(%q) = %v, shows the user info", bad, err)
		}
	}
}

func TestNewDiscoveryConfig(t *testing.T) {
	tests := []struct {
		name     string
		cfg      jwks.Config
		wantErr  bool
		wantName string
	}{
		{name: "issuer", cfg: jwks.Config{Discovery: true, Issuer: "https://idp.test/"}, wantName: "idp.test"},
		{name: "discovery URL", cfg: jwks.Config{Discovery: true, Issuer: "https://idp.test", DiscoveryURL: "https://cfg.test/oidc.json"}, wantName: "idp.test"},
		{name: "no issuer", cfg: jwks.Config{Discovery: true}, wantErr: true},
		{name: "issuer with a query", cfg: jwks.Config{Discovery: true, Issuer: "https://idp.test/?tenant=a"}, wantErr: true},
		{name: "URL too", cfg: jwks.Config{Discovery: true, Issuer: "https://idp.test", URL: "https://idp.test/jwks"}, wantErr: true},
		{name: "relative discovery URL", cfg: jwks.Config{Discovery: true, Issuer: "https://idp.test", DiscoveryURL: "/config"}, wantErr: true},
		{name: "discovery URL without Discovery", cfg: jwks.Config{URL: "https://idp.test/jwks", DiscoveryURL: "https://idp.test/config"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = quietLogger()
			c, err := jwks.New(tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New: got %v, want error %t", err, tc.wantErr)
			}
			if err == nil && c.Name() != tc.wantName {
				t.Errorf("Name: got %q, want %q", c.Name(), tc.wantName)
			}
		})
	}
}

// router answers fake fetches by URL and logs them, relative to the
// bubble's start.
type router struct {
	start time.Time
	mu    sync.Mutex
	log   []string
	// routes answer by URL; n counts that URL's requests from 0.
	routes map[string]func(r *http.Request, n int) (*http.Response, error)
	counts map[string]int
}

func newRouter(routes map[string]func(r *http.Request, n int) (*http.Response, error)) *router {
	return &router{start: time.Now(), routes: routes, counts: map[string]int{}}
}

func (rt *router) answer(r *http.Request, _ int) (*http.Response, error) {
	u := r.URL.String()
	rt.mu.Lock()
	rt.log = append(rt.log, fmt.Sprintf("%v %s", time.Since(rt.start), u))
	n := rt.counts[u]
	rt.counts[u]++
	h := rt.routes[u]
	rt.mu.Unlock()
	if h == nil {
		return respond(r, 404, nil)
	}
	return h(r, n)
}

func (rt *router) requests() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.log)
}

// static answers 200 with body.
func static(body []byte) func(r *http.Request, n int) (*http.Response, error) {
	return func(r *http.Request, _ int) (*http.Response, error) { return respond(r, 200, body) }
}

// TestDiscovery: the document is fetched where the issuer says (or where
// DiscoveryURL says), its issuer must equal the configured one exactly, and
// the key set is fetched from its jwks_uri; a document that fails keeps the
// cache not ready, with the reason in Status.
func TestDiscovery(t *testing.T) {
	set := rsaSet(t, 0)
	tok := mint(t, key(0), "k0")
	const (
		wk   = "/.well-known/openid-configuration"
		keys = "https://keys.idp.test/jwks"
	)
	type route = func(r *http.Request, n int) (*http.Response, error)
	tests := []struct {
		name         string
		issuer       string
		discoveryURL string
		routes       map[string]route
		wantReady    bool
		wantErr      []error
		wantCode     int
		wantRequests []string
	}{
		{
			name: "issuer without a trailing slash", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://idp.test", keys)),
				keys:                    static(set),
			},
			wantReady: true, wantRequests: []string{"0s https://idp.test" + wk, "0s " + keys},
		},
		{
			name: "issuer with a trailing slash (Auth0)", issuer: "https://tenant.auth0.test/",
			routes: map[string]route{
				"https://tenant.auth0.test" + wk: static(discoveryDoc(t, "https://tenant.auth0.test/", keys)),
				keys:                             static(set),
			},
			wantReady: true, wantRequests: []string{"0s https://tenant.auth0.test" + wk, "0s " + keys},
		},
		{
			name: "issuer with a path (Keycloak)", issuer: "https://idp.test/realms/demo",
			routes: map[string]route{
				"https://idp.test/realms/demo" + wk: static(discoveryDoc(t, "https://idp.test/realms/demo", keys)),
				keys:                                static(set),
			},
			wantReady: true, wantRequests: []string{"0s https://idp.test/realms/demo" + wk, "0s " + keys},
		},
		{
			name: "discovery URL", issuer: "https://idp.test", discoveryURL: "https://config.test/oidc.json",
			routes: map[string]route{
				"https://config.test/oidc.json": static(discoveryDoc(t, "https://idp.test", keys)),
				keys:                            static(set),
			},
			wantReady: true, wantRequests: []string{"0s https://config.test/oidc.json", "0s " + keys},
		},
		{
			name: "issuer mismatch: trailing slash", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://idp.test/", keys)),
				keys:                    static(set),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrIssuerMismatch}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "issuer mismatch: case", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://IDP.test", keys)),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrIssuerMismatch}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "issuer mismatch: another provider's document", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://evil.test", keys)),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrIssuerMismatch}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "issuer mismatch: Entra's multi-tenant template", issuer: "https://login.microsoftonline.test/common/v2.0",
			routes: map[string]route{
				"https://login.microsoftonline.test/common/v2.0" + wk: static(discoveryDoc(t, "https://login.microsoftonline.test/{tenantid}/v2.0", keys)),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrIssuerMismatch}, wantRequests: []string{"0s https://login.microsoftonline.test/common/v2.0" + wk},
		},
		{
			name: "jwks_uri downgrades to http", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://idp.test", "http://idp.test/jwks")),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrDiscovery}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "jwks_uri downgrades to http, upper-case schemes", issuer: "https://idp.test", discoveryURL: "HTTPS://idp.test" + wk,
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://idp.test", "HTTP://idp.test/jwks")),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrDiscovery}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "relative jwks_uri", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://idp.test", "/jwks")),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrDiscovery}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "not JSON", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static([]byte("<html>login</html>")),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrDiscovery}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "404", issuer: "https://idp.test",
			routes:  map[string]route{},
			wantErr: []error{jwks.ErrFetch}, wantCode: 404, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "redirect", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: func(r *http.Request, _ int) (*http.Response, error) {
					return respondH(r, 302, nil, hdr("Location", "https://elsewhere.test"+wk))
				},
				"https://elsewhere.test" + wk: static(discoveryDoc(t, "https://idp.test", keys)),
			},
			wantErr: []error{jwks.ErrFetch}, wantCode: 302, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "too large", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(append(discoveryDoc(t, "https://idp.test", keys), bytes.Repeat([]byte(" "), jwks.MaxDiscoveryBytes)...)),
			},
			wantErr: []error{jwks.ErrFetch, jwks.ErrBodyTooLarge}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "no answer within FetchTimeout", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: func(r *http.Request, _ int) (*http.Response, error) {
					return nil, sleepCtx(r, time.Hour)
				},
			},
			wantErr: []error{jwks.ErrFetch, context.DeadlineExceeded}, wantRequests: []string{"0s https://idp.test" + wk},
		},
		{
			name: "good document, key set 404", issuer: "https://idp.test",
			routes: map[string]route{
				"https://idp.test" + wk: static(discoveryDoc(t, "https://idp.test", keys)),
			},
			wantErr: []error{jwks.ErrFetch}, wantCode: 404, wantRequests: []string{"0s https://idp.test" + wk, "0s " + keys},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rt := newRouter(tc.routes)
				idp := newFakeIdP(rt.answer)
				c, stop := runInBubble(t, idp, jwks.Config{
					Discovery: true, Issuer: tc.issuer, DiscoveryURL: tc.discoveryURL,
					FetchTimeout: 5 * time.Second, MinRefreshInterval: time.Minute, RefreshInterval: time.Hour,
				})
				defer stop()
				time.Sleep(10 * time.Second) // past FetchTimeout, before any retry
				synctest.Wait()
				if got := rt.requests(); !slices.Equal(got, tc.wantRequests) &&
					!(tc.name == "no answer within FetchTimeout" && len(got) == 1) {
					t.Errorf("requests: got %q, want %q", got, tc.wantRequests)
				}
				st := c.Status()
				if c.Ready() != tc.wantReady {
					t.Fatalf("Ready: got %t, want %t (LastError %v)", c.Ready(), tc.wantReady, st.LastError)
				}
				if tc.wantReady {
					if err := verify(t.Context(), c, tok); err != nil {
						t.Errorf("verify: got %v, want nil", err)
					}
					if st.KeySetURL != keys || st.LastError != nil {
						t.Errorf("Status: KeySetURL %q, LastError %v; want %q, nil", st.KeySetURL, st.LastError, keys)
					}
					return
				}
				if missing := errorsIsAll(st.LastError, tc.wantErr...); missing != nil {
					t.Errorf("Status.LastError: got %v, want it to wrap %v", st.LastError, missing)
				}
				if tc.wantCode != 0 {
					if se, ok := errors.AsType[*jwks.StatusError](st.LastError); !ok || se.Code != tc.wantCode {
						t.Errorf("Status.LastError: got %v, want a *StatusError %d", st.LastError, tc.wantCode)
					}
				}
				if err := verify(t.Context(), c, tok); !errors.Is(err, jwks.ErrNotReady) {
					t.Errorf("verify: got %v, want %v", err, jwks.ErrNotReady)
				}
			})
		})
	}
}

// TestDiscoveryLogsMismatch: the issuer mismatch is in the log, with both
// issuers, at Error while nothing is loaded.
func TestDiscoveryLogsMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newRouter(map[string]func(r *http.Request, n int) (*http.Response, error){
			"https://idp.test/.well-known/openid-configuration": static(discoveryDoc(t, "https://idp.test/", "https://idp.test/jwks")),
		})
		var logs testutil.Buffer
		logger := slogText(&logs)
		_, stop := runInBubble(t, newFakeIdP(rt.answer), jwks.Config{Discovery: true, Issuer: "https://idp.test", Logger: logger})
		synctest.Wait()
		stop()
		line := lineWith(logs.String(), "jwks fetch failed")
		if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, `https://idp.test/`) || !strings.Contains(line, "configured issuer") {
			t.Errorf("log: got %q, want an ERROR naming both issuers", line)
		}
	})
}

// TestDiscoveryRefresh: the document is refreshed with the key set on each
// scheduled refresh; one that fails (an error, a mismatch, garbage) keeps
// the last good one, whose jwks_uri is still fetched; a new jwks_uri is
// followed, without the old one's validators; an unknown kid refreshes the
// key set only; a Retry-After on the document holds the key set too.
func TestDiscoveryRefresh(t *testing.T) {
	const (
		doc  = "https://idp.test/.well-known/openid-configuration"
		urlA = "https://idp.test/keys-a"
		urlB = "https://keys.idp.test/keys-b"
	)
	docA, docB := discoveryDoc(t, "https://idp.test", urlA), discoveryDoc(t, "https://idp.test", urlB)
	setA0, setA01, setB2 := rsaSet(t, 0), rsaSet(t, 0, 1), rsaSet(t, 2)
	t0, t1, t2, t3 := mint(t, key(0), "k0"), mint(t, key(1), "k1"), mint(t, key(2), "k2"), mint(t, key(3), "k3")
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var validators []string
		rt := newRouter(map[string]func(r *http.Request, n int) (*http.Response, error){
			doc: func(r *http.Request, n int) (*http.Response, error) {
				switch n {
				case 0:
					return respondH(r, 200, docA, hdr("ETag", `"d1"`))
				case 1:
					return respond(r, 503, nil) // at 60s
				case 2:
					return respond(r, 200, discoveryDoc(t, "https://evil.test", urlB)) // at 61s
				case 3:
					return respond(r, 200, []byte(`{"issuer":`)) // at 63s
				case 4:
					return respondH(r, 200, docB, hdr("ETag", `"d2"`)) // at 67s
				case 5:
					return respondH(r, 503, nil, hdr("Retry-After", "50")) // at 130s
				}
				return respondH(r, 304, nil, nil)
			},
			urlA: func(r *http.Request, n int) (*http.Response, error) {
				if n == 0 {
					return respondH(r, 200, setA0, hdr("ETag", `"a"`))
				}
				return respond(r, 200, setA01)
			},
			urlB: func(r *http.Request, n int) (*http.Response, error) {
				mu.Lock()
				validators = append(validators, r.Header.Get("If-None-Match"))
				mu.Unlock()
				return respondH(r, 200, setB2, hdr("ETag", `"b"`))
			},
		})
		ev := &events{t: t}
		c, stop := runInBubble(t, newFakeIdP(rt.answer), jwks.Config{
			Discovery: true, Issuer: "https://idp.test", MinRefreshInterval: time.Second, RefreshInterval: time.Minute, Observer: ev,
		})
		defer stop()
		synctest.Wait()
		if err := verify(t.Context(), c, t0); err != nil {
			t.Fatalf("verify k0: %v", err)
		}
		time.Sleep(62 * time.Second) // 60s: document 503; 61s: another issuer
		synctest.Wait()
		if err := verify(t.Context(), c, t1); err != nil {
			t.Errorf("verify k1 (from the old jwks_uri, the document failing): %v", err)
		}
		if st := c.Status(); !errors.Is(st.LastError, jwks.ErrIssuerMismatch) || st.KeySetURL != urlA || !c.Ready() {
			t.Errorf("Status after a mismatching document: LastError %v, KeySetURL %q; want a mismatch, %q, ready", st.LastError, st.KeySetURL, urlA)
		}
		time.Sleep(5500 * time.Millisecond) // 63s: garbage; 67s: document B
		synctest.Wait()
		if err := verify(t.Context(), c, t2); err != nil {
			t.Errorf("verify k2 (from the new jwks_uri): %v", err)
		}
		if err := verify(t.Context(), c, t0); !errors.Is(err, jwks.ErrKeyNotFound) {
			t.Errorf("verify k0 (only in the old set): got %v, want %v", err, jwks.ErrKeyNotFound)
		}
		if st := c.Status(); st.LastError != nil || st.KeySetURL != urlB {
			t.Errorf("Status after document B: LastError %v, KeySetURL %q; want nil, %q", st.LastError, st.KeySetURL, urlB)
		}
		// An unknown kid refreshes the key set only: the k0 lookup above, at
		// 67.5s (the scheduled refresh at 67s, made while no unknown kid was
		// asked for, does not hold it back), and k3 at 70s.
		time.Sleep(2500 * time.Millisecond)
		_ = verify(t.Context(), c, t3)
		// 130s: the document asks to wait 50s: no key set fetch then, none
		// for an unknown kid before 180s, the next scheduled refresh at 180s.
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if err := verify(t.Context(), c, t3); !errors.Is(err, jwks.ErrKeyNotFound) {
			t.Errorf("verify k3 during the Retry-After: got %v, want %v", err, jwks.ErrKeyNotFound)
		}
		time.Sleep(100 * time.Second)
		synctest.Wait()

		want := []string{
			"0s " + doc, "0s " + urlA,
			"1m0s " + doc, "1m0s " + urlA, // document 503: key set from the old jwks_uri
			"1m1s " + doc, "1m1s " + urlA, // another issuer: same
			"1m3s " + doc, "1m3s " + urlA, // garbage: same
			"1m7s " + doc, "1m7s " + urlB, // document B
			"1m7.5s " + urlB, // unknown kid: the key set only
			"1m10s " + urlB,  // another, a MinRefreshInterval later
			"2m10s " + doc,   // Retry-After 50s: no key set fetch
			"3m0s " + doc, "3m0s " + urlB,
		}
		if got := rt.requests(); !slices.Equal(got, want) {
			t.Errorf("requests:\n got %q\nwant %q", got, want)
		}
		mu.Lock()
		if want := []string{"", `"b"`, `"b"`, `"b"`}; !slices.Equal(validators, want) {
			t.Errorf("If-None-Match to the new jwks_uri: got %q, want %q (not the old one's %q)", validators, want, `"a"`)
		}
		mu.Unlock()
		wantEvents := []string{
			"discovery:success", "jwks:success",
			"discovery:error", "jwks:success",
			"discovery:error", "jwks:success",
			"discovery:error", "jwks:success",
			"discovery:success", "jwks:success",
			"jwks:success", "jwks:success",
			"discovery:error",
			"discovery:not_modified", "jwks:success",
		}
		if got := ev.results(); !slices.Equal(got, wantEvents) {
			t.Errorf("events:\n got %v\nwant %v", got, wantEvents)
		}
	})
}

// TestDiscoveryCrossCheck: whatever ParseDiscovery accepts, encoding/json
// (which matches names case-insensitively and keeps the last of duplicate
// names) reads the same issuer and jwks_uri from.
func TestDiscoveryCrossCheck(t *testing.T) {
	for _, doc := range []string{
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}`,
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","Issuer":"https://evil.test"}`,
		`{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks","issuer":"https://evil.test"}`,
	} {
		checkDiscoveryCross(t, []byte(doc))
	}
}

func checkDiscoveryCross(t *testing.T, doc []byte) {
	t.Helper()
	d, err := jwks.ParseDiscovery(doc)
	if err != nil {
		return
	}
	var std struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(doc, &std); err != nil {
		t.Fatalf("ParseDiscovery accepted %q, which encoding/json refuses: %v", doc, err)
	}
	if std.Issuer != d.Issuer || std.JWKSURI != d.JWKSURI {
		t.Fatalf("ParseDiscovery read %+v from %q, encoding/json %+v", d, doc, std)
	}
}

// TestCredentialsNotShown: the user info of a discovery URL is sent (Basic
// authentication) and shown nowhere: not in Status, the events, the logs, nor
// the stored file; nor is a key-set URL's in the stored file.
func TestCredentialsNotShown(t *testing.T) {
	const user, pass = "reader-7f3a", "s3cr3t-pw-91c"
	var srv *jwksServer
	srv = newJWKSServer(t, nil)
	var gotAuth atomic.Value
	setBody := rsaSet(t, 0)
	srv.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok {
			gotAuth.Store(u + ":" + p)
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_, _ = w.Write(discoveryDoc(t, srv.URL, srv.URL+"/jwks"))
		case "/jwks":
			_, _ = w.Write(setBody)
		default:
			http.Error(w, "no", http.StatusNotFound)
		}
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		name string
		cfg  jwks.Config
	}{
		{name: "discovery URL, fetched", cfg: jwks.Config{Discovery: true, Issuer: srv.URL, DiscoveryURL: "http://" + user + ":" + pass + "@" + host + "/.well-known/openid-configuration"}},
		{name: "discovery URL, 404", cfg: jwks.Config{Discovery: true, Issuer: srv.URL, DiscoveryURL: "http://" + user + ":" + pass + "@" + host + "/nowhere"}},
		{name: "key set URL, fetched", cfg: jwks.Config{URL: "http://" + user + ":" + pass + "@" + host + "/jwks"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.Buffer
			ev := &events{t: t}
			tc.cfg.Logger, tc.cfg.Observer, tc.cfg.CacheDir = slogText(&logs), ev, t.TempDir()
			c := startCacheEvents(t, tc.cfg)
			if got, _ := gotAuth.Load().(string); got != user+":"+pass {
				t.Errorf("Basic authentication sent: %q, want the user info", got)
			}
			shown := logs.String() + fmt.Sprint(c.Status())
			for _, e := range ev.all() {
				shown += fmt.Sprint(e)
			}
			if b, err := os.ReadFile(jwks.StorePath(c)); err == nil {
				shown += string(b)
			}
			for _, secret := range []string{user, pass} {
				if strings.Contains(shown, secret) {
					t.Errorf("%q shown: %s", secret, shown)
				}
			}
		})
	}
}

// startCacheEvents starts a cache whose Observer is an *events and waits
// for its first refresh to end.
func startCacheEvents(t *testing.T, cfg jwks.Config) *jwks.Cache {
	t.Helper()
	ev := cfg.Observer.(*events)
	ev.notify = make(chan jwks.Event, 100)
	c, err := jwks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for timeout := time.After(waitLong); ; {
		select {
		case e := <-ev.notify:
			if e.Document == jwks.DocumentKeySet || e.Result == jwks.ResultError {
				return c
			}
		case <-timeout:
			t.Fatal("no fetch ended")
		}
	}
}
