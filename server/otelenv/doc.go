// Package otelenv builds the OpenTelemetry trace export that the standard
// OTEL_* variables describe, and routes the OpenTelemetry SDK's own errors
// (a collector that cannot be reached, a refused export) into the process's
// slog logger.
//
// It is apart from package server, which only makes spans (the trace API),
// so that a program that runs a server without exporting traces (cmd/demo)
// does not link the exporters: autoexport brings every OTLP, Prometheus and
// stdout exporter of traces, metrics and logs with it, about a tenth of a
// cold build.
//
// The package carries no API stability promise.
package otelenv
