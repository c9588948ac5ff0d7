package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestNoTraceExporters: the demo runs a server without exporting traces, so
// it must not link the OpenTelemetry exporters (server/otelenv,
// autoexport and the OTLP, Prometheus and stdout exporters it brings): they
// were a tenth of the demo's cold build, which `go run ./cmd/demo` spends
// printing nothing.
func TestNoTraceExporters(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for pkg := range strings.SplitSeq(string(out), "\n") {
		if pkg == "github.com/extauthz/extauthz/server/otelenv" || strings.HasPrefix(pkg, "go.opentelemetry.io/contrib/exporters/") ||
			strings.HasPrefix(pkg, "go.opentelemetry.io/otel/exporters/") || strings.HasPrefix(pkg, "go.opentelemetry.io/otel/sdk") {
			t.Errorf("cmd/demo links %s", pkg)
		}
	}
}
