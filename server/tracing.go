package server

import (
	"context"
	"net/http"
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/authz"
)

// Span names and attributes. A span holds the decision, never the token,
// a claim or a header value other than the trace context.
const (
	spanCheck       = "extauthz.Check"
	spanForwardAuth = "extauthz.ForwardAuth"

	attrReason   = attribute.Key("extauthz.reason")
	attrAllowed  = attribute.Key("extauthz.allowed")
	attrProvider = attribute.Key("extauthz.provider")
	attrShadow   = attribute.Key("extauthz.shadow")
	attrMethod   = attribute.Key("http.request.method")
	attrPath     = attribute.Key("url.path")
	attrStatus   = attribute.Key("http.response.status_code")

	// maxPathAttr bounds the url.path attribute: paths are client-chosen.
	maxPathAttr = 256
	// maxTraceHeader bounds each trace-context value taken from a request
	// (tracestate's own limit is 512 bytes).
	maxTraceHeader = 512
)

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// traceHeaders are the only request headers read for the parent context:
// W3C Trace Context and B3, single and multi header.
var traceHeaders = []string{"traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags", "x-b3-parentspanid"}

// tracing makes one span per check.
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

func newTracing(tp trace.TracerProvider) *tracing {
	return &tracing{
		tracer: tp.Tracer("github.com/extauthz/extauthz/server"),
		// W3C first: when a request carries both, traceparent wins.
		prop: propagation.NewCompositeTextMapPropagator(b3.New(), propagation.TraceContext{}),
	}
}

// carrier collects the trace-context headers of a request, lower-cased and
// bounded.
type carrier map[string]string

func (c carrier) add(name, value string) {
	name = strings.ToLower(name)
	for _, h := range traceHeaders {
		if h == name {
			if len(value) <= maxTraceHeader {
				c[name] = value
			}
			return
		}
	}
}

// parent returns ctx with the remote span context found in the carriers, the
// later carriers winning.
func (t *tracing) parent(ctx context.Context, carriers ...carrier) context.Context {
	for _, c := range carriers {
		if len(c) > 0 {
			if p := t.prop.Extract(context.Background(), propagation.MapCarrier(c)); trace.SpanContextFromContext(p).IsValid() {
				ctx = trace.ContextWithRemoteSpanContext(ctx, trace.SpanContextFromContext(p))
			}
		}
	}
	return ctx
}

// unary is the gRPC interceptor: a span around each Authorization/Check,
// child of the trace context of the checked request (the CheckRequest's
// headers, as Envoy forwards them), or of the gRPC metadata's when Envoy's
// own tracing propagates one (its ext_authz call is the closer parent).
func (t *tracing) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod != checkMethod {
		return handler(ctx, req)
	}
	// Only the trace context is read here, before the span starts; what
	// the request is (method, path) comes with the decision's Event.
	fromRequest := carrier{}
	if cr, ok := req.(*authv3.CheckRequest); ok {
		h := cr.GetAttributes().GetRequest().GetHttp()
		if hs := h.GetHeaders(); len(hs) > 0 {
			for _, name := range traceHeaders {
				if v, ok := hs[name]; ok {
					fromRequest.add(name, v)
				}
			}
		}
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			fromRequest.add(hv.GetKey(), v)
		}
	}
	fromMetadata := carrier{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, h := range traceHeaders {
			if v := md.Get(h); len(v) == 1 {
				fromMetadata.add(h, v[0])
			}
		}
	}
	ctx = t.parent(ctx, fromRequest, fromMetadata)
	ctx, span := t.tracer.Start(ctx, spanCheck, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	resp, err := handler(ctx, req)
	if err != nil {
		span.SetStatus(otelcodes.Error, status.Code(err).String())
	} else if r, ok := resp.(*authv3.CheckResponse); ok {
		if code := r.GetDeniedResponse().GetStatus().GetCode(); code != 0 {
			span.SetAttributes(attrStatus.Int(int(code)))
		}
	}
	return resp, err
}

// middleware wraps the forward-auth check: a span per request, child of the
// trace context of the request's headers (the proxy's own, or the client's
// that it copied). The attributes describing the original request come with
// the decision's Event (checkObserver), as the check read it.
func (t *tracing) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := carrier{}
		for _, h := range traceHeaders {
			if v := r.Header.Values(h); len(v) == 1 {
				c.add(h, v[0])
			}
		}
		ctx := t.parent(r.Context(), c)
		ctx, span := t.tracer.Start(ctx, spanForwardAuth, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attrStatus.Int(sw.code))
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// boundPath drops the query and fragment (a query may carry credentials,
// such as access_token) and bounds the length.
func boundPath(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if len(target) > maxPathAttr {
		target = target[:maxPathAttr]
		for !utf8.ValidString(target) && len(target) > 0 {
			target = target[:len(target)-1]
		}
	}
	return strings.ToValidUTF8(target, "\uFFFD")
}

// boundMethod keeps the known methods, as OpenTelemetry's HTTP conventions
// say, so a client cannot write arbitrary text into the span.
func boundMethod(m string) string {
	switch m = strings.ToUpper(m); m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return m
	case "":
		return ""
	}
	return "_OTHER"
}

// checkObserver is the authz.Observer of every generation: the metrics, and
// the decision on the check's span when tracing is on.
type checkObserver struct{ m *metrics }

func (o checkObserver) ObserveCheck(ctx context.Context, e authz.Event) {
	o.m.ObserveCheck(ctx, e)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		attrs := []attribute.KeyValue{
			attrReason.String(string(e.Reason)), attrAllowed.Bool(e.Reason.Allow()),
			attrMethod.String(boundMethod(e.Method)), attrPath.String(boundPath(e.Path)),
		}
		if e.Provider != "" {
			attrs = append(attrs, attrProvider.String(e.Provider))
		}
		if e.Shadow {
			// A denial let through: allowed is true, reason the denial's.
			attrs = append(attrs, attrShadow.Bool(true))
			attrs[1] = attrAllowed.Bool(true)
		}
		span.SetAttributes(attrs...)
	}
}
