package main

// call.go: calling URL with the token, the nonce retry, the replay, and
// printing each call.

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// useNonce matches a challenge whose error is use_dpop_nonce (RFC 9449 §8):
// the auth-param at the start of the header, after a scheme, or after a
// comma, so that the words inside a quoted error_description do not count.
var useNonce = regexp.MustCompile(`(?i)(?:^|,)\s*(?:[!#$%&'*+.^_` + "`" + `|~0-9a-z-]+\s+)?error\s*=\s*(?:"use_dpop_nonce"|use_dpop_nonce)\s*(?:,|$)`)

// asksForNonce reports whether a response asks the client to retry with
// the nonce it sends: a 401 with a DPoP-Nonce header and a use_dpop_nonce
// challenge.
func asksForNonce(r response) bool {
	if r.code != http.StatusUnauthorized || r.header.Get("DPoP-Nonce") == "" {
		return false
	}
	for _, v := range r.header.Values("WWW-Authenticate") {
		if useNonce.MatchString(v) {
			return true
		}
	}
	return false
}

// authorize returns the headers presenting tok for one request to URL: for
// a DPoP token a new proof with its hash (ath) and nonce, "" for none.
func (c *client) authorize(tok token, nonce string) (http.Header, error) {
	h := http.Header{}
	h.Set("Authorization", tok.typ+" "+tok.value)
	if tok.typ == "DPoP" {
		proof, err := c.signer.Proof(c.o.method, c.o.url, tok.value, nonce)
		if err != nil {
			return nil, err
		}
		h.Set("DPoP", proof)
	}
	return h, nil
}

// callURL calls URL with tok, retries once with the server's nonce if it
// asks for one, then with --replay sends the last request again unchanged.
// It reports whether the call (after any retry) got a 2xx answer.
func (c *client) callURL(ctx context.Context, tok token) (bool, error) {
	what := "Bearer token"
	if tok.typ == "DPoP" {
		what = "DPoP token, new proof"
	}
	h, err := c.authorize(tok, c.nonces[origin(c.o.url)])
	if err != nil {
		return false, err
	}
	resp, err := c.exchange(ctx, what, h)
	if err != nil {
		return false, err
	}
	if tok.typ == "DPoP" && asksForNonce(resp) {
		if h, err = c.authorize(tok, resp.header.Get("DPoP-Nonce")); err != nil {
			return false, err
		}
		if resp, err = c.exchange(ctx, "DPoP token, new proof with the server's DPoP-Nonce", h); err != nil {
			return false, err
		}
	}
	ok := resp.code >= 200 && resp.code < 300
	if c.o.replay {
		what := "replay: the same request"
		if tok.typ == "DPoP" {
			what += " with the same proof"
		}
		if _, err := c.exchange(ctx, what, h); err != nil {
			return ok, err
		}
	}
	return ok, nil
}

// exchange sends one request to URL with header and prints it as a block.
func (c *client) exchange(ctx context.Context, what string, header http.Header) (response, error) {
	w := c.stdout
	fmt.Fprintf(w, "== %s %s (%s)\n", c.o.method, c.o.url, what)
	if proof := header.Get("DPoP"); proof != "" && c.o.printToken {
		fmt.Fprintf(w, "DPoP: %s\n", proof)
	}
	resp, err := c.send(ctx, c.o.method, c.o.url, header, "")
	if err != nil {
		return response{}, err
	}
	fmt.Fprintf(w, "status: %s\n", resp.status)
	for _, name := range []string{"WWW-Authenticate", "DPoP-Nonce"} {
		for _, v := range resp.header.Values(name) {
			fmt.Fprintf(w, "%s: %s\n", name, v)
		}
	}
	body := strings.TrimRight(string(resp.body), "\r\n")
	if body == "" {
		body = "(empty)"
	}
	fmt.Fprintf(w, "body: %s\n\n", body)
	return resp, nil
}
