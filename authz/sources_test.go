package authz

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestTokenSources: tokens from other headers, cookies and query
// parameters, in the order configured; a present but malformed location
// denies; two different tokens deny (400); a query token is removed
// upstream; a token in a location its provider does not take is refused.
func TestTokenSources(t *testing.T) {
	valid := mint(t, tokenSpec{})
	other := mint(t, tokenSpec{claims: with(claimsA(), "sub", "bob")})
	ofB := mint(t, tokenSpec{key: testKeys().keyB, kid: kidB, claims: with(claimsA(), "iss", issuerB)})
	w := newWorld(t, func(c *Config) {
		c.Providers[0].TokenSources = []TokenSource{{Header: "authorization", Prefix: "Bearer "}, {Header: "X-Api-Token"}, {Cookie: "access_token"}, {Query: "access_token"}}
		// Provider b takes tokens from its Authorization header only.
		c.Providers[1].TokenSources = []TokenSource{{Header: "authorization", Prefix: "Bearer "}}
		c.ForwardAuthSource = SourceRequest
	})
	tests := []struct {
		name      string
		path      string
		headers   map[string]string
		want      Reason
		wantQuery bool
	}{
		{name: "Authorization", path: "/protected", headers: map[string]string{"authorization": "Bearer " + valid}, want: Allowed},
		{name: "another header", path: "/protected", headers: map[string]string{"x-api-token": valid}, want: Allowed},
		{name: "a cookie", path: "/protected", headers: map[string]string{"cookie": "theme=dark; access_token=" + valid}, want: Allowed},
		{name: "the query", path: "/protected?x=1&access_token=" + valid, want: Allowed, wantQuery: true},
		{name: "the same token twice", path: "/protected", headers: map[string]string{"authorization": "Bearer " + valid, "cookie": "access_token=" + valid}, want: Allowed},
		{name: "two different tokens", path: "/protected?access_token=" + other, headers: map[string]string{"authorization": "Bearer " + valid}, want: InvalidRequest},
		{name: "a present but empty header does not fall through", path: "/protected?access_token=" + valid, headers: map[string]string{"x-api-token": " "}, want: MissingToken},
		{name: "a Basic Authorization is not a token", path: "/protected", headers: map[string]string{"authorization": "Basic eDp5", "x-api-token": valid}, want: Allowed},
		{name: "none", path: "/protected", want: MissingToken},
		{name: "b's token in a's cookie", path: "/protected", headers: map[string]string{"cookie": "access_token=" + ofB}, want: MissingToken},
		{name: "b's token in Authorization", path: "/protected", headers: map[string]string{"authorization": "Bearer " + ofB}, want: Allowed},
	}
	ts := startHTTP(t, w.srv)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := map[string]string{}
			for k, v := range tc.headers {
				hs[k] = v
			}
			resp := mustCheck(t, w.srv, checkRequest(tc.path, hs))
			got := Reason(resp.GetStatus().GetMessage())
			if resp.GetOkResponse() != nil {
				got = Allowed
			}
			if got != tc.want {
				t.Errorf("Check = %q, want %q", got, tc.want)
			}
			if q := resp.GetOkResponse().GetQueryParametersToRemove(); tc.wantQuery != slices.Contains(q, "access_token") {
				t.Errorf("query_parameters_to_remove = %q", q)
			}
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			r := doHTTP(t, ts, "GET", tc.path, h)
			if wantStatus := tc.want.Status(); r.status != wantStatus {
				t.Errorf("ServeHTTP = %d, want %d", r.status, wantStatus)
			}
		})
	}
	// Two providers with the same name (two realms of one host): the
	// location is checked against the token's own provider, by issuer.
	same := newWorld(t, func(c *Config) {
		c.Providers[0].Name, c.Providers[1].Name = "host", "host"
		c.Providers[0].TokenSources = []TokenSource{{Cookie: "access_token"}}
		c.Providers[1].TokenSources = []TokenSource{{Header: "authorization", Prefix: "Bearer "}}
	})
	if got := same.srv.Decide(t.Context(), Request{Path: "/protected", Headers: map[string]string{"cookie": "access_token=" + ofB}}); got.Reason != MissingToken {
		t.Errorf("b's token in a's cookie, both named host: %q, want missing_token", got.Reason)
	}
	// The default (Authorization: Bearer only) never reads a cookie.
	d := newWorld(t, nil)
	if got := d.srv.Decide(t.Context(), Request{Path: "/protected", Headers: map[string]string{"cookie": "access_token=" + valid}}); got.Reason != MissingToken {
		t.Errorf("default sources read a cookie: %q", got.Reason)
	}
}

// TestTokenSourceConfigErrors: a location names exactly one place.
func TestTokenSourceConfigErrors(t *testing.T) {
	for _, src := range []TokenSource{{}, {Header: "a", Cookie: "b"}, {Cookie: "c", Prefix: "Bearer "}, {Header: "bad header"}} {
		cfg := baseConfig(newFakeKeys(), newFakeKeys())
		cfg.Providers[0].TokenSources = []TokenSource{src}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "token source") {
			t.Errorf("%+v: New = %v", src, err)
		}
	}
}

// FuzzTokenOf: any request's token locations give one token or a clear
// denial, never a panic; the token found is one a location held.
func FuzzTokenOf(f *testing.F) {
	f.Add("Bearer a.b.c", "x", "access_token=a.b.c; x=y", "/p?access_token=a.b.c")
	f.Add("", "", "access_token=", "/p?access_token=%zz")
	w := newWorld(f, func(c *Config) {
		c.Providers[0].TokenSources = []TokenSource{{Header: "authorization", Prefix: "Bearer "}, {Header: "x-api-token"}, {Cookie: "access_token"}, {Query: "access_token"}}
	})
	f.Fuzz(func(t *testing.T, auth, apiToken, cookie, path string) {
		r := Request{Path: path, Headers: map[string]string{"x-api-token": apiToken, "cookie": cookie}}
		if auth != "" {
			r.Authorization = []string{auth}
		}
		got, reason := w.srv.tokenOf(r)
		if reason != "" {
			return
		}
		if got.token == "" || !strings.Contains(auth+apiToken+cookie+path, got.token) && !strings.Contains(path, "%") {
			t.Fatalf("token %q found in none of the locations", got.token)
		}
	})
}
