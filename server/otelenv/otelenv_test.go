package otelenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/extauthz/extauthz/internal/testutil"
)

func TestEnabled(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{name: "nothing set", want: false},
		{name: "service name only", env: map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: false},
		{name: "exporter otlp", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "exporter console", env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, want: true},
		{name: "exporter none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: false},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, want: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, want: true},
		{name: "SDK disabled", env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Enabled(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("Enabled(%v) = %v, want %v", tc.env, got, tc.want)
			}
		})
	}
}

// records decodes JSON log lines.
func records(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// TestErrorHandlerRateLimit: the first error is one WARN line; the errors
// within the interval after it are only counted, into the next line.
func TestErrorHandlerRateLimit(t *testing.T) {
	var out bytes.Buffer
	h := ErrorHandler(slog.New(slog.NewJSONHandler(&out, nil)), time.Minute).(*errorHandler)
	now := time.Unix(1_700_000_000, 0)
	h.now = func() time.Time { return now }

	h.Handle(errors.New("first"))
	for range 5 {
		now = now.Add(10 * time.Second)
		h.Handle(errors.New("suppressed"))
	}
	h.Handle(nil) // not an error
	now = now.Add(11 * time.Second)
	h.Handle(errors.New("after a minute"))

	recs := records(t, out.String())
	if len(recs) != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", len(recs), out.String())
	}
	for i, want := range []struct {
		err    string
		errors float64
	}{{err: "first", errors: 1}, {err: "after a minute", errors: 6}} {
		rec := recs[i]
		if rec["level"] != "WARN" || rec["msg"] != "tracing: export failed" || rec["error"] != want.err || rec["errors"] != want.errors {
			t.Errorf("line %d = %v, want WARN tracing: export failed, error %q, errors %v", i, rec, want.err, want.errors)
		}
	}
}

// TestExportErrorsAreJSON: a collector that refuses connections makes the
// SDK's export fail; with the handler installed, that is one JSON WARN line
// and nothing else on the log.
func TestExportErrorsAreJSON(t *testing.T) {
	for _, v := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(v, "")
	}
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")

	var out testutil.Buffer
	// As cmd/extauthz does: the SDK reports a failed batch to the global
	// handler, not to the caller.
	otel.SetErrorHandler(ErrorHandler(slog.New(slog.NewJSONHandler(&out, nil)), 0))
	tp, shutdown, err := NewTracerProvider(t.Context(), "test")
	if err != nil || tp == nil {
		t.Fatalf("NewTracerProvider = %v, %v; want a provider", tp, err)
	}
	_, span := tp.Tracer("test").Start(t.Context(), "span")
	span.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown = %v", err)
	}
	recs := records(t, out.String())
	if len(recs) != 1 || recs[0]["level"] != "WARN" || recs[0]["msg"] != "tracing: export failed" || !strings.Contains(recs[0]["error"].(string), addr) {
		t.Errorf("log = %q, want one JSON WARN line naming %s", out.String(), addr)
	}
}
