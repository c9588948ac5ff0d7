package standin_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/standin"
)

// A client forges x-jwt-sub; the ext_authz server verified the bearer token
// and answers with the real subject, overwriting, and consumes the token.
// ApplyOK shows what Envoy would forward upstream.
func ExampleApplyOK() {
	h := http.Header{
		"X-Jwt-Sub":     {"admin"},
		"Authorization": {"Bearer eyJ..."},
	}
	ok := &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "x-jwt-sub", Value: "alice"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
		HeadersToRemove: []string{"authorization"},
	}
	if err := standin.ApplyOK(h, ok); err != nil {
		log.Fatal(err)
	}
	fmt.Println(h.Values("X-Jwt-Sub"), h.Values("Authorization"))

	// The zero append_action, APPEND_IF_EXISTS_OR_ADD, would have kept the
	// forged value next to the real one.
	h = http.Header{"X-Jwt-Sub": {"admin"}}
	ok.Headers[0].AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	if err := standin.ApplyOK(h, ok); err != nil {
		log.Fatal(err)
	}
	fmt.Println(h.Values("X-Jwt-Sub"))
	// Output:
	// [alice] []
	// [admin alice]
}

// New configured to stand in for envoy/envoy.yaml: the demo's front door.
func ExampleNew() {
	p, err := standin.New(standin.Config{
		AuthzTarget: "127.0.0.1:9191",
		Upstream:    "http://127.0.0.1:8000",
		// envoy/envoy.yaml's settings; leave them out for Envoy's defaults.
		Timeout:                    500 * time.Millisecond,
		StatusOnError:              http.StatusServiceUnavailable,
		UseRemoteAddress:           true,
		NormalizePath:              true,
		DropHeadersWithUnderscores: true,
		DisallowedHeaders:          []string{"cookie"},
		// Its /admin route picks the server's "admin" policy, and its
		// access log shows the verified subject.
		Routes: []standin.Route{{
			PathSeparatedPrefix: "/admin",
			ContextExtensions:   map[string]string{"policy": "admin"},
		}},
		AccessLog:       os.Stdout,
		AccessLogFormat: `[%START_TIME%] "%REQ(:METHOD)% %PATH(NQ)% %PROTOCOL%" %RESPONSE_CODE% sub=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub)%` + "\n",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	lis, err := net.Listen("tcp", "localhost:8080")
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Serve(ctx, lis); err != nil {
		log.Fatal(err)
	}
}
