// Command demo-backend runs the demo's sample upstream (package
// demo/backend): the guide's Flask app with the token check moved into the
// proxy. Every flag is also a BACKEND_* environment variable
// (--sub-header -> BACKEND_SUB_HEADER); the command line wins.
//
// SECURITY: it trusts the subject header (x-jwt-sub) only because nothing
// but the proxy can reach it. Bind --addr to loopback or to a private
// network only the proxy can reach; the default :8000 is meant for a
// container network, and the command warns when it listens beyond loopback.
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

	"github.com/extauthz/extauthz/cmd/internal/flagenv"
	"github.com/extauthz/extauthz/demo/backend"
	"github.com/extauthz/extauthz/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stderr))
}

type options struct {
	addr      string
	subHeader string
	log       logging.Flags
}

const envPrefix = "BACKEND_"

func envName(flagName string) string { return flagenv.Name(envPrefix, flagName) }

// parseFlags reads args, then BACKEND_* variables for flags not on the
// command line.
func parseFlags(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo-backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", ":8000", "listen address; only the proxy may be able to reach it")
	fs.StringVar(&o.subHeader, "sub-header", backend.DefaultSubHeader, "request header carrying the verified subject")
	o.log.Register(fs, "text", "debug, info, warn or error (debug logs each request)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: demo-backend [flags]\n\nThe demo's sample upstream. Every flag is also %s<NAME> (e.g. %s).\n\n",
			envPrefix, envName("sub-header"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if _, err := flagenv.Apply(fs, envPrefix, lookupEnv); err != nil {
		return options{}, err
	}
	if err := o.log.Validate(); err != nil {
		return options{}, err
	}
	return o, nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	o, err := parseFlags(args, lookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "demo-backend:", err)
		return 2
	}
	log := o.log.New(stderr)
	h, err := backend.New(backend.Config{SubHeader: o.subHeader, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "demo-backend:", err)
		return 2
	}
	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		fmt.Fprintln(stderr, "demo-backend:", err)
		return 1
	}
	if !isLoopback(lis.Addr()) {
		log.Warn("listening beyond loopback: the backend trusts the subject header, so only the proxy may be able to reach this address",
			"addr", lis.Addr().String(), "sub_header", strings.ToLower(o.subHeader))
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", lis.Addr().String(), "sub_header", strings.ToLower(o.subHeader))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()

	select {
	case err := <-errc:
		log.Error("demo-backend stopped", "error", err.Error())
		return 1
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	<-errc
	log.Info("demo-backend stopped")
	return 0
}
