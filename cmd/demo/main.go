// Command demo runs the seed guide's whole flow on one machine with nothing
// installed: a demo OAuth2 issuer (the guide's "tenant"), the ext_authz
// server, the guide's sample API as the upstream, and in front of it the
// Envoy stand-in (package standin), which calls the ext_authz server over
// gRPC exactly as Envoy's ext_authz filter does. When everything is up it
// prints the guide's three curl commands, ready to paste. Ctrl-C stops it.
//
// Every listener is on 127.0.0.1. The issuer's credentials are demo values:
// this is a demo, not a deployment.
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
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/demo/backend"
	"github.com/extauthz/extauthz/demo/idp"
	"github.com/extauthz/extauthz/logging"
	"github.com/extauthz/extauthz/server"
	"github.com/extauthz/extauthz/standin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	listen, idpAddr, backendAddr, grpcAddr, httpAddr, adminAddr string
	audience                                                    string
	logLevel                                                    string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "the API's front door: the Envoy stand-in")
	fs.StringVar(&o.idpAddr, "idp-addr", "127.0.0.1:9000", "the demo issuer (the guide's tenant)")
	fs.StringVar(&o.backendAddr, "backend-addr", "127.0.0.1:0", "the sample API (only the front door should reach it)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:9191", "the ext_authz gRPC service")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:9192", "the ext_authz HTTP forward-auth check")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9090", "the ext_authz admin endpoints (/healthz, /readyz, /metrics)")
	fs.StringVar(&o.audience, "audience", idp.DefaultAudience, "the API identifier tokens are issued for")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	level, err := logging.Level(o.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 2
	}
	log := logging.New(stderr, level, "text")
	if err := demo(ctx, o, stdout, log); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	return 0
}

// listeners opens every listener first, so that a port in use fails at once
// and ":0" addresses are known before anything is printed.
type listeners struct{ front, idp, backend, grpc, http, admin net.Listener }

func (l *listeners) open(o options) error {
	for _, x := range []struct {
		dst  *net.Listener
		addr string
		what string
	}{
		{&l.front, o.listen, "--listen"}, {&l.idp, o.idpAddr, "--idp-addr"}, {&l.backend, o.backendAddr, "--backend-addr"},
		{&l.grpc, o.grpcAddr, "--grpc-addr"}, {&l.http, o.httpAddr, "--http-addr"}, {&l.admin, o.adminAddr, "--admin-addr"},
	} {
		lis, err := net.Listen("tcp", x.addr)
		if err != nil {
			l.close()
			return fmt.Errorf("%s: %w", x.what, err)
		}
		*x.dst = lis
	}
	return nil
}

func (l *listeners) close() {
	for _, lis := range []net.Listener{l.front, l.idp, l.backend, l.grpc, l.http, l.admin} {
		if lis != nil {
			lis.Close()
		}
	}
}

func demo(ctx context.Context, o options, stdout io.Writer, log *slog.Logger) error {
	var lis listeners
	if err := lis.open(o); err != nil {
		return err
	}
	defer lis.close()
	idpPort := lis.idp.Addr().(*net.TCPAddr).Port
	frontPort := lis.front.Addr().(*net.TCPAddr).Port
	// The issuer is named the way users reach it, localhost, as a hosted
	// tenant is named by its domain; the ext_authz server fetches the keys
	// over loopback.
	issuer := fmt.Sprintf("http://localhost:%d", idpPort)

	issuerSrv, err := idp.New(idp.Config{Issuer: issuer, Audiences: []string{o.audience}, Logger: log.With("component", "idp")})
	if err != nil {
		return err
	}
	backendSrv, err := backend.New(backend.Config{Logger: log.With("component", "backend")})
	if err != nil {
		return err
	}
	cfg, err := config.Load([]string{
		"--issuer", issuer,
		"--audience", o.audience,
		"--jwks-url", fmt.Sprintf("http://%s/.well-known/jwks.json", lis.idp.Addr()),
		"--public-paths", "/public",
		// Picks up a rotated key within a second of its first use.
		"--jwks-min-refresh-interval", "1s",
		"--shutdown-grace", "5s",
		"--log-level", o.logLevel, "--log-format", "text",
	}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		return err
	}
	cfg.Rules = append(cfg.Rules, config.Rule{Path: "/admin", Scopes: []string{"admin"}})

	ready := make(chan struct{})
	authzSrv, err := server.New(cfg, server.Options{
		Logger:        log.With("component", "extauthz"),
		GRPCListener:  lis.grpc,
		HTTPListener:  lis.http,
		AdminListener: lis.admin,
		Ready:         func() { close(ready) },
	})
	if err != nil {
		return err
	}
	front, err := standin.New(standin.Config{
		AuthzTarget: lis.grpc.Addr().String(),
		Upstream:    "http://" + lis.backend.Addr().String(),
		// As envoy/envoy.yaml's listener: the client address from the
		// connection, normalised paths, underscore headers dropped, cookies
		// kept out of the Check. A failed check is Envoy's default 403.
		Timeout:                    500 * time.Millisecond,
		UseRemoteAddress:           true,
		NormalizePath:              true,
		DropHeadersWithUnderscores: true,
		DisallowedHeaders:          []string{"cookie"},
		Logger:                     log.With("component", "envoy-standin"),
	})
	if err != nil {
		return err
	}
	defer front.Close()

	g, gctx := errgroup.WithContext(ctx)
	serve := func(h http.Handler, l net.Listener) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
		g.Go(func() error {
			go func() {
				<-gctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	serve(issuerSrv.Handler(), lis.idp)
	serve(backendSrv, lis.backend)
	g.Go(func() error { return authzSrv.Run(gctx) })
	g.Go(func() error { return front.Serve(gctx, lis.front) })
	g.Go(func() error {
		select {
		case <-ready:
			printGuide(stdout, issuer, fmt.Sprintf("http://localhost:%d", frontPort), o, lis)
		case <-gctx.Done():
		}
		return nil
	})
	return g.Wait()
}

func printGuide(w io.Writer, issuer, api string, o options, lis listeners) {
	body := fmt.Sprintf(`{"client_id": "demo-client", "client_secret": "demo-secret", "audience": %q, "grant_type": "client_credentials"}`, o.audience)
	fmt.Fprintf(w, `
The extauthz demo is up: the guide's flow, on this machine only.

  tenant (demo issuer)   %[1]s    token endpoint /oauth2/m2m/token, keys /.well-known/jwks.json
  API (Envoy stand-in)   %[2]s    /public, /protected, /admin (needs scope admin)
  ext_authz server       gRPC %[3]s, HTTP check %[4]s, metrics http://%[5]s/metrics
  sample backend         %[6]s    (reached only through the front door)

The guide's .env for this tenant:
  AUTHACTION_DOMAIN=%[7]s
  AUTHACTION_AUDIENCE=%[8]s

1. Obtain an access token:

curl --request POST \
  --url %[1]s/oauth2/m2m/token \
  --header 'content-type: application/json' \
  --data '%[9]s'

   or keep it in a variable:

TOKEN=$(curl -s --request POST --url %[1]s/oauth2/m2m/token --header 'content-type: application/json' --data '%[9]s' | sed -E 's/.*"access_token": *"([^"]+)".*/\1/')

2. Call the public endpoint:

curl %[2]s/public

3. Call the protected endpoint:

curl --request GET \
  --url %[2]s/protected \
  --header "Authorization: Bearer $TOKEN"

   Without the header it answers 401; /admin answers 403 for demo-client
   and 200 for admin-client / admin-secret.

4. A DPoP-bound token (RFC 9449), which curl cannot make proofs for:

go run ./cmd/demo-client --issuer %[1]s %[2]s/protected
go run ./cmd/demo-client --issuer %[1]s --replay %[2]s/protected

   The replayed proof answers 401 invalid_dpop_proof. Ctrl-C stops everything.

`, issuer, api, lis.grpc.Addr(), lis.http.Addr(), lis.admin.Addr(), lis.backend.Addr(),
		strings.TrimPrefix(issuer, "http://"), o.audience, body)
}
