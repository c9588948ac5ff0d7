package config

// The scalar settings, one row each. A row is everything about its setting:
// flag, variable, file key, default, parsing and validation, usage, what a
// reload does with it, whether a provider's key cache depends on it. The
// flags, the variables, the file's keys, the assignment into Config, the
// restart warning and the key cache identity are all derived from the rows.

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/jwks"
)

// The defaults of the check listeners' bounds. The server gives them to the
// zero values of a Config built by hand, too.
const (
	DefaultGRPCMaxRecvBytes   = 1 << 20
	DefaultGRPCMaxStreams     = 1024
	DefaultHTTPMaxHeaderBytes = 64 << 10
	DefaultHTTPReadTimeout    = 10 * time.Second
)

// reload is what a configuration reload does with a setting.
type reload int

const (
	// hot: a reload applies the new value.
	hot reload = iota
	// restart: bound at start (a listener, its limits, the log handler); a
	// reload keeps the running value and names the setting in a warning.
	restart
	// hotWithLevelVar: a reload applies it only when the server was given
	// a slog.LevelVar to set (log-level); otherwise as restart.
	hotWithLevelVar
)

// setting describes one scalar setting.
type setting struct {
	name  string // flag name; the variable is AUTHZ_ + upper(name with _), the file key name with _
	def   string // the default, as the flag's text
	usage string
	// reload is what a reload does with a change.
	reload reload
	// keySet: a provider's JWKS key cache is built with this setting, so a
	// change needs a new cache (see KeySetSettings).
	keySet bool
	// field is where the setting goes in Config. Nil for the settings the
	// provider and rule steps read themselves (configFile, issuer, audience,
	// jwks-url, public-paths).
	field field
}

// configFile is the setting that names the file: it is no file key itself.
const configFile = "config"

func (s setting) env() string {
	return "AUTHZ_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

func (s setting) key() string { return strings.ReplaceAll(s.name, "-", "_") }

// isSwitch reports a true-or-false setting: its bare flag means true.
func (s setting) isSwitch() bool {
	_, ok := s.field.(typed[bool])
	return ok
}

var settings = []setting{
	{name: configFile, usage: "YAML config file: providers, rules, claim headers and any setting below"},
	{name: "issuer", usage: "expected iss of tokens (single-provider mode)"},
	{name: "audience", usage: "accepted aud values, comma-separated (single-provider mode)"},
	{name: "jwks-url", usage: "JWKS endpoint (default <issuer>/.well-known/jwks.json)"},
	{name: "grpc-addr", def: ":9191", usage: "listen address of the Envoy ext_authz v3 gRPC service and gRPC health",
		reload: restart, field: bind(func(c *Config) *string { return &c.GRPCAddr }, listenAddr)},
	{name: "http-addr", def: ":9192", usage: "listen address of the HTTP forward-auth check (every path is a check)",
		reload: restart, field: bind(func(c *Config) *string { return &c.HTTPAddr }, listenAddr)},
	{name: "admin-addr", def: ":9090", usage: "listen address of /healthz, /readyz and /metrics",
		reload: restart, field: bind(func(c *Config) *string { return &c.AdminAddr }, listenAddr)},
	{name: "admin-pprof", def: "false", usage: "also serve Go's runtime profiles (net/http/pprof) under /debug/pprof/ on the admin address; keep that address private",
		reload: restart, field: bind(func(c *Config) *bool { return &c.AdminPprof }, boolean)},
	{name: "public-paths", usage: "comma-separated paths that need no token (matched before the file's rules)"},
	{name: "jwks-refresh-interval", def: durationText(jwks.DefaultRefreshInterval), usage: "time between scheduled JWKS refreshes",
		keySet: true, field: bind(func(c *Config) *time.Duration { return &c.JWKSRefreshInterval }, positiveDuration)},
	{name: "jwks-min-refresh-interval", def: durationText(jwks.DefaultMinRefreshInterval), usage: "least time between refreshes triggered by an unknown kid",
		keySet: true, field: bind(func(c *Config) *time.Duration { return &c.JWKSMinRefreshInterval }, positiveDuration)},
	{name: "jwks-fetch-timeout", def: durationText(jwks.DefaultFetchTimeout), usage: "timeout of one JWKS fetch",
		keySet: true, field: bind(func(c *Config) *time.Duration { return &c.JWKSFetchTimeout }, positiveDuration)},
	{name: "jwks-unknown-kid-wait", def: durationText(jwks.DefaultUnknownKIDWait), usage: "longest a check waits for an in-flight JWKS refresh",
		keySet: true, field: bind(func(c *Config) *time.Duration { return &c.JWKSUnknownKIDWait }, positiveDuration)},
	{name: "jwks-max-bytes", def: strconv.Itoa(jwks.DefaultMaxBodyBytes), usage: "largest JWKS response body accepted, in bytes",
		keySet: true, field: bind(func(c *Config) *int64 { return &c.JWKSMaxBytes }, positive)},
	{name: "jwks-max-keys", def: strconv.Itoa(jwks.DefaultMaxKeys), usage: "largest number of keys accepted in one JWKS",
		keySet: true, field: bind(func(c *Config) *int { return &c.JWKSMaxKeys }, positive)},
	{name: "clock-skew", def: durationText(authz.DefaultClockSkew), usage: "leeway for exp, nbf and iat",
		field: bind(func(c *Config) *time.Duration { return &c.ClockSkew }, durationOrZero)},
	{name: "max-token-bytes", def: strconv.Itoa(authz.DefaultMaxTokenBytes), usage: "largest bearer token accepted, in bytes",
		field: bind(func(c *Config) *int { return &c.MaxTokenBytes }, positive)},
	{name: "token-cache-size", def: strconv.Itoa(authz.DefaultTokenCacheSize), usage: "verified tokens remembered (by SHA-256) so a repeat costs no RSA verification; 0 disables",
		field: bind(func(c *Config) *int { return &c.TokenCacheSize }, cacheSize)},
	{name: "dpop-replay-cache-size", def: strconv.Itoa(authz.DefaultDPoPReplayCacheSize), usage: "DPoP proofs remembered within their window (about 30 bytes each, two windows at most); a proof beyond it is refused",
		field: bind(func(c *Config) *int { return &c.DPoPReplayCacheSize }, positive)},
	{name: "realm", def: authz.DefaultRealm, usage: "realm of the WWW-Authenticate challenge",
		field: bind(func(c *Config) *string { return &c.Realm }, realm)},
	{name: "enforce", def: "true", usage: "enforce denials; false makes every denial a shadow allow (decided, logged with shadow:true, counted as result=shadow_deny, let through) for a first rollout",
		field: bind(func(c *Config) *bool { return &c.Shadow }, negated)},
	{name: "deny-detail", def: "false", usage: "add X-Extauthz-Reason (the reason only) to denials; off by default: it tells a client, an attacker too, which check failed",
		field: bind(func(c *Config) *bool { return &c.DenyDetail }, boolean)},
	{name: "forward-auth-source", def: authz.SourceAuto, usage: "where the HTTP check reads the original request: auto, x-original (nginx), x-forwarded (Caddy, Traefik) or request (Envoy HTTP mode)",
		field: bind(func(c *Config) *string { return &c.ForwardAuthSource }, oneOf(authz.SourceAuto, authz.SourceOriginal, authz.SourceForwarded, authz.SourceRequest))},
	{name: "tls-cert-file", usage: "PEM certificate for TLS on the gRPC and HTTP check listeners (reloaded when the file changes)",
		reload: restart, field: bind(func(c *Config) *string { return &c.TLSCertFile }, anyText)},
	{name: "tls-key-file", usage: "PEM private key of --tls-cert-file",
		reload: restart, field: bind(func(c *Config) *string { return &c.TLSKeyFile }, anyText)},
	{name: "tls-client-ca-file", usage: "PEM CA bundle: require client certificates signed by it (mutual TLS) on the check listeners",
		reload: restart, field: bind(func(c *Config) *string { return &c.TLSClientCAFile }, anyText)},
	{name: "jwks-ca-file", usage: "PEM CA bundle trusted for JWKS fetches, in addition to the system roots",
		keySet: true, field: bind(func(c *Config) *string { return &c.JWKSCAFile }, anyText)},
	{name: "oidc-discovery", def: "false", usage: "single-provider mode: take the key set's URL from the issuer's OpenID Connect discovery document (jwks_uri), whose issuer must be --issuer exactly",
		field: bind(func(c *Config) *bool { return &c.OIDCDiscovery }, boolean)},
	{name: "jwks-cache-dir", usage: "directory where each provider's last good key set is kept (written atomically, mode 0600) and loaded at start, so that a restart verifies tokens while the identity provider is down",
		keySet: true, field: bind(func(c *Config) *string { return &c.JWKSCacheDir }, anyText)},
	{name: "jwks-cache-max-age", def: durationText(jwks.DefaultCacheMaxAge), usage: "oldest key set in --jwks-cache-dir that is loaded at start",
		keySet: true, field: bind(func(c *Config) *time.Duration { return &c.JWKSCacheMaxAge }, positiveDuration)},
	{name: "grpc-max-recv-bytes", def: strconv.Itoa(DefaultGRPCMaxRecvBytes), usage: "largest gRPC message accepted, in bytes",
		reload: restart, field: bind(func(c *Config) *int { return &c.GRPCMaxRecvBytes }, positive)},
	{name: "grpc-max-streams", def: strconv.Itoa(DefaultGRPCMaxStreams), usage: "most concurrent gRPC streams per connection (Envoy multiplexes checks on one)",
		reload: restart, field: bind(func(c *Config) *int { return &c.GRPCMaxStreams }, positive)},
	{name: "http-max-header-bytes", def: strconv.Itoa(DefaultHTTPMaxHeaderBytes), usage: "largest request header block on the HTTP check listener, in bytes",
		reload: restart, field: bind(func(c *Config) *int { return &c.HTTPMaxHeaderBytes }, positive)},
	{name: "http-read-timeout", def: durationText(DefaultHTTPReadTimeout), usage: "time to read a whole request on the HTTP check listener",
		reload: restart, field: bind(func(c *Config) *time.Duration { return &c.HTTPReadTimeout }, positiveDuration)},
	{name: "shutdown-grace", def: "10s", usage: "how long in-flight checks may take to finish on SIGTERM",
		field: bind(func(c *Config) *time.Duration { return &c.ShutdownGrace }, durationOrZero)},
	{name: "config-watch-interval", def: "5s", usage: "how often the config file is checked for changes, which are reloaded (as on SIGHUP); 0 disables the watch",
		reload: restart, field: bind(func(c *Config) *time.Duration { return &c.ConfigWatchInterval }, durationOrZero)},
	{name: "log-level", def: "info", usage: "debug, info, warn or error",
		reload: hotWithLevelVar, field: bind(func(c *Config) *string { return &c.LogLevel }, oneOf("debug", "info", "warn", "error"))},
	{name: "log-format", def: "json", usage: "json or text",
		reload: restart, field: bind(func(c *Config) *string { return &c.LogFormat }, oneOf("json", "text"))},
}

// named returns the setting called name; the name is the program's own.
func named(name string) setting {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.name == name })
	if i < 0 {
		panic("config: no setting " + name)
	}
	return settings[i]
}

// fileSetting returns the setting whose file key is key.
func fileSetting(key string) (setting, bool) {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.name != configFile && s.key() == key })
	if i < 0 {
		return setting{}, false
	}
	return settings[i], true
}

// field is a setting's place in Config.
type field interface {
	// set parses and validates text and stores the value in c. The error
	// quotes text and says what is expected.
	set(c *Config, text string) error
	// get returns the value in c; values of one field are comparable.
	get(c *Config) any
	// kind names the value's type in -h: duration, int, string, or "" for
	// a switch (true or false).
	kind() string
}

// typed is the field of a setting of type T.
type typed[T comparable] struct {
	ptr   func(*Config) *T
	parse func(text string) (T, error)
}

// bind makes the field that parse fills at *ptr(c).
func bind[T comparable](ptr func(*Config) *T, parse func(string) (T, error)) field {
	return typed[T]{ptr: ptr, parse: parse}
}

func (f typed[T]) set(c *Config, text string) error {
	v, err := f.parse(text)
	if err != nil {
		return err
	}
	*f.ptr(c) = v
	return nil
}

func (f typed[T]) get(c *Config) any { return *f.ptr(c) }

func (f typed[T]) kind() string {
	var zero T
	switch any(zero).(type) {
	case time.Duration:
		return "duration"
	case int, int64:
		return "int"
	case bool:
		return ""
	}
	return "string"
}

// The parsers of the rows. Each reads the text of a flag, a variable, a file
// value or a default alike.

func anyText(s string) (string, error) { return s, nil }

func realm(s string) (string, error) { return s, authz.CheckRealm(s) }

func listenAddr(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("%q is not a host:port listen address", s)
	}
	return s, nil
}

// oneOf accepts one of names in any case, as lower case.
func oneOf(names ...string) func(string) (string, error) {
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	return func(s string) (string, error) {
		s = strings.ToLower(s)
		if !slices.Contains(names, s) {
			return "", fmt.Errorf("%q is not %s", s, list)
		}
		return s, nil
	}
}

// positiveDuration accepts a duration above zero.
func positiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as 10s or 15m", s)
	}
	return d, nil
}

// durationOrZero accepts a duration of zero or more (0 alone included),
// for the settings where 0 means none or off.
func durationOrZero(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration of 0 or more such as 0, 10s or 15m", s)
	}
	return d, nil
}

// durationText is d as a default is written: 15m, not 15m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

func positive[T int | int64](s string) (T, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || int64(T(n)) != n {
		return 0, fmt.Errorf("%q is not a positive whole number", s)
	}
	return T(n), nil
}

func cacheSize(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<30 {
		return 0, fmt.Errorf("%q is not a whole number from 0 to 2^30", s)
	}
	return int(n), nil
}

// negated reads a true-or-false setting into a field that holds its
// opposite (enforce into Config.Shadow, whose zero value enforces).
func negated(s string) (bool, error) {
	b, err := boolean(s)
	return !b, err
}

func boolean(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", s)
	}
	return b, nil
}

// loadScalars resolves every setting that has a place in Config (flag,
// variable, file, default), then checks the settings that go together.
// Errors name where each value came from: --flag, AUTHZ_VARIABLE,
// FILE:LINE: key, or the default.
func loadScalars(cfg *Config, src *sources) error {
	var errs []error
	where := make(map[string]string, len(settings))
	for _, s := range settings {
		if s.field == nil {
			continue
		}
		v, w := src.value(s)
		where[s.name] = w
		if err := s.field.set(cfg, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return errors.Join(checkCombined(cfg, where)...)
}

// checkCombined checks the settings that go together; where names each
// value's source.
func checkCombined(cfg *Config, where map[string]string) []error {
	var errs []error
	if jwks.CheckRefreshIntervals(cfg.JWKSRefreshInterval, cfg.JWKSMinRefreshInterval) != nil {
		errs = append(errs, fmt.Errorf("%s (%v) is longer than %s (%v)",
			where["jwks-min-refresh-interval"], cfg.JWKSMinRefreshInterval, where["jwks-refresh-interval"], cfg.JWKSRefreshInterval))
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("--tls-cert-file and --tls-key-file go together (%s, %s)", where["tls-cert-file"], where["tls-key-file"]))
	}
	if cfg.TLSClientCAFile != "" && cfg.TLSCertFile == "" {
		errs = append(errs, fmt.Errorf("%s: mutual TLS needs --tls-cert-file and --tls-key-file too", where["tls-client-ca-file"]))
	}
	return errs
}

// NeedsRestart lists, by file key, the settings that differ between the
// configuration in force since the start and a reloaded one but take effect
// only at start: the listeners, their limits and handlers (admin_pprof), the
// TLS file names (their content is reloaded on its own), the config watch,
// the log format, and the log level unless levelVar (the server was given a
// slog.LevelVar, which a reload sets).
func NeedsRestart(start, next *Config, levelVar bool) []string {
	var diff []string
	for _, s := range settings {
		if s.field == nil || s.reload == hot || s.reload == hotWithLevelVar && levelVar {
			continue
		}
		if s.field.get(start) != s.field.get(next) {
			diff = append(diff, s.key())
		}
	}
	return diff
}

// KeySetSettings returns the values of the settings a provider's key cache
// is built with (the jwks_* settings and jwks_ca_file) as one comparable
// value: providers of two configurations whose values are equal, and whose
// own issuer, JWKS URL and algorithms are, can share one loaded key cache.
func KeySetSettings(cfg *Config) string {
	var b strings.Builder
	for _, s := range settings {
		if s.keySet && s.field != nil {
			fmt.Fprintf(&b, "%s=%q\n", s.key(), fmt.Sprint(s.field.get(cfg)))
		}
	}
	return b.String()
}
