package integration_test

// What the "envoy-yaml" stand-in reads from envoy/envoy.yaml itself, so the
// tests run the bundled file's routes and access log, not a copy of them.

import (
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3" // typed_config in envoy.yaml
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"          // typed_config in envoy.yaml
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // typed_extension_protocol_options in envoy.yaml
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/extauthz/extauthz/envoy"
	"github.com/extauthz/extauthz/standin"
)

// extAuthzFilter is the name envoy.yaml gives the ext_authz filter, under
// which routes carry their ExtAuthzPerRoute.
const extAuthzFilter = "envoy.filters.http.ext_authz"

// envoyYAML returns envoy/envoy.yaml's routes as the stand-in models them
// (path_separated_prefix routes, in order, each with its ExtAuthzPerRoute
// context_extensions) and its access log format. It fails the test on
// anything the stand-in could not reproduce: another kind of route match
// before the catch-all, per-route settings other than check_settings, or
// settings on the virtual host.
func envoyYAML(t *testing.T) (routes []standin.Route, accessLogFormat string) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(envoy.GRPCConfig))
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatalf("envoy.yaml: the listener's network filter: %v", err)
	}

	var al streamv3.StdoutAccessLog
	if logs := hcm.GetAccessLog(); len(logs) != 1 || logs[0].GetTypedConfig().UnmarshalTo(&al) != nil {
		t.Fatalf("envoy.yaml: want one stdout access log, got %v", logs)
	}
	accessLogFormat = al.GetLogFormat().GetTextFormatSource().GetInlineString()

	perRoute := func(where string, cfg map[string]*anypb.Any) map[string]string {
		a, ok := cfg[extAuthzFilter]
		if !ok {
			return nil
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := a.UnmarshalTo(&per); err != nil {
			t.Fatalf("envoy.yaml: %s: %v", where, err)
		}
		cs := per.GetCheckSettings()
		if per.GetDisabled() || cs.GetWithRequestBody() != nil || cs.GetDisableRequestBodyBuffering() || cs.GetServiceOverride() != nil {
			t.Fatalf("envoy.yaml: %s: per-route ext_authz settings the stand-in does not model: %v", where, &per)
		}
		return cs.GetContextExtensions()
	}
	vhosts := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhosts) != 1 {
		t.Fatalf("envoy.yaml: %d virtual hosts; the stand-in models one", len(vhosts))
	}
	if ext := perRoute("virtual host", vhosts[0].GetTypedPerFilterConfig()); ext != nil {
		t.Fatalf("envoy.yaml: the virtual host sets context_extensions, which the stand-in does not model")
	}
	for _, r := range vhosts[0].GetRoutes() {
		m := r.GetMatch()
		ext := perRoute("route "+m.String(), r.GetTypedPerFilterConfig())
		switch {
		case m.GetPathSeparatedPrefix() != "":
			routes = append(routes, standin.Route{PathSeparatedPrefix: m.GetPathSeparatedPrefix(), ContextExtensions: ext})
		case m.GetPrefix() == "/" && ext == nil:
			return routes, accessLogFormat // the catch-all; nothing after it is reached
		default:
			t.Fatalf("envoy.yaml: route %v: the stand-in models path_separated_prefix routes and a final prefix / without context_extensions", m)
		}
	}
	return routes, accessLogFormat
}
