package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/extauthz/extauthz/server"
	"github.com/extauthz/extauthz/server/otelenv"
)

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
	traceparent = "00-" + parentTrace + "-" + parentSpan + "-01"
)

// traced starts a server whose spans go to an in-memory exporter.
func traced(t *testing.T, js *jwksServer) (*harness, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := start(t, testConfig(js), func(o *server.Options) { o.TracerProvider = tp })
	h.waitReady()
	return h, exp
}

// onlySpan returns the one span exported, failing unless there is exactly one.
func onlySpan(t *testing.T, exp *tracetest.InMemoryExporter) tracetest.SpanStub {
	t.Helper()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want 1: %v", len(spans), spans)
	}
	return spans[0]
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// spanText is everything a span holds, for looking for secrets in it.
func spanText(s tracetest.SpanStub) string {
	return fmt.Sprintf("%s %v %v %v %v %v", s.Name, s.Attributes, s.Events, s.Status, s.Links, s.Resource)
}

// TestTracingCheck: a span per gRPC Check, child of the traceparent Envoy
// forwards in the CheckRequest headers, holding the decision and the
// bounded request line, and nothing of the token.
func TestTracingCheck(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	h, exp := traced(t, js)
	token := mint(t, k, claims("alice"))
	tests := []struct {
		name     string
		path     string
		token    string
		headers  map[string]string
		md       metadata.MD
		wantCode codes.Code
		want     map[attribute.Key]attribute.Value
		noAttr   attribute.Key
		parent   string // trace id
		span     string // parent span id
	}{
		{
			name: "allowed, W3C parent", path: "/api/items?access_token=SECRET", token: token,
			headers: map[string]string{"traceparent": traceparent}, wantCode: codes.OK,
			want: map[attribute.Key]attribute.Value{
				"extauthz.reason": attribute.StringValue("allowed"), "extauthz.allowed": attribute.BoolValue(true),
				"extauthz.provider": attribute.StringValue("test"), "http.request.method": attribute.StringValue("GET"),
				"url.path": attribute.StringValue("/api/items"),
			},
			parent: parentTrace, span: parentSpan,
		},
		{
			name: "denied, B3 parent", path: "/admin", token: "",
			headers:  map[string]string{"x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124", "x-b3-spanid": "0020000000000001", "x-b3-sampled": "1"},
			wantCode: codes.Unauthenticated,
			want: map[attribute.Key]attribute.Value{
				"extauthz.reason": attribute.StringValue("missing_token"), "extauthz.allowed": attribute.BoolValue(false),
				"url.path": attribute.StringValue("/admin"), "http.response.status_code": attribute.IntValue(401),
			},
			noAttr: "extauthz.provider",
			parent: "463ac35c9f6413ad48485a3953bb6124", span: "0020000000000001",
		},
		{
			name: "Envoy's own trace context in the metadata wins", path: "/public", token: token,
			headers:  map[string]string{"traceparent": traceparent},
			md:       metadata.Pairs("traceparent", "00-11111111111111111111111111111111-2222222222222222-01"),
			wantCode: codes.OK,
			want:     map[attribute.Key]attribute.Value{"extauthz.reason": attribute.StringValue("public")},
			parent:   "11111111111111111111111111111111", span: "2222222222222222",
		},
		{
			name: "no trace context: a root span", path: "/api", token: token + "x", wantCode: codes.Unauthenticated,
			want: map[attribute.Key]attribute.Value{"extauthz.reason": attribute.StringValue("bad_signature"), "extauthz.provider": attribute.StringValue("test")},
		},
		{
			name: "long path bounded", path: "/" + strings.Repeat("a", 1000), token: token, wantCode: codes.OK,
			want: map[attribute.Key]attribute.Value{"url.path": attribute.StringValue("/" + strings.Repeat("a", 255))},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			req := checkRequest(tc.path, tc.token)
			for k, v := range tc.headers {
				req.Attributes.Request.Http.Headers[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			if tc.md != nil {
				ctx = metadata.NewOutgoingContext(ctx, tc.md)
			}
			resp, err := h.authz.Check(ctx, req)
			if err != nil {
				t.Fatalf("Check = %v", err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.wantCode {
				t.Errorf("Check: %v, want %v", got, tc.wantCode)
			}
			s := onlySpan(t, exp)
			if s.Name != "extauthz.Check" || s.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q kind %v, want extauthz.Check, server", s.Name, s.SpanKind)
			}
			got := attrs(s)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("attribute %s = %v, want %v", k, got[k].Emit(), v.Emit())
				}
			}
			if _, ok := got[tc.noAttr]; tc.noAttr != "" && ok {
				t.Errorf("attribute %s set, want none", tc.noAttr)
			}
			if tc.parent != "" {
				if s.SpanContext.TraceID().String() != tc.parent || s.Parent.SpanID().String() != tc.span || !s.Parent.IsRemote() {
					t.Errorf("trace %s parent %s (remote %v), want trace %s parent %s", s.SpanContext.TraceID(), s.Parent.SpanID(), s.Parent.IsRemote(), tc.parent, tc.span)
				}
			} else if s.Parent.IsValid() {
				t.Errorf("parent %v, want a root span", s.Parent)
			}
			text := spanText(s)
			for _, secret := range []string{token, strings.Split(token, ".")[2], "SECRET", "alice", "Bearer"} {
				if strings.Contains(text, secret) {
					t.Errorf("the span holds %q: %s", secret, text)
				}
			}
		})
	}
	// Health checks are not traced.
	exp.Reset()
	healthStatus(t, h, "")
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans for a health check, want 0", n)
	}
}

// TestTracingForwardAuth: a span per HTTP forward-auth check, child of the
// request's traceparent, describing the original request the proxy checks.
func TestTracingForwardAuth(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	h, exp := traced(t, js)
	token := mint(t, k, claims("alice"))
	req, err := http.NewRequest(http.MethodGet, "http://"+h.httpAddr+"/auth", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Original-URI", "/admin/users?token=SECRET")
	req.Header.Set("X-Original-Method", "DELETE")
	req.Header.Set("Traceparent", traceparent)
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("status %d, want 403 (no admin scope)", resp.StatusCode)
	}
	s := onlySpan(t, exp)
	if s.Name != "extauthz.ForwardAuth" {
		t.Errorf("span %q, want extauthz.ForwardAuth", s.Name)
	}
	want := map[attribute.Key]attribute.Value{
		"extauthz.reason": attribute.StringValue("insufficient_scope"), "extauthz.allowed": attribute.BoolValue(false),
		"extauthz.provider": attribute.StringValue("test"), "http.request.method": attribute.StringValue("DELETE"),
		"url.path": attribute.StringValue("/admin/users"), "http.response.status_code": attribute.IntValue(403),
	}
	got := attrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, got[k].Emit(), v.Emit())
		}
	}
	if s.SpanContext.TraceID().String() != parentTrace || s.Parent.SpanID().String() != parentSpan {
		t.Errorf("trace %s parent %s, want %s %s", s.SpanContext.TraceID(), s.Parent.SpanID(), parentTrace, parentSpan)
	}
	text := spanText(s)
	for _, secret := range []string{token, strings.Split(token, ".")[2], "SECRET", "alice"} {
		if strings.Contains(text, secret) {
			t.Errorf("the span holds %q: %s", secret, text)
		}
	}
}

// TestTracingOff: without a TracerProvider nothing is traced, not even
// through the global provider.
func TestTracingOff(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	k := signer{key(0), "k0"}
	h := start(t, testConfig(newJWKS(t, k)))
	h.waitReady()
	req := checkRequest("/api", mint(t, k, claims("alice")))
	req.Attributes.Request.Http.Headers["traceparent"] = traceparent
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := h.authz.Check(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported with tracing off, want 0", n)
	}
}

// collector is a fake OTLP/HTTP trace receiver.
type collector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []string // "service.name/span name"
	hits  int
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		var req collectortrace.ExportTraceServiceRequest
		c.mu.Lock()
		defer c.mu.Unlock()
		c.hits++
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans = append(c.spans, service+"/"+s.GetName())
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

// TestNewTracerProviderFromEnv: the standard OTEL_* variables configure the
// OTLP exporter; without them there is no provider and nothing is sent.
func TestNewTracerProviderFromEnv(t *testing.T) {
	for _, v := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(v, "")
	}
	c := newCollector(t)
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)

	t.Run("off", func(t *testing.T) {
		tp, shutdown, err := otelenv.NewTracerProvider(t.Context(), "test")
		if err != nil || tp != nil {
			t.Fatalf("NewTracerProvider without OTEL_* = %v, %v; want nil, nil", tp, err)
		}
		if err := shutdown(t.Context()); err != nil {
			t.Errorf("shutdown = %v", err)
		}
	})
	t.Run("otlp over http", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.URL)
		t.Setenv("OTEL_SERVICE_NAME", "authz-test")
		tp, shutdown, err := otelenv.NewTracerProvider(t.Context(), "test")
		if err != nil || tp == nil {
			t.Fatalf("NewTracerProvider = %v, %v; want a provider", tp, err)
		}
		h := start(t, testConfig(js), func(o *server.Options) { o.TracerProvider = tp })
		h.waitReady()
		h.mustCheck("/api", mint(t, k, claims("alice")))
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
		if err := shutdown(t.Context()); err != nil { // flushes the batch
			t.Fatalf("shutdown = %v", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.spans) != 1 || c.spans[0] != "authz-test/extauthz.Check" {
			t.Errorf("collector got spans %q, want [authz-test/extauthz.Check]", c.spans)
		}
	})
}
