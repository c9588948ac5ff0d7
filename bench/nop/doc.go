// Command nop is the benchmark's do-nothing ext_authz server: it answers
// every Envoy ext_authz v3 Check with OK and every HTTP request with 200,
// without looking at the request. Built in this module, it runs on the same
// grpc-go and net/http as cmd/extauthz, with the same gRPC server options
// that matter for throughput, so its figures are the transport's own limit
// on this machine: what the harness divides the real server's figures by.
//
// It is started by the harness (go run ./bench); it is not a product.
package main
