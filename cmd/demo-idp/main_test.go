package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/logging"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/demo/idp"
	"github.com/extauthz/extauthz/internal/selfsigned"
)

func envFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, o options)
		wantErr string
	}{
		{
			name: "defaults",
			check: func(t *testing.T, o options) {
				want := options{addr: ":9000", adminAddr: "127.0.0.1:9001", issuer: "http://localhost:9000",
					audience: "https://api.example.com", tokenTTL: time.Hour, keyBits: 2048,
					publishDelay: 15 * time.Second, retireMargin: 2 * time.Minute, log: logging.Flags{Level: "info", Format: "text"}}
				if len(o.explicit) != 0 {
					t.Errorf("explicit = %v, want none", o.explicit)
				}
				o.explicit = nil
				if !reflect.DeepEqual(o, want) {
					t.Errorf("options = %+v, want %+v", o, want)
				}
			},
		},
		{
			name: "flags",
			args: []string{"--addr", "127.0.0.1:0", "--issuer", "http://127.0.0.1:1", "--audience", "a,b", "--token-ttl", "5m",
				"--key-bits", "3072", "--admin-addr", "", "--rotation-publish-delay", "0s", "--config", "x.yaml", "--log-level", "debug"},
			check: func(t *testing.T, o options) {
				if o.addr != "127.0.0.1:0" || o.issuer != "http://127.0.0.1:1" || o.audience != "a,b" || o.tokenTTL != 5*time.Minute ||
					o.keyBits != 3072 || o.adminAddr != "" || o.publishDelay != 0 || o.configFile != "x.yaml" || o.log.Level != "debug" {
					t.Errorf("options = %+v", o)
				}
			},
		},
		{
			name: "environment",
			env:  map[string]string{"IDP_TOKEN_TTL": "90s", "IDP_ADMIN_ADDR": "127.0.0.1:0", "IDP_ROTATION_PUBLISH_DELAY": "1s"},
			check: func(t *testing.T, o options) {
				if o.tokenTTL != 90*time.Second || o.adminAddr != "127.0.0.1:0" || o.publishDelay != time.Second {
					t.Errorf("options = %+v", o)
				}
				if !o.explicit["token-ttl"] || o.explicit["audience"] {
					t.Errorf("explicit = %v, want token-ttl only among those", o.explicit)
				}
			},
		},
		{
			name: "command line beats environment",
			args: []string{"--token-ttl", "2m"},
			env:  map[string]string{"IDP_TOKEN_TTL": "not-a-duration"},
			check: func(t *testing.T, o options) {
				if o.tokenTTL != 2*time.Minute {
					t.Errorf("token TTL = %s, want 2m", o.tokenTTL)
				}
			},
		},
		{name: "bad env value names the variable", env: map[string]string{"IDP_KEY_BITS": "lots"}, wantErr: "IDP_KEY_BITS"},
		{name: "unknown flag", args: []string{"--audiences", "x"}, wantErr: "audiences"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected arguments"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "loud"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: "xml"},
		{
			name: "TLS flags",
			args: []string{"--tls-addr", "127.0.0.1:9443", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
			check: func(t *testing.T, o options) {
				if o.tlsAddr != "127.0.0.1:9443" || o.tlsCert != "c.pem" || o.tlsKey != "k.pem" || o.tlsCertOut != "" {
					t.Errorf("options = %+v", o)
				}
			},
		},
		{name: "TLS cert without key", args: []string{"--tls-addr", ":0", "--tls-cert", "c.pem"}, wantErr: "--tls-key"},
		{name: "TLS key without cert", args: []string{"--tls-addr", ":0", "--tls-key", "k.pem"}, wantErr: "--tls-cert"},
		{name: "TLS cert out with a given cert", args: []string{"--tls-addr", ":0", "--tls-cert", "c", "--tls-key", "k", "--tls-cert-out", "o"},
			wantErr: "--tls-cert-out"},
		{name: "TLS cert out without a TLS listener", env: map[string]string{"IDP_TLS_CERT_OUT": "o.pem"}, wantErr: "--tls-addr"},
		{name: "TLS cert without a TLS listener", args: []string{"--tls-cert", "c", "--tls-key", "k"}, wantErr: "--tls-addr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, envFrom(tc.env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags: %v", err)
			}
			tc.check(t, o)
		})
	}
}

func TestConfigMerge(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "idp.yaml")
	yaml := "token_ttl: 10m\naudiences: [https://file.example.com]\nclients:\n  - id: svc\n    secret: s\n    scopes: [x]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("clients:\n  - id: a\n    secrett: b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantTTL time.Duration
		wantAud []string
		wantErr string
	}{
		{name: "file values", args: []string{"--config", file}, wantTTL: 10 * time.Minute, wantAud: []string{"https://file.example.com"}},
		{name: "explicit flags win", args: []string{"--config", file, "--token-ttl", "1m", "--audience", "https://file.example.com, https://b"},
			wantTTL: time.Minute, wantAud: []string{"https://file.example.com", "https://b"}},
		{name: "no file", args: nil, wantTTL: time.Hour, wantAud: []string{"https://api.example.com"}},
		{name: "bad file names line", args: []string{"--config", bad}, wantErr: "line 3"},
		{name: "empty audience", args: []string{"--audience", " , "}, wantErr: "--audience"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, envFrom(nil), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := o.idpConfig(nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.TokenTTL != tc.wantTTL || !slices.Equal(cfg.Audiences, tc.wantAud) {
				t.Errorf("TTL %s audiences %q, want %s %q", cfg.TokenTTL, cfg.Audiences, tc.wantTTL, tc.wantAud)
			}
			if cfg.RotationPublishDelay != 15*time.Second || cfg.KeyBits != 2048 {
				t.Errorf("delay %s bits %d, want 15s 2048", cfg.RotationPublishDelay, cfg.KeyBits)
			}
		})
	}
	o, _ := parseFlags([]string{"--rotation-publish-delay", "0", "--retire-margin", "0"}, envFrom(nil), io.Discard)
	cfg, _ := o.idpConfig(nil)
	if cfg.RotationPublishDelay >= 0 || cfg.RetireMargin >= 0 {
		t.Errorf("0 on the command line gave delay %s margin %s, want negative (none)", cfg.RotationPublishDelay, cfg.RetireMargin)
	}
}

// syncBuffer is an io.Writer safe for the logger and the test to share.
type syncBuffer = testutil.Buffer

// start runs the command with args until ctx ends, waits until it has
// logged the addresses of the listeners named in want, and returns them
// ("host:port" by listener name), its output and its exit code.
func start(t *testing.T, ctx context.Context, args []string, hup chan os.Signal, want ...string) (map[string]string, *syncBuffer, <-chan int) {
	t.Helper()
	out := new(syncBuffer)
	code := make(chan int, 1)
	go func() { code <- run(ctx, args, envFrom(nil), out, hup) }()
	addrs := map[string]string{}
	re := regexp.MustCompile(`msg=listening listener=(\w+) addr=(\S+)`)
	for len(addrs) < len(want) {
		select {
		case c := <-code:
			t.Fatalf("run exited with %d before listening:\n%s", c, out.String())
		case <-ctx.Done():
			t.Fatalf("no listening lines:\n%s", out.String())
		case <-time.After(10 * time.Millisecond):
		}
		for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
			addrs[m[1]] = m[2]
		}
	}
	for _, name := range want {
		if addrs[name] == "" {
			t.Fatalf("no %s listener in %v", name, addrs)
		}
	}
	return addrs, out, code
}

// TestRun starts the command on ephemeral loopback ports, finds them in
// its log, and drives it over real sockets: token, JWKS, rotation by
// SIGHUP and by the admin port, then shutdown.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	hup := make(chan os.Signal, 1)
	addrs, out, code := start(t, ctx, []string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--rotation-publish-delay", "0"},
		hup, "public", "admin")
	for name, a := range addrs {
		addrs[name] = "http://" + a
	}
	if !strings.Contains(out.String(), "WARNING: demo-idp is a DEMO identity provider") {
		t.Errorf("no demo warning in output:\n%s", out.String())
	}

	get := func(url string) []byte {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
		}
		return b
	}
	keyCount := func() int {
		var set struct{ Keys []json.RawMessage }
		if err := json.Unmarshal(get(addrs["public"]+idp.JWKSPath), &set); err != nil {
			t.Fatal(err)
		}
		return len(set.Keys)
	}

	body := `{"client_id":"demo-client","client_secret":"demo-secret","audience":"https://api.example.com","grant_type":"client_credentials"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, addrs["public"]+idp.TokenPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: status %d", resp.StatusCode)
	}
	if got := keyCount(); got != 1 {
		t.Fatalf("keys before rotation = %d, want 1", got)
	}

	hup <- syscall.SIGHUP
	deadline := time.Now().Add(10 * time.Second)
	for keyCount() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not publish a second key:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, addrs["admin"]+idp.RotatePath, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin rotate: status %d", resp.StatusCode)
	}
	// The first key signed a token and stays; the second never signed and
	// was superseded at once (no publish delay), so it is gone.
	if got := keyCount(); got != 2 {
		t.Errorf("keys after admin rotation = %d, want 2", got)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, addrs["public"]+idp.RotatePath, nil)
	if resp, err = http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("rotate on the public port: status %d, want 404", resp.StatusCode)
		}
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code = %d, want 0:\n%s", c, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if strings.Contains(out.String(), "eyJ") {
		t.Errorf("log contains something that looks like a token:\n%s", out.String())
	}
}

func TestRunBadConfig(t *testing.T) {
	var out syncBuffer
	if c := run(t.Context(), []string{"--key-bits", "1024"}, envFrom(nil), &out, nil); c != 2 {
		t.Errorf("exit code = %d, want 2", c)
	}
	if !strings.Contains(out.String(), "key bits") {
		t.Errorf("output %q does not explain the error", out.String())
	}
	if c := run(t.Context(), []string{"--help"}, envFrom(nil), io.Discard, nil); c != 0 {
		t.Errorf("--help exit code = %d, want 0", c)
	}
}

// TestRunTLS runs the command with a TLS listener, with a generated
// certificate and with a given one, and drives it over real TLS: it serves
// the certificate it logged, wrote or was given, refuses TLS 1.1, publishes
// the TLS token endpoint in discovery on both listeners, and binds a token
// requested there to the client certificate presented.
func TestRunTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := selfsigned.Generate("given", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	given, key := filepath.Join(dir, "given.pem"), filepath.Join(dir, "given-key.pem")
	if err := os.WriteFile(given, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clientCert, err := selfsigned.KeyPair("demo-client", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(clientCert.Leaf.Raw)
	wantX5t := base64.RawURLEncoding.EncodeToString(sum[:])

	tests := []struct {
		name      string
		tlsArgs   []string
		certFile  string // the certificate the listener must serve
		generated bool
	}{
		{name: "generated certificate", tlsArgs: []string{"--tls-cert-out", filepath.Join(dir, "out.pem")},
			certFile: filepath.Join(dir, "out.pem"), generated: true},
		{name: "given certificate", tlsArgs: []string{"--tls-cert", given, "--tls-key", key}, certFile: given},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			args := append([]string{"--addr", "127.0.0.1:0", "--admin-addr", "", "--tls-addr", "127.0.0.1:0"}, tc.tlsArgs...)
			addrs, out, code := start(t, ctx, args, nil, "public", "tls")
			defer func() {
				cancel()
				if c := <-code; c != 0 {
					t.Errorf("exit code = %d, want 0:\n%s", c, out.String())
				}
			}()

			pemBytes, err := os.ReadFile(tc.certFile)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(pemBytes)
			if block == nil {
				t.Fatalf("%s holds no PEM certificate", tc.certFile)
			}
			logged := strings.Contains(out.String(), "sha256_fingerprint="+selfsigned.Fingerprint(block.Bytes))
			if logged != tc.generated {
				t.Errorf("fingerprint of the served certificate logged: %v, want %v:\n%s", logged, tc.generated, out.String())
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(pemBytes)
			client := func(tlsCfg *tls.Config) *http.Client {
				tr := &http.Transport{TLSClientConfig: tlsCfg}
				t.Cleanup(tr.CloseIdleConnections)
				return &http.Client{Transport: tr, Timeout: 10 * time.Second}
			}
			c := client(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}})
			base := "https://" + addrs["tls"]

			if _, err := client(&tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}).Get(base + idp.DiscoveryPath); err == nil {
				t.Error("a TLS 1.1 client was served")
			}
			_, port, _ := net.SplitHostPort(addrs["tls"])
			wantAlias := "https://localhost:" + port + idp.TokenPath
			for _, u := range []string{base + idp.DiscoveryPath, "http://" + addrs["public"] + idp.DiscoveryPath} {
				resp, err := c.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				var disc struct {
					Bound   bool `json:"tls_client_certificate_bound_access_tokens"`
					Aliases struct {
						TokenEndpoint string `json:"token_endpoint"`
					} `json:"mtls_endpoint_aliases"`
				}
				err = json.NewDecoder(resp.Body).Decode(&disc)
				resp.Body.Close()
				if err != nil || !disc.Bound || disc.Aliases.TokenEndpoint != wantAlias {
					t.Errorf("%s: %+v, %v; want bound tokens and the alias %s", u, disc, err, wantAlias)
				}
				if resp.TLS != nil && !bytes.Equal(resp.TLS.PeerCertificates[0].Raw, block.Bytes) {
					t.Errorf("the TLS listener serves another certificate than %s", tc.certFile)
				}
			}

			body := `{"client_id":"demo-client","client_secret":"demo-secret","grant_type":"client_credentials"}`
			resp, err := c.Post(base+idp.TokenPath, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var tr struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK || tr.TokenType != "Bearer" {
				t.Fatalf("token over TLS: status %d, type %q, %v", resp.StatusCode, tr.TokenType, err)
			}
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(tr.AccessToken, claims); err != nil {
				t.Fatal(err)
			}
			if cnf, _ := claims["cnf"].(map[string]any); cnf["x5t#S256"] != wantX5t {
				t.Errorf("cnf = %v, want x5t#S256 %s", claims["cnf"], wantX5t)
			}
		})
	}
}
