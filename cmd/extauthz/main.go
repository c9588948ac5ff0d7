// Command extauthz is the ext_authz server: Envoy's gRPC Authorization
// service and an HTTP forward-auth check, verifying JWT bearer tokens against
// the identity provider's JWKS. Run it with --help for its flags; every flag
// is also an AUTHZ_* variable, read from the environment or ./.env (an
// AUTHZ_* variable that names no setting, or a .env line that sets nothing,
// is logged as a warning). --version prints the build's version.
//
// SIGTERM and SIGINT stop it gracefully. SIGHUP reloads the configuration:
// the same flags and environment, the --config file read anew. OpenTelemetry
// tracing is configured by the standard OTEL_* variables and off without
// them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.opentelemetry.io/otel"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/logging"
	"github.com/extauthz/extauthz/server"
	"github.com/extauthz/extauthz/server/otelenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr, reload))
}

// run starts the server and returns the exit code. environ is the process
// environment, as os.Environ. --version goes to stdout, everything else to
// stderr. A receive on reload reloads the configuration.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer, reload <-chan struct{}) int {
	env, warnings, err := config.Environ(environ, ".env")
	// stop is the exit of a configuration that does not start: one line
	// with the error, after the warnings, which may be why (AUTHZ_AUDIENCES
	// set, "no audience configured").
	stop := func(err error) int {
		for _, w := range warnings {
			fmt.Fprintln(stderr, "extauthz: warning:", w)
		}
		fmt.Fprintln(stderr, "extauthz:", err)
		return 2
	}
	if err != nil {
		return stop(err)
	}
	if len(args) > 0 {
		switch args[0] {
		case "explain":
			return explain(ctx, args[1:], env, stdout, stderr)
		case "validate":
			return validate(ctx, args[1:], env, stdout, stderr)
		}
	}
	cfg, err := config.Load(args, env, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, config.ErrVersion):
		fmt.Fprintln(stdout, versionLine(server.ReadBuildInfo()))
		return 0
	case err != nil:
		return stop(err)
	}
	level := new(slog.LevelVar)
	lv, _ := logging.Level(cfg.LogLevel) // validated by config.Load
	level.Set(lv)
	log := logging.New(stderr, level, cfg.LogFormat)
	// The OpenTelemetry SDK reports a failed export to this handler; its
	// default prints plain-text lines into the log.
	otel.SetErrorHandler(otelenv.ErrorHandler(log, otelenv.DefaultErrorInterval))

	tp, shutdownTracing, err := otelenv.NewTracerProvider(ctx, version())
	if err != nil {
		return stop(err)
	}
	defer func() {
		// Flush the spans not yet exported, briefly: the exporter may be down.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("tracing: flush at exit failed", "error", err.Error())
		}
	}()

	srv, err := server.New(cfg, server.Options{
		Logger:   log,
		LogLevel: level,
		// A reload reads the config as the start did: the same flags and
		// environment (.env included, as read at start), the file anew.
		Load:           func() (*config.Config, error) { return config.Load(args, env, io.Discard) },
		Reload:         reload,
		TracerProvider: tp,
	})
	if err != nil {
		return stop(err)
	}
	build := server.ReadBuildInfo()
	log.Info("extauthz starting", "version", build.Version, "goversion", build.GoVersion, "revision", build.Revision)
	for _, w := range warnings {
		log.Warn("environment entry ignored", "detail", w)
	}
	tuneGoRuntime(os.LookupEnv, log)
	if err := srv.Run(ctx); err != nil {
		log.Error("extauthz stopped", "error", err.Error())
		return 1
	}
	return 0
}

// defaultGCPercent is the GOGC the server runs with when the environment
// sets none. Under load most of the CPU a check costs beyond the transport is
// the collector's, and a small heap is collected many times a second: 400
// collects a quarter as often (README "Tuning the Go runtime").
const defaultGCPercent = 400

// memLimitRatio is the share of the container's memory limit (cgroup) given
// to the Go runtime as its soft limit when GOMEMLIMIT is not set, so that a
// large heap makes the collector work harder instead of the process being
// OOM-killed.
const memLimitRatio = 0.9

// tuneGoRuntime applies the server's runtime defaults where the process
// environment sets none: GOGC and a memory limit from the cgroup (automemlimit;
// AUTOMEMLIMIT=off or a ratio overrides it). It logs what it applied.
func tuneGoRuntime(lookup func(string) (string, bool), log *slog.Logger) {
	gogc, ok := lookup("GOGC")
	if !ok {
		debug.SetGCPercent(defaultGCPercent)
		gogc = fmt.Sprintf("%d (default)", defaultGCPercent)
	}
	limit, err := memlimit.Set(memlimit.WithRatio(memLimitRatio), memlimit.WithProvider(memlimit.FromCgroup))
	attrs := []any{"gogc", gogc}
	switch {
	case err != nil:
		attrs = append(attrs, "gomemlimit", "none", "gomemlimit_error", err.Error())
	case limit == math.MaxInt64:
		attrs = append(attrs, "gomemlimit", "none")
	default:
		attrs = append(attrs, "gomemlimit_bytes", limit)
	}
	log.Info("go runtime", attrs...)
}

// version is the module version the binary was built from, "" for a
// development build: the service.version of its spans.
func version() string {
	if v := server.ReadBuildInfo().Version; v != "(devel)" {
		return v
	}
	return ""
}

// versionLine is what --version prints: the module version ((devel) for a
// build that recorded none), the VCS revision when the build recorded one,
// and the Go toolchain and platform.
func versionLine(b server.BuildInfo) string {
	line := "extauthz " + b.Version
	if b.Revision != "" {
		line += " revision " + b.Revision
	}
	return line + " " + b.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}
