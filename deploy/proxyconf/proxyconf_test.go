package proxyconf_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/deploy/caddy"
	"github.com/extauthz/extauthz/deploy/nginx"
	"github.com/extauthz/extauthz/deploy/proxyconf"
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
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("rendered nginx.conf lacks %q", want)
		}
	}
	if bytes.Contains(got, []byte("X-Jwt-Payload")) {
		t.Error("rendered nginx.conf copies X-Jwt-Payload, which was not asked for")
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
