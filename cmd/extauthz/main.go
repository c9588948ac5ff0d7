// Command extauthz is the ext_authz server: Envoy's gRPC Authorization
// service and an HTTP forward-auth check, verifying JWT bearer tokens against
// the identity provider's JWKS. Run it with --help for its flags; every flag
// is also an AUTHZ_* variable, read from the environment or ./.env.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stderr))
}

func run(ctx context.Context, args []string, env config.Lookup, stderr io.Writer) int {
	env, err := config.Environ(env, ".env")
	if err != nil {
		fmt.Fprintln(stderr, "extauthz:", err)
		return 2
	}
	cfg, err := config.Load(args, env, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "extauthz:", err)
		return 2
	}
	log := server.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	srv, err := server.New(cfg, server.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "extauthz:", err)
		return 2
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("extauthz stopped", "error", err.Error())
		return 1
	}
	return 0
}
