package proxyconf_test

import (
	"bytes"
	"errors"
	"flag"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/deploy/caddy"
	"github.com/extauthz/extauthz/deploy/nginx"
	"github.com/extauthz/extauthz/deploy/proxyconf"
	"github.com/extauthz/extauthz/envoy"
)

var update = flag.Bool("update", false, "rewrite deploy/nginx/nginx.conf and deploy/caddy/Caddyfile from the templates")

// TestGolden keeps the committed default configs equal to the templates
// rendered with zero values.
func TestGolden(t *testing.T) {
	cases := []struct {
		name      string
		render    func() ([]byte, error)
		committed string
		path      string
	}{
		{name: "nginx", render: func() ([]byte, error) { return proxyconf.RenderNginx(proxyconf.Nginx{}) }, committed: nginx.Config, path: "../nginx/nginx.conf"},
		{name: "caddy", render: func() ([]byte, error) { return proxyconf.RenderCaddy(proxyconf.Caddy{}) }, committed: caddy.Config, path: "../caddy/Caddyfile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.render()
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(tc.path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if string(got) != tc.committed {
				t.Errorf("%s is not the template rendered with defaults; run: go test ./deploy/proxyconf -run TestGolden -update", tc.path)
			}
		})
	}
}

func TestRenderNginx(t *testing.T) {
	state := t.TempDir()
	got, err := proxyconf.RenderNginx(proxyconf.Nginx{
		Listen:       "127.0.0.1:18080",
		Backend:      "127.0.0.1:18000",
		Authz:        "[::1]:19192",
		ClaimHeaders: []string{"X-Jwt-Sub", "X-User-Email"},
		StateDir:     state,
		AccessLog:    "off",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"listen 127.0.0.1:18080;",
		"server 127.0.0.1:18000;",
		"server [::1]:19192;",
		"auth_request_set $extauthz_x_jwt_sub $upstream_http_x_jwt_sub;",
		"proxy_set_header X-Jwt-Sub $extauthz_x_jwt_sub;",
		"auth_request_set $extauthz_x_user_email $upstream_http_x_user_email;",
		"proxy_set_header X-User-Email $extauthz_x_user_email;",
		"pid " + filepath.Join(state, "nginx.pid") + ";",
		"proxy_temp_path       " + filepath.Join(state, "proxy_temp") + ";",
		"access_log off;",
		"error_log stderr notice;",
		"underscores_in_headers off;",
		"auth_request /_extauthz;",
		"proxy_set_header X-Original-Method $request_method;",
		"proxy_set_header X-Original-Host $http_host;",
		"proxy_set_header X-Forwarded-Proto $scheme;",
		"proxy_set_header X-Client-Cert $ssl_client_escaped_cert;",
		`proxy_set_header X-Forwarded-Host "";`,
		"auth_request_set $extauthz_headers_to_remove $upstream_http_x_envoy_auth_headers_to_remove;",
		"proxy_set_header Authorization $extauthz_authorization;",
		"map $extauthz_headers_to_remove $extauthz_authorization {",
		"default $http_authorization;",
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("rendered nginx.conf lacks %q", want)
		}
	}
	if bytes.Contains(got, []byte("X-Jwt-Payload $")) {
		t.Error("rendered nginx.conf copies X-Jwt-Payload, which was not asked for")
	}
	for _, directive := range []string{"load_module", "more_clear_input_headers"} {
		if regexp.MustCompile(`(?m)^\s*` + directive + `\s`).Match(got) {
			t.Errorf("rendered nginx.conf has a %s directive without HeadersMoreModule", directive)
		}
	}
	if bytes.Contains(got, []byte("{{")) {
		t.Error("rendered nginx.conf contains template syntax")
	}

	allIfaces, err := proxyconf.RenderNginx(proxyconf.Nginx{Listen: ":8081"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(allIfaces, []byte("listen 8081;")) {
		t.Error(`Listen ":8081" did not render "listen 8081;"`)
	}
}

func TestRenderNginxHeadersMore(t *testing.T) {
	const mod = "/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so"
	got, err := proxyconf.RenderNginx(proxyconf.Nginx{ClaimHeaders: []string{"X-Jwt-Sub", "X-User-Email"}, HeadersMoreModule: mod})
	if err != nil {
		t.Fatal(err)
	}
	loadAt := bytes.Index(got, []byte("\nload_module "+mod+";\n"))
	if loadAt < 0 || loadAt > bytes.Index(got, []byte("\nhttp {")) {
		t.Errorf("rendered nginx.conf does not load %s in the main context", mod)
	}
	clear := []byte("more_clear_input_headers 'X-Jwt-*' 'X_Jwt_*' 'X-User-Email';\n")
	clearAt, authAt := bytes.Index(got, clear), bytes.Index(got, []byte("auth_request /_extauthz;"))
	if clearAt < 0 || clearAt > authAt || clearAt < bytes.Index(got, []byte("location / {")) {
		t.Errorf("rendered nginx.conf lacks %q in location / before auth_request", clear)
	}
	for _, want := range []string{
		"proxy_set_header X-Jwt-Sub $extauthz_x_jwt_sub;",
		"proxy_set_header X-User-Email $extauthz_x_user_email;",
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("rendered nginx.conf lacks %q", want)
		}
	}
}

func TestRenderCaddy(t *testing.T) {
	store := t.TempDir()
	got, err := proxyconf.RenderCaddy(proxyconf.Caddy{
		Listen:       "127.0.0.1:18080",
		Backend:      "127.0.0.1:18000",
		Authz:        "127.0.0.1:19192",
		ClaimHeaders: []string{"X-Jwt-Sub", "X-User-Email"},
		StorageDir:   store,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"http://:18080 {",
		"bind 127.0.0.1",
		"forward_auth 127.0.0.1:19192 {",
		"reverse_proxy 127.0.0.1:18000",
		"copy_headers X-Jwt-Sub X-User-Email",
		"request_header -X-Jwt-*",
		"request_header -X-User-Email",
		"request_header -X_User_Email",
		"storage file_system " + store,
		"admin off",
		"header_up X-Forwarded-Method {method}",
		"header_up X-Forwarded-Host {hostport}",
		"header_up X-Forwarded-Proto {scheme}",
		"header_up -X-Client-Cert",
		"include DPoP-Nonce",
		"header_up -X-Original-Host",
		"request_header @drop_authorization -Authorization",
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("rendered Caddyfile lacks %q", want)
		}
	}
	if bytes.Contains(got, []byte("request_header -X-Jwt-Sub\n")) {
		t.Error("X-Jwt-Sub gets its own strip line although X-Jwt-* covers it")
	}

	allIfaces, err := proxyconf.RenderCaddy(proxyconf.Caddy{Listen: ":8081"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(allIfaces, []byte("\tbind ")) || !bytes.Contains(allIfaces, []byte("http://:8081 {")) {
		t.Error(`Listen ":8081" should render site http://:8081 without bind`)
	}
}

// TestRenderRejects checks that values which could change the meaning of the
// generated config are refused rather than substituted.
func TestRenderRejects(t *testing.T) {
	cases := []struct {
		name  string
		nginx proxyconf.Nginx
		caddy proxyconf.Caddy
	}{
		{name: "directive injection in listen", nginx: proxyconf.Nginx{Listen: "127.0.0.1:8080; include /etc/passwd"}, caddy: proxyconf.Caddy{Listen: "127.0.0.1:8080 {\n}"}},
		{name: "newline in backend", nginx: proxyconf.Nginx{Backend: "127.0.0.1:8000\nserver evil:80"}, caddy: proxyconf.Caddy{Backend: "127.0.0.1:8000\nreverse_proxy evil:80"}},
		{name: "no port", nginx: proxyconf.Nginx{Authz: "127.0.0.1"}, caddy: proxyconf.Caddy{Authz: "127.0.0.1"}},
		{name: "port zero", nginx: proxyconf.Nginx{Listen: "127.0.0.1:0"}, caddy: proxyconf.Caddy{Listen: "127.0.0.1:0"}},
		{name: "port too big", nginx: proxyconf.Nginx{Backend: "127.0.0.1:65536"}, caddy: proxyconf.Caddy{Backend: "127.0.0.1:65536"}},
		{name: "upstream without host", nginx: proxyconf.Nginx{Backend: ":8000"}, caddy: proxyconf.Caddy{Authz: ":9192"}},
		{name: "underscore header", nginx: proxyconf.Nginx{ClaimHeaders: []string{"X_Jwt_Sub"}}, caddy: proxyconf.Caddy{ClaimHeaders: []string{"X_Jwt_Sub"}}},
		{name: "header injection", nginx: proxyconf.Nginx{ClaimHeaders: []string{"X-A $x; include y"}}, caddy: proxyconf.Caddy{ClaimHeaders: []string{"X-A\n}"}}},
		{name: "duplicate header", nginx: proxyconf.Nginx{ClaimHeaders: []string{"X-Jwt-Sub", "x-jwt-sub"}}, caddy: proxyconf.Caddy{ClaimHeaders: []string{"X-Jwt-Sub", "x-jwt-sub"}}},
		{name: "empty header list", nginx: proxyconf.Nginx{ClaimHeaders: []string{}}, caddy: proxyconf.Caddy{ClaimHeaders: []string{}}},
		{name: "relative state dir", nginx: proxyconf.Nginx{StateDir: "tmp/nginx"}, caddy: proxyconf.Caddy{StorageDir: "tmp/caddy"}},
		{name: "state dir with semicolon", nginx: proxyconf.Nginx{StateDir: "/tmp/x;y"}, caddy: proxyconf.Caddy{StorageDir: "/tmp/x }"}},
		{name: "dotdot state dir", nginx: proxyconf.Nginx{StateDir: "/tmp/../etc"}, caddy: proxyconf.Caddy{StorageDir: "/tmp/../etc"}},
		{name: "bad logs", nginx: proxyconf.Nginx{ErrorLog: "syslog:server=evil", AccessLog: "relative.log"}, caddy: proxyconf.Caddy{Listen: "localhost"}},
		{name: "relative module", nginx: proxyconf.Nginx{HeadersMoreModule: "modules/ngx_http_headers_more_filter_module.so"}, caddy: proxyconf.Caddy{Listen: ":x"}},
		{name: "module not a .so", nginx: proxyconf.Nginx{HeadersMoreModule: "/etc/passwd"}, caddy: proxyconf.Caddy{Listen: ":99999"}},
		{name: "module path injection", nginx: proxyconf.Nginx{HeadersMoreModule: "/x.so; include /etc/nginx/evil.conf; #.so"}, caddy: proxyconf.Caddy{Backend: "a b:1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := proxyconf.RenderNginx(tc.nginx); !errors.Is(err, proxyconf.ErrInvalid) {
				t.Errorf("RenderNginx(%+v) = %d bytes, %v; want an error wrapping ErrInvalid", tc.nginx, len(out), err)
			}
			if out, err := proxyconf.RenderCaddy(tc.caddy); !errors.Is(err, proxyconf.ErrInvalid) {
				t.Errorf("RenderCaddy(%+v) = %d bytes, %v; want an error wrapping ErrInvalid", tc.caddy, len(out), err)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	if got, want := strings.Join(proxyconf.NginxArgs("/x/nginx.conf", "/x"), " "), "-e stderr -p /x/ -c /x/nginx.conf"; got != want {
		t.Errorf("NginxArgs = %q, want %q", got, want)
	}
	if got, want := strings.Join(proxyconf.CaddyArgs("validate", "/x/Caddyfile"), " "), "validate --config /x/Caddyfile --adapter caddyfile"; got != want {
		t.Errorf("CaddyArgs = %q, want %q", got, want)
	}
	for _, kv := range proxyconf.CaddyEnv("/x") {
		if _, v, _ := strings.Cut(kv, "="); !strings.HasPrefix(v, "/x") {
			t.Errorf("CaddyEnv entry %q points outside /x", kv)
		}
	}
}

// connectionRewrite returns the regexp and replacement of the Caddyfile's
// rewrite of the Connection header.
func connectionRewrite(t *testing.T, caddyfile []byte) (*regexp.Regexp, string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*request_header Connection (\S+) (\S+)$`).FindSubmatch(caddyfile)
	if m == nil {
		t.Fatal("the Caddyfile has no request_header Connection <regexp> <replacement> line")
	}
	// Caddy compiles search_regexp with Go's regexp package.
	re, err := regexp.Compile(string(m[1]))
	if err != nil {
		t.Fatalf("Connection regexp %q: %v", m[1], err)
	}
	return re, string(m[2])
}

// connectionOptions is what Caddy's reverse_proxy reads from Connection
// values: comma-separated options, trimmed, empty ones skipped.
func connectionOptions(values ...string) []string {
	var out []string
	for _, v := range values {
		for opt := range strings.SplitSeq(v, ",") {
			if opt = strings.Trim(opt, " \t"); opt != "" {
				out = append(out, opt)
			}
		}
	}
	return out
}

// TestCaddyConnectionRewrite applies the rendered Caddyfile's Connection
// rewrite (with Go's regexp, as Caddy does) and checks that no remaining
// option names a claim header, while every other option survives.
func TestCaddyConnectionRewrite(t *testing.T) {
	claims := []string{"X-Jwt-Sub", "X-Jwt-Payload", "X-User-Email"}
	conf, err := proxyconf.RenderCaddy(proxyconf.Caddy{ClaimHeaders: claims})
	if err != nil {
		t.Fatal(err)
	}
	re, repl := connectionRewrite(t, conf)
	cases := []struct {
		name string
		in   []string
		want []string
	}{
		{name: "the guide's client", in: []string{"keep-alive, X-Jwt-Sub, X-Jwt-Payload"}, want: []string{"keep-alive"}},
		{name: "only claims", in: []string{"X-Jwt-Sub,X-Jwt-Payload,X-Jwt-Sub"}},
		{name: "case and whitespace", in: []string{"\tx-JWT-sub ,X-JWT-PAYLOAD\t,Upgrade"}, want: []string{"Upgrade"}},
		{name: "underscore and mixed spellings", in: []string{"X_Jwt_Sub, x-jwt_payload, X_User-Email"}},
		{name: "configured header outside the prefix", in: []string{"upgrade, X-User-Email"}, want: []string{"upgrade"}},
		{name: "any X-Jwt-* name", in: []string{"X-Jwt-Email, close"}, want: []string{"close"}},
		{name: "several header lines", in: []string{"keep-alive", "X-Jwt-Sub", "Upgrade, X-Jwt-Payload"}, want: []string{"keep-alive", "Upgrade"}},
		{name: "other options untouched", in: []string{"X-Hop, close, TE, X-Hop-X-Jwt-Sub"}, want: []string{"X-Hop", "close", "TE", "X-Hop-X-Jwt-Sub"}},
		{name: "empty options", in: []string{", ,X-Jwt-Sub,,"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]string, len(tc.in))
			for i, v := range tc.in {
				out[i] = re.ReplaceAllString(v, repl)
			}
			got := connectionOptions(out...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Connection %q became %q: options %q, want %q", tc.in, out, got, tc.want)
			}
			for _, opt := range got {
				for _, c := range claims {
					if http.CanonicalHeaderKey(opt) == c {
						t.Errorf("option %q still removes claim header %s", opt, c)
					}
				}
			}
		})
	}
}

// serverClaimHeaders are the claim headers the ext_authz server sets with
// the configs this repository ships: its defaults, and the claim_headers of
// the compose demo's config (none today; the defaults apply).
func serverClaimHeaders(t *testing.T) []string {
	t.Helper()
	var demo struct {
		ClaimHeaders map[string]string `yaml:"claim_headers"`
	}
	if err := yaml.Unmarshal([]byte(envoy.DemoAuthzConfig), &demo); err != nil {
		t.Fatalf("envoy/extauthz-demo.yaml: %v", err)
	}
	set := map[string]bool{}
	for name := range maps.Keys(authz.DefaultClaimHeaders()) {
		set[http.CanonicalHeaderKey(name)] = true
	}
	for name := range maps.Keys(demo.ClaimHeaders) {
		set[http.CanonicalHeaderKey(name)] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// TestDefaultsCoverServerClaimHeaders: nginx cannot delete headers by
// prefix, so it overwrites exactly the claim headers it was rendered with,
// and a claim header the server sets but nginx.conf does not list is passed
// from the client to the backend unchanged. The committed configs (the
// zero-value renderings) must therefore list every claim header the server
// sets with the shipped configs; so must the Caddyfile, which copies only
// the listed ones.
func TestDefaultsCoverServerClaimHeaders(t *testing.T) {
	server := serverClaimHeaders(t)
	var defaults []string
	for _, h := range proxyconf.DefaultClaimHeaders {
		defaults = append(defaults, http.CanonicalHeaderKey(h))
	}
	slices.Sort(defaults)
	if !slices.Equal(defaults, server) {
		t.Errorf("proxyconf.DefaultClaimHeaders = %q, but the server sets %q (authz.DefaultClaimHeaders, envoy/extauthz-demo.yaml)", defaults, server)
	}
	re, repl := connectionRewrite(t, []byte(caddy.Config))
	for _, h := range server {
		t.Run(h, func(t *testing.T) {
			v := strings.ReplaceAll(strings.ToLower(h), "-", "_")
			q := regexp.QuoteMeta
			nginxWant := []string{
				`(?m)^\s*auth_request_set \$extauthz_` + v + ` \$upstream_http_` + v + `;$`,
				`(?mi)^\s*proxy_set_header ` + q(h) + ` \$extauthz_` + v + `;$`,
			}
			for _, w := range nginxWant {
				if !regexp.MustCompile(w).MatchString(nginx.Config) {
					t.Errorf("deploy/nginx/nginx.conf does not overwrite %s (no line matching %s): a client's %s would reach the backend", h, w, h)
				}
			}
			caddyWant := []string{
				`(?mi)^\s*request_header @has_` + v + ` ` + q(h) + ` \{rp\.header\.` + q(h) + `\}$`,
			}
			if strings.HasPrefix(strings.ToLower(h), "x-jwt-") {
				caddyWant = append(caddyWant, `(?m)^\s*request_header -X-Jwt-\*$`, `(?m)^\s*request_header -X_Jwt_\*$`)
			} else {
				caddyWant = append(caddyWant, `(?mi)^\s*request_header -`+q(h)+`$`, `(?mi)^\s*request_header -`+q(strings.ReplaceAll(h, "-", "_"))+`$`)
			}
			for _, w := range caddyWant {
				if !regexp.MustCompile(w).MatchString(caddy.Config) {
					t.Errorf("deploy/caddy/Caddyfile has no line matching %s for %s", w, h)
				}
			}
			if got := connectionOptions(re.ReplaceAllString("keep-alive, "+h, repl)); !slices.Equal(got, []string{"keep-alive"}) {
				t.Errorf("the Caddyfile's Connection rewrite leaves %q for %q; %s would be removed after the check set it", got, "keep-alive, "+h, h)
			}
		})
	}
}

// tokenRemoval returns the regexps with which the committed configs decide,
// from the check's X-Envoy-Auth-Headers-To-Remove, to drop the
// Authorization header: nginx's map (PCRE, "~*" case-insensitive) and
// Caddy's vars_regexp (Go's regexp).
func tokenRemoval(t *testing.T) map[string]*regexp.Regexp {
	t.Helper()
	out := map[string]*regexp.Regexp{}
	m := regexp.MustCompile(`(?s)map \$extauthz_headers_to_remove \$extauthz_authorization \{\s*"~\*([^"]+)" "";\s*default \$http_authorization;\s*\}`).FindStringSubmatch(nginx.Config)
	if m == nil {
		t.Fatal("deploy/nginx/nginx.conf has no map from $extauthz_headers_to_remove to $extauthz_authorization with one case-insensitive regexp")
	}
	// The pattern uses nothing on which PCRE and RE2 differ.
	out["nginx"] = regexp.MustCompile("(?i)" + m[1])
	m = regexp.MustCompile(`(?m)^\s*@drop_authorization vars_regexp \{rp\.header\.X-Envoy-Auth-Headers-To-Remove\} (\S+)$`).FindStringSubmatch(caddy.Config)
	if m == nil {
		t.Fatal("deploy/caddy/Caddyfile has no @drop_authorization matcher on X-Envoy-Auth-Headers-To-Remove")
	}
	out["caddy"] = regexp.MustCompile(m[1])
	return out
}

// TestTokenRemoval: both proxies drop Authorization exactly when the
// check's X-Envoy-Auth-Headers-To-Remove names it, as Envoy would (a
// comma-separated list of header names, any case); a list that names it
// only as part of another name (Proxy-Authorization) keeps it.
func TestTokenRemoval(t *testing.T) {
	cases := []struct {
		value string
		drop  bool
	}{
		{value: "authorization", drop: true},
		{value: "x-jwt-payload,authorization", drop: true},
		{value: "authorization,x-jwt-sub", drop: true},
		{value: "x-jwt-sub, Authorization ,x-jwt-payload", drop: true},
		{value: "AUTHORIZATION", drop: true},
		{value: ""},
		{value: "x-jwt-sub,x-jwt-payload"},
		{value: "proxy-authorization"},
		{value: "x-authorization,authorizations"},
		{value: "x-jwt-sub,authorization-x"},
	}
	for name, re := range tokenRemoval(t) {
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				if got := re.MatchString(tc.value); got != tc.drop {
					t.Errorf("X-Envoy-Auth-Headers-To-Remove: %q: drop Authorization = %v, want %v", tc.value, got, tc.drop)
				}
			}
		})
	}
}
