package config

// The identity providers: the single provider of flags, variables and file
// keys, or the file's providers list.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/extauthz/extauthz/authz"

	"github.com/extauthz/extauthz/jwks"
)

// loadProviders sets cfg.Providers.
func loadProviders(cfg *Config, src *sources) error {
	// Each of the three follows its own precedence: flag, AUTHZ_*, the
	// guide's AUTHACTION_*, the file. The JWKS URL derived from
	// AUTHACTION_DOMAIN goes with the issuer it derives: it is not used when
	// the issuer comes from a flag or AUTHZ_ISSUER.
	issuer, issuerSrc, hasIssuer := src.explicit("issuer")
	audience, audienceSrc, hasAudience := src.explicit("audience")
	jwksURL, jwksSrc, hasJWKS := src.explicit("jwks-url")
	if domain, ok := src.env("AUTHACTION_DOMAIN"); ok && domain != "" && !hasIssuer {
		base := GuideIssuer(domain)
		issuer, issuerSrc, hasIssuer = base, "AUTHACTION_DOMAIN", true
		if !hasJWKS {
			jwksURL, jwksSrc, hasJWKS = base+"/.well-known/jwks.json", "AUTHACTION_DOMAIN", true
		}
	}
	if aud, ok := src.env("AUTHACTION_AUDIENCE"); ok && aud != "" && !hasAudience {
		audience, audienceSrc, hasAudience = aud, "AUTHACTION_AUDIENCE", true
	}
	if !hasIssuer {
		issuer, issuerSrc, hasIssuer = src.inFile("issuer")
	}
	if !hasAudience {
		audience, audienceSrc, hasAudience = src.inFile("audience")
	}
	if !hasJWKS {
		jwksURL, jwksSrc, hasJWKS = src.inFile("jwks-url")
	}
	fileProviders := src.file.Providers
	if (hasIssuer || hasAudience || hasJWKS) && len(fileProviders) > 0 {
		return fmt.Errorf("%s: providers are set in the file and %s sets a single provider too; use one or the other",
			src.at("providers", -1), cmp.Or(issuerSrc, audienceSrc, jwksSrc))
	}
	if len(fileProviders) == 0 {
		if !hasIssuer || issuer == "" {
			return errors.New("no issuer configured: set --issuer (or AUTHZ_ISSUER, or the guide's AUTHACTION_DOMAIN), or providers in a --config file")
		}
		if !hasAudience || len(splitList(audience)) == 0 {
			return errors.New("no audience configured: set --audience (or AUTHZ_AUDIENCE, or the guide's AUTHACTION_AUDIENCE); without one, tokens minted for any other API of the same issuer would pass")
		}
		p := Provider{Issuer: issuer, Audiences: splitList(audience), JWKSURL: jwksURL, Discovery: cfg.OIDCDiscovery}
		if p.Discovery && jwksSrc == "AUTHACTION_DOMAIN" {
			p.JWKSURL = "" // the guide's derived URL; discovery finds the real one
		}
		if err := finishProvider(&p); err != nil {
			where := issuerSrc
			if hasJWKS && jwksURL != "" {
				where = issuerSrc + " / " + jwksSrc
			}
			return fmt.Errorf("%s: %w", where, err)
		}
		cfg.Providers = []Provider{p}
		return nil
	}
	seen := map[string]int{}
	for i, fp := range fileProviders {
		at := fmt.Sprintf("%s: providers[%d]", src.at("providers", i), i)
		p := Provider{Name: fp.Name, Issuer: fp.Issuer, Audiences: fp.Audiences, JWKSURL: fp.JWKSURL, Algorithms: fp.Algorithms, ForwardToken: fp.ForwardToken,
			Discovery: fp.Discovery, DiscoveryURL: fp.DiscoveryURL}
		for _, ts := range fp.TokenSources {
			p.TokenSources = append(p.TokenSources, authz.TokenSource{Header: ts.Header, Prefix: ts.Prefix, Cookie: ts.Cookie, Query: ts.Query})
		}
		if err := authz.CheckTokenSources(p.TokenSources); err != nil {
			return fmt.Errorf("%s: token_sources: %w", at, err)
		}
		if err := senderOf(&p, fp); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
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

// finishProvider checks p and fills in its defaults. The JWKS URL and the
// algorithms are checked by jwks's rules, so that a provider config.Load
// accepts is one jwks.New accepts.
func finishProvider(p *Provider) error {
	for i, a := range p.Audiences {
		p.Audiences[i] = strings.TrimSpace(a)
		if p.Audiences[i] == "" {
			return errors.New("an audience is empty")
		}
	}
	switch {
	case p.Discovery && p.JWKSURL != "":
		return errors.New("jwks_url and discovery exclude each other: discovery takes the key set's URL from the issuer's document")
	case p.Discovery:
		if err := jwks.CheckIssuer(p.Issuer); err != nil {
			return err
		}
		if p.DiscoveryURL != "" {
			if err := jwks.CheckURL(p.DiscoveryURL); err != nil {
				return fmt.Errorf("discovery_url: %w", err)
			}
		}
	case p.DiscoveryURL != "":
		return errors.New("discovery_url needs discovery: true")
	default:
		if p.JWKSURL == "" {
			p.JWKSURL = strings.TrimSuffix(p.Issuer, "/") + "/.well-known/jwks.json"
		}
		if err := jwks.CheckURL(p.JWKSURL); err != nil {
			// The URL may hold credentials (user info, sent as Basic
			// authentication): CheckURL's message masks them.
			return fmt.Errorf("%w (set the JWKS URL, or an issuer that is a URL)", err)
		}
	}
	if len(p.Algorithms) == 0 {
		p.Algorithms = []string{jwks.DefaultAlgorithm}
	}
	for _, a := range p.Algorithms {
		if err := jwks.CheckAlgorithm(a); err != nil {
			return err
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

// senderOf reads a provider's sender constraint settings into p, the DPoP
// nonce key from its file, and checks them as authz.New will.
func senderOf(p *Provider, fp fileProvider) error {
	p.SenderConstraint, p.ClientCertFrom, p.ClientCertHeader = fp.SenderConstraint, fp.ClientCertFrom, fp.ClientCertHeader
	p.DPoP = authz.DPoP{Algorithms: fp.DPoPAlgorithms, Nonce: fp.DPoPNonce, PublicBaseURL: fp.DPoPPublicBaseURL}
	for _, d := range []struct {
		key string
		raw string
		to  *time.Duration
	}{{"dpop_max_age", fp.DPoPMaxAge, &p.DPoP.MaxAge}, {"dpop_max_ahead", fp.DPoPMaxAhead, &p.DPoP.MaxAhead}} {
		if d.raw == "" {
			continue
		}
		v, err := positiveDuration(d.raw)
		if err != nil {
			return fmt.Errorf("%s: %w", d.key, err)
		}
		*d.to = v
	}
	if fp.DPoPNonceKeyFile != "" {
		if !fp.DPoPNonce {
			return errors.New("dpop_nonce_key_file needs dpop_nonce: true")
		}
		key, err := os.ReadFile(fp.DPoPNonceKeyFile)
		if err != nil {
			return fmt.Errorf("dpop_nonce_key_file: %w", err)
		}
		key = bytes.TrimSpace(key)
		if len(key) < 32 {
			return fmt.Errorf("dpop_nonce_key_file %s: the key is %d bytes, at least 32 are needed (head -c 32 /dev/urandom | base64)", fp.DPoPNonceKeyFile, len(key))
		}
		p.DPoP.NonceKey = key
	}
	return authz.CheckSender(authz.Provider{SenderConstraint: p.SenderConstraint, DPoP: p.DPoP,
		ClientCertFrom: p.ClientCertFrom, ClientCertHeader: p.ClientCertHeader})
}
