package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, pw)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listening line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var grpcAddr, httpAddr string
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, "grpc="); ok {
			grpcAddr = v
		}
		if v, ok := strings.CutPrefix(f, "http="); ok {
			httpAddr = v
		}
	}
	if grpcAddr == "" || httpAddr == "" {
		t.Fatalf("listening line %q lacks the addresses", line)
	}

	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if code := resp.GetStatus().GetCode(); resp.GetStatus() == nil || code != 0 {
		t.Errorf("Check status %v, want OK (code 0)", resp.GetStatus())
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/anything", nil)
	if err != nil {
		t.Fatal(err)
	}
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		t.Errorf("GET status %d, want 200", hresp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
	}
}

func TestRunBadAddress(t *testing.T) {
	if err := run(t.Context(), []string{"--grpc-addr", "256.0.0.1:0"}, io.Discard); err == nil {
		t.Error("run with an invalid address returned nil")
	}
}
