package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "nop:", err)
		os.Exit(1)
	}
}

// allow is the one answer: OK with no headers, as cheap as a Check can be.
type allow struct {
	authv3.UnimplementedAuthorizationServer
}

var _ authv3.AuthorizationServer = allow{}

var okResponse = &authv3.CheckResponse{Status: &statuspb.Status{}}

func (allow) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:9191", "gRPC ext_authz listen address")
	httpAddr := fs.String("http-addr", "127.0.0.1:9192", "HTTP listen address (every request gets 200)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		gl.Close()
		return err
	}
	// The options of server/server.go that bear on throughput: Envoy and
	// ghz multiplex checks on one connection, so the stream limit is raised
	// the same way, and streams run on the same pool of stream workers.
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(1<<20),
		grpc.MaxConcurrentStreams(1024),
		grpc.NumStreamWorkers(uint32(max(64, 8*runtime.GOMAXPROCS(0)))), // as server/server.go
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	authv3.RegisterAuthorizationServer(gs, allow{})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(gl) }()
	go func() { errc <- hs.Serve(hl) }()
	fmt.Fprintf(stderr, "nop listening grpc=%s http=%s\n", gl.Addr(), hl.Addr())
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if serr := hs.Shutdown(sctx); err == nil && serr != nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}
