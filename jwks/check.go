package jwks

// The defaults of a Config's zero values and the rules a Config must meet,
// exported so that a program validates its settings where they were written
// (config reports a flag or a file line) by the same rules New applies.

import (
	"fmt"
	"net/url"
	"time"

	"github.com/extauthz/extauthz/internal/redact"
)

// The defaults of Config's zero values.
const (
	// DefaultAlgorithm is the algorithm accepted when Config.Algorithms is
	// empty.
	DefaultAlgorithm = "RS256"
	// DefaultRefreshInterval is the default of Config.RefreshInterval.
	DefaultRefreshInterval = 15 * time.Minute
	// DefaultMinRefreshInterval is the default of Config.MinRefreshInterval.
	DefaultMinRefreshInterval = 10 * time.Second
	// DefaultFetchTimeout is the default of Config.FetchTimeout.
	DefaultFetchTimeout = 5 * time.Second
	// DefaultUnknownKIDWait is the default of Config.UnknownKIDWait: half of
	// Envoy's default ext_authz timeout.
	DefaultUnknownKIDWait = 100 * time.Millisecond
	// DefaultMaxBodyBytes is the default of Config.MaxBodyBytes (1 MiB).
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxKeys is the default of Config.MaxKeys.
	DefaultMaxKeys = 100
)

// CheckURL reports a key set URL that is not an absolute http or https URL
// with a host. The error shows the URL with its user info masked.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not err: url.Parse's error quotes the URL, user info and all.
		return fmt.Errorf("jwks: URL %q is not an absolute http(s) URL", redact.URL(raw))
	}
	return nil
}

// CheckAlgorithm reports a signing algorithm the cache cannot verify:
// asymmetric algorithms only, never none or HMAC.
func CheckAlgorithm(alg string) error {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return nil
	}
	return fmt.Errorf("jwks: algorithm %q is not supported (asymmetric only: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA)", alg)
}

// CheckRefreshIntervals reports a minimum refresh interval longer than the
// refresh interval: the retry backoff would start above its own cap.
func CheckRefreshIntervals(refresh, minRefresh time.Duration) error {
	if minRefresh > refresh {
		return fmt.Errorf("jwks: minimum refresh interval %v is longer than the refresh interval %v", minRefresh, refresh)
	}
	return nil
}
