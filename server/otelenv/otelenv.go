package otelenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Enabled reports whether getenv's OTEL_* variables ask for trace export:
// OTEL_TRACES_EXPORTER set to anything but "none", or an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
// OTEL_SDK_DISABLED=true turns it off whatever else is set. Nothing set means
// off: the OpenTelemetry default would export to localhost:4318.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if e := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); e != "" {
		return e != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracerProvider returns the tracer provider that the process
// environment's standard OTEL_* variables configure, for
// server.Options.TracerProvider, and its shutdown, which flushes the spans
// not yet exported. Unless [Enabled], it returns a nil provider (tracing
// off: no exporter, no connection) and a shutdown that does nothing. The
// exporter is chosen by OTEL_TRACES_EXPORTER (otlp, console) and
// OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf by default, or grpc); the
// endpoint, headers, timeout and TLS by the OTEL_EXPORTER_OTLP_* variables;
// sampling by OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// (parentbased_always_on by default: Envoy's sampling decision is kept); the
// resource by OTEL_SERVICE_NAME (default extauthz) and
// OTEL_RESOURCE_ATTRIBUTES. version, when not empty, is the service.version.
// Making it does no network I/O; spans are exported in batches in the
// background, and a failed export goes to the OpenTelemetry error handler
// (see [ErrorHandler]).
func NewTracerProvider(ctx context.Context, version string) (trace.TracerProvider, func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	if !Enabled(os.Getenv) {
		return nil, none, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, none, fmt.Errorf("tracing: %w", err)
	}
	attrs := []attribute.KeyValue{semconv.ServiceName("extauthz")}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the defaults.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, none, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// DefaultErrorInterval is how often, at most, [ErrorHandler] logs.
const DefaultErrorInterval = time.Minute

// ErrorHandler returns an OpenTelemetry error handler, for
// otel.SetErrorHandler, that logs the SDK's errors (a failed or dropped
// export, mostly) to log as one WARN line "tracing: export failed" with the
// error, at most once per interval (0 means [DefaultErrorInterval]); the
// line carries the number of errors since the previous one ("errors"). A
// collector that is down fails every batch: without the limit it would fill
// the log. Without a handler the SDK prints plain-text lines to stderr,
// which break a JSON log.
func ErrorHandler(log *slog.Logger, interval time.Duration) otel.ErrorHandler {
	if interval <= 0 {
		interval = DefaultErrorInterval
	}
	return &errorHandler{log: log, interval: interval, now: time.Now}
}

type errorHandler struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	last   time.Time // of the latest line; zero before the first
	errors int       // since the latest line, this one included
}

func (h *errorHandler) Handle(err error) {
	if err == nil {
		return
	}
	h.mu.Lock()
	h.errors++
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < h.interval {
		h.mu.Unlock()
		return
	}
	n := h.errors
	h.last, h.errors = now, 0
	h.mu.Unlock()
	h.log.LogAttrs(context.Background(), slog.LevelWarn, "tracing: export failed",
		slog.String("error", err.Error()), slog.Int("errors", n))
}
