package grafana_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/deploy/grafana"
	"github.com/extauthz/extauthz/server"
)

const waitLong = 20 * time.Second

// dashboard is the part of the dashboard model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func load(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(grafana.Dashboard))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var (
	strLit    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	braces    = regexp.MustCompile(`\{[^{}]*\}`)
	brackets  = regexp.MustCompile(`\[[^\[\]]*\]`)
	grouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	token     = regexp.MustCompile(`(?:[0-9]+(?:ms|[smhdwy]))+\b|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	operators = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping clauses
// are removed, that are neither numbers, keywords nor called as functions.
func metricNames(expr string) []string {
	e := strLit.ReplaceAllString(expr, `""`)
	e = braces.ReplaceAllString(e, " ")
	e = brackets.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range token.FindAllStringIndex(e, -1) {
		tok := e[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || slices.Contains(operators, strings.ToLower(tok)) {
			continue
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		names = append(names, tok)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{expr: `sum by (result) (rate(extauthz_checks_total{job=~"$job"}[$__rate_interval]))`, want: []string{"extauthz_checks_total"}},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="by (y)"}[5m]))) / on (le) b`, want: []string{"a_bucket", "b"}},
		{expr: `count by (p) (x == 0) > 1e3 and y offset 5m`, want: []string{"x", "y"}},
	}
	for _, tc := range tests {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// TestDashboardShape: schema 39, a Prometheus data source variable that every
// panel and query uses, unique panel ids, and every query filtered by $job.
func TestDashboardShape(t *testing.T) {
	d := load(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("uid %q, title %q, schemaVersion %d; want both set and schema ~39", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "datasource" && string(v.Query) != `"prometheus"` {
			t.Errorf("variable %s queries %s data sources, want prometheus", v.Name, v.Query)
		}
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not use ${datasource}", v.Name)
		}
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" {
		t.Fatalf("variables %v, want datasource (a data source) and job (a query)", vars)
	}
	ids := map[int]string{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", p.Title, other, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v out of the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if q.Datasource != nil && q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v, want ${datasource}", p.Title, q.RefID, q.Datasource)
			}
			for _, sel := range braces.FindAllString(q.Expr, -1) {
				if !strings.Contains(sel, `job=~"$job"`) {
					t.Errorf("panel %q query %s: selector %s is not filtered by $job", p.Title, q.RefID, sel)
				}
			}
			if n, m := len(metricNames(q.Expr)), len(braces.FindAllString(q.Expr, -1)); n != m {
				t.Errorf("panel %q query %s: %d metrics but %d selectors: each metric needs {job=~\"$job\"}", p.Title, q.RefID, n, m)
			}
		}
	}
	if queries < 15 {
		t.Errorf("%d queries, want the full dashboard", queries)
	}
}

// TestDashboardMetricsExist scrapes a server running in-process and checks
// that every metric a query names is one the server exposes, and that the
// panels the dashboard promises are there.
func TestDashboardMetricsExist(t *testing.T) {
	fams := scrape(t)
	exposed := func(name string) bool {
		if fams[name] != nil {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if f := fams[base]; f != nil && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
					return true
				}
			}
		}
		return false
	}
	if exposed("extauthz_no_such_metric") {
		t.Fatal("exposed accepts a metric the server does not have")
	}
	d := load(t)
	used := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		for _, q := range p.Targets {
			for _, name := range metricNames(q.Expr) {
				used[name] = true
				if !exposed(name) {
					t.Errorf("panel %q query %s names %s, which the server does not expose", p.Title, q.RefID, name)
				}
			}
		}
	}
	for _, v := range d.Templating.List {
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) == nil && q.Query != "" {
			for _, name := range metricNames(strings.TrimPrefix(q.Query, "label_values")) {
				if name != "job" && !exposed(name) {
					t.Errorf("variable %s names %s, which the server does not expose", v.Name, name)
				}
			}
		}
	}
	for _, want := range []string{
		"extauthz_checks_total", "extauthz_check_duration_seconds_bucket", "extauthz_jwks_fetches_total",
		"extauthz_jwks_keys", "extauthz_jwks_seconds_since_last_success", "extauthz_config_reloads_total",
		"extauthz_token_cache_lookups_total", "go_memstats_heap_inuse_bytes",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// scrape runs a server with one provider, makes an allowed and a denied
// check (so that every family has a series), and parses /metrics.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "kid": "k", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	js := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(doc) }))
	t.Cleanup(js.Close)
	const iss, aud = "https://issuer.test", "https://api.test"
	cfg := &config.Config{
		Providers:           []config.Provider{{Name: "test", Issuer: iss, Audiences: []string{aud}, JWKSURL: js.URL, Algorithms: []string{"RS256"}}},
		JWKSRefreshInterval: time.Hour, JWKSMinRefreshInterval: time.Second, JWKSFetchTimeout: waitLong,
		Realm: "test", TokenCacheSize: 100, ShutdownGrace: time.Second,
	}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	gl, hl, al := listen(), listen(), listen()
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.DiscardHandler), GRPCListener: gl, HTTPListener: hl, AdminListener: al})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitLong):
			t.Error("Run did not return")
		}
	})
	client := &http.Client{Timeout: waitLong}
	get := func(req *http.Request) (int, []byte) {
		t.Helper()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	adminURL := "http://" + al.Addr().String()
	deadline := time.Now().Add(waitLong)
	for {
		req, _ := http.NewRequest(http.MethodGet, adminURL+"/readyz", nil)
		if code, _ := get(req); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": iss, "aud": aud, "sub": "s", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k"
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, bearer := range []string{raw, ""} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+hl.Addr().String()+"/api", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		get(req)
	}
	req, _ := http.NewRequest(http.MethodGet, adminURL+"/metrics", nil)
	code, body := get(req)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
