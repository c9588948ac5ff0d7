package idp

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	const full = `# demo issuer
token_ttl: 30m
audiences:
  - https://api.example.com
  - https://other.example.com
clients:
  - id: svc
    secret: s3cret
    scopes: [read:messages, admin]
    audiences: [https://other.example.com]
  - id: plain
    secret: p
  - id: short
    secret: q
    token_ttl: 2s
`
	got, err := ParseConfig([]byte(full))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := Config{
		TokenTTL:  30 * time.Minute,
		Audiences: []string{"https://api.example.com", "https://other.example.com"},
		Clients: []Client{
			{ID: "svc", Secret: "s3cret", Scopes: []string{"read:messages", "admin"}, Audiences: []string{"https://other.example.com"}},
			{ID: "plain", Secret: "p"},
			{ID: "short", Secret: "q", TokenTTL: 2 * time.Second},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseConfig =\n%+v\nwant\n%+v", got, want)
	}
	if _, err := New(withQuiet(t, got)); err != nil {
		t.Errorf("New(parsed config): %v", err)
	}

	empty, err := ParseConfig(nil)
	if err != nil || !reflect.DeepEqual(empty, Config{}) {
		t.Errorf("ParseConfig(empty) = %+v, %v; want zero Config, nil", empty, err)
	}
}

func withQuiet(t *testing.T, cfg Config) Config {
	cfg.Logger = testLogger(t)
	return cfg
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantLine string // "line N" that must appear in the error
		wantText string
	}{
		{
			name:     "unknown top-level key",
			yaml:     "token_ttl: 1h\ntoken_tll: 2h\n",
			wantLine: "line 2", wantText: "token_tll",
		},
		{
			name:     "unknown client key",
			yaml:     "clients:\n  - id: a\n    secret: b\n    scope: [x]\n",
			wantLine: "line 4", wantText: "scope",
		},
		{
			name:     "repeated key",
			yaml:     "token_ttl: 1h\ntoken_ttl: 2h\n",
			wantLine: "line 2", wantText: "already defined at line 1",
		},
		{
			name:     "bad duration",
			yaml:     "audiences: [a]\ntoken_ttl: soon\n",
			wantLine: "line 2", wantText: "soon",
		},
		{
			name:     "ttl too short",
			yaml:     "\n\ntoken_ttl: 10ms\n",
			wantLine: "line 3", wantText: "at least 1s",
		},
		{
			name:     "client ttl too short",
			yaml:     "clients:\n  - id: a\n    secret: b\n  - id: c\n    secret: d\n    token_ttl: 500ms\n",
			wantLine: "line 4", wantText: "at least 1s",
		},
		{
			name:     "missing secret",
			yaml:     "clients:\n  - id: a\n    secret: b\n  - id: c\n    scopes: [x]\n",
			wantLine: "line 4", wantText: "secret is required",
		},
		{
			name:     "missing id",
			yaml:     "clients:\n  - secret: b\n",
			wantLine: "line 2", wantText: "id is required",
		},
		{
			name:     "duplicate client",
			yaml:     "clients:\n  - id: a\n    secret: b\n  - id: a\n    secret: c\n",
			wantLine: "line 4", wantText: "already defined on line 2",
		},
		{
			name:     "client audience not listed",
			yaml:     "audiences: [https://a]\nclients:\n  - id: a\n    secret: b\n    audiences:\n      - https://a\n      - https://b\n",
			wantLine: "line 7", wantText: "https://b",
		},
		{
			name:     "bad scope",
			yaml:     "clients:\n  - id: a\n    secret: b\n    scopes: ['has space']\n",
			wantLine: "line 2", wantText: "scope",
		},
		{
			name:     "empty audience",
			yaml:     "audiences:\n  - ok\n  - ''\n",
			wantLine: "line 3", wantText: "audience",
		},
		{
			name:     "wrong type",
			yaml:     "clients: yes\n",
			wantLine: "line 1", wantText: "cannot unmarshal",
		},
		{
			name:     "two documents",
			yaml:     "token_ttl: 1h\n---\ntoken_ttl: 2h\n",
			wantLine: "line 2", wantText: "one YAML document",
		},
		{
			name:     "syntax error",
			yaml:     "clients:\n  - id: [\n",
			wantLine: "line 2", wantText: "did not find",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error = %v, want %v", err, ErrInvalidConfig)
			}
			if !strings.Contains(err.Error(), tc.wantLine+":") {
				t.Errorf("error %q does not name %q", err, tc.wantLine)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	huge := filepath.Join(dir, "huge.yaml")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(good, []byte("token_ttl: 5m\n"), 0o600))
	must(os.WriteFile(bad, []byte("token_ttl: 5m\nclientz: []\n"), 0o600))
	must(os.WriteFile(huge, []byte("#"+strings.Repeat("x", maxConfigBytes)+"\n"), 0o600))

	cfg, err := LoadConfig(good)
	if err != nil || cfg.TokenTTL != 5*time.Minute {
		t.Errorf("LoadConfig(good) = %+v, %v; want token TTL 5m", cfg, err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error
		want    string
	}{
		{name: "unknown key", path: bad, wantErr: ErrInvalidConfig, want: "bad.yaml: idp: invalid config: line 2: field clientz"},
		{name: "too large", path: huge, wantErr: ErrInvalidConfig, want: "larger than"},
		{name: "missing", path: filepath.Join(dir, "nope.yaml"), wantErr: fs.ErrNotExist, want: "nope.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(tc.path)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "relative issuer", cfg: Config{Issuer: "localhost:9000"}, want: "issuer"},
		{name: "issuer with query", cfg: Config{Issuer: "http://localhost:9000/?x=1"}, want: "issuer"},
		{name: "issuer with user", cfg: Config{Issuer: "http://u:p@localhost:9000"}, want: "issuer"},
		{name: "ftp issuer", cfg: Config{Issuer: "ftp://localhost"}, want: "issuer"},
		{name: "plain http MTLS base URL", cfg: Config{MTLSBaseURL: "http://localhost:9443"}, want: "MTLS base URL"},
		{name: "relative MTLS base URL", cfg: Config{MTLSBaseURL: "localhost:9443"}, want: "MTLS base URL"},
		{name: "MTLS base URL with query", cfg: Config{MTLSBaseURL: "https://localhost:9443/?x"}, want: "MTLS base URL"},
		{name: "small key", cfg: Config{KeyBits: 1024}, want: "key bits"},
		{name: "huge key", cfg: Config{KeyBits: 16384}, want: "key bits"},
		{name: "negative ttl", cfg: Config{TokenTTL: -time.Hour}, want: "TTL"},
		{name: "sub-second ttl", cfg: Config{TokenTTL: 500 * time.Millisecond}, want: "TTL"},
		{name: "audience with space", cfg: Config{Audiences: []string{"a b"}}, want: "audience"},
		{name: "client audience not allowed", cfg: Config{Clients: []Client{{ID: "a", Secret: "b", Audiences: []string{"https://x"}}}}, want: "https://x"},
		{name: "duplicate client", cfg: Config{Clients: []Client{{ID: "a", Secret: "b"}, {ID: "a", Secret: "c"}}}, want: "twice"},
		{name: "client without secret", cfg: Config{Clients: []Client{{ID: "a"}}}, want: "secret"},
		{name: "client sub-second ttl", cfg: Config{Clients: []Client{{ID: "a", Secret: "b", TokenTTL: time.Millisecond}}}, want: "token_ttl"},
		{name: "client negative ttl", cfg: Config{Clients: []Client{{ID: "a", Secret: "b", TokenTTL: -time.Second}}}, want: "token_ttl"},
		{name: "client id with control char", cfg: Config{Clients: []Client{{ID: "a\n", Secret: "b"}}}, want: "id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(withQuiet(t, tc.cfg))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error = %v, want %v", err, ErrInvalidConfig)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestClientLogValueHidesSecret(t *testing.T) {
	var b strings.Builder
	l := slog.New(slog.NewTextHandler(&b, nil))
	l.Info("client", "client", Client{ID: "demo-client", Secret: "demo-secret", Scopes: []string{"x"}})
	if strings.Contains(b.String(), "demo-secret") {
		t.Errorf("log line %q contains the secret", b.String())
	}
	if !strings.Contains(b.String(), "demo-client") {
		t.Errorf("log line %q lacks the id", b.String())
	}
}
