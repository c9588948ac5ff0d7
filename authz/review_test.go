package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Tests of the second outside review's findings (SECURITY.md rows name them).

// casedRules are rules whose paths have capitals, as ASP.NET and IIS
// backends route them.
var casedRules = []Rule{
	{Path: "/Docs", Public: true},
	{Path: "/Reports", Scopes: []string{"reports"}},
	{Path: "/Api/Admin", Scopes: []string{"admin"}},
	{Path: "/ÄPI", Scopes: []string{"umlaut"}},
}

// TestPolicyForCasedRules: every reading of a path is compared with a rule
// in the rule's own fold, so a rule path with a capital letter protects every
// spelling a case-insensitive or normalising backend maps to it.
func TestPolicyForCasedRules(t *testing.T) {
	rules := mustCompile(t, casedRules)
	reports := []string{"reports"}
	tests := []struct {
		target string
		public bool
		scopes []string
	}{
		{target: "/Reports", scopes: reports},
		{target: "/reports", scopes: reports},
		{target: "/REPORTS", scopes: reports},
		{target: "/Reports.json", scopes: reports},
		{target: "/Reports.", scopes: reports},
		{target: "/Reports%20", scopes: reports},
		{target: "/reports/q1", scopes: reports},
		{target: "/public/../reports", scopes: reports},
		{target: "/Ｒeports", scopes: reports},
		{target: "/%52eports", scopes: reports},
		{target: "/rEpOrTs/x.csv", scopes: reports},
		{target: "/api/admin", scopes: []string{"admin"}},
		{target: "/API/ADMIN/users", scopes: []string{"admin"}},
		{target: "/Api/Admin.", scopes: []string{"admin"}},
		{target: "/äpi", scopes: []string{"umlaut"}},
		{target: "/%C3%84PI", scopes: []string{"umlaut"}},
		// A public rule with a capital letter is public as configured...
		{target: "/Docs", public: true},
		{target: "/Docs/intro", public: true},
		// ...and a spelling a case-sensitive backend serves from elsewhere
		// is not public: every reading must be.
		{target: "/docs"},
		{target: "/DOCS/intro"},
		{target: "/Docs/../Reports", scopes: reports},
		{target: "/Docs/..%2FReports", scopes: reports},
		{target: "/Reportsx"},
		{target: "/other"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			got := policyFor(rules, tc.target)
			if got.public != tc.public || !sameSet(got.scopes, tc.scopes) {
				t.Errorf("policyFor(%q) = public %v, scopes %q; want public %v, scopes %q",
					tc.target, got.public, got.scopes, tc.public, tc.scopes)
			}
		})
	}
}

// TestCasedRulesThroughAdapters: the same through Check and ServeHTTP with a
// valid token that lacks the scope.
func TestCasedRulesThroughAdapters(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.Rules = casedRules; c.ForwardAuthSource = SourceRequest })
	valid := mint(t, tokenSpec{})
	ts := startHTTP(t, w.srv)
	for _, target := range []string{"/Reports", "/reports", "/REPORTS", "/Reports.json", "/Reports.", "/Reports%20",
		"/reports/q1", "/public/../reports", "/%EF%BC%B2eports"} {
		t.Run(target, func(t *testing.T) {
			resp := checkOnce(t, w.srv, "GET", target, valid)
			if resp.status != http.StatusForbidden {
				t.Errorf("Check %s: status %d, want 403", target, resp.status)
			}
			r := doHTTP(t, ts, "GET", target, http.Header{"Authorization": bearer(valid)})
			if r.status != http.StatusForbidden {
				t.Errorf("ServeHTTP %s: status %d, want 403", target, r.status)
			}
		})
	}
	if r := doHTTP(t, ts, "GET", "/Docs", nil); r.status != http.StatusOK {
		t.Errorf("ServeHTTP /Docs without a token: status %d, want 200", r.status)
	}
}

// FuzzPolicyFolded checks policyFor with cased rules against a
// case-insensitive backend: when policyFor says public, the lower-cased
// reading of every backend reading lands under a public rule matched
// case-insensitively, and every scope of the rule it lands on is required.
func FuzzPolicyFolded(f *testing.F) {
	for _, s := range []string{"/Docs", "/docs", "/Reports", "/reports.json", "/DOCS/../reports", "/Docs/%2e%2e/REPORTS",
		"/Api/Admin", "/api/ADMIN/x", "/Ｒeports", "/docs/..;/api/admin"} {
		f.Add(s)
	}
	rules := mustCompile(f, casedRules)
	f.Fuzz(func(t *testing.T, target string) {
		pol := policyFor(rules, target)
		if pol.tooLong {
			return
		}
		for _, br := range backendReadings(target) {
			p := strings.ToLower(br.path)
			var r *rule
			for i := range rules.list {
				q := strings.ToLower(rules.list[i].path)
				if p != "" && (p == q || strings.HasPrefix(p, q+"/")) {
					r = &rules.list[i]
					break
				}
			}
			if pol.public && (r == nil || !r.public) {
				t.Fatalf("policyFor(%q) is public, but a case-insensitive backend reads it as %q, which is not", target, p)
			}
			if r != nil && br.decodes >= 0 {
				for _, s := range r.scopes {
					if !slices.Contains(pol.scopes, s) {
						t.Fatalf("policyFor(%q) requires %q, but a case-insensitive backend reads it as %q, which needs %q",
							target, pol.scopes, p, s)
					}
				}
			}
		}
	})
}

// checkResult is what one Check through bufconn answered.
type checkResult struct {
	status int    // HTTP status Envoy would send (200 on allow)
	reason Reason // the status message: the reason of a denial
	body   string
}

// checkOnce sends one CheckRequest for method and path, with the token as a
// Bearer Authorization header ("" for none), over a bufconn gRPC server.
func checkOnce(t *testing.T, srv *Server, method, path, token string, extra ...string) checkResult {
	t.Helper()
	headers := map[string]string{":path": path, ":method": method}
	if token != "" {
		headers["authorization"] = "Bearer " + token
	}
	for i := 0; i+1 < len(extra); i += 2 {
		headers[extra[i]] = extra[i+1]
	}
	req := checkRequest(path, headers)
	req.Attributes.Request.Http.Method = method
	resp, err := startGRPC(t, srv).Check(t.Context(), req)
	if err != nil {
		t.Fatalf("Check %s %s: %v", method, path, err)
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return checkResult{status: int(d.GetStatus().GetCode()), reason: Reason(resp.GetStatus().GetMessage()), body: d.GetBody()}
	}
	return checkResult{status: http.StatusOK}
}

// TestOneJSONObject: a token whose header or payload is not exactly one
// JSON object with unique member names at every depth is malformed, however
// it is signed, through Decide, Check and ServeHTTP, on the first request
// and on a repeat (never a cached allow).
func TestOneJSONObject(t *testing.T) {
	k := testKeys()
	claims := claimsJSON(t, claimsA())
	open := claims[:len(claims)-1] // the claims, open for one more member
	withoutClaim := func(c string) string {
		p := claimsJSON(t, with(claimsA(), c, nil))
		return p[:len(p)-1]
	}
	past, future := testNow.Add(-time.Hour).Unix(), testNow.Add(time.Hour).Unix()
	header := `{"alg":"RS256","kid":"a1"}`
	tests := []struct {
		name            string
		header, payload string
	}{
		{name: "second object after the claims", header: header, payload: claims + `{"sub":"admin","scope":"admin"}`},
		{name: "garbage after the claims", header: header, payload: claims + `]]garbage`},
		{name: "a number after the claims", header: header, payload: claims + ` 1`},
		{name: "second object after the header", header: header + `{"alg":"none"}`, payload: claims},
		{name: "garbage after the header", header: header + `x`, payload: claims},
		{name: "duplicate exp, past then future", header: header, payload: withoutClaim("exp") + fmt.Sprintf(`,"exp":%d,"exp":%d}`, past, future)},
		{name: "duplicate exp, future then past", header: header, payload: withoutClaim("exp") + fmt.Sprintf(`,"exp":%d,"exp":%d}`, future, past)},
		{name: "duplicate sub", header: header, payload: withoutClaim("sub") + `,"sub":"admin","sub":"alice"}`},
		{name: "duplicate aud", header: header, payload: withoutClaim("aud") + `,"aud":"other","aud":"` + audience + `"}`},
		{name: "duplicate scope", header: header, payload: open + `,"scope":"admin"}`},
		{name: "duplicate by escape", header: header, payload: withoutClaim("sub") + `,"sub":"admin","\u0073ub":"alice"}`},
		{name: "duplicate nested", header: header, payload: open + `,"realm_access":{"roles":["user"],"roles":["admin"]}}`},
		{name: "duplicate nested in array", header: header, payload: open + `,"x":[{"a":1,"a":2}]}`},
		{name: "duplicate alg in header", header: `{"alg":"none","kid":"a1","alg":"RS256"}`, payload: claims},
		{name: "duplicate kid in header", header: `{"alg":"RS256","kid":"b1","kid":"a1"}`, payload: claims},
		{name: "invalid UTF-8 in a claim", header: header, payload: open + `,"name":"` + "\xff" + `"}`},
		{name: "lone surrogate escape", header: header, payload: open + `,"name":"\ud800"}`},
		{name: "payload an array", header: header, payload: `[` + claims + `]`},
	}
	w := newWorld(t, func(c *Config) { c.ForwardAuthSource = SourceRequest })
	ts := startHTTP(t, w.srv)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := signRaw(t, tc.header, tc.payload, k.keyA)
			for i := range 2 {
				d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/protected", Authorization: bearer(tok)})
				if d.Reason != Malformed {
					t.Errorf("Decide #%d = %q, want %q", i+1, d.Reason, Malformed)
				}
				if r := checkOnce(t, w.srv, "GET", "/protected", tok); r.status != http.StatusUnauthorized || r.reason != Malformed {
					t.Errorf("Check #%d = %d %q, want 401 %q", i+1, r.status, r.reason, Malformed)
				}
				r := doHTTP(t, ts, "GET", "/protected", http.Header{"Authorization": bearer(tok)})
				if r.status != http.StatusUnauthorized || r.header.Get("X-Jwt-Payload") != "" {
					t.Errorf("ServeHTTP #%d = %d (x-jwt-payload %q), want 401 and no payload", i+1, r.status, r.header.Get("X-Jwt-Payload"))
				}
			}
			// On a public path the token is ignored: the request goes on
			// anonymously, with nothing of the payload upstream.
			d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/public", Authorization: bearer(tok)})
			if d.Reason != Public || len(d.Headers) != 0 {
				t.Errorf("public path: %q with headers %v, want public and none", d.Reason, d.Headers)
			}
		})
	}
	// The same claims, each member once and white space around the object,
	// still verify.
	tok := signRaw(t, " "+header+"\n", "\t"+claims+" ", k.keyA)
	if d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: "/protected", Authorization: bearer(tok)}); d.Reason != Allowed {
		t.Errorf("well-formed token with white space: %q, want allowed", d.Reason)
	}
}

// FuzzOneObject compares oneObject with an independent reading by
// encoding/json: whatever oneObject accepts is one valid JSON object whose
// objects have unique (unescaped) member names, in valid UTF-8; and every
// such input without \u escapes (whose surrogate rules differ) is accepted.
func FuzzOneObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"b":2}]}`,
		`{"a":1}{"a":2}`, `{"a":1}]]`, ` {"a":"\u0061"} `, `{"a":1,"\u0061":2}`, `[]`, `null`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := oneObject(b)
		want := oracleOneObject(b)
		if got && !want {
			t.Fatalf("oneObject(%q) = true, but it is not one object with unique names", b)
		}
		if !got && want && !bytes.Contains(b, []byte(`\u`)) {
			t.Fatalf("oneObject(%q) = false, but it is one object with unique names", b)
		}
	})
}

// oracleOneObject reads b with encoding/json's token stream.
func oracleOneObject(b []byte) bool {
	if !json.Valid(b) || !utf8.Valid(b) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		object bool
		names  map[string]bool
		key    bool // the next string token is a name
	}
	var stack []*frame
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return false
			}
			first = false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if s, ok := tok.(string); ok {
				if top.names[s] {
					return false
				}
				top.names[s] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true // a value was read: a name comes next
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, names: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].key = true
			}
		}
	}
}

// TestAttackPinnedSourceWithoutItsHeader: a server pinned to one header
// family judges nothing else. When the family's URI header is absent (the
// server is behind the other front, or the front's config drops it), the
// check is denied 400 invalid_request with a rate-limited WARN, never
// judged as the check request's own target.
func TestAttackPinnedSourceWithoutItsHeader(t *testing.T) {
	valid := mint(t, tokenSpec{}) // no admin scope
	const challenge = `Bearer realm="extauthz", error="invalid_request", error_description="Missing original-request URI header"`
	tests := []struct {
		name      string
		source    string
		target    string
		header    http.Header
		want      int
		ambiguous bool
	}{
		{name: "x-original behind Caddy", source: SourceOriginal, target: "/_extauthz",
			header: http.Header{"X-Forwarded-Uri": {"/admin"}, "X-Forwarded-Method": {"GET"}}, want: 400},
		{name: "x-original, no header at all", source: SourceOriginal, target: "/", want: 400},
		{name: "x-original, empty URI", source: SourceOriginal, target: "/", header: http.Header{"X-Original-Uri": {""}}, want: 400},
		{name: "x-forwarded behind nginx", source: SourceForwarded, target: "/_extauthz",
			header: http.Header{"X-Original-Uri": {"/admin"}}, want: 400},
		{name: "x-forwarded, no header at all", source: SourceForwarded, target: "/", want: 400},
		{name: "x-original with its header", source: SourceOriginal, target: "/", header: http.Header{"X-Original-Uri": {"/admin"}}, want: 403},
		{name: "x-forwarded with its header", source: SourceForwarded, target: "/", header: http.Header{"X-Forwarded-Uri": {"/protected"}}, want: 200},
		{name: "auto falls back to the request (Envoy's HTTP mode)", source: SourceAuto, target: "/admin", want: 403},
		{name: "request ignores the headers", source: SourceRequest, target: "/admin", header: http.Header{"X-Original-Uri": {"/public"}}, want: 403},
		// A method without its URI was already refused as ambiguous.
		{name: "x-original, only the method", source: SourceOriginal, target: "/", header: http.Header{"X-Original-Method": {"GET"}}, want: 400, ambiguous: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf, logger := newLogBuffer()
			w := newWorld(t, func(c *Config) { c.ForwardAuthSource = tc.source; c.Logger = logger })
			ts := startHTTP(t, w.srv)
			h := http.Header{"Authorization": bearer(valid)}
			for k, v := range tc.header {
				h[k] = v
			}
			r := doHTTP(t, ts, "GET", tc.target, h)
			if r.status != tc.want {
				t.Fatalf("status %d (body %q), want %d", r.status, r.body, tc.want)
			}
			if tc.want != 400 || tc.ambiguous {
				return
			}
			if r.body != `{"error":"Missing original-request URI header"}` || r.header.Get("Www-Authenticate") != challenge {
				t.Errorf("body %q, challenge %q", r.body, r.header.Get("Www-Authenticate"))
			}
			// A second check within the minute is denied as well, without
			// a second WARN; both are logged as denials.
			if r := doHTTP(t, ts, "GET", tc.target, h); r.status != 400 {
				t.Errorf("second check: status %d, want 400", r.status)
			}
			warns, denials := 0, 0
			for _, rec := range buf.records(t) {
				if rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "original URI header") {
					warns++
				}
				if rec["msg"] == "check denied" && rec["reason"] == string(InvalidRequest) {
					denials++
				}
			}
			if warns != 1 || denials != 2 {
				t.Errorf("%d WARN lines and %d denials logged, want 1 and 2:\n%s", warns, denials, buf.String())
			}
		})
	}
}

// TestAttackEmptyPath: a check without any request target is denied
// (invalid_request), never judged as "/" (only the root rule would apply).
func TestAttackEmptyPath(t *testing.T) {
	w := newWorld(t, nil)
	valid := mint(t, tokenSpec{})
	d := w.srv.Decide(t.Context(), Request{Method: "GET", Path: "", Authorization: bearer(valid)})
	if d.Reason != InvalidRequest || d.Status() != 400 || d.Body != `{"error":"Missing request path"}` {
		t.Errorf("Decide with no path = %q %d %q, want invalid_request 400", d.Reason, d.Status(), d.Body)
	}
	req := checkRequest("", map[string]string{"authorization": "Bearer " + valid})
	resp, err := startGRPC(t, w.srv).Check(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 400 {
		t.Errorf("Check with no path = %v, want a 400 denial", resp)
	}
}
