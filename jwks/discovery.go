package jwks

// OpenID Connect Discovery 1.0: where a provider's discovery document is,
// and what the cache takes from it.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/extauthz/extauthz/internal/redact"
)

// MaxDiscoveryBytes bounds a discovery document. The largest that real
// providers publish (Keycloak's, with every grant, claim and algorithm it
// supports) are under 10 KiB.
const MaxDiscoveryBytes = 64 << 10

// WellKnownOpenIDConfiguration is the path OpenID Connect Discovery 1.0
// section 4 appends to an issuer.
const WellKnownOpenIDConfiguration = "/.well-known/openid-configuration"

// Discovery is what the cache reads from an OpenID Provider's discovery
// document (OpenID Connect Discovery 1.0 section 3). Other members are
// ignored.
type Discovery struct {
	// Issuer is the document's "issuer", which must equal the configured
	// issuer exactly (section 4.3).
	Issuer string
	// JWKSURI is the document's "jwks_uri": where the key set is.
	JWKSURI string
}

// ParseDiscovery decodes a discovery document. It returns an error wrapping
// [ErrDiscovery] when the document is larger than [MaxDiscoveryBytes], is
// not a single JSON object of valid UTF-8, repeats a member name at any
// depth, has a member name that case-insensitive decoders (encoding/json
// among them) would take for "issuer" or "jwks_uri" ("Issuer", "JWKS_URI"),
// or lacks a non-empty string "issuer" or a "jwks_uri" that is an absolute
// http(s) URL with a host and no user info. Which issuer or key set such a
// document names depends on the parser that reads it, so it is refused
// rather than read one way.
//
// ParseDiscovery does not compare the issuer with any configured one: the
// [Cache] does that.
func ParseDiscovery(doc []byte) (Discovery, error) {
	d, err := parseDiscovery(doc)
	if err != nil {
		return Discovery{}, fmt.Errorf("%w: %s", ErrDiscovery, truncate(err.Error()))
	}
	return d, nil
}

func parseDiscovery(doc []byte) (Discovery, error) {
	if len(doc) > MaxDiscoveryBytes {
		return Discovery{}, fmt.Errorf("%d bytes, limit %d", len(doc), MaxDiscoveryBytes)
	}
	// The default options refuse invalid UTF-8 and repeated names at every
	// depth, skipped values included.
	dec := jsontext.NewDecoder(bytes.NewReader(doc))
	var d Discovery
	var hasIssuer, hasJWKS bool
	err := members(dec, []string{"issuer", "jwks_uri"}, func(name string) error {
		var dst *string
		switch name {
		case "issuer":
			dst, hasIssuer = &d.Issuer, true
		case "jwks_uri":
			dst, hasJWKS = &d.JWKSURI, true
		default:
			return dec.SkipValue()
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if tok.Kind() != '"' {
			return fmt.Errorf("%q is not a string", name)
		}
		*dst = tok.String()
		return nil
	})
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return Discovery{}, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return Discovery{}, errors.New("data after the document object")
	}
	switch {
	case !hasIssuer || d.Issuer == "":
		return Discovery{}, errors.New(`no "issuer"`)
	case !hasJWKS || d.JWKSURI == "":
		return Discovery{}, errors.New(`no "jwks_uri"`)
	}
	u, err := url.Parse(d.JWKSURI)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return Discovery{}, fmt.Errorf("jwks_uri %q is not an absolute http(s) URL", redact.URL(d.JWKSURI))
	case u.User != nil || strings.Contains(u.Host, "@"):
		// Credentials are the operator's to configure, never a document's.
		return Discovery{}, fmt.Errorf("jwks_uri %q carries user info", redact.URL(d.JWKSURI))
	}
	return d, nil
}

// DiscoveryLocation returns where the discovery document of issuer is:
// override when it is set, else issuer with one trailing "/" removed and
// [WellKnownOpenIDConfiguration] appended (OpenID Connect Discovery 1.0
// section 4).
func DiscoveryLocation(issuer, override string) string {
	if override != "" {
		return override
	}
	return strings.TrimSuffix(issuer, "/") + WellKnownOpenIDConfiguration
}

// CheckIssuer reports an issuer from which a discovery document cannot be
// located: not an absolute http(s) URL with a host, or with user info, a
// query or a fragment (OpenID Connect Discovery 1.0 section 2: "a case
// sensitive URL using the https scheme that contains scheme, host, and
// optionally, port number and path components and no query or fragment
// components"; http is allowed for tests and private networks, with the
// warning a plain-HTTP key set gets). The error shows the issuer with its
// user info masked.
func CheckIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(issuer, "?#") {
		return fmt.Errorf("jwks: issuer %q is not an absolute http(s) URL without user info, query or fragment", redact.URL(issuer))
	}
	return nil
}
