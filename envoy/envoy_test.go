package envoy_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/extauthz/extauthz/envoy"
	"github.com/extauthz/extauthz/standin"
)

// Names of the HTTP filters, as Envoy registers them.
const (
	filterHeaderMutation = "envoy.filters.http.header_mutation"
	filterExtAuthz       = "envoy.filters.http.ext_authz"
	filterRouter         = "envoy.filters.http.router"
)

// mode is how the config reaches the ext_authz server.
type mode int

const (
	modeGRPC mode = iota
	modeHTTP
)

// wiring is what the compose file expects of each Envoy config: the names and
// ports below are the docker-compose.yaml service names and the ports the
// binaries listen on by default (common.md); compose_test.go checks the other
// half.
type wiring struct {
	listenAddr   string
	listenPort   uint32
	adminAddr    string
	adminPort    uint32
	authzCluster string
	authzHost    string
	authzPort    uint32
	backendHost  string
	backendPort  uint32
}

var composeWiring = wiring{
	listenAddr:   "0.0.0.0",
	listenPort:   8080,
	adminAddr:    "127.0.0.1",
	adminPort:    9901,
	authzCluster: "extauthz",
	authzHost:    "extauthz",
	authzPort:    9191, // grpc; HTTP mode uses 9192
	backendHost:  "backend",
	backendPort:  8000,
}

var configs = []struct {
	name string
	yaml string
	mode mode
}{
	{name: "envoy.yaml", yaml: envoy.GRPCConfig, mode: modeGRPC},
	{name: "envoy-http.yaml", yaml: envoy.HTTPConfig, mode: modeHTTP},
}

// decode turns Envoy YAML into a Bootstrap the way Envoy does: YAML to JSON,
// then proto3 JSON with unknown fields rejected. Every google.protobuf.Any
// (typed_config, typed_extension_protocol_options) must name a type that the
// blank/named imports above registered, or protojson fails to resolve it.
func decode(src string) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON([]byte(src))
	if err != nil {
		return nil, fmt.Errorf("yaml to json: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("protojson: %w", err)
	}
	return &b, nil
}

type validator interface{ ValidateAll() error }

// validate runs the protoc-gen-validate rules Envoy enforces at load time on
// the bootstrap and on every message packed in an Any. Bootstrap.ValidateAll
// alone stops at Any fields (it cannot see inside them), so the typed configs
// (HCM, ext_authz, ...) are unpacked and validated one by one. It also
// reports fields marked deprecated, which Envoy warns about and may reject
// in a later release.
func validate(b *bootstrapv3.Bootstrap) error {
	var errs []error
	if err := b.ValidateAll(); err != nil {
		errs = append(errs, fmt.Errorf("bootstrap: %w", err))
	}
	walk(b.ProtoReflect(), "bootstrap", func(path string, m protoreflect.Message) {
		if m.Descriptor().FullName() == "google.protobuf.Any" {
			inner, err := m.Interface().(*anypb.Any).UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
				return
			}
			v, ok := inner.(validator)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %T has no validation rules", path, inner))
				return
			}
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %w", path, m.Interface().(*anypb.Any).GetTypeUrl(), err))
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
				errs = append(errs, fmt.Errorf("%s.%s is deprecated", path, fd.Name()))
			}
			return true
		})
	})
	return errors.Join(errs...)
}

// walk calls fn on m and on every message reachable from it, unpacking Any
// values so that typed configs are visited too.
func walk(m protoreflect.Message, path string, fn func(string, protoreflect.Message)) {
	fn(path, m)
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err == nil { // fn has reported the error
			walk(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">", fn)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fmt.Sprintf("%s[%s]", p, k), fn)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walk(v.Message(), p, fn)
		}
		return true
	})
}

func unpack[T proto.Message](a *anypb.Any) (T, error) {
	var zero T
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("typed_config is %T, want %T", m, zero)
	}
	return t, nil
}

func socketAddr(a *corev3.Address) (string, uint32) {
	sa := a.GetSocketAddress()
	return sa.GetAddress(), sa.GetPortValue()
}

func exactPatterns(l *matcherv3.ListStringMatcher) []string {
	var out []string
	for _, p := range l.GetPatterns() {
		if e := p.GetExact(); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// checkFrontProxy asserts the properties the security model relies on. It
// returns every problem found, so a mutated config can be shown to fail.
func checkFrontProxy(b *bootstrapv3.Bootstrap, m mode, w wiring) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// Admin on loopback only.
	if a, p := socketAddr(b.GetAdmin().GetAddress()); a != w.adminAddr || p != w.adminPort {
		fail("admin listens on %s:%d, want %s:%d", a, p, w.adminAddr, w.adminPort)
	}

	// One listener on :8080 with one HCM.
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 {
		fail("got %d listeners, want 1", len(listeners))
		return errors.Join(errs...)
	}
	l := listeners[0]
	if a, p := socketAddr(l.GetAddress()); a != w.listenAddr || p != w.listenPort {
		fail("listener on %s:%d, want %s:%d", a, p, w.listenAddr, w.listenPort)
	}
	hcm, err := findHCM(l)
	if err != nil {
		fail("%v", err)
		return errors.Join(errs...)
	}
	if !hcm.GetUseRemoteAddress().GetValue() {
		fail("use_remote_address is not true: client X-Forwarded-For would be trusted")
	}
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
		fail("normalize_path and merge_slashes must be on so ext_authz and the backend see the same path")
	}
	if got := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); got == corev3.HttpProtocolOptions_ALLOW {
		fail("headers_with_underscores_action is ALLOW: X_Jwt_Sub could reach the backend")
	}

	// Filter order: strip x-jwt-* -> ext_authz -> router, nothing else.
	var names []string
	filters := map[string]*anypb.Any{}
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
		filters[f.GetName()] = f.GetTypedConfig()
		if f.GetDisabled() {
			fail("http filter %s is disabled by default", f.GetName())
		}
	}
	if want := []string{filterHeaderMutation, filterExtAuthz, filterRouter}; !slices.Equal(names, want) {
		fail("http_filters = %v, want %v", names, want)
	}
	if _, err := unpack[*routerv3.Router](filters[filterRouter]); err != nil {
		fail("router: %v", err)
	}

	// The strip filter removes every client x-jwt-* header.
	if hm, err := unpack[*headermutationv3.HeaderMutation](filters[filterHeaderMutation]); err != nil {
		fail("header_mutation: %v", err)
	} else {
		stripped := false
		for _, mu := range hm.GetMutations().GetRequestMutations() {
			if mu.GetRemoveOnMatch().GetKeyMatcher().GetPrefix() == "x-jwt-" {
				stripped = true
			}
		}
		if !stripped {
			fail("header_mutation does not remove request headers with prefix x-jwt-")
		}
	}

	// ext_authz itself.
	ea, err := unpack[*extauthzv3.ExtAuthz](filters[filterExtAuthz])
	if err != nil {
		fail("ext_authz: %v", err)
		return errors.Join(errs...)
	}
	if ea.GetFailureModeAllow() {
		fail("ext_authz failure_mode_allow is true: requests would pass when ext_authz is down")
	}
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		fail("ext_authz transport_api_version = %v, want V3", ea.GetTransportApiVersion())
	}
	if code := ea.GetStatusOnError().GetCode(); code != typev3.StatusCode_ServiceUnavailable && code != typev3.StatusCode_Forbidden {
		fail("ext_authz status_on_error = %v, want ServiceUnavailable (or Forbidden)", code)
	}
	if ea.GetFilterEnabled() != nil || ea.GetFilterEnabledMetadata() != nil {
		fail("ext_authz is only partially enabled (filter_enabled / filter_enabled_metadata set)")
	}
	if ea.GetClearRouteCache() {
		fail("ext_authz clear_route_cache is on: the server's headers could reroute requests")
	}
	if !ea.GetValidateMutations() {
		fail("ext_authz validate_mutations is off")
	}
	const maxTimeout = 1_000 // ms
	switch m {
	case modeGRPC:
		g := ea.GetGrpcService()
		if g == nil {
			fail("ext_authz has no grpc_service")
			break
		}
		if got := g.GetEnvoyGrpc().GetClusterName(); got != w.authzCluster {
			fail("ext_authz envoy_grpc cluster = %q, want %q", got, w.authzCluster)
		}
		if d := g.GetTimeout(); d == nil || d.AsDuration().Milliseconds() <= 0 || d.AsDuration().Milliseconds() >= maxTimeout {
			fail("ext_authz grpc timeout = %v, want set and under 1s", d.AsDuration())
		}
		if ea.GetEncodeRawHeaders() {
			fail("ext_authz encode_raw_headers is on: headers would move to header_map, which the server does not read")
		}
		if !ea.GetIncludePeerCertificate() {
			fail("ext_authz include_peer_certificate is off: certificate-bound tokens would never match")
		}
	case modeHTTP:
		h := ea.GetHttpService()
		if h == nil {
			fail("ext_authz has no http_service")
			break
		}
		u := h.GetServerUri()
		if u.GetCluster() != w.authzCluster {
			fail("ext_authz http cluster = %q, want %q", u.GetCluster(), w.authzCluster)
		}
		if want := fmt.Sprintf("http://%s:%d", w.authzHost, w.authzPort); u.GetUri() != want {
			fail("ext_authz http uri = %q, want %q", u.GetUri(), want)
		}
		if d := u.GetTimeout(); d == nil || d.AsDuration().Milliseconds() <= 0 || d.AsDuration().Milliseconds() >= maxTimeout {
			fail("ext_authz http timeout = %v, want set and under 1s", d.AsDuration())
		}
		if h.GetPathPrefix() != "" || h.GetPathOverride() != "" {
			fail("ext_authz http path is rewritten; the server must see the client's path")
		}
		resp := h.GetAuthorizationResponse()
		for _, want := range []string{"x-jwt-sub", "x-jwt-payload"} {
			if !slices.Contains(exactPatterns(resp.GetAllowedUpstreamHeaders()), want) {
				fail("allowed_upstream_headers lacks %s", want)
			}
		}
		if got := resp.GetAllowedUpstreamHeadersToAppend(); len(got.GetPatterns()) > 0 {
			fail("allowed_upstream_headers_to_append is set (%v): appending keeps a client's forged value", exactPatterns(got))
		}
		for _, want := range []string{"www-authenticate", "content-type", "dpop-nonce"} {
			if !slices.Contains(exactPatterns(resp.GetAllowedClientHeaders()), want) {
				fail("allowed_client_headers lacks %s", want)
			}
		}
		// On success only the DPoP nonce goes to the client: a claim header
		// there would leak to it.
		for _, p := range resp.GetAllowedClientHeadersOnSuccess().GetPatterns() {
			if p.GetExact() != "dpop-nonce" {
				fail("allowed_client_headers_on_success admits %v: claim headers could leak to the client", p)
			}
		}
		if !slices.Contains(exactPatterns(resp.GetAllowedClientHeadersOnSuccess()), "dpop-nonce") {
			fail("allowed_client_headers_on_success lacks dpop-nonce: a DPoP client never gets the next nonce")
		}
		for _, want := range []string{"authorization", "dpop", "x-forwarded-proto"} {
			if !slices.Contains(exactPatterns(ea.GetAllowedHeaders()), want) {
				fail("allowed_headers lacks %s", want)
			}
		}
		for _, want := range []string{"x-original-uri", "x-original-method", "x-original-host", "x-forwarded-uri", "x-forwarded-method", "x-forwarded-host"} {
			if !slices.Contains(exactPatterns(ea.GetDisallowedHeaders()), want) {
				fail("disallowed_headers lacks %s: a client could choose the path that gets checked", want)
			}
			for _, p := range ea.GetAllowedHeaders().GetPatterns() {
				if p.GetExact() == want || (p.GetPrefix() != "" && strings.HasPrefix(want, p.GetPrefix())) {
					fail("allowed_headers admits %s", want)
				}
			}
		}
	}

	checkAccessLog(hcm, ea, m, fail)

	// No route or virtual host turns ext_authz off. Where one names a
	// policy (context_extensions, sent in gRPC mode only), the server must
	// have it, or every request of the route is denied.
	vhosts := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhosts) == 0 {
		fail("no virtual hosts")
	}
	policies := demoPolicies(fail)
	checkPerFilter := func(where string, cfg map[string]*anypb.Any) (policy string) {
		a, ok := cfg[filterExtAuthz]
		if !ok {
			return ""
		}
		per, err := unpack[*extauthzv3.ExtAuthzPerRoute](a)
		if err != nil || per.GetDisabled() {
			fail("%s disables ext_authz", where)
			return ""
		}
		ext := per.GetCheckSettings().GetContextExtensions()
		if len(ext) > 0 && m == modeHTTP {
			fail("%s sets context_extensions, which Envoy sends to gRPC ext_authz servers only", where)
		}
		if name, ok := ext["policy"]; ok && !slices.Contains(policies, name) {
			fail("%s names policy %q, which extauthz-demo.yaml does not have (policies: %v): every request of it would be denied", where, name, policies)
		}
		return ext["policy"]
	}
	routePolicy := map[string]string{} // path_separated_prefix -> policy
	for _, vh := range vhosts {
		checkPerFilter("virtual host "+vh.GetName(), vh.GetTypedPerFilterConfig())
		for i, r := range vh.GetRoutes() {
			where := fmt.Sprintf("virtual host %s route %d", vh.GetName(), i)
			if p := checkPerFilter(where, r.GetTypedPerFilterConfig()); p != "" {
				routePolicy[r.GetMatch().GetPathSeparatedPrefix()] = p
			}
			if got := r.GetRoute().GetCluster(); got != "backend" {
				fail("%s goes to cluster %q, want backend", where, got)
			}
		}
		checkRoutesCover(vh, fail)
	}
	// The demo's per-route policy: /admin is decided by the server's
	// policy "admin" (gRPC mode only).
	if m == modeGRPC && routePolicy["/admin"] != "admin" {
		fail("the /admin route names policy %q, want ExtAuthzPerRoute check_settings.context_extensions {policy: admin}", routePolicy["/admin"])
	}

	// Clusters wired to the compose services.
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	if len(clusters) != 2 {
		fail("got %d clusters, want extauthz and backend", len(clusters))
	}
	authzPort := w.authzPort
	checkCluster := func(name, host string, port uint32) *clusterv3.Cluster {
		c, ok := clusters[name]
		if !ok {
			fail("no cluster %q", name)
			return nil
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			fail("cluster %s: want exactly one endpoint", name)
			return c
		}
		if a, p := socketAddr(eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()); a != host || p != port {
			fail("cluster %s endpoint %s:%d, want %s:%d", name, a, p, host, port)
		}
		if c.GetConnectTimeout() == nil {
			fail("cluster %s has no connect_timeout", name)
		}
		return c
	}
	checkCluster("backend", w.backendHost, w.backendPort)
	if ac := checkCluster(w.authzCluster, w.authzHost, authzPort); ac != nil {
		h2 := false
		if po, ok := ac.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok {
			opts, err := unpack[*upstreamhttpv3.HttpProtocolOptions](po)
			if err != nil {
				fail("cluster %s protocol options: %v", ac.GetName(), err)
			} else {
				h2 = opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
			}
		}
		if m == modeGRPC && !h2 {
			fail("cluster %s does not speak HTTP/2; gRPC needs it", ac.GetName())
		}
	}
	return errors.Join(errs...)
}

// accessLogSub is the command operator that logs the verified subject, by
// mode: gRPC mode's CheckResponse.dynamic_metadata has "sub"; in HTTP mode
// dynamic_metadata_from_headers keys it by the header's name.
var accessLogSub = map[mode]string{
	modeGRPC: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub)%",
	modeHTTP: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:x-jwt-sub)%",
}

// checkAccessLog asserts one stdout access log whose text format logs the
// subject from ext_authz's dynamic metadata, and neither the token nor the
// query string.
func checkAccessLog(hcm *hcmv3.HttpConnectionManager, ea *extauthzv3.ExtAuthz, m mode, fail func(string, ...any)) {
	logs := hcm.GetAccessLog()
	if len(logs) != 1 {
		fail("got %d access logs, want 1", len(logs))
		return
	}
	al, err := unpack[*streamv3.StdoutAccessLog](logs[0].GetTypedConfig())
	if err != nil {
		fail("access log: %v", err)
		return
	}
	format := al.GetLogFormat().GetTextFormatSource().GetInlineString()
	if format == "" {
		fail("access log has no log_format.text_format_source.inline_string")
		return
	}
	if !strings.Contains(format, accessLogSub[m]) {
		fail("access log format %q does not log %s", format, accessLogSub[m])
	}
	if !strings.HasSuffix(format, "\n") {
		fail("access log format does not end with a newline: entries would run together")
	}
	upper := strings.ToUpper(format)
	for _, leak := range []string{"AUTHORIZATION", "COOKIE", "%REQ(:PATH)%", "%PATH%", "%PATH(WQ", "X-ENVOY-ORIGINAL-PATH?:PATH"} {
		if strings.Contains(upper, leak) {
			fail("access log format logs %s: a token could end up in the log", leak)
		}
	}
	if m == modeHTTP {
		if !slices.Contains(exactPatterns(ea.GetHttpService().GetAuthorizationResponse().GetDynamicMetadataFromHeaders()), "x-jwt-sub") {
			fail("dynamic_metadata_from_headers lacks x-jwt-sub: the access log's subject would always be -")
		}
	}
}

// demoPolicies are the names of the named policies in extauthz-demo.yaml.
func demoPolicies(fail func(string, ...any)) []string {
	var demo struct {
		Policies map[string]any `json:"policies"`
	}
	if err := yaml.Unmarshal([]byte(envoy.DemoAuthzConfig), &demo); err != nil {
		fail("extauthz-demo.yaml: %v", err)
	}
	return slices.Sorted(maps.Keys(demo.Policies))
}

func findHCM(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, error) {
	chains := l.GetFilterChains()
	if len(chains) != 1 || len(chains[0].GetFilters()) != 1 {
		return nil, errors.New("want one filter chain with one network filter (the HCM)")
	}
	f := chains[0].GetFilters()[0]
	if f.GetName() != "envoy.filters.network.http_connection_manager" {
		return nil, fmt.Errorf("network filter is %q, want the http_connection_manager", f.GetName())
	}
	return unpack[*hcmv3.HttpConnectionManager](f.GetTypedConfig())
}

// checkRoutesCover asserts that the demo paths and an arbitrary path all
// match a route, so nothing 404s in Envoy before reaching ext_authz and the
// backend. It implements only the match kinds the config uses.
func checkRoutesCover(vh *routev3.VirtualHost, fail func(string, ...any)) {
	for _, path := range []string{"/public", "/public/headers", "/protected", "/protected/headers", "/admin", "/anything/else"} {
		matched := false
		for _, r := range vh.GetRoutes() {
			switch m := r.GetMatch(); {
			case m.GetPrefix() != "":
				matched = strings.HasPrefix(path, m.GetPrefix())
			case m.GetPathSeparatedPrefix() != "":
				p := m.GetPathSeparatedPrefix()
				matched = path == p || strings.HasPrefix(path, p+"/")
			case m.GetPath() != "":
				matched = path == m.GetPath()
			}
			if matched {
				break
			}
		}
		if !matched {
			fail("no route matches %s", path)
		}
	}
}

func wiringFor(m mode) wiring {
	w := composeWiring
	if m == modeHTTP {
		w.authzPort = 9192
	}
	return w
}

func TestConfigs(t *testing.T) {
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			b, err := decode(tc.yaml)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if err := validate(b); err != nil {
				t.Errorf("validate: %v", err)
			}
			if err := checkFrontProxy(b, tc.mode, wiringFor(tc.mode)); err != nil {
				t.Errorf("front proxy properties:\n%v", err)
			}
		})
	}
}

// TestConfigsRejectMistakes shows that each stage can fail: a mutated copy of
// each config must be rejected at the stage named in the case.
func TestConfigsRejectMistakes(t *testing.T) {
	type stage int
	const (
		atDecode stage = iota
		atValidate
		atProperties
	)
	cases := []struct {
		name  string
		old   string // text to replace, must occur in the config
		new   string
		modes []mode
		stage stage
	}{
		{name: "misspelled field", old: "failure_mode_allow: false", new: "failure_mode_alow: false", stage: atDecode},
		{name: "bad enum", old: "transport_api_version: V3", new: "transport_api_version: V4", stage: atDecode},
		{name: "unknown typed_config type", old: "ext_authz.v3.ExtAuthz\n", new: "ext_authz.v3.ExtAuthzz\n", stage: atDecode},
		{name: "misspelled field inside typed_config", old: "use_remote_address: true", new: "use_remote_adress: true", stage: atDecode},
		{name: "port out of range", old: "port_value: 8080", new: "port_value: 80800", stage: atValidate},
		{name: "empty grpc cluster name", old: "envoy_grpc: { cluster_name: extauthz }", new: "envoy_grpc: { cluster_name: \"\" }", modes: []mode{modeGRPC}, stage: atValidate},
		{name: "empty http server uri", old: "uri: http://extauthz:9192", new: "uri: \"\"", modes: []mode{modeHTTP}, stage: atValidate},
		{name: "deprecated field", old: "                authorization_response:\n", new: "                authorization_request:\n                  allowed_headers:\n                    patterns: [{exact: x-extra}]\n                authorization_response:\n", modes: []mode{modeHTTP}, stage: atValidate},
		{name: "fail open", old: "failure_mode_allow: false", new: "failure_mode_allow: true", stage: atProperties},
		{name: "no peer certificate", old: "include_peer_certificate: true", new: "include_peer_certificate: false", modes: []mode{modeGRPC}, stage: atProperties},
		{name: "no DPoP proof to the check", old: "                - exact: dpop\n", new: "", modes: []mode{modeHTTP}, stage: atProperties},
		{name: "claim header to the client on success", old: "                  allowed_client_headers_on_success:\n                    patterns:\n", new: "                  allowed_client_headers_on_success:\n                    patterns:\n                    - exact: x-jwt-sub\n", modes: []mode{modeHTTP}, stage: atProperties},
		{name: "timeout too long", old: "timeout: 0.5s\n", new: "timeout: 5s\n", stage: atProperties},
		{name: "transport auto", old: "transport_api_version: V3", new: "transport_api_version: AUTO", stage: atProperties},
		{name: "router before ext_authz", old: "          - name: envoy.filters.http.ext_authz", new: "          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n          - name: envoy.filters.http.ext_authz", stage: atProperties},
		{name: "no claim header strip", old: "key_matcher: { prefix: x-jwt- }", new: "key_matcher: { prefix: x-other- }", stage: atProperties},
		{name: "wrong backend port", old: "socket_address: { address: backend, port_value: 8000 }", new: "socket_address: { address: backend, port_value: 8001 }", stage: atProperties},
		{name: "admin on all interfaces", old: "socket_address: { address: 127.0.0.1, port_value: 9901 }", new: "socket_address: { address: 0.0.0.0, port_value: 9901 }", stage: atProperties},
		{name: "grpc without http2", old: "          http2_protocol_options: {}", new: "          http_protocol_options: {}", modes: []mode{modeGRPC}, stage: atProperties},
		{name: "route disables ext_authz", old: "              - match: { path_separated_prefix: /public }\n                route: { cluster: backend, timeout: 15s }\n", new: "              - match: { path_separated_prefix: /public }\n                route: { cluster: backend, timeout: 15s }\n                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    disabled: true\n", stage: atProperties},
		{name: "underscore headers allowed", old: "headers_with_underscores_action: DROP_HEADER", new: "headers_with_underscores_action: ALLOW", stage: atProperties},
		{name: "append instead of overwrite", old: "                  allowed_upstream_headers:\n", new: "                  allowed_upstream_headers_to_append:\n                    patterns: [{exact: x-jwt-sub}]\n                  allowed_upstream_headers:\n", modes: []mode{modeHTTP}, stage: atProperties},
		{name: "client picks checked path", old: "                - exact: x-original-uri\n", new: "", modes: []mode{modeHTTP}, stage: atProperties},
		{name: "raw headers", old: "encode_raw_headers: false", new: "encode_raw_headers: true", modes: []mode{modeGRPC}, stage: atProperties},
		{name: "access log without the subject", old: "sub=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:", new: "sub=%DYNAMIC_METADATA(envoy.filters.http.other:", stage: atProperties},
		{name: "access log with the query", old: "%PATH(NQ)%", new: "%REQ(:PATH)%", stage: atProperties},
		{name: "access log logs the token", old: "%PATH(NQ)%", new: "%PATH(NQ)% %REQ(AUTHORIZATION)%", stage: atProperties},
		{name: "access log of another type", old: "access_loggers.stream.v3.StdoutAccessLog", new: "access_loggers.stream.v3.StderrAccessLog", stage: atProperties},
		{name: "deprecated access log text_format", old: "text_format_source:\n                  inline_string:", new: "text_format:", stage: atValidate},
		{name: "access log format misspelled", old: "text_format_source:", new: "text_format_sources:", stage: atDecode},
		{name: "no subject from the HTTP answer", old: "                  dynamic_metadata_from_headers:\n                    patterns:\n                    - exact: x-jwt-sub\n", new: "", modes: []mode{modeHTTP}, stage: atProperties},
		{name: "admin route without its policy", old: "context_extensions: { policy: admin }", new: "context_extensions: { tenant: demo }", modes: []mode{modeGRPC}, stage: atProperties},
		{name: "route names a policy the server lacks", old: "context_extensions: { policy: admin }", new: "context_extensions: { policy: admins }", modes: []mode{modeGRPC}, stage: atProperties},
		{name: "per-route settings of the wrong type", old: "ext_authz.v3.ExtAuthzPerRoute\n                    check_settings:", new: "ext_authz.v3.ExtAuthz\n                    check_settings:", modes: []mode{modeGRPC}, stage: atDecode},
		{name: "context extensions in HTTP mode", old: "              - match: { path_separated_prefix: /admin }\n                route: { cluster: backend, timeout: 15s }\n", new: "              - match: { path_separated_prefix: /admin }\n                route: { cluster: backend, timeout: 15s }\n                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    check_settings: { context_extensions: { policy: admin } }\n", modes: []mode{modeHTTP}, stage: atProperties},
		{name: "client picks the checked host", old: "                - exact: x-forwarded-host\n", new: "", modes: []mode{modeHTTP}, stage: atProperties},
	}
	for _, cfg := range configs {
		for _, tc := range cases {
			if tc.modes != nil && !slices.Contains(tc.modes, cfg.mode) {
				continue
			}
			t.Run(cfg.name+"/"+tc.name, func(t *testing.T) {
				if !strings.Contains(cfg.yaml, tc.old) {
					t.Fatalf("%s does not contain %q; update the test case", cfg.name, tc.old)
				}
				mutated := strings.Replace(cfg.yaml, tc.old, tc.new, 1)
				b, err := decode(mutated)
				if tc.stage == atDecode {
					if err == nil {
						t.Fatalf("decode succeeded, want an error")
					}
					t.Logf("rejected as expected: %v", err)
					return
				}
				if err != nil {
					t.Fatalf("decode: %v, want success at this stage", err)
				}
				err = validate(b)
				if tc.stage == atValidate {
					if err == nil {
						t.Fatalf("validate succeeded, want an error")
					}
					t.Logf("rejected as expected: %v", err)
					return
				}
				if err != nil {
					t.Fatalf("validate: %v, want success at this stage", err)
				}
				err = checkFrontProxy(b, cfg.mode, wiringFor(cfg.mode))
				if err == nil {
					t.Fatalf("property check passed, want a failure")
				}
				t.Logf("rejected as expected: %v", err)
			})
		}
	}
}

// TestStandinRendersAccessLogFormats: the Envoy stand-in (package standin),
// which the integration tests run with envoy.yaml's access log format,
// knows every command operator the bundled configs use.
func TestStandinRendersAccessLogFormats(t *testing.T) {
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			b, err := decode(tc.yaml)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			hcm, err := findHCM(b.GetStaticResources().GetListeners()[0])
			if err != nil {
				t.Fatal(err)
			}
			al, err := unpack[*streamv3.StdoutAccessLog](hcm.GetAccessLog()[0].GetTypedConfig())
			if err != nil {
				t.Fatal(err)
			}
			p, err := standin.New(standin.Config{
				AuthzTarget: "127.0.0.1:9191", Upstream: "http://127.0.0.1:8000",
				AccessLog: io.Discard, AccessLogFormat: al.GetLogFormat().GetTextFormatSource().GetInlineString(),
			})
			if err != nil {
				t.Fatalf("the stand-in cannot render %s's access log: %v", tc.name, err)
			}
			p.Close()
		})
	}
}

// TestREADMEDownstreamMTLS: the README's TLS listener for certificate-bound
// tokens is a DownstreamTlsContext Envoy accepts: it decodes with unknown
// fields refused, passes Envoy's validation, asks for a client certificate
// without requiring one, and accepts self-signed ones.
func TestREADMEDownstreamMTLS(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- envoy-downstream-mtls -->\n```yaml\n"
	_, rest, ok := strings.Cut(string(readme), marker)
	if !ok {
		t.Fatalf("README has no %q block", strings.TrimSpace(marker))
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the README's block does not end")
	}
	js, err := yaml.YAMLToJSON([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	// The block is a listener filter chain's transport_socket.
	var fc listenerv3.FilterChain
	if err := protojson.Unmarshal(js, &fc); err != nil {
		t.Fatalf("filter chain: %v", err)
	}
	if err := fc.GetTransportSocket().ValidateAll(); err != nil {
		t.Fatalf("transport_socket: %v", err)
	}
	tlsCtx, err := unpack[*tlsv3.DownstreamTlsContext](fc.GetTransportSocket().GetTypedConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsCtx.ValidateAll(); err != nil {
		t.Fatalf("DownstreamTlsContext: %v", err)
	}
	if tlsCtx.GetRequireClientCertificate().GetValue() {
		t.Error("require_client_certificate is true: clients with bearer tokens could not connect")
	}
	vc := tlsCtx.GetCommonTlsContext().GetValidationContext()
	if vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED {
		t.Errorf("trust_chain_verification = %v, want ACCEPT_UNTRUSTED (self-signed client certificates, RFC 8705 §2.2)", vc.GetTrustChainVerification())
	}
}
