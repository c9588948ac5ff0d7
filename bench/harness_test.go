package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/bench/internal/loadstat"
	// The harness's own flags are its type config.
	srvconfig "github.com/extauthz/extauthz/config"
)

// testTokens is one small token set per test binary: RSA signing is slow.
var testTokens = sync.OnceValues(func() (*tokenSet, error) {
	return loadTokens("", 8, time.Now())
})

func tokensForTest(t *testing.T) *tokenSet {
	t.Helper()
	ts, err := testTokens()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestQuick runs the harness's smoke mode end to end: extauthz, extauthz
// with the policy config (gRPC only) and the do-nothing server under ghz
// and wrk. It needs ghz and wrk (go run ./bench
// --install); without them it skips, unless EXTAUTHZ_REQUIRE_PEERS=1.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and loads it for about 20s; skipped in -short mode")
	}
	toolsDir := defaultToolsDir()
	ghz, wrk := lookTool(toolsDir, "ghz"), ""
	if p, err := exec.LookPath("wrk"); err == nil {
		wrk = p
	}
	if ghz == "" || wrk == "" {
		msg := "ghz (in " + toolsDir + "/bin or on PATH) and wrk are needed: go run ./bench --install"
		if os.Getenv("EXTAUTHZ_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	md := filepath.Join(dir, "BENCHMARKS.md")
	const prose, trailer = "# Benchmarks\n\nHand-written prose.\n\n", "\n\nMore prose.\n"
	if err := os.WriteFile(md, []byte(prose+beginMarker+"\nstale table\n"+endMarker+trailer), 0o644); err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(dir, "results.json")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	args := []string{"--quick", "--token-cache", "off", "--tools-dir", toolsDir, "--out", md, "--json", js}
	if err := run(ctx, args, &stdout, t.Output()); err != nil {
		t.Fatalf("run(%q) = %v", args, err)
	}

	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, target := range []string{targetOurs, targetNop} {
		for _, mode := range []string{modeGRPC, modeHTTP} {
			for _, tc := range []string{caseHit, caseMiss} {
				want[target+" "+mode+" "+tc] = true
			}
		}
	}
	for _, tc := range []string{caseHit, caseMiss} {
		want[targetPolicy+" "+modeGRPC+" "+tc] = true
	}
	// The DPoP runs, under the closed-loop driver.
	for _, key := range []string{targetOurs + " " + caseDPoP, targetOurs + " " + caseHit, targetNop + " " + caseDPoP} {
		want[key+" "+genDriver] = true
	}
	for _, r := range rep.Results {
		key := r.Target + " " + r.Mode + " " + r.Case
		if r.Generator != "" {
			key = r.Target + " " + r.Case + " " + r.Generator
		}
		if !want[key] {
			t.Errorf("unexpected run %s", key)
			continue
		}
		delete(want, key)
		if r.RPS <= 0 || r.Requests <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.P999 < r.P99 {
			t.Errorf("%s: rps %v, requests %d, p50 %v, p99 %v, p99.9 %v; want positive and ordered", key, r.RPS, r.Requests, r.P50, r.P99, r.P999)
		}
		if r.Errors != 0 {
			t.Errorf("%s: %d errors (%v), want 0 for valid tokens", key, r.Errors, r.ErrorKinds)
		}
		if r.Memory.RSS <= 0 {
			t.Errorf("%s: RSS %d, want > 0", key, r.Memory.RSS)
		}
	}
	for key := range want {
		t.Errorf("run %s missing from the results", key)
	}
	if len(rep.DPoPProbe) != 5 || rep.DPoPProbe[0].Code != "OK" || rep.DPoPProbe[1].Code != codes.Unauthenticated.String() {
		t.Errorf("DPoP probe %+v, want 5 answers: a fresh proof allowed, its replay denied, ...", rep.DPoPProbe)
	}
	if m := rep.ReplayCache; m == nil || len(m.Points) == 0 || m.Points[len(m.Points)-1].Entries != rep.Settings.ReplayFill {
		t.Errorf("replay cache memory %+v, want %d entries at the last point", m, rep.Settings.ReplayFill)
	}
	if len(rep.Providers) != 3 {
		t.Fatalf("%d many-providers runs, want 3 (1, %d, %d with slow key sets)", len(rep.Providers), rep.Settings.Providers, rep.Settings.Providers)
	}
	for _, r := range rep.Providers {
		if r.Ready <= 0 || r.RSS <= 0 || r.Fetches < int64(r.Providers) || r.MaxInflight < 1 || r.MaxInflight > 16 {
			t.Errorf("providers run %+v: want ready, RSS, a fetch per provider, at most 16 at once", r)
		}
	}
	if len(rep.Ratios) == 0 {
		t.Error("no ratios against the do-nothing server")
	}
	for _, r := range rep.Ratios {
		if r.Against == targetPolicy {
			t.Errorf("ratio against %s, a variant of extauthz, among the peers' ratios", targetPolicy)
		}
	}
	i := slices.IndexFunc(rep.Goals, func(g goal) bool { return g.Issue == 11 })
	if i < 0 {
		t.Fatalf("no goal of issue 11 in %+v", rep.Goals)
	}
	if g := rep.Goals[i]; !strings.HasSuffix(g.Goal, "≥ 0.8× the do-nothing server's throughput at c=50") || !strings.Contains(g.Measured, "req/s") || g.Verdict == "n/a" {
		t.Errorf("issue 11's goal: %+v, want a ratio measured against the do-nothing server", g)
	}

	doc, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	if !strings.HasPrefix(s, prose+beginMarker) || !strings.HasSuffix(s, endMarker+trailer) {
		t.Errorf("the prose around the markers was not kept:\n%s", s)
	}
	if strings.Contains(s, "stale table") {
		t.Error("the old generated section is still there")
	}
	for _, row := range []string{"| extauthz | hit |", "| extauthz | miss |", "| (a) do-nothing (grpc-go, net/http) | hit |"} {
		if strings.Count(s, row) != 2 { // one row per mode
			t.Errorf("BENCHMARKS.md has %d rows starting %q, want 2 (gRPC and HTTP)", strings.Count(s, row), row)
		}
	}
	for _, row := range []string{"| extauthz (50 rules, CEL) | hit |", "| extauthz (50 rules, CEL) | miss |"} {
		if strings.Count(s, row) != 1 { // gRPC only
			t.Errorf("BENCHMARKS.md has %d rows starting %q, want 1 (gRPC)", strings.Count(s, row), row)
		}
	}
	if !strings.Contains(s, "| 11 | gRPC, cache hits with a 50-rule config including CEL") {
		t.Error("BENCHMARKS.md lacks issue 11's target")
	}
	for _, text := range []string{"| extauthz | DPoP-bound token, fresh proof |", "**DPoP ÷ do-nothing:", "**DPoP ÷ bearer:", "### Many providers", "#### The replay cache's memory"} {
		if !strings.Contains(s, text) {
			t.Errorf("BENCHMARKS.md lacks %q", text)
		}
	}
	if !strings.Contains(stdout.String(), "### gRPC") {
		t.Errorf("stdout lacks the tables:\n%s", stdout.String())
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(config) string
		wantErr bool
	}{
		{
			name: "quick defaults",
			args: []string{"--quick"},
			check: func(c config) string {
				if strings.Join(c.targets, ",") != targetOurs+","+targetPolicy+","+targetNop || c.fill != 0 || c.halfDuration != 0 || c.out != "" || c.quietBelow != 0 || c.repeat != 1 {
					return "quick must select extauthz, extauthz-policy and nop, no fill, no half-saturation runs, no output file, no waiting for quiet, one run each"
				}
				if c.dpopRequests != 1_000 || c.replayFill != 2_000 || c.providers != 100 {
					return fmt.Sprintf("quick DPoP requests %d, replay fill %d, providers %d; want 1000, 2000, 100", c.dpopRequests, c.replayFill, c.providers)
				}
				return ""
			},
		},
		{
			name: "explicit flags win over quick",
			args: []string{"--quick", "--tokens", "7", "--targets", "extauthz,opa-envoy"},
			check: func(c config) string {
				if c.tokens != 7 || strings.Join(c.targets, ",") != "extauthz,opa-envoy" {
					return "explicit -tokens and -targets were overridden"
				}
				return ""
			},
		},
		{
			name: "token cache off",
			args: []string{"--token-cache", "off"},
			check: func(c config) string {
				if c.tokenCache != "" {
					return "token cache should be disabled"
				}
				return ""
			},
		},
		{name: "unknown target", args: []string{"--targets", "extauthz,envoy"}, wantErr: true},
		{name: "extauthz left out", args: []string{"--targets", "nop"}, wantErr: true},
		{name: "fewer requests than workers", args: []string{"--grpc-requests", "10", "-c", "50"}, wantErr: true},
		{name: "zero tokens", args: []string{"--tokens", "0"}, wantErr: true},
		{name: "fewer DPoP requests than workers", args: []string{"--dpop-requests", "10", "-c", "50"}, wantErr: true},
		{name: "negative replay fill", args: []string{"--replay-fill", "-1"}, wantErr: true},
		{name: "too many providers", args: []string{"--providers", "5000"}, wantErr: true},
		{
			name: "DPoP runs and the providers run off",
			args: []string{"--dpop-requests", "0", "--replay-fill", "0", "--providers", "0"},
			check: func(c config) string {
				if c.dpopRequests != 0 || c.replayFill != 0 || c.providers != 0 {
					return "0 must turn them off"
				}
				return ""
			},
		},
		{name: "quiet share above 1", args: []string{"--quiet-below", "1.5"}, wantErr: true},
		{name: "no repeat", args: []string{"--repeat", "0"}, wantErr: true},
		{name: "stray argument", args: []string{"now"}, wantErr: true},
		{name: "server environment without a value", args: []string{"--server-env", "GOGC"}, wantErr: true},
		{
			name: "server environment",
			args: []string{"--server-env", "GOGC=400", "--server-env=GOMAXPROCS=1"},
			check: func(c config) string {
				if strings.Join(c.serverEnv, " ") != "GOGC=400 GOMAXPROCS=1" {
					return fmt.Sprintf("serverEnv = %q", c.serverEnv)
				}
				return ""
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error %v", tc.args, err, tc.wantErr)
			}
			if err == nil && tc.check != nil {
				if msg := tc.check(c); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

// benchKeys is a KeySource holding the bench key.
type benchKeys struct{ key *rsa.PublicKey }

func (k benchKeys) Key(context.Context, *jwt.Token) (any, error) { return k.key, nil }

// TestPolicyConfig loads the extauthz-policy target's config as the server
// does (its config.Load: YAML, CEL type-checking, shadowed rules) and decides
// the harness's request with it: allowed by rules[policyAllowRule], whose
// condition decides (negated, the request is denied, so no earlier rule
// matched), and the probe's requests are denied.
func TestPolicyConfig(t *testing.T) {
	path, err := writePolicyConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	cfg, err := srvconfig.Load([]string{"--config", path, "--issuer", issuer, "--audience", audience, "--jwks-url", "http://127.0.0.1:1" + jwksPath}, noEnv, io.Discard)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	f := policyConfig()
	if len(cfg.Rules) != policyRules || policyAllowRule < policyRules*9/10 || len(cfg.Policies) != len(f.Policies) {
		t.Fatalf("got %d rules, %d named policies, the allowing rule at %d; want %d rules, %d policies, the allowing rule in the last tenth",
			len(cfg.Rules), len(cfg.Policies), policyAllowRule, policyRules, len(f.Policies))
	}
	if n := f.conditions(); n < 8 {
		t.Errorf("%d rules with a CEL condition, want at least 8", n)
	}
	if got := cfg.Rules[policyAllowRule].When; got != policyAllowWhen {
		t.Fatalf("rules[%d].when = %q, want %q", policyAllowRule, got, policyAllowWhen)
	}
	ts := tokensForTest(t)
	negated := slices.Clone(cfg.Rules)
	negated[policyAllowRule].When = "!(" + policyAllowWhen + ")"
	type policyCase struct {
		name   string
		rules  []authz.Rule
		method string
		token  string
		want   authz.Reason // "": any denial with PERMISSION_DENIED (the probes)
	}
	tests := []policyCase{
		{name: "the harness's request", rules: cfg.Rules, method: benchMethod, token: ts.hit, want: authz.Allowed},
		{name: "a miss token", rules: cfg.Rules, method: benchMethod, token: ts.distinct[0], want: authz.Allowed},
		{name: "the allowing rule's condition negated", rules: negated, method: benchMethod, token: ts.hit, want: authz.PolicyDenied},
		{name: "tampered", rules: cfg.Rules, method: benchMethod, token: tamper(ts.hit), want: authz.BadSignature},
	}
	for _, p := range policyProbes {
		tests = append(tests, policyCase{name: "probe " + p.Method, rules: cfg.Rules, method: p.Method, token: ts.hit})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := authz.New(authz.Config{
				Providers: []authz.Provider{{Name: "bench", Issuer: issuer, Audiences: []string{audience}, Keys: benchKeys{&ts.key.PublicKey}}},
				Rules:     tc.rules, Policies: cfg.Policies, Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			d := srv.Decide(t.Context(), authz.Request{Method: tc.method, Path: benchPath, Host: benchHost, Scheme: "http", Authorization: []string{"Bearer " + tc.token}})
			if tc.want == "" {
				if d.Allowed() || d.Reason.Code() != codes.PermissionDenied {
					t.Errorf("got %s, want a denial with %s", d.Reason, codes.PermissionDenied)
				}
				return
			}
			if d.Reason != tc.want {
				t.Errorf("got %s, want %s", d.Reason, tc.want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	ts := tokensForTest(t)
	seen := map[string]bool{ts.hit: true}
	for _, tok := range ts.distinct {
		if seen[tok] {
			t.Fatal("tokens are not distinct")
		}
		seen[tok] = true
	}
	for _, tc := range []struct {
		name  string
		token string
		valid bool
	}{
		{name: "hit", token: ts.hit, valid: true},
		{name: "miss", token: ts.distinct[3], valid: true},
		{name: "tampered", token: tamper(ts.hit), valid: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts := strings.Split(tc.token, ".")
			if len(parts) != 3 {
				t.Fatalf("got %d parts, want 3", len(parts))
			}
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
			err = rsa.VerifyPKCS1v15(&ts.key.PublicKey, crypto.SHA256, sum[:], sig)
			if got := err == nil; got != tc.valid {
				t.Fatalf("signature verifies: got %v, want %v (%v)", got, tc.valid, err)
			}
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				Iss string `json:"iss"`
				Aud string `json:"aud"`
				Exp int64  `json:"exp"`
			}
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatal(err)
			}
			if claims.Iss != issuer || claims.Aud != audience || time.Unix(claims.Exp, 0).Before(time.Now().Add(minTokenLife)) {
				t.Errorf("claims %+v: want iss %s, aud %s, exp beyond %s", claims, issuer, audience, minTokenLife)
			}
		})
	}
}

func TestTokenCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	first, err := loadTokens(dir, 3, now)
	if err != nil {
		t.Fatal(err)
	}
	if first.minted != 3 || first.cached {
		t.Fatalf("first load: minted %d, cached %v; want 3, false", first.minted, first.cached)
	}
	second, err := loadTokens(dir, 5, now)
	if err != nil {
		t.Fatal(err)
	}
	if second.minted != 2 || !second.cached || !second.key.Equal(first.key) {
		t.Fatalf("second load: minted %d, cached %v, same key %v; want 2, true, true", second.minted, second.cached, second.key.Equal(first.key))
	}
	if strings.Join(second.distinct[:3], ",") != strings.Join(first.distinct, ",") {
		t.Error("cached tokens were not reused in order")
	}
	st, err := os.Stat(filepath.Join(dir, cacheKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	// Close to expiry: a fresh key and fresh tokens.
	later, err := loadTokens(dir, 2, now.Add(tokenLifetime-minTokenLife/2))
	if err != nil {
		t.Fatal(err)
	}
	if later.cached || later.minted != 2 || later.key.Equal(first.key) {
		t.Errorf("expiring cache: cached %v, minted %d; want a new key and 2 new tokens", later.cached, later.minted)
	}
}

func TestCheckData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.bin")
	tokens := []string{"a.b.c", "d.e.f", "g.h.i"}
	if err := writeCheckData(path, tokens); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(raw) > 0 {
		n, k := protowire.ConsumeVarint(raw)
		if k < 0 || uint64(len(raw)-k) < n {
			t.Fatalf("bad length prefix at message %d", len(got))
		}
		var req authv3.CheckRequest
		if err := proto.Unmarshal(raw[k:k+int(n)], &req); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.TrimPrefix(req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"], "Bearer "))
		raw = raw[k+int(n):]
	}
	if strings.Join(got, " ") != strings.Join(tokens, " ") {
		t.Errorf("got tokens %q, want %q", got, tokens)
	}
}

func TestProtoset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.protoset")
	if err := writeProtoset(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for i, f := range set.GetFile() {
		names[f.GetName()] = i
	}
	auth, ok := names["envoy/service/auth/v3/external_auth.proto"]
	if !ok {
		t.Fatal("the ext_authz service is missing")
	}
	// Every import must come before its importer (ghz resolves in order).
	for i, f := range set.GetFile() {
		for _, dep := range f.GetDependency() {
			j, ok := names[dep]
			if !ok || j > i {
				t.Errorf("%s imports %s, which is missing or after it", f.GetName(), dep)
			}
		}
	}
	if svc := set.GetFile()[auth].GetService(); len(svc) != 1 || svc[0].GetName() != "Authorization" {
		t.Errorf("services %v, want Authorization", svc)
	}
}

func TestParseGhz(t *testing.T) {
	rep := `{"count":4,"total":2000000000,"rps":2.0,"data":[{"x":1}],"details":[
		{"latency":4000000,"status":"OK"},{"latency":1000000,"status":"OK"},
		{"latency":3000000,"status":"Unavailable","error":"x"},{"latency":2000000,"status":"OK"}]}`
	l, err := parseGhz(strings.NewReader(rep))
	if err != nil {
		t.Fatal(err)
	}
	if l.Requests != 4 || l.RPS != 2 || l.Errors != 1 || l.ErrorKinds["Unavailable"] != 1 {
		t.Errorf("got %+v, want 4 requests, 2 rps, 1 Unavailable error", l)
	}
	if l.P50 != 2*time.Millisecond || l.P99 != 4*time.Millisecond || l.P999 != 4*time.Millisecond {
		t.Errorf("got p50 %v p99 %v p99.9 %v, want 2ms 4ms 4ms", l.P50, l.P99, l.P999)
	}
	if _, err := parseGhz(strings.NewReader(`{"count":0,"details":[]}`)); err == nil {
		t.Error("a report without calls parsed without error")
	}
}

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    load
		wantErr bool
	}{
		{
			name: "clean",
			out: "Running 10s test\nBENCHJSON {\"requests\":1000,\"duration_us\":2000000,\"connect\":0,\"read\":0,\"write\":0,\"status\":0,\"timeout\":0," +
				"\"p50_us\":500,\"p99_us\":1500,\"p999_us\":3000,\"wraps\":0}\n",
			want: load{Stats: loadstat.Stats{Requests: 1000, Elapsed: 2 * time.Second, RPS: 500, P50: 500 * time.Microsecond, P99: 1500 * time.Microsecond, P999: 3 * time.Millisecond}},
		},
		{
			name: "errors and wraps",
			out: "BENCHJSON {\"requests\":10,\"duration_us\":1000000,\"connect\":1,\"read\":0,\"write\":0,\"status\":3,\"timeout\":2," +
				"\"p50_us\":1,\"p99_us\":2,\"p999_us\":3,\"wraps\":4}\n",
			want: load{Stats: loadstat.Stats{Requests: 10, Elapsed: time.Second, RPS: 10, P50: time.Microsecond, P99: 2 * time.Microsecond, P999: 3 * time.Microsecond,
				Errors: 6, ErrorKinds: map[string]int64{"connect": 1, "status>=400": 3, "timeout": 2}}, Wraps: 4},
		},
		{name: "no line", out: "Running 10s test\n", wantErr: true},
		{name: "no duration", out: "BENCHJSON {\"requests\":1}\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk(tc.out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if string(gj) != string(wj) {
				t.Errorf("got %s, want %s", gj, wj)
			}
		})
	}
}

func TestMissDuration(t *testing.T) {
	h := &harness{cfg: config{tokens: 100_000, wrkDuration: 10 * time.Second}}
	for _, tc := range []struct {
		rps  float64
		want time.Duration
	}{
		{rps: 50_000, want: time.Second},     // 100k tokens last 1.7s: whole seconds, rounded down
		{rps: 20_000, want: 4 * time.Second}, // 4.3s
		{rps: 8_000, want: 10 * time.Second}, // 10.9s, capped at -wrk-duration
		{rps: 1e9, want: time.Second},        // never below 1s
		{rps: 0, want: 10 * time.Second},     // unknown pace
	} {
		if got := h.missDuration(tc.rps); got != tc.want {
			t.Errorf("missDuration(%v) = %v, want %v", tc.rps, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 1000; i++ {
		s = append(s, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{p: 50, want: 500}, {p: 99, want: 990}, {p: 99.9, want: 999}, {p: 100, want: 1000}, {p: 0, want: 1}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(1..1000, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestReplaceGenerated(t *testing.T) {
	block := beginMarker + "\n\nNEW\n\n" + endMarker
	tests := []struct {
		name    string
		doc     string
		want    string
		wantErr bool
	}{
		{name: "empty", doc: "", want: block + "\n"},
		{name: "no markers", doc: "# T\nprose", want: "# T\nprose\n\n" + block + "\n"},
		{name: "replace", doc: "a\n" + beginMarker + "\nold\n" + endMarker + "\nb\n", want: "a\n" + block + "\nb\n"},
		{name: "only begin", doc: beginMarker + "\nold", wantErr: true},
		{name: "reversed", doc: endMarker + "\n" + beginMarker, wantErr: true},
		{name: "twice", doc: beginMarker + endMarker + beginMarker + endMarker, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replaceGenerated(tc.doc, "NEW\n")
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus([]byte("Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 1<<20 || m.Peak != 2<<20 {
		t.Errorf("got %+v, want RSS 1 MiB, peak 2 MiB", m)
	}
	if _, err := parseStatus([]byte("VmRSS:\t1 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("an unexpected unit parsed without error")
	}
	if _, err := memoryOf(os.Getpid()); err != nil {
		t.Errorf("memoryOf(self): %v", err)
	}
}

func TestParseProcStat(t *testing.T) {
	// pid (comm with ") spaces") state ppid ... utime=150 stime=50
	line := "42 (a) b c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0 100 0 0"
	got, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if got != 2*time.Second {
		t.Errorf("got %v, want 2s (200 ticks)", got)
	}
	if _, err := processCPU(os.Getpid()); err != nil {
		t.Errorf("processCPU(self): %v", err)
	}
	if _, err := cpuBusy(); err != nil {
		t.Errorf("cpuBusy: %v", err)
	}
}

// TestIDP checks the JWKS servers and that the CONNECT proxy tunnels
// idp.bench.test:443, and only it, to a TLS server trusted by the CA.
func TestIDP(t *testing.T) {
	ts := tokensForTest(t)
	body := benchJWKS(&ts.key.PublicKey)
	p, err := startIDP(body)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	get := func(c *http.Client, u string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	code, got, err := get(httpClient, p.URL)
	if err != nil || code != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("plain JWKS: status %d, err %v, body %q", code, err, got)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CAPEM) {
		t.Fatal("CA PEM does not parse")
	}
	proxy, err := url.Parse(p.ProxyURL)
	if err != nil {
		t.Fatal(err)
	}
	viaProxy := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
	code, got, err = get(viaProxy, issuer+jwksPath)
	if err != nil || code != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("TLS JWKS through the proxy: status %d, err %v, body %q", code, err, got)
	}
	if p.tlsHits.Load() != 1 || p.tunnels.Load() != 1 {
		t.Errorf("TLS hits %d, tunnels %d; want 1, 1", p.tlsHits.Load(), p.tunnels.Load())
	}
	// Any other destination is refused, so nothing leaves the machine.
	if _, _, err := get(viaProxy, "https://example.com/"); err == nil {
		t.Error("the proxy tunnelled to example.com")
	}
	// Without the CA the certificate is not trusted.
	untrusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	_, _, err = get(untrusting, issuer+jwksPath)
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); !ok {
		t.Errorf("without the CA: err %v, want a certificate verification error", err)
	}
}

func TestChildEnv(t *testing.T) {
	t.Setenv("AUTHZ_ISSUER", "x")
	t.Setenv("AUTHACTION_DOMAIN", "x")
	t.Setenv("https_proxy", "http://x")
	t.Setenv("SSL_CERT_FILE", "/x")
	t.Setenv("BENCH_KEEP", "1")
	env := "\n" + strings.Join(childEnv("EXTRA=1"), "\n") + "\n"
	for _, gone := range []string{"\nAUTHZ_ISSUER=", "\nAUTHACTION_DOMAIN=", "\nhttps_proxy=", "\nSSL_CERT_FILE="} {
		if strings.Contains(env, gone) {
			t.Errorf("%s is passed to children", gone)
		}
	}
	for _, kept := range []string{"\nBENCH_KEEP=1\n", "\nEXTRA=1\n"} {
		if !strings.Contains(env, kept) {
			t.Errorf("%s is not passed to children", kept)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtInt(1234567.6), "1,234,568"},
		{fmtInt(999), "999"},
		{fmtDur(450 * time.Microsecond), "450 µs"},
		{fmtDur(1234 * time.Microsecond), "1.23 ms"},
		{fmtDur(0), "–"},
		{fmtBytes(3 << 20), "3.0 MiB"},
		{fmtRatio(0.8123), "0.81×"},
		{fmtRatio(45.67), "45.7×"},
		{commandLine([]string{"--tokens", "5", "--server-arg=--a b"}), `go run ./bench --tokens 5 "--server-arg=--a b"`},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestWaitQuiet(t *testing.T) {
	tests := []struct {
		name  string
		cfg   config
		limit time.Duration // the call must return within this
	}{
		{name: "off", cfg: config{quietBelow: 0, quietWait: time.Minute}, limit: 100 * time.Millisecond},
		{name: "always quiet", cfg: config{quietBelow: 1.01, quietWait: time.Minute}, limit: 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{cfg: tc.cfg, log: io.Discard}
			start := time.Now()
			waited, err := h.waitQuiet(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if waited != 0 || time.Since(start) > tc.limit {
				t.Errorf("waited %v (reported) in %v, want 0 within %v", waited, time.Since(start), tc.limit)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	run := func(rps float64) result { return result{load: load{Stats: loadstat.Stats{RPS: rps}}} }
	tests := []struct {
		name string
		rps  []float64
		want float64
		runs []float64
	}{
		{name: "one run", rps: []float64{5}, want: 5},
		{name: "three runs", rps: []float64{9, 3, 7}, want: 7, runs: []float64{9, 3, 7}},
		{name: "even count takes the upper median", rps: []float64{4, 1, 3, 2}, want: 3, runs: []float64{4, 1, 3, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var runs []result
			for _, v := range tc.rps {
				runs = append(runs, run(v))
			}
			got := median(runs)
			if got.RPS != tc.want || !slices.Equal(got.RunsRPS, tc.runs) {
				t.Errorf("median = %v with runs %v, want %v with runs %v", got.RPS, got.RunsRPS, tc.want, tc.runs)
			}
			if len(runs) > 1 && runs[0].RunsRPS != nil {
				t.Error("median changed its input")
			}
		})
	}
}
