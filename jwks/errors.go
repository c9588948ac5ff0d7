package jwks

import (
	"errors"
	"fmt"

	"github.com/extauthz/extauthz/internal/redact"
)

var (
	// ErrKeyNotFound means the key set has no key with the token's kid, even
	// after any refresh the rate limit allowed.
	ErrKeyNotFound = errors.New("jwks: no key with that kid")
	// ErrNotReady means no key set has been loaded yet for the provider.
	ErrNotReady = errors.New("jwks: key set not loaded yet")
	// ErrFetch wraps every failure to fetch a key set.
	ErrFetch = errors.New("jwks: fetch failed")
	// ErrParse means a fetched document is not an acceptable JWK Set.
	ErrParse = errors.New("jwks: not a usable JWK Set")
	// ErrNoUsableKeys means a JWK Set holds no key that can verify tokens
	// with the allowed algorithms.
	ErrNoUsableKeys = errors.New("jwks: no usable signing key")
	// ErrBodyTooLarge means the JWKS response exceeded Config.MaxBodyBytes
	// (or a discovery document [MaxDiscoveryBytes]).
	ErrBodyTooLarge = errors.New("jwks: response body too large")
	// ErrDiscovery means a fetched discovery document is not an acceptable
	// OpenID Connect discovery document.
	ErrDiscovery = errors.New("jwks: not a usable discovery document")
	// ErrIssuerMismatch means a discovery document names another issuer
	// than the configured one (OpenID Connect Discovery 1.0 section 4.3).
	ErrIssuerMismatch = errors.New("jwks: discovery document names another issuer")
)

// StatusError is returned (wrapped in [ErrFetch]) when the JWKS endpoint or
// the discovery document's answers with a status other than 200 (or a 304
// to a conditional request).
type StatusError struct {
	// URL is the JWKS URL with its user info masked, as are the URLs in
	// every error and log line of this package: they reach logs, /readyz and
	// whoever reads those.
	URL  string
	Code int
}

// Error masks the user info of URL even when the caller who made e did not.
func (e *StatusError) Error() string {
	return fmt.Sprintf("jwks: %s answered HTTP %d", redact.URL(e.URL), e.Code)
}
