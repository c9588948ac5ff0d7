package config

// The configuration and its loading, step by step: flags, sources, file,
// scalar settings, providers, rules, claim headers.

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/policy"
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
	// Policies are the named policies Envoy's routes choose.
	Policies map[string]Rule
	// MetadataClaims are the claim paths an allowed CheckResponse carries in
	// its dynamic_metadata.
	MetadataClaims []string
	// Shadow is --enforce=false: every denial is a shadow allow.
	Shadow bool
	// DenyDetail adds X-Extauthz-Reason to denials.
	DenyDetail bool

	JWKSRefreshInterval    time.Duration
	JWKSMinRefreshInterval time.Duration
	JWKSFetchTimeout       time.Duration
	JWKSUnknownKIDWait     time.Duration
	JWKSMaxBytes           int64
	JWKSMaxKeys            int
	ClockSkew              time.Duration
	MaxTokenBytes          int
	TokenCacheSize         int // 0 disables the cache
	DPoPReplayCacheSize    int
	Realm                  string
	ForwardAuthSource      string
	ShutdownGrace          time.Duration
	ConfigWatchInterval    time.Duration // 0: the file is not watched

	TLSCertFile     string
	TLSKeyFile      string
	TLSClientCAFile string
	JWKSCAFile      string
	// JWKSCacheDir keeps each provider's last good key set; JWKSCacheMaxAge
	// is the oldest one loaded at start.
	JWKSCacheDir    string
	JWKSCacheMaxAge time.Duration
	// OIDCDiscovery is --oidc-discovery, for the single provider of flags.
	OIDCDiscovery bool

	GRPCMaxRecvBytes   int
	GRPCMaxStreams     int
	HTTPMaxHeaderBytes int
	HTTPReadTimeout    time.Duration

	LogLevel  string // debug, info, warn, error
	LogFormat string // json, text

	// File is the config file read, "" if none; FileSHA256 the hex SHA-256
	// of its bytes as read.
	File, FileSHA256 string
}

// Provider is one accepted identity provider.
type Provider struct {
	Name       string
	Issuer     string
	Audiences  []string
	JWKSURL    string
	Algorithms []string
	// ForwardToken keeps the Authorization header upstream on allow.
	ForwardToken bool
	// TokenSources are where the provider's tokens come from, in order;
	// nil: the Authorization header's Bearer token.
	TokenSources []authz.TokenSource
	// Discovery takes the key set's URL from the issuer's OpenID Connect
	// discovery document (at DiscoveryURL when set); JWKSURL is then empty.
	Discovery    bool
	DiscoveryURL string
	// SenderConstraint, DPoP, ClientCertFrom and ClientCertHeader are the
	// provider's sender constraint (authz.Provider's); DPoP.NonceKey is
	// read from dpop_nonce_key_file.
	SenderConstraint string
	DPoP             authz.DPoP
	ClientCertFrom   string
	ClientCertHeader string
}

// Rule is one path rule, or a named policy: the rule language of package
// policy. Where names its file line.
type Rule = policy.Rule

// Lookup finds an environment variable, as os.LookupEnv.
type Lookup func(name string) (string, bool)

// Environ layers a .env file under the process environment, as python-dotenv
// and godotenv do: a variable set in the environment wins over the file.
// environ is the process environment as os.Environ returns it ("NAME=value",
// the first of a name winning, as in os.Getenv). A missing file is not an
// error; one godotenv cannot read is, naming the file.
//
// The warnings name, one each, what the server will not read although it
// looks meant for it: an AUTHZ_* variable, of the environment or the file,
// that names no setting (a typo such as AUTHZ_AUDIENCES, with the setting
// it may mean), and a line of the file that sets no variable (a missing =,
// as "AUTHACTION_DOMAIN localhost:9000"). The server starts anyway and logs
// them; a configuration error prints them first, as they may be its cause.
func Environ(environ []string, dotenvPath string) (Lookup, []string, error) {
	process := make(map[string]string, len(environ))
	var warnings []string
	for _, kv := range environ {
		name, v, ok := strings.Cut(kv, "=")
		if _, seen := process[name]; !ok || name == "" || seen {
			continue
		}
		process[name] = v
		if w := unknownVariable(name); w != "" {
			warnings = append(warnings, w)
		}
	}
	slices.Sort(warnings) // os.Environ's order is no order
	env := func(name string) (string, bool) {
		v, ok := process[name]
		return v, ok
	}
	data, err := os.ReadFile(dotenvPath)
	if errors.Is(err, os.ErrNotExist) {
		return env, warnings, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	vars, err := godotenv.UnmarshalBytes(data)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %s: %w", dotenvPath, err)
	}
	warnings = append(warnings, dotenvWarnings(dotenvPath, data, vars)...)
	return func(name string) (string, bool) {
		if v, ok := env(name); ok {
			return v, true
		}
		v, ok := vars[name]
		return v, ok
	}, warnings, nil
}

// unknownVariable returns the warning for an AUTHZ_* variable that names no
// setting, "" for any other name.
func unknownVariable(name string) string {
	if !strings.HasPrefix(name, "AUTHZ_") {
		return ""
	}
	best, dist := "", 4 // a suggestion at most 3 edits away
	for _, s := range settings {
		if s.env() == name {
			return ""
		}
		if d := editDistance(name, s.env()); d < dist {
			best, dist = s.env(), d
		}
	}
	w := name + " names no setting and is ignored"
	if best != "" {
		w += "; did you mean " + best + "?"
	}
	return w + " (-h lists the variables)"
}

// dotenvWarnings checks the variables godotenv read from the file: a name
// that is not a variable name is a line it misread (it takes the text up
// to the first = or : as the name), and an AUTHZ_* name must be a setting's.
// Misread entries are dropped from vars. Each warning names FILE:LINE.
func dotenvWarnings(path string, data []byte, vars map[string]string) []string {
	lines := strings.Split(string(data), "\n")
	// lineOf finds the line that sets name: "[export ]name[ ]=" or ":".
	lineOf := func(name string) int {
		for i, l := range lines {
			l = strings.TrimSpace(l)
			l = strings.TrimSpace(strings.TrimPrefix(l, "export "))
			if rest, ok := strings.CutPrefix(l, name); ok {
				if rest = strings.TrimSpace(rest); strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, ":") {
					return i + 1
				}
			}
		}
		return 0
	}
	type warning struct {
		line int
		text string
	}
	var ws []warning
	for name := range vars {
		switch {
		case !isVariableName(name):
			delete(vars, name)
			ws = append(ws, warning{lineOf(name), fmt.Sprintf("%q is not a variable name, so the line sets nothing: write NAME=value", name)})
		case unknownVariable(name) != "":
			ws = append(ws, warning{lineOf(name), unknownVariable(name)})
		}
	}
	slices.SortFunc(ws, func(a, b warning) int { return cmp.Or(cmp.Compare(a.line, b.line), strings.Compare(a.text, b.text)) })
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = fmt.Sprintf("%s:%d: %s", path, w.line, w.text)
	}
	return out
}

// isVariableName reports a POSIX shell variable name: a letter or _, then
// letters, digits and _.
func isVariableName(s string) bool {
	for i, c := range s {
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Load builds the configuration from the command-line arguments (without the
// program name) and the environment. Precedence, highest first: flag, AUTHZ_*
// variable, the guide's AUTHACTION_* variables (issuer, audience and JWKS
// only), the config file, the default. Errors name the flag, variable or file
// line at fault. flag.ErrHelp is returned for -h.
func Load(args []string, env Lookup, usage io.Writer) (*Config, error) {
	flags, err := parseFlags(args, usage)
	if err != nil {
		return nil, err
	}
	src, err := newSources(flags, env)
	if err != nil {
		return nil, err
	}
	cfg := &Config{File: src.path, FileSHA256: src.file.sha256}
	if err := loadScalars(cfg, src); err != nil {
		return nil, err
	}
	if err := loadProviders(cfg, src); err != nil {
		return nil, err
	}
	if err := loadRules(cfg, src); err != nil {
		return nil, err
	}
	if err := loadClaimHeaders(cfg, src); err != nil {
		return nil, err
	}
	return cfg, nil
}
