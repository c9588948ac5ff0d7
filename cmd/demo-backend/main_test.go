package main

import (
	"context"
	"encoding/json"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/logging"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
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
		want    options
		wantErr string
	}{
		{name: "defaults", want: options{addr: ":8000", subHeader: "x-jwt-sub", log: logging.Flags{Level: "info", Format: "text"}}},
		{name: "flags", args: []string{"--addr", "127.0.0.1:0", "--sub-header", "x-user", "--log-format", "json"},
			want: options{addr: "127.0.0.1:0", subHeader: "x-user", log: logging.Flags{Level: "info", Format: "json"}}},
		{name: "environment", env: map[string]string{"BACKEND_SUB_HEADER": "x-user", "BACKEND_LOG_LEVEL": "debug"},
			want: options{addr: ":8000", subHeader: "x-user", log: logging.Flags{Level: "debug", Format: "text"}}},
		{name: "command line beats environment", args: []string{"--addr", "127.0.0.1:1"}, env: map[string]string{"BACKEND_ADDR": "0.0.0.0:2"},
			want: options{addr: "127.0.0.1:1", subHeader: "x-jwt-sub", log: logging.Flags{Level: "info", Format: "text"}}},
		{name: "bad env level", env: map[string]string{"BACKEND_LOG_LEVEL": "loud"}, wantErr: "loud"},
		{name: "unknown flag", args: []string{"--port", "1"}, wantErr: "port"},
		{name: "stray argument", args: []string{"x"}, wantErr: "unexpected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFlags(tc.args, envFrom(tc.env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("options = %+v, want %+v", got, tc.want)
			}
		})
	}
}

type syncBuffer = testutil.Buffer

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--addr", "127.0.0.1:0", "--sub-header", "X-User"}, envFrom(nil), &out)
	}()
	re := regexp.MustCompile(`msg=listening addr=(\S+)`)
	var base string
	for base == "" {
		select {
		case c := <-code:
			t.Fatalf("run exited with %d:\n%s", c, out.String())
		case <-ctx.Done():
			t.Fatalf("no listening line:\n%s", out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = "http://" + m[1]
		}
	}
	if strings.Contains(out.String(), "beyond loopback") {
		t.Errorf("loopback listener warned about exposure:\n%s", out.String())
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/protected", nil)
	req.Header.Set("X-User", "demo-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || body["sub"] != "demo-client" {
		t.Errorf("GET /protected = %d %v (%v), want 200 with sub demo-client", resp.StatusCode, body, err)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code = %d, want 0", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// TestIsLoopback covers the exposure warning without binding beyond
// loopback in a test.
func TestIsLoopback(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		want bool
	}{
		{name: "ipv4 loopback", addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000}, want: true},
		{name: "ipv6 loopback", addr: &net.TCPAddr{IP: net.IPv6loopback, Port: 8000}, want: true},
		{name: "all interfaces", addr: &net.TCPAddr{IP: net.IPv6unspecified, Port: 8000}, want: false},
		{name: "private address", addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8000}, want: false},
		{name: "unix socket", addr: &net.UnixAddr{Name: "/tmp/x", Net: "unix"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isLoopback(tc.addr); got != tc.want {
				t.Errorf("isLoopback(%v) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}

func TestRunBadHeader(t *testing.T) {
	var out syncBuffer
	if c := run(t.Context(), []string{"--addr", "127.0.0.1:0", "--sub-header", "bad header"}, envFrom(nil), &out); c != 2 {
		t.Errorf("exit code = %d, want 2", c)
	}
}
