package manifests_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
)

// maxCheckTimeout bounds the providers' timeout: Istio's default is 600s,
// and a Check that takes longer than this is better failed (closed).
const maxCheckTimeout = time.Second

// authzTarget is what the Istio providers must point at.
type authzTarget struct {
	host         string   // <service>.<namespace>.svc.cluster.local
	grpcPort     uint32   // the Service port targeting the container's grpc port
	httpPort     uint32   // the Service port targeting the container's http port
	claimHeaders []string // headers the server emits on allow
	// minTimeout is the server's --jwks-unknown-kid-wait: a Check after a
	// key rotation may wait that long for the refresh, so the providers'
	// timeout must be longer.
	minTimeout time.Duration
}

// targetOf derives the providers' target from a checked workload.
func targetOf(w *workload, namespace string) (authzTarget, error) {
	c := w.container()
	if c == nil || len(w.services) != 1 || w.config == nil {
		return authzTarget{}, errors.New("workload has no single Service, container or config")
	}
	s := w.services[0]
	if namespace == "" {
		namespace = s.Namespace
	}
	t := authzTarget{
		host:         fmt.Sprintf("%s.%s.svc.cluster.local", s.Name, namespace),
		claimHeaders: claimHeaders(w.config),
		minTimeout:   w.config.JWKSUnknownKIDWait,
	}
	for _, sp := range s.Spec.Ports {
		if cp, ok := containerPort(c, sp.TargetPort); ok {
			switch cp.Name {
			case "grpc":
				t.grpcPort = uint32(sp.Port)
			case "http":
				t.httpPort = uint32(sp.Port)
			}
		}
	}
	return t, nil
}

// checkProviders checks the mesh config's ext_authz providers against the
// target and returns their names.
func checkProviders(m *meshv1alpha1.MeshConfig, t authzTarget) ([]string, error) {
	var p problems
	var names []string
	checkTimeout := func(where string, d interface{ AsDuration() time.Duration }, isNil bool) {
		if isNil {
			p.addf("%s: no timeout (Istio's default is 600s)", where)
			return
		}
		if got := d.AsDuration(); got <= t.minTimeout || got >= maxCheckTimeout {
			p.addf("%s: timeout %v, want more than the server's unknown-kid wait %v and under %v", where, got, t.minTimeout, maxCheckTimeout)
		}
	}
	for i, ep := range m.GetExtensionProviders() {
		where := fmt.Sprintf("extensionProviders[%d] %s", i, ep.GetName())
		if ep.GetName() == "" || slices.Contains(names, ep.GetName()) {
			p.addf("%s: empty or repeated name", where)
		}
		names = append(names, ep.GetName())
		switch {
		case ep.GetEnvoyExtAuthzGrpc() != nil:
			g := ep.GetEnvoyExtAuthzGrpc()
			if g.GetService() != t.host || g.GetPort() != t.grpcPort {
				p.addf("%s: service %s:%d, want %s:%d", where, g.GetService(), g.GetPort(), t.host, t.grpcPort)
			}
			if g.GetFailOpen() {
				p.addf("%s: failOpen is true", where)
			}
			checkTimeout(where, g.GetTimeout(), g.GetTimeout() == nil)
		case ep.GetEnvoyExtAuthzHttp() != nil:
			h := ep.GetEnvoyExtAuthzHttp()
			if h.GetService() != t.host || h.GetPort() != t.httpPort {
				p.addf("%s: service %s:%d, want %s:%d", where, h.GetService(), h.GetPort(), t.host, t.httpPort)
			}
			if h.GetFailOpen() {
				p.addf("%s: failOpen is true", where)
			}
			checkTimeout(where, h.GetTimeout(), h.GetTimeout() == nil)
			if h.GetPathPrefix() != "" {
				p.addf("%s: pathPrefix %q would change the path the authorizer matches rules against", where, h.GetPathPrefix())
			}
			include := lower(h.GetIncludeRequestHeadersInCheck())
			if !slices.Contains(include, "authorization") {
				p.addf("%s: includeRequestHeadersInCheck lacks authorization", where)
			}
			// The HTTP check prefers these headers over its own path; a
			// client could then pick the path the authorizer checks.
			for _, h := range []string{"x-original-uri", "x-original-method", "x-forwarded-uri", "x-forwarded-method"} {
				if slices.Contains(include, h) {
					p.addf("%s: includeRequestHeadersInCheck forwards client-controlled %s", where, h)
				}
			}
			up := lower(h.GetHeadersToUpstreamOnAllow())
			for _, ch := range t.claimHeaders {
				if !slices.Contains(up, ch) {
					p.addf("%s: headersToUpstreamOnAllow lacks claim header %s", where, ch)
				}
			}
			if !slices.Contains(lower(h.GetHeadersToDownstreamOnDeny()), "www-authenticate") {
				p.addf("%s: headersToDownstreamOnDeny lacks www-authenticate", where)
			}
		default:
			p.addf("%s: not an ext_authz provider", where)
		}
	}
	if len(names) == 0 {
		p.addf("no extensionProviders")
	}
	return names, p.err()
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// checkPolicy checks a CUSTOM AuthorizationPolicy against the provider names.
func checkPolicy(ap *authorizationPolicy, providers []string) error {
	var p problems
	where := "AuthorizationPolicy " + ap.Name
	s := ap.Spec
	if s.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		p.addf("%s: action %v, want CUSTOM", where, s.GetAction())
	}
	if name := s.GetProvider().GetName(); !slices.Contains(providers, name) {
		p.addf("%s: provider %q is not one of the mesh's extensionProviders %v", where, name, providers)
	}
	if len(s.GetSelector().GetMatchLabels()) == 0 && len(s.GetTargetRefs()) == 0 {
		p.addf("%s: no selector or targetRefs (it would apply to the whole namespace)", where)
	}
	if len(s.GetRules()) == 0 {
		p.addf("%s: no rules; a CUSTOM policy without rules never matches", where)
	}
	// Every path goes to the authorizer; public paths are its rules' job.
	catchAll := false
	for i, r := range s.GetRules() {
		if len(r.GetTo()) == 0 && len(r.GetFrom()) == 0 && len(r.GetWhen()) == 0 {
			catchAll = true
		}
		for _, to := range r.GetTo() {
			op := to.GetOperation()
			if len(op.GetNotPaths()) > 0 {
				p.addf("%s: rules[%d] notPaths %v: Envoy skips the authorizer there, so claim headers are not stripped; use public: true rules in the authorizer instead", where, i, op.GetNotPaths())
			}
			if slices.Contains(op.GetPaths(), "/*") || slices.Contains(op.GetPaths(), "*") {
				catchAll = true
			}
		}
	}
	if !catchAll {
		p.addf("%s: no rule sends every path to the authorizer", where)
	}
	return p.err()
}

// checkIstio decodes deploy/istio and checks it against the Kubernetes
// workload.
func checkIstio(files map[string][]byte, target authzTarget) error {
	var p problems
	var meshes []*meshv1alpha1.MeshConfig
	var policies []*authorizationPolicy
	for _, name := range sortedKeys(files) {
		if name == "istiod-values.yaml" {
			m, err := decodeIstiodValues(files[name])
			if err != nil {
				p.addf("%s: %w", name, err)
				continue
			}
			meshes = append(meshes, m)
			continue
		}
		objs, err := decodeAll(name, files[name])
		if err != nil {
			p = append(p, err)
			continue
		}
		for _, o := range objs {
			switch v := o.value.(type) {
			case *istioOperator:
				meshes = append(meshes, v.MeshConfig)
			case *authorizationPolicy:
				policies = append(policies, v)
			default:
				p.addf("%s: unexpected in deploy/istio", o)
			}
		}
	}
	if len(meshes) == 0 || len(policies) == 0 {
		p.addf("want mesh config and an AuthorizationPolicy, got %d and %d", len(meshes), len(policies))
		return p.err()
	}
	for i, m := range meshes[1:] {
		if !proto.Equal(meshes[0], m) {
			p.addf("mesh config %d differs from the first: the IstioOperator and istiod values must carry the same providers", i+1)
		}
	}
	names, err := checkProviders(meshes[0], target)
	if err != nil {
		p = append(p, err)
	}
	var hasGRPC, hasHTTP bool
	for _, ep := range meshes[0].GetExtensionProviders() {
		hasGRPC = hasGRPC || ep.GetEnvoyExtAuthzGrpc() != nil
		hasHTTP = hasHTTP || ep.GetEnvoyExtAuthzHttp() != nil
	}
	if !hasGRPC || !hasHTTP {
		p.addf("want both an envoyExtAuthzGrpc and an envoyExtAuthzHttp provider")
	}
	for _, ap := range policies {
		if err := checkPolicy(ap, names); err != nil {
			p = append(p, err)
		}
	}
	return p.err()
}

func TestIstio(t *testing.T) {
	w, ns, err := checkKubernetes(readYAMLFiles(t, kubeDir))
	if err != nil {
		t.Fatalf("deploy/kubernetes:\n%v", err)
	}
	target, err := targetOf(w, ns)
	if err != nil {
		t.Fatal(err)
	}
	want := authzTarget{host: "extauthz.extauthz.svc.cluster.local", grpcPort: 9191, httpPort: 9192, claimHeaders: []string{"x-jwt-payload", "x-jwt-sub"}}
	if target.host != want.host || target.grpcPort != want.grpcPort || target.httpPort != want.httpPort || !slices.Equal(target.claimHeaders, want.claimHeaders) {
		t.Fatalf("target = %+v, want %+v", target, want)
	}
	if err := checkIstio(readYAMLFiles(t, istioDir), target); err != nil {
		t.Fatalf("deploy/istio:\n%v", err)
	}
}
