// Command demo-client obtains a sender-constrained token from the demo
// issuer and calls a URL with it, which curl cannot do: every DPoP request
// needs a fresh proof signed by the client's key (RFC 9449).
//
//	go run ./cmd/demo-client [flags] URL
//
// It generates a new ECDSA P-256 key at each start, reads the token
// endpoint from the issuer's discovery document, and requests a token with
// the client credentials grant (the demo credentials by default) and a
// DPoP proof, which gets a DPoP token bound to the key. It then calls URL
// with "Authorization: DPoP <token>" and a new proof for the method and URL
// (without its query) carrying the token's hash. Answered 401 with
// error="use_dpop_nonce" and a DPoP-Nonce header, it retries once with
// that nonce (RFC 9449 §8); it remembers the last nonce each server sent.
// With --dpop=false it gets a plain bearer token and sends it as curl would.
//
// With --cert and --key (a PEM client certificate, self-signed will do, and
// its key) it requests the token over mutual TLS, from the issuer's
// mtls_endpoint_aliases token endpoint when discovery names one (RFC 8705
// §5), and gets a token bound to the certificate (cnf x5t#S256); it presents
// the same certificate to URL. --ca is a PEM file of certificates to trust
// for https, such as the demo issuer's generated one (demo-idp
// --tls-cert-out).
//
// --replay sends the first call's request again, byte for byte, with the
// same proof, to show that a resource server refuses a replayed proof.
// --print-token prints the token and each proof sent; without URL it only
// gets and prints the token.
//
// It prints each call as one block: the request, the status, the
// WWW-Authenticate and DPoP-Nonce headers, and the body. The exit code is 0
// when the first call (after a nonce retry) got a 2xx answer, or the token
// was obtained when there is no URL; 1 otherwise; 2 for a usage error.
// Every request has a timeout (--timeout), goes only to the issuer, the
// endpoints its discovery names and URL, through no proxy, and follows no
// redirect.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/extauthz/extauthz/demo/idp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	issuer       string
	clientID     string
	clientSecret string
	audience     string
	scope        string
	dpop         bool
	cert, key    string
	ca           string
	method       string
	replay       bool
	printToken   bool
	timeout      time.Duration
	url          string // "" only with printToken
}

// errUsage marks a command line that cannot be run: exit code 2.
var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (options, error) {
	demo := idp.DemoClients()[0]
	var o options
	fs := flag.NewFlagSet("demo-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.issuer, "issuer", "http://127.0.0.1:9000", "the issuer's URL; its discovery document names the token endpoint")
	fs.StringVar(&o.clientID, "client-id", demo.ID, "client_id")
	fs.StringVar(&o.clientSecret, "client-secret", demo.Secret, "client_secret")
	fs.StringVar(&o.audience, "audience", idp.DefaultAudience, "the audience to ask a token for")
	fs.StringVar(&o.scope, "scope", "", "space-separated scopes to ask for; empty: all the client may have")
	fs.BoolVar(&o.dpop, "dpop", true, "ask for a DPoP token and send a proof with each request; false: a bearer token")
	fs.StringVar(&o.cert, "cert", "", "PEM client certificate for mutual TLS with the issuer and URL (with --key)")
	fs.StringVar(&o.key, "key", "", "PEM private key of --cert")
	fs.StringVar(&o.ca, "ca", "", "PEM certificates to trust for https (e.g. the file of demo-idp --tls-cert-out); empty: the system's")
	fs.StringVar(&o.method, "method", "GET", "the method of the call to URL")
	fs.BoolVar(&o.replay, "replay", false, "send the first call again with the same proof")
	fs.BoolVar(&o.printToken, "print-token", false, "print the access token and the proofs sent; without URL, only get the token")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "the timeout of each request")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: demo-client [flags] URL\n\n"+
			"Gets a token from the demo issuer (a DPoP token by default) and calls URL with it.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	switch {
	case fs.NArg() > 1:
		return options{}, fmt.Errorf("%w: one URL, not %d", errUsage, fs.NArg())
	case fs.NArg() == 0 && !o.printToken:
		return options{}, fmt.Errorf("%w: a URL to call is required (or --print-token)", errUsage)
	case fs.NArg() == 1:
		o.url = fs.Arg(0)
		if err := checkURL(o.url); err != nil {
			return options{}, fmt.Errorf("%w: URL: %w", errUsage, err)
		}
	}
	if err := checkURL(o.issuer); err != nil {
		return options{}, fmt.Errorf("%w: --issuer: %w", errUsage, err)
	}
	switch {
	case (o.cert == "") != (o.key == ""):
		return options{}, fmt.Errorf("%w: --cert and --key go together", errUsage)
	case o.method == "":
		return options{}, fmt.Errorf("%w: --method is empty", errUsage)
	case o.timeout <= 0:
		return options{}, fmt.Errorf("%w: --timeout must be positive", errUsage)
	case o.clientID == "" || o.clientSecret == "":
		return options{}, fmt.Errorf("%w: --client-id and --client-secret are required", errUsage)
	}
	return o, nil
}

// checkURL accepts an absolute http or https URL with a host.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if !errors.Is(err, errUsage) { // the flag package has printed its own
			return 2
		}
		fmt.Fprintln(stderr, "demo-client:", err)
		return 2
	}
	c, err := newClient(o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "demo-client:", err)
		return 2
	}
	tok, err := c.obtainToken(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "demo-client:", err)
		return 1
	}
	if o.url == "" {
		return 0
	}
	ok, err := c.callURL(ctx, tok)
	if err != nil {
		fmt.Fprintln(stderr, "demo-client:", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}
