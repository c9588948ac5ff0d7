package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"go.yaml.in/yaml/v3"

	"github.com/extauthz/extauthz/internal/redact"
)

// Config is the validated configuration of one server.
type Config struct {
	GRPCAddr  string
	HTTPAddr  string
	AdminAddr string
	// AdminPprof serves net/http/pprof under /debug/pprof/ on AdminAddr.
	AdminPprof bool

	Providers    []Provider
	Rules        []Rule // --public-paths first, then the file's rules
	ClaimHeaders map[string]string

	JWKSRefreshInterval    time.Duration
	JWKSMinRefreshInterval time.Duration
	JWKSFetchTimeout       time.Duration
	JWKSUnknownKIDWait     time.Duration
	JWKSMaxBytes           int64
	JWKSMaxKeys            int
	ClockSkew              time.Duration
	MaxTokenBytes          int
	TokenCacheSize         int // 0 disables the cache
	Realm                  string
	ForwardAuthSource      string
	ShutdownGrace          time.Duration
	ConfigWatchInterval    time.Duration // 0: the file is not watched

	TLSCertFile     string
	TLSKeyFile      string
	TLSClientCAFile string
	JWKSCAFile      string

	GRPCMaxRecvBytes   int
	GRPCMaxStreams     int
	HTTPMaxHeaderBytes int
	HTTPReadTimeout    time.Duration

	LogLevel  string // debug, info, warn, error
	LogFormat string // json, text

	// File is the config file read, "" if none.
	File string
}

// Provider is one accepted identity provider.
type Provider struct {
	Name       string
	Issuer     string
	Audiences  []string
	JWKSURL    string
	Algorithms []string
}

// Rule is one path rule.
type Rule struct {
	Path   string
	Public bool
	Scopes []string
}

// Lookup finds an environment variable, as os.LookupEnv.
type Lookup func(name string) (string, bool)

// Environ layers a .env file under the process environment, as python-dotenv
// and godotenv do: a variable set in the environment wins over the file. A
// missing file is not an error.
func Environ(env Lookup, dotenvPath string) (Lookup, error) {
	vars, err := godotenv.Read(dotenvPath)
	if errors.Is(err, os.ErrNotExist) {
		return env, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", dotenvPath, err)
	}
	return func(name string) (string, bool) {
		if v, ok := env(name); ok {
			return v, true
		}
		v, ok := vars[name]
		return v, ok
	}, nil
}

// setting describes one scalar setting: its flag, its variable and its file key.
type setting struct {
	name  string // flag name; the variable is AUTHZ_ + upper(name with _), the file key name with _
	def   string
	usage string
}

// switches are the settings that are true or false: the bare flag means true.
var switches = []string{"admin-pprof"}

func (s setting) env() string {
	return "AUTHZ_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

func (s setting) key() string { return strings.ReplaceAll(s.name, "-", "_") }

var settings = []setting{
	{"config", "", "YAML config file: providers, rules, claim headers and any setting below"},
	{"issuer", "", "expected iss of tokens (single-provider mode)"},
	{"audience", "", "accepted aud values, comma-separated (single-provider mode)"},
	{"jwks-url", "", "JWKS endpoint (default <issuer>/.well-known/jwks.json)"},
	{"grpc-addr", ":9191", "listen address of the Envoy ext_authz v3 gRPC service and gRPC health"},
	{"http-addr", ":9192", "listen address of the HTTP forward-auth check (every path is a check)"},
	{"admin-addr", ":9090", "listen address of /healthz, /readyz and /metrics"},
	{"admin-pprof", "false", "also serve Go's runtime profiles (net/http/pprof) under /debug/pprof/ on the admin address; keep that address private"},
	{"public-paths", "", "comma-separated paths that need no token (matched before the file's rules)"},
	{"jwks-refresh-interval", "15m", "time between scheduled JWKS refreshes"},
	{"jwks-min-refresh-interval", "10s", "least time between refreshes triggered by an unknown kid"},
	{"jwks-fetch-timeout", "5s", "timeout of one JWKS fetch"},
	{"jwks-unknown-kid-wait", "100ms", "longest a check waits for an in-flight JWKS refresh"},
	{"jwks-max-bytes", "1048576", "largest JWKS response body accepted, in bytes"},
	{"jwks-max-keys", "100", "largest number of keys accepted in one JWKS"},
	{"clock-skew", "60s", "leeway for exp, nbf and iat"},
	{"max-token-bytes", "8192", "largest bearer token accepted, in bytes"},
	{"token-cache-size", "10000", "verified tokens remembered (by SHA-256) so a repeat costs no RSA verification; 0 disables"},
	{"realm", "extauthz", "realm of the WWW-Authenticate challenge"},
	{"forward-auth-source", "auto", "where the HTTP check reads the original request: auto, x-original (nginx), x-forwarded (Caddy, Traefik) or request (Envoy HTTP mode)"},
	{"tls-cert-file", "", "PEM certificate for TLS on the gRPC and HTTP check listeners (reloaded when the file changes)"},
	{"tls-key-file", "", "PEM private key of --tls-cert-file"},
	{"tls-client-ca-file", "", "PEM CA bundle: require client certificates signed by it (mutual TLS) on the check listeners"},
	{"jwks-ca-file", "", "PEM CA bundle trusted for JWKS fetches, in addition to the system roots"},
	{"grpc-max-recv-bytes", "1048576", "largest gRPC message accepted, in bytes"},
	{"grpc-max-streams", "1024", "most concurrent gRPC streams per connection (Envoy multiplexes checks on one)"},
	{"http-max-header-bytes", "65536", "largest request header block on the HTTP check listener, in bytes"},
	{"http-read-timeout", "10s", "time to read a whole request on the HTTP check listener"},
	{"shutdown-grace", "10s", "how long in-flight checks may take to finish on SIGTERM"},
	{"config-watch-interval", "5s", "how often the config file is checked for changes, which are reloaded (as on SIGHUP); 0 disables the watch"},
	{"log-level", "info", "debug, info, warn or error"},
	{"log-format", "json", "json or text"},
}

// fileConfig is the YAML file's shape. Scalars are pointers so that an
// absent key falls through to the default.
type fileConfig struct {
	Providers    []fileProvider    `yaml:"providers"`
	Rules        []fileRule        `yaml:"rules"`
	ClaimHeaders map[string]string `yaml:"claim_headers"`

	Issuer                 *string        `yaml:"issuer"`
	Audience               *string        `yaml:"audience"`
	JWKSURL                *string        `yaml:"jwks_url"`
	GRPCAddr               *string        `yaml:"grpc_addr"`
	HTTPAddr               *string        `yaml:"http_addr"`
	AdminAddr              *string        `yaml:"admin_addr"`
	AdminPprof             *bool          `yaml:"admin_pprof"`
	PublicPaths            *string        `yaml:"public_paths"`
	JWKSRefreshInterval    *time.Duration `yaml:"jwks_refresh_interval"`
	JWKSMinRefreshInterval *time.Duration `yaml:"jwks_min_refresh_interval"`
	JWKSFetchTimeout       *time.Duration `yaml:"jwks_fetch_timeout"`
	JWKSUnknownKIDWait     *time.Duration `yaml:"jwks_unknown_kid_wait"`
	JWKSMaxBytes           *int64         `yaml:"jwks_max_bytes"`
	JWKSMaxKeys            *int           `yaml:"jwks_max_keys"`
	ClockSkew              *time.Duration `yaml:"clock_skew"`
	MaxTokenBytes          *int           `yaml:"max_token_bytes"`
	TokenCacheSize         *int           `yaml:"token_cache_size"`
	Realm                  *string        `yaml:"realm"`
	ForwardAuthSource      *string        `yaml:"forward_auth_source"`
	ShutdownGrace          *time.Duration `yaml:"shutdown_grace"`
	ConfigWatchInterval    *time.Duration `yaml:"config_watch_interval"`
	TLSCertFile            *string        `yaml:"tls_cert_file"`
	TLSKeyFile             *string        `yaml:"tls_key_file"`
	TLSClientCAFile        *string        `yaml:"tls_client_ca_file"`
	JWKSCAFile             *string        `yaml:"jwks_ca_file"`
	GRPCMaxRecvBytes       *int           `yaml:"grpc_max_recv_bytes"`
	GRPCMaxStreams         *int           `yaml:"grpc_max_streams"`
	HTTPMaxHeaderBytes     *int           `yaml:"http_max_header_bytes"`
	HTTPReadTimeout        *time.Duration `yaml:"http_read_timeout"`
	LogLevel               *string        `yaml:"log_level"`
	LogFormat              *string        `yaml:"log_format"`
}

type fileProvider struct {
	Name       string   `yaml:"name"`
	Issuer     string   `yaml:"issuer"`
	Audiences  []string `yaml:"audiences"`
	JWKSURL    string   `yaml:"jwks_url"`
	Algorithms []string `yaml:"algorithms"`
}

type fileRule struct {
	Path   string   `yaml:"path"`
	Public bool     `yaml:"public"`
	Scopes []string `yaml:"scopes"`
}

// MaxFileBytes bounds the config file.
const MaxFileBytes = 1 << 20

// Load builds the configuration from the command-line arguments (without the
// program name) and the environment. Precedence, highest first: flag, AUTHZ_*
// variable, the guide's AUTHACTION_* variables (issuer, audience and JWKS
// only), the config file, the default. Errors name the flag, variable or file
// line at fault. flag.ErrHelp is returned for -h.
func Load(args []string, env Lookup, usage io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("extauthz", flag.ContinueOnError)
	// The flag package prints the error and the whole usage on a bad flag;
	// the caller prints the error as one line instead, and the usage is
	// only for -h.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	vals := make(map[string]*string, len(settings))
	for _, s := range settings {
		if slices.Contains(switches, s.name) {
			v := &switchValue{s: s.def}
			fs.Var(v, s.name, s.usage+" [$"+s.env()+"]")
			vals[s.name] = &v.s
			continue
		}
		vals[s.name] = fs.String(s.name, s.def, s.usage+" [$"+s.env()+"]")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(usage, "Usage: extauthz [flags]\n\nEnvoy ext_authz (gRPC) and forward-auth (HTTP) server that verifies JWT bearer tokens against a JWKS.\nEvery flag can also be set by the variable in brackets, in the environment or in ./.env.\n\n")
			fs.SetOutput(usage)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, fmt.Errorf("%w (-h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (settings are flags such as --issuer)", fs.Arg(0))
	}
	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })

	// source of each scalar: flag, then variable; the file and defaults come later.
	explicit := func(name string) (string, string, bool) {
		if setFlags[name] {
			return *vals[name], "--" + name, true
		}
		for _, s := range settings {
			if s.name == name {
				if v, ok := env(s.env()); ok && v != "" {
					return v, s.env(), true
				}
			}
		}
		return "", "", false
	}

	cfg := &Config{}
	var file *fileConfig
	var root yaml.Node
	if path, _, ok := explicit("config"); ok {
		f, n, err := readFile(path)
		if err != nil {
			return nil, err
		}
		file, root, cfg.File = f, n, path
	}

	// get resolves a scalar: explicit source, else the file, else the
	// default. src names where the value came from, for error messages; a
	// file value is named by file:line: key.
	get := func(name string, fromFile *string) (val, src string) {
		if v, src, ok := explicit(name); ok {
			return v, src
		}
		if fromFile != nil {
			key := strings.ReplaceAll(name, "-", "_")
			return *fromFile, fmt.Sprintf("%s:%d: %s", cfg.File, lineOf(&root, key, -1), key)
		}
		for _, s := range settings {
			if s.name == name {
				return s.def, "default of --" + name
			}
		}
		return "", ""
	}
	if file == nil {
		file = &fileConfig{}
	}
	durStr := func(d *time.Duration) *string {
		if d == nil {
			return nil
		}
		s := d.String()
		return &s
	}
	intStr := func(i *int) *string {
		if i == nil {
			return nil
		}
		s := strconv.Itoa(*i)
		return &s
	}
	int64Str := func(i *int64) *string {
		if i == nil {
			return nil
		}
		s := strconv.FormatInt(*i, 10)
		return &s
	}
	var errs []error
	srcs := map[string]string{} // where each string setting came from
	str := func(name string, fromFile *string) string {
		v, src := get(name, fromFile)
		srcs[name] = src
		return v
	}
	dur := func(name string, fromFile *time.Duration, allowZero bool) time.Duration {
		v, src := get(name, durStr(fromFile))
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !allowZero) {
			errs = append(errs, fmt.Errorf("%s: %q is not a positive duration such as 10s or 15m", src, v))
		}
		return d
	}
	count := func(name string, fromFile *string) int64 {
		v, src := get(name, fromFile)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<30 {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number from 0 to 2^30", src, v))
		}
		return n
	}
	boolean := func(name string, fromFile *bool) bool {
		var f *string
		if fromFile != nil {
			s := strconv.FormatBool(*fromFile)
			f = &s
		}
		v, src := get(name, f)
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not true or false", src, v))
		}
		return b
	}
	num := func(name string, fromFile *string) int64 {
		v, src := get(name, fromFile)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a positive whole number", src, v))
		}
		return n
	}

	cfg.GRPCAddr = str("grpc-addr", file.GRPCAddr)
	cfg.HTTPAddr = str("http-addr", file.HTTPAddr)
	cfg.AdminAddr = str("admin-addr", file.AdminAddr)
	cfg.AdminPprof = boolean("admin-pprof", file.AdminPprof)
	cfg.JWKSRefreshInterval = dur("jwks-refresh-interval", file.JWKSRefreshInterval, false)
	cfg.JWKSMinRefreshInterval = dur("jwks-min-refresh-interval", file.JWKSMinRefreshInterval, false)
	cfg.JWKSFetchTimeout = dur("jwks-fetch-timeout", file.JWKSFetchTimeout, false)
	cfg.JWKSUnknownKIDWait = dur("jwks-unknown-kid-wait", file.JWKSUnknownKIDWait, false)
	cfg.ClockSkew = dur("clock-skew", file.ClockSkew, true)
	cfg.ShutdownGrace = dur("shutdown-grace", file.ShutdownGrace, true)
	cfg.ConfigWatchInterval = dur("config-watch-interval", file.ConfigWatchInterval, true)
	cfg.JWKSMaxBytes = num("jwks-max-bytes", int64Str(file.JWKSMaxBytes))
	cfg.JWKSMaxKeys = int(num("jwks-max-keys", intStr(file.JWKSMaxKeys)))
	cfg.MaxTokenBytes = int(num("max-token-bytes", intStr(file.MaxTokenBytes)))
	cfg.TokenCacheSize = int(count("token-cache-size", intStr(file.TokenCacheSize)))
	cfg.Realm = str("realm", file.Realm)
	cfg.TLSCertFile = str("tls-cert-file", file.TLSCertFile)
	cfg.TLSKeyFile = str("tls-key-file", file.TLSKeyFile)
	cfg.TLSClientCAFile = str("tls-client-ca-file", file.TLSClientCAFile)
	cfg.JWKSCAFile = str("jwks-ca-file", file.JWKSCAFile)
	cfg.GRPCMaxRecvBytes = int(num("grpc-max-recv-bytes", intStr(file.GRPCMaxRecvBytes)))
	cfg.GRPCMaxStreams = int(num("grpc-max-streams", intStr(file.GRPCMaxStreams)))
	cfg.HTTPMaxHeaderBytes = int(num("http-max-header-bytes", intStr(file.HTTPMaxHeaderBytes)))
	cfg.HTTPReadTimeout = dur("http-read-timeout", file.HTTPReadTimeout, false)
	cfg.ForwardAuthSource = strings.ToLower(str("forward-auth-source", file.ForwardAuthSource))
	cfg.LogLevel = strings.ToLower(str("log-level", file.LogLevel))
	cfg.LogFormat = strings.ToLower(str("log-format", file.LogFormat))

	for _, a := range []struct{ name, val string }{{"grpc-addr", cfg.GRPCAddr}, {"http-addr", cfg.HTTPAddr}, {"admin-addr", cfg.AdminAddr}} {
		if _, _, err := net.SplitHostPort(a.val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a host:port listen address", srcs[a.name], a.val))
		}
	}
	if len(errs) == 0 && cfg.JWKSMinRefreshInterval > cfg.JWKSRefreshInterval {
		errs = append(errs, fmt.Errorf("--jwks-min-refresh-interval (%v) is longer than --jwks-refresh-interval (%v)", cfg.JWKSMinRefreshInterval, cfg.JWKSRefreshInterval))
	}
	switch cfg.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not debug, info, warn or error", srcs["log-level"], cfg.LogLevel))
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("--tls-cert-file and --tls-key-file go together (%s, %s)", srcs["tls-cert-file"], srcs["tls-key-file"]))
	}
	if cfg.TLSClientCAFile != "" && cfg.TLSCertFile == "" {
		errs = append(errs, fmt.Errorf("%s: mutual TLS needs --tls-cert-file and --tls-key-file too", srcs["tls-client-ca-file"]))
	}
	switch cfg.ForwardAuthSource {
	case "auto", "x-original", "x-forwarded", "request":
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not auto, x-original, x-forwarded or request", srcs["forward-auth-source"], cfg.ForwardAuthSource))
	}
	switch cfg.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not json or text", srcs["log-format"], cfg.LogFormat))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	if err := loadProviders(cfg, file, &root, explicit, env); err != nil {
		return nil, err
	}

	// Rules: --public-paths first, then the file's.
	if v, src := get("public-paths", file.PublicPaths); v != "" {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if !strings.HasPrefix(p, "/") {
					return nil, fmt.Errorf("%s: %q does not start with /", src, p)
				}
				cfg.Rules = append(cfg.Rules, Rule{Path: p, Public: true})
			}
		}
	}
	for i, r := range file.Rules {
		at := fmt.Sprintf("%s:%d: rules[%d]", cfg.File, lineOf(&root, "rules", i), i)
		switch {
		case r.Path == "":
			return nil, fmt.Errorf("%s: path is required", at)
		case !strings.HasPrefix(r.Path, "/"):
			return nil, fmt.Errorf("%s: path %q does not start with /", at, r.Path)
		case r.Public && len(r.Scopes) > 0:
			return nil, fmt.Errorf("%s: a rule cannot be both public and require scopes", at)
		}
		cfg.Rules = append(cfg.Rules, Rule(r))
	}
	if len(file.ClaimHeaders) > 0 {
		cfg.ClaimHeaders = make(map[string]string, len(file.ClaimHeaders))
		for h, c := range file.ClaimHeaders {
			if h == "" || c == "" {
				return nil, fmt.Errorf("%s:%d: claim_headers: header %q and claim %q must both be set", cfg.File, lineOf(&root, "claim_headers", -1), h, c)
			}
			lower := strings.ToLower(h)
			if _, dup := cfg.ClaimHeaders[lower]; dup {
				// Header names are case-insensitive: which claim won would
				// depend on map order.
				return nil, fmt.Errorf("%s:%d: claim_headers: header %s is set twice (names are case-insensitive)", cfg.File, lineOf(&root, "claim_headers", -1), lower)
			}
			cfg.ClaimHeaders[lower] = c
		}
	}
	return cfg, nil
}

func loadProviders(cfg *Config, file *fileConfig, root *yaml.Node, explicit func(string) (string, string, bool), env Lookup) error {
	// Each of the three follows its own precedence: flag, AUTHZ_*, the
	// guide's AUTHACTION_*, the file. The JWKS URL derived from
	// AUTHACTION_DOMAIN goes with the issuer it derives: it is not used when
	// the issuer comes from a flag or AUTHZ_ISSUER.
	issuer, issuerSrc, hasIssuer := explicit("issuer")
	audience, audienceSrc, hasAudience := explicit("audience")
	jwksURL, jwksSrc, hasJWKS := explicit("jwks-url")
	if domain, ok := env("AUTHACTION_DOMAIN"); ok && domain != "" && !hasIssuer {
		base := GuideIssuer(domain)
		issuer, issuerSrc, hasIssuer = base, "AUTHACTION_DOMAIN", true
		if !hasJWKS {
			jwksURL, jwksSrc, hasJWKS = base+"/.well-known/jwks.json", "AUTHACTION_DOMAIN", true
		}
	}
	if aud, ok := env("AUTHACTION_AUDIENCE"); ok && aud != "" && !hasAudience {
		audience, audienceSrc, hasAudience = aud, "AUTHACTION_AUDIENCE", true
	}
	fileSrc := func(key string) string { return fmt.Sprintf("%s:%d: %s", cfg.File, lineOf(root, key, -1), key) }
	if !hasIssuer && file.Issuer != nil {
		issuer, issuerSrc, hasIssuer = *file.Issuer, fileSrc("issuer"), true
	}
	if !hasAudience && file.Audience != nil {
		audience, audienceSrc, hasAudience = *file.Audience, fileSrc("audience"), true
	}
	if !hasJWKS && file.JWKSURL != nil {
		jwksURL, jwksSrc, hasJWKS = *file.JWKSURL, fileSrc("jwks_url"), true
	}
	if (hasIssuer || hasAudience || hasJWKS) && len(file.Providers) > 0 {
		src := issuerSrc
		if src == "" {
			src = audienceSrc
		}
		if src == "" {
			src = jwksSrc
		}
		return fmt.Errorf("%s:%d: providers are set in the file and %s sets a single provider too; use one or the other", cfg.File, lineOf(root, "providers", -1), src)
	}
	if len(file.Providers) == 0 {
		if !hasIssuer || issuer == "" {
			return errors.New("no issuer configured: set --issuer (or AUTHZ_ISSUER, or the guide's AUTHACTION_DOMAIN), or providers in a --config file")
		}
		if !hasAudience || len(splitList(audience)) == 0 {
			return errors.New("no audience configured: set --audience (or AUTHZ_AUDIENCE, or the guide's AUTHACTION_AUDIENCE); without one, tokens minted for any other API of the same issuer would pass")
		}
		p := Provider{Issuer: issuer, Audiences: splitList(audience), JWKSURL: jwksURL}
		if err := finishProvider(&p); err != nil {
			src := issuerSrc
			if hasJWKS && jwksURL != "" {
				src = issuerSrc + " / " + jwksSrc
			}
			return fmt.Errorf("%s: %w", src, err)
		}
		cfg.Providers = []Provider{p}
		return nil
	}
	seen := map[string]int{}
	for i, fp := range file.Providers {
		at := fmt.Sprintf("%s:%d: providers[%d]", cfg.File, lineOf(root, "providers", i), i)
		p := Provider(fp)
		if p.Issuer == "" {
			return fmt.Errorf("%s: issuer is required", at)
		}
		if len(p.Audiences) == 0 {
			return fmt.Errorf("%s: audiences is required (without one, tokens minted for any other API of the same issuer would pass)", at)
		}
		if j, dup := seen[p.Issuer]; dup {
			return fmt.Errorf("%s: issuer %s is already used by providers[%d]", at, p.Issuer, j)
		}
		seen[p.Issuer] = i
		if err := finishProvider(&p); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		cfg.Providers = append(cfg.Providers, p)
	}
	return nil
}

// GuideIssuer turns the guide's AUTHACTION_DOMAIN into an issuer URL:
// https://DOMAIN, or http://DOMAIN for a loopback host (localhost:9000, as
// the local demo issuer runs), or DOMAIN itself when it already has a scheme.
func GuideIssuer(domain string) string {
	domain = strings.TrimSuffix(strings.TrimSpace(domain), "/")
	if strings.HasPrefix(domain, "http://") || strings.HasPrefix(domain, "https://") {
		return domain
	}
	host := domain
	if h, _, err := net.SplitHostPort(domain); err == nil {
		host = h
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); host == "localhost" || ip != nil && ip.IsLoopback() {
		return "http://" + domain
	}
	return "https://" + domain
}

func finishProvider(p *Provider) error {
	for i, a := range p.Audiences {
		p.Audiences[i] = strings.TrimSpace(a)
		if p.Audiences[i] == "" {
			return errors.New("an audience is empty")
		}
	}
	if p.JWKSURL == "" {
		p.JWKSURL = strings.TrimSuffix(p.Issuer, "/") + "/.well-known/jwks.json"
	}
	u, err := url.Parse(p.JWKSURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may hold credentials (user info, sent as Basic
		// authentication): the message goes to stderr and logs, masked.
		return fmt.Errorf("JWKS URL %q is not an absolute http(s) URL (set the JWKS URL, or an issuer that is a URL)", redact.URL(p.JWKSURL))
	}
	if len(p.Algorithms) == 0 {
		p.Algorithms = []string{"RS256"}
	}
	for _, a := range p.Algorithms {
		switch a {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		default:
			return fmt.Errorf("algorithm %q is not accepted (asymmetric only: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", a)
		}
	}
	if p.Name == "" {
		// Named after the issuer, as users know it; the JWKS host may be an
		// internal address.
		p.Name = p.Issuer
		if iu, err := url.Parse(p.Issuer); err == nil && iu.Host != "" {
			p.Name = iu.Host
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// readFile reads and strictly decodes the YAML file: unknown keys and wrong
// types are errors naming the line.
func readFile(path string) (*fileConfig, yaml.Node, error) {
	var root yaml.Node
	f, err := os.Open(path)
	if err != nil {
		return nil, root, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, root, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, root, fmt.Errorf("config file %s: larger than %d bytes", path, MaxFileBytes)
	}
	fc, root, err := parseFile(data)
	if err != nil {
		return nil, root, yamlError(path, err)
	}
	return fc, root, nil
}

// fileError is a YAML error rendered as one line of FILE:LINE: messages.
type fileError struct {
	msg string
	err error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }

// yamlError renders the YAML library's errors, which put "line N:" inside
// the text and several type errors on several lines, as FILE:LINE: message
// on one line.
func yamlError(path string, err error) error {
	at := func(msg string) string {
		rest, ok := strings.CutPrefix(msg, "line ")
		if !ok {
			return "config file " + path + ": " + msg
		}
		n, text, ok := strings.Cut(rest, ": ")
		if _, aerr := strconv.Atoi(n); !ok || aerr != nil {
			return "config file " + path + ": " + msg
		}
		// "field x not found in type config.fileConfig" names a Go type.
		if f, ok := strings.CutPrefix(text, "field "); ok {
			if name, _, ok := strings.Cut(f, " not found in type "); ok {
				text = "unknown field " + name
			}
		}
		return path + ":" + n + ": " + text
	}
	// The messages quote the file's values, which may span lines.
	oneLine := strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = at(oneLine(m))
		}
		return &fileError{msg: strings.Join(msgs, "; "), err: err}
	}
	return &fileError{msg: at(oneLine(strings.TrimPrefix(err.Error(), "yaml: "))), err: err}
}

// parseFile decodes a config file's bytes strictly. It is the fuzz target
// of the loader; errors carry YAML line numbers.
func parseFile(data []byte) (*fileConfig, yaml.Node, error) {
	var root yaml.Node
	fc := &fileConfig{}
	if len(bytes.TrimSpace(data)) == 0 {
		return fc, root, nil
	}
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, root, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, root, err
	}
	return fc, root, nil
}

// lineOf finds the line of key (and of its idx-th element when idx >= 0) in
// the document, for error messages. 0 when unknown.
func lineOf(root *yaml.Node, key string, idx int) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != key {
			continue
		}
		v := n.Content[i+1]
		if idx >= 0 && v.Kind == yaml.SequenceNode && idx < len(v.Content) {
			return v.Content[idx].Line
		}
		return n.Content[i].Line
	}
	return 0
}

// switchValue is a boolean flag kept as text, so that it resolves like every
// other setting (flag, variable, file, default): --name alone means true.
type switchValue struct{ s string }

func (v *switchValue) String() string {
	if v == nil {
		return ""
	}
	return v.s
}

func (v *switchValue) Set(s string) error {
	if _, err := strconv.ParseBool(s); err != nil {
		return errors.New("not true or false")
	}
	v.s = s
	return nil
}

func (v *switchValue) IsBoolFlag() bool { return true }
