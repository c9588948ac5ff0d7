package main

// token.go: the client, its transport, and getting a token from the issuer.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/extauthz/extauthz/demo/idp"
	"github.com/extauthz/extauthz/dpop"
)

// maxBody bounds every response body read.
const maxBody = 1 << 20

// client holds what the calls share: one HTTP client (with the client
// certificate, if any), the DPoP key, and the last nonce of each server.
type client struct {
	o      options
	http   *http.Client
	signer *dpop.Signer      // nil with --dpop=false
	nonces map[string]string // the last DPoP-Nonce seen, by origin
	stdout io.Writer
	stderr io.Writer
}

// newClient loads the TLS files and generates the DPoP key; it sends
// nothing.
func newClient(o options, stdout, stderr io.Writer) (*client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.ca != "" {
		pemBytes, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("--ca: %s holds no PEM certificate", o.ca)
		}
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	c := &client{o: o, nonces: map[string]string{}, stdout: stdout, stderr: stderr}
	c.http = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // only the URLs given, never a proxy from the environment
			DialContext:            (&net.Dialer{Timeout: o.timeout}).DialContext,
			TLSClientConfig:        tlsCfg,
			TLSHandshakeTimeout:    o.timeout,
			ResponseHeaderTimeout:  o.timeout,
			MaxResponseHeaderBytes: 64 << 10,
		},
		Timeout: o.timeout,
		// A redirect would carry the request elsewhere: show it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if o.dpop {
		s, err := dpop.GenerateSigner()
		if err != nil {
			return nil, fmt.Errorf("generate the DPoP key: %w", err)
		}
		c.signer = s
	}
	return c, nil
}

// response is a response read in full.
type response struct {
	status string // "200 OK"
	code   int
	header http.Header
	body   []byte
}

// send makes one request within the timeout and remembers the DPoP-Nonce
// the server sent, if any.
func (c *client) send(ctx context.Context, method, target string, header http.Header, body string) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.timeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read the body: %w", method, target, err)
	}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		c.nonces[origin(target)] = n
	}
	return response{status: resp.Status, code: resp.StatusCode, header: resp.Header, body: b}, nil
}

// origin is the scheme and host of a URL, the scope of a server's nonces.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// tokenEndpoint reads the issuer's discovery document. With a client
// certificate it takes the mutual-TLS alias when there is one (RFC 8705
// §5), and it must be https; a token endpoint of an https issuer must be
// https too, so that the secret never travels in clear.
func (c *client) tokenEndpoint(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(c.o.issuer, "/") + idp.DiscoveryPath
	resp, err := c.send(ctx, http.MethodGet, u, nil, "")
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if resp.code != http.StatusOK {
		return "", fmt.Errorf("discovery: GET %s: %s", u, resp.status)
	}
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
		MTLSAliases   struct {
			TokenEndpoint string `json:"token_endpoint"`
		} `json:"mtls_endpoint_aliases"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		return "", fmt.Errorf("discovery: %s: %w", u, err)
	}
	endpoint := doc.TokenEndpoint
	if c.o.cert != "" && doc.MTLSAliases.TokenEndpoint != "" {
		endpoint = doc.MTLSAliases.TokenEndpoint
	}
	if err := checkURL(endpoint); err != nil {
		return "", fmt.Errorf("discovery: %s: token endpoint: %w", u, err)
	}
	https := strings.HasPrefix(endpoint, "https://")
	switch {
	case c.o.cert != "" && !https:
		return "", fmt.Errorf("discovery: %s names no https token endpoint for mutual TLS (%s)", u, endpoint)
	case strings.HasPrefix(c.o.issuer, "https://") && !https:
		return "", fmt.Errorf("discovery: the https issuer names a plain http token endpoint (%s)", endpoint)
	}
	return endpoint, nil
}

// token is an access token and how to present it.
type token struct {
	value string
	typ   string // "DPoP" or "Bearer"
}

// tokenReply is the token endpoint's answer, success or error (RFC 6749
// §5.1, §5.2).
type tokenReply struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// obtainToken runs the client credentials grant with client_secret_basic,
// with a DPoP proof unless --dpop=false, retrying once with the issuer's
// nonce if it asks for one (RFC 9449 §8), and prints what it got.
func (c *client) obtainToken(ctx context.Context) (token, error) {
	endpoint, err := c.tokenEndpoint(ctx)
	if err != nil {
		return token{}, err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {c.o.audience}}
	if c.o.scope != "" {
		form.Set("scope", c.o.scope)
	}
	header := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	// RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
	creds := url.QueryEscape(c.o.clientID) + ":" + url.QueryEscape(c.o.clientSecret)
	header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))

	var reply tokenReply
	for retried := false; ; retried = true {
		if c.signer != nil {
			proof, err := c.signer.Proof(http.MethodPost, endpoint, "", c.nonces[origin(endpoint)])
			if err != nil {
				return token{}, err
			}
			header.Set("DPoP", proof)
		}
		resp, err := c.send(ctx, http.MethodPost, endpoint, header, form.Encode())
		if err != nil {
			return token{}, fmt.Errorf("token: %w", err)
		}
		reply = tokenReply{}
		if err := json.Unmarshal(resp.body, &reply); err != nil {
			return token{}, fmt.Errorf("token: POST %s: %s, not JSON: %w", endpoint, resp.status, err)
		}
		if resp.code == http.StatusBadRequest && reply.Error == "use_dpop_nonce" && c.signer != nil && !retried &&
			resp.header.Get("DPoP-Nonce") != "" {
			continue
		}
		if resp.code != http.StatusOK || reply.AccessToken == "" {
			return token{}, fmt.Errorf("token: POST %s: %s: %s %s", endpoint, resp.status, reply.Error, reply.Description)
		}
		break
	}
	tok := token{value: reply.AccessToken}
	switch {
	case strings.EqualFold(reply.TokenType, "DPoP"):
		if c.signer == nil {
			return token{}, errors.New("token: the issuer issued a DPoP token though no proof was sent")
		}
		tok.typ = "DPoP"
	case strings.EqualFold(reply.TokenType, "Bearer"):
		tok.typ = "Bearer"
		if c.signer != nil {
			fmt.Fprintln(c.stderr, "demo-client: the issuer ignored the DPoP proof and issued a bearer token")
		}
	default:
		return token{}, fmt.Errorf("token: unsupported token_type %q", reply.TokenType)
	}
	c.printToken(endpoint, tok, reply)
	return tok, nil
}

// printToken describes the token: its type, lifetime, scope and cnf claim
// (read without verification, for the reader), and with --print-token the
// token itself.
func (c *client) printToken(endpoint string, tok token, reply tokenReply) {
	w := c.stdout
	fmt.Fprintf(w, "== token from %s\n", endpoint)
	fmt.Fprintf(w, "token_type: %s, expires_in: %ds, scope: %q\n", tok.typ, reply.ExpiresIn, reply.Scope)
	if cnf := cnfOf(tok.value); cnf != "" {
		fmt.Fprintf(w, "cnf: %s\n", cnf)
	} else {
		fmt.Fprintln(w, "cnf: none (an unbound bearer token)")
	}
	if c.signer != nil {
		fmt.Fprintf(w, "proof key thumbprint (jkt): %s\n", c.signer.JKT())
	}
	if c.o.printToken {
		fmt.Fprintf(w, "access_token: %s\n", tok.value)
	}
	fmt.Fprintln(w)
}

// cnfOf returns the cnf claim of a JWT as JSON, unverified; "" when it has
// none or is not a JWT.
func cnfOf(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		CNF json.RawMessage `json:"cnf"`
	}
	if json.Unmarshal(payload, &claims) != nil || len(claims.CNF) == 0 {
		return ""
	}
	return string(claims.CNF)
}
