package config

// The configuration and its loading, step by step: flags, sources, file,
// scalar settings, providers, rules, claim headers.

import (
	"errors"
	"fmt"
	"github.com/extauthz/extauthz/policy"
	"io"
	"os"
	"time"

	"github.com/joho/godotenv"
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
	// ForwardToken keeps the Authorization header upstream on allow.
	ForwardToken bool
}

// Rule is one path rule, or a named policy: the rule language of package
// policy. Where names its file line.
type Rule = policy.Rule

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
	cfg := &Config{File: src.path}
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
