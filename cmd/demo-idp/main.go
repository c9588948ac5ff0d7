// Command demo-idp runs the demo identity provider (package demo/idp): a
// local OAuth 2.0 client credentials issuer standing in for the guide's
// hosted tenant, so that the demo works with no account anywhere.
//
// It serves the token endpoint, JWKS and discovery on --addr, and key
// rotation (POST /rotate, GET /keys) on --admin-addr, which defaults to
// loopback so that nobody who can reach the public port can rotate keys.
// SIGHUP also rotates.
//
// Tokens may be sender-constrained. A token request with a DPoP proof gets a
// DPoP token bound to the proof's key (RFC 9449; go run ./cmd/demo-client
// makes such requests, curl cannot). With --tls-addr (for example
// 127.0.0.1:9443) the same routes are also served over TLS 1.2 or later,
// asking for (not requiring) a client certificate: a token requested there
// with one is bound to it (RFC 8705), and discovery advertises
// tls_client_certificate_bound_access_tokens and the TLS token endpoint
// (mtls_endpoint_aliases, named by the issuer's host and the TLS port). The
// listener's certificate is --tls-cert/--tls-key, or, when both are empty, a
// self-signed ECDSA certificate for localhost, 127.0.0.1, ::1 and the
// issuer's host, made at start: its SHA-256 fingerprint is logged, and
// --tls-cert-out writes it where clients can pin it (demo-client --ca).
//
// Every flag is also an IDP_* environment variable (--token-ttl ->
// IDP_TOKEN_TTL); the command line wins over the environment, and both win
// over the --config file.
//
// THIS IS A DEMO ISSUER. Its default clients use published credentials and
// its keys live only in memory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/extauthz/extauthz/cmd/internal/flagenv"
	"github.com/extauthz/extauthz/demo/idp"
	"github.com/extauthz/extauthz/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stderr, hup))
}

// options are the parsed flags.
type options struct {
	addr         string
	adminAddr    string
	issuer       string
	audience     string
	tokenTTL     time.Duration
	keyBits      int
	configFile   string
	publishDelay time.Duration
	retireMargin time.Duration
	tlsAddr      string // "": no TLS listener
	tlsCert      string
	tlsKey       string
	tlsCertOut   string
	log          logging.Flags
	// explicit holds the flags given on the command line or in IDP_*; only
	// those override the config file.
	explicit map[string]bool
}

const envPrefix = "IDP_"

// envName maps a flag name to its environment variable.
func envName(flagName string) string { return flagenv.Name(envPrefix, flagName) }

// parseFlags reads args, then IDP_* variables for flags not on the command
// line.
func parseFlags(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo-idp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", ":9000", "public listen address (token endpoint, JWKS, discovery)")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9001", "admin listen address (POST /rotate, GET /keys); keep it private; empty disables it")
	fs.StringVar(&o.issuer, "issuer", idp.DefaultIssuer, "issuer URL: the iss claim and the base of the discovery URLs")
	fs.StringVar(&o.audience, "audience", idp.DefaultAudience, "comma-separated audiences tokens may be issued for")
	fs.DurationVar(&o.tokenTTL, "token-ttl", idp.DefaultTokenTTL, "lifetime of issued tokens")
	fs.IntVar(&o.keyBits, "key-bits", idp.DefaultKeyBits, "RSA key size, 2048 to 8192")
	fs.StringVar(&o.configFile, "config", "", "YAML file with clients, audiences and token_ttl (replaces the demo clients)")
	fs.DurationVar(&o.publishDelay, "rotation-publish-delay", idp.DefaultRotationPublishDelay,
		"how long a rotated-in key is published before it signs; covers relying parties' rate-limited unknown-kid refresh (0 signs at once)")
	fs.DurationVar(&o.retireMargin, "retire-margin", idp.DefaultRetireMargin,
		"how long a retired key stays published after its last token expires; covers relying parties' clock-skew leeway")
	fs.StringVar(&o.tlsAddr, "tls-addr", "", "TLS listen address for the same routes, asking for client certificates to bind tokens to (e.g. 127.0.0.1:9443); empty disables it")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate of the TLS listener; with --tls-key, else a self-signed one is generated")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.tlsCertOut, "tls-cert-out", "", "file to write the generated self-signed certificate to, for clients to trust")
	o.log.Register(fs, "text", "")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: demo-idp [flags]\n\nA local OAuth 2.0 issuer for demos. Every flag is also %s<NAME> (e.g. %s).\n\n",
			envPrefix, envName("token-ttl"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	explicit, err := flagenv.Apply(fs, envPrefix, lookupEnv)
	if err != nil {
		return options{}, err
	}
	o.explicit = explicit
	if err := o.log.Validate(); err != nil {
		return options{}, err
	}
	if err := o.checkTLS(); err != nil {
		return options{}, err
	}
	return o, nil
}

// checkTLS refuses TLS flags that cannot take effect together.
func (o options) checkTLS() error {
	switch {
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case o.tlsCertOut != "" && o.tlsCert != "":
		return errors.New("--tls-cert-out writes a generated certificate; with --tls-cert there is none")
	case o.tlsAddr == "" && (o.tlsCert != "" || o.tlsCertOut != ""):
		return errors.New("--tls-cert, --tls-key and --tls-cert-out need --tls-addr")
	}
	return nil
}

// idpConfig merges the config file (if any) with the flags.
func (o options) idpConfig(log *slog.Logger) (idp.Config, error) {
	var cfg idp.Config
	if o.configFile != "" {
		var err error
		if cfg, err = idp.LoadConfig(o.configFile); err != nil {
			return idp.Config{}, err
		}
	}
	cfg.Issuer = o.issuer
	if o.explicit["audience"] || len(cfg.Audiences) == 0 {
		cfg.Audiences = splitList(o.audience)
		if len(cfg.Audiences) == 0 {
			return idp.Config{}, errors.New("--audience is empty")
		}
	}
	if o.explicit["token-ttl"] || cfg.TokenTTL == 0 {
		cfg.TokenTTL = o.tokenTTL
		if cfg.TokenTTL <= 0 {
			return idp.Config{}, fmt.Errorf("--token-ttl %s must be positive", o.tokenTTL)
		}
	}
	cfg.KeyBits = o.keyBits
	// In idp.Config zero means "default" and negative means "none"; on the
	// command line 0 means none.
	cfg.RotationPublishDelay = zeroToNone(o.publishDelay)
	cfg.RetireMargin = zeroToNone(o.retireMargin)
	cfg.Logger = log
	return cfg, nil
}

func zeroToNone(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// run is main without the process: it returns the exit code. Rotation is
// triggered by values on hup.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer, hup <-chan os.Signal) int {
	o, err := parseFlags(args, lookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo-idp:", err)
		return 2
	}
	log := o.log.New(stderr)
	cfg, err := o.idpConfig(log)
	if err != nil {
		fmt.Fprintln(stderr, "demo-idp:", err)
		return 2
	}
	// The TLS listener opens first, since the issuer publishes its port.
	// It is closed on return (again, harmlessly, if its server has).
	var tlsLis net.Listener
	if o.tlsAddr != "" {
		if tlsLis, cfg.MTLSBaseURL, err = o.listenTLS(cfg.Issuer, log); err != nil {
			fmt.Fprintln(stderr, "demo-idp:", err)
			return 1
		}
		defer tlsLis.Close()
	}
	srv, err := idp.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "demo-idp:", err)
		return 2
	}
	warn(stderr, o, cfg)

	pub, err := net.Listen("tcp", o.addr)
	if err != nil {
		fmt.Fprintln(stderr, "demo-idp:", err)
		return 1
	}
	servers := []*http.Server{newHTTPServer(srv.Handler(), log)}
	listeners := []net.Listener{pub}
	names := []string{"public"}
	if o.adminAddr != "" {
		adm, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			pub.Close()
			fmt.Fprintln(stderr, "demo-idp:", err)
			return 1
		}
		servers = append(servers, newHTTPServer(srv.AdminHandler(), log))
		listeners = append(listeners, adm)
		names = append(names, "admin")
		if !isLoopback(adm.Addr()) {
			log.Warn("admin listener is not on loopback: anyone who reaches it can rotate keys", "addr", adm.Addr().String())
		}
	}
	if tlsLis != nil {
		servers = append(servers, newHTTPServer(srv.Handler(), log))
		listeners = append(listeners, tlsLis)
		names = append(names, "tls")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(servers))
	for i, s := range servers {
		log.Info("listening", "listener", names[i], "addr", listeners[i].Addr().String())
		wg.Go(func() {
			if err := s.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener: %w", names[i], err)
				cancel()
			}
		})
	}
	log.Info("demo issuer ready", "issuer", srv.Issuer(), "kid", srv.Keys()[0].KID)
	if tlsLis != nil {
		log.Info("certificate-bound tokens over TLS", "mtls_token_endpoint", cfg.MTLSBaseURL+idp.TokenPath)
	}
	wg.Go(func() { rotateOnSignal(ctx, srv, hup, log) })

	<-ctx.Done()
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	for _, s := range servers {
		if err := s.Shutdown(shutdownCtx); err != nil {
			s.Close()
		}
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		log.Error("demo-idp stopped", "error", err.Error())
		return 1
	}
	log.Info("demo-idp stopped")
	return 0
}

// rotateOnSignal rotates the signing key for each value on hup until ctx
// ends.
func rotateOnSignal(ctx context.Context, srv *idp.Server, hup <-chan os.Signal, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if _, err := srv.Rotate(ctx); err != nil && ctx.Err() == nil {
				log.Error("rotate on SIGHUP failed", "error", err.Error())
			}
		}
	}
}

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// warn prints the demo warning before anything is served.
func warn(w io.Writer, o options, cfg idp.Config) {
	creds := "the published demo credentials demo-client/demo-secret and admin-client/admin-secret"
	if len(cfg.Clients) > 0 {
		creds = "the plain-text client secrets in " + o.configFile
	}
	fmt.Fprintf(w, "WARNING: demo-idp is a DEMO identity provider. It issues tokens to anyone holding %s,\n"+
		"and its signing keys live only in memory. Never use it to protect anything real.\n", creds)
}
