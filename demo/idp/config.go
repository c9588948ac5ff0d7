package idp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultIssuer   = "http://localhost:9000"
	DefaultAudience = "https://api.example.com"
	DefaultTokenTTL = time.Hour
	DefaultKeyBits  = 2048

	// DefaultRotationPublishDelay is how long a new key is published before
	// it signs anything. A relying party learns a new kid either from its
	// periodic refresh or from a refresh triggered by an unknown kid, which
	// it rate limits (this project's verifier: at most one per 10s,
	// --jwks-min-refresh-interval). If the key has been published for at
	// least that interval when the first token carrying it arrives, then
	// either the verifier's last refresh is older than the interval (so it
	// may refresh now and finds the key) or it is newer (so it already has
	// the key). 15s is that 10s plus room for the fetch itself and clock
	// drift. Verifiers that never refresh on an unknown kid need a delay as
	// long as their periodic refresh interval instead.
	DefaultRotationPublishDelay = 15 * time.Second

	// DefaultRetireMargin is how long a retired key stays in the JWKS after
	// the last token it signed has expired. Verifiers accept a token until
	// exp plus their clock-skew leeway (this project: 60s, --clock-skew), so
	// the margin must be at least that; 2m adds room for clock drift
	// between the issuer and the verifiers.
	DefaultRetireMargin = 2 * time.Minute

	// MaxBodyBytes bounds a token request body. Real requests are a few
	// hundred bytes.
	MaxBodyBytes = 64 << 10

	// maxConfigBytes bounds a configuration file read by [LoadConfig].
	maxConfigBytes = 1 << 20

	minKeyBits = 2048
	maxKeyBits = 8192
)

// ErrInvalidConfig is returned (wrapped) by [New], [ParseConfig] and
// [LoadConfig] for a configuration that cannot be used.
var ErrInvalidConfig = errors.New("idp: invalid config")

// Client is an OAuth 2.0 client allowed to use the client credentials grant.
type Client struct {
	// ID is the client_id. It becomes the token's sub and client_id claims.
	// Required.
	ID string `yaml:"id"`
	// Secret is the client_secret, compared in constant time. Required.
	Secret string `yaml:"secret"`
	// Scopes are the scopes the client may be granted. A request without a
	// scope parameter is granted all of them. May be empty.
	Scopes []string `yaml:"scopes"`
	// Audiences are the audiences the client may request; each must be one
	// of Config.Audiences. Empty means every audience in Config.Audiences.
	Audiences []string `yaml:"audiences"`
	// TokenTTL is the lifetime of tokens issued to this client, at least
	// 1s; it is truncated to whole seconds. Zero means Config.TokenTTL. A
	// client with a lifetime of a second or two lets tests watch a real
	// token expire.
	TokenTTL time.Duration `yaml:"token_ttl"`
}

// LogValue keeps the secret out of logs.
func (c Client) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.Any("scopes", c.Scopes))
}

// DemoClients returns the well-known demo clients: demo-client/demo-secret
// with scope read:messages and admin-client/admin-secret with scopes
// read:messages and admin. Their secrets are public; never use them
// anywhere that matters.
func DemoClients() []Client {
	return []Client{
		{ID: "demo-client", Secret: "demo-secret", Scopes: []string{"read:messages"}},
		{ID: "admin-client", Secret: "admin-secret", Scopes: []string{"read:messages", "admin"}},
	}
}

// Config configures a [Server]. The zero value is the demo issuer:
// http://localhost:9000, audience https://api.example.com, the
// [DemoClients], 1h tokens, 2048-bit keys.
type Config struct {
	// Issuer is the iss claim and the base of the URLs in the discovery
	// document: an absolute http or https URL without query or fragment.
	// It is used verbatim in tokens; a trailing slash is not added to or
	// removed from iss. Defaults to DefaultIssuer.
	Issuer string
	// Audiences are the audiences (API identifiers) tokens may be issued
	// for. Defaults to [DefaultAudience].
	Audiences []string
	// Clients are the registered clients. Empty means DemoClients().
	Clients []Client
	// TokenTTL is the lifetime of issued tokens, at least 1s; it is
	// truncated to whole seconds. Defaults to 1h.
	TokenTTL time.Duration
	// KeyBits is the RSA modulus size of generated keys, 2048 to 8192.
	// Defaults to 2048.
	KeyBits int
	// MTLSBaseURL is the https URL at which the issuer's own TLS listener,
	// one that asks for client certificates, is reached (cmd/demo-idp
	// --tls-addr), such as https://localhost:9443; empty when it has none.
	// Setting it advertises tls_client_certificate_bound_access_tokens in
	// discovery (RFC 8705 §3.3) and, when it differs from Issuer, the token
	// endpoint under it as mtls_endpoint_aliases (RFC 8705 §5), which a DPoP
	// proof sent over TLS must then name as its htu. A token requested over
	// TLS with a client certificate is bound to that certificate whether or
	// not this is set.
	MTLSBaseURL string
	// RotationPublishDelay is how long a key added by Rotate is listed in
	// the JWKS before it signs tokens. Defaults to
	// DefaultRotationPublishDelay (see there for why); a negative value
	// means no delay, which relying parties can only absorb if they refresh
	// on an unknown kid without a rate limit.
	RotationPublishDelay time.Duration
	// RetireMargin is how long a retired key stays listed after the last
	// token it signed has expired. Defaults to DefaultRetireMargin; a
	// negative value means none.
	RetireMargin time.Duration
	// Now is the clock, for tests. Defaults to time.Now.
	Now func() time.Time
	// Logger receives issuance, refusal and rotation events (never tokens
	// or secrets). Nil means slog.Default().
	Logger *slog.Logger
}

// fileConfig is the YAML configuration file:
//
//	token_ttl: 1h
//	audiences: [https://api.example.com]
//	clients:
//	  - id: demo-client
//	    secret: demo-secret
//	    scopes: [read:messages]
//	    audiences: [https://api.example.com]   # optional
//	    token_ttl: 5m                          # optional, overrides token_ttl above
type fileConfig struct {
	TokenTTL  time.Duration `yaml:"token_ttl"`
	Audiences []string      `yaml:"audiences"`
	Clients   []Client      `yaml:"clients"`
}

// LoadConfig reads the YAML configuration file at path (at most 1 MiB) and
// returns it as a Config; see [ParseConfig].
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("idp: config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("idp: config %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return Config{}, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalidConfig, path, maxConfigBytes)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a YAML configuration file with the keys token_ttl,
// audiences and clients (each with id, secret, scopes, audiences and
// token_ttl). Unknown
// or repeated keys are errors, so a typo fails instead of being ignored;
// every error names the line it concerns. Keys absent from the file are left
// zero in the returned Config, so [New] applies its defaults to them; the
// file's clients replace the demo clients entirely.
func ParseConfig(data []byte) (Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) { // empty document
			return Config{}, nil
		}
		if te, ok := errors.AsType[*yaml.TypeError](err); ok {
			return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(te.Errors, "; "))
		}
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: line %d: only one YAML document is allowed", ErrInvalidConfig, extra.Line)
	}

	// The strict decode above cannot report the lines of semantic errors,
	// and yaml's Node.Decode drops KnownFields, so the node tree is parsed
	// a second time only to find lines.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	lines := configLines{root: &root}
	if fc.TokenTTL != 0 && fc.TokenTTL < time.Second {
		return Config{}, fmt.Errorf("%w: line %d: token_ttl must be at least 1s", ErrInvalidConfig, lines.of("token_ttl"))
	}
	for i, a := range fc.Audiences {
		if err := checkAudience(a); err != nil {
			return Config{}, fmt.Errorf("%w: line %d: audiences: %w", ErrInvalidConfig, lines.of("audiences", i), err)
		}
	}
	seen := make(map[string]int)
	for i, c := range fc.Clients {
		line := lines.of("clients", i)
		if err := checkClient(c); err != nil {
			return Config{}, fmt.Errorf("%w: line %d: %w", ErrInvalidConfig, line, err)
		}
		if prev, dup := seen[c.ID]; dup {
			return Config{}, fmt.Errorf("%w: line %d: client %q already defined on line %d", ErrInvalidConfig, line, c.ID, prev)
		}
		seen[c.ID] = line
		if len(fc.Audiences) > 0 {
			for j, a := range c.Audiences {
				if !slices.Contains(fc.Audiences, a) {
					return Config{}, fmt.Errorf("%w: line %d: client %q: audience %q is not in audiences",
						ErrInvalidConfig, lines.of("clients", i, "audiences", j), c.ID, a)
				}
			}
		}
	}
	return Config{TokenTTL: fc.TokenTTL, Audiences: fc.Audiences, Clients: fc.Clients}, nil
}

// configLines finds the line of a value in a parsed YAML document.
type configLines struct{ root *yaml.Node }

// of walks path (mapping keys as strings, sequence indexes as ints) and
// returns the line of the deepest node reached.
func (l configLines) of(path ...any) int {
	n := l.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		next := (*yaml.Node)(nil)
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return n.Line
}

// checkClient validates what can be checked about one client on its own.
func checkClient(c Client) error {
	if c.ID == "" {
		return errors.New("client: id is required")
	}
	if !isVSChars(c.ID) {
		return fmt.Errorf("client %q: id must be printable ASCII", c.ID)
	}
	if c.Secret == "" {
		return fmt.Errorf("client %q: secret is required", c.ID)
	}
	for _, s := range c.Scopes {
		if !isScopeToken(s) {
			return fmt.Errorf("client %q: scope %q is not a valid scope token (RFC 6749 §3.3)", c.ID, s)
		}
	}
	for _, a := range c.Audiences {
		if err := checkAudience(a); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
	}
	if c.TokenTTL != 0 && c.TokenTTL < time.Second {
		return fmt.Errorf("client %q: token_ttl %s must be at least 1s", c.ID, c.TokenTTL)
	}
	return nil
}

func checkAudience(a string) error {
	if a == "" || !isVSChars(a) || strings.ContainsRune(a, ' ') {
		return fmt.Errorf("audience %q must be non-empty printable ASCII without spaces", a)
	}
	return nil
}

// isScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B /
// %x5D-7E ) (RFC 6749 §3.3).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// isVSChars reports whether s is 1*VSCHAR (%x20-7E), the syntax of
// client_id (RFC 6749 Appendix A.1).
func isVSChars(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
