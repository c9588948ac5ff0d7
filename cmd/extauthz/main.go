// Command extauthz is the ext_authz server: Envoy's gRPC Authorization
// service and an HTTP forward-auth check, verifying JWT bearer tokens against
// the identity provider's JWKS. Run it with --help for its flags; every flag
// is also an AUTHZ_* variable, read from the environment or ./.env.
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
	"runtime/debug"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/logging"
	"github.com/extauthz/extauthz/server"
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
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stderr, reload))
}

// run starts the server and returns the exit code. A receive on reload
// reloads the configuration.
func run(ctx context.Context, args []string, env config.Lookup, stderr io.Writer, reload <-chan struct{}) int {
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
	level := new(slog.LevelVar)
	lv, _ := logging.Level(cfg.LogLevel) // validated by config.Load
	level.Set(lv)
	log := logging.New(stderr, level, cfg.LogFormat)

	tp, shutdownTracing, err := server.NewTracerProvider(ctx, version())
	if err != nil {
		fmt.Fprintln(stderr, "extauthz:", err)
		return 2
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
		fmt.Fprintln(stderr, "extauthz:", err)
		return 2
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
// development build.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return ""
}
