package manifests_test

// The authorizer's pod as Istio's sidecar injector leaves it, for the checks
// that depend on the shape: Prometheus's scrape port against the
// NetworkPolicy, and Pod Security with and without Istio CNI.

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"istio.io/api/annotation"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
)

// istioStatusPort is the sidecar agent's status port (ProxyConfig
// statusPort, 15020 by default): health, probe rewriting and, with metrics
// merging, the pod's merged Prometheus metrics.
const istioStatusPort = 15020

// istioMergeMetricsAnnotation (prometheus.istio.io/merge-metrics) turns
// metrics merging off for one pod.
var istioMergeMetricsAnnotation = annotation.PrometheusMergeMetrics.Name

// istioMergesMetrics reports whether Istio's injector would merge the pod's
// metrics with a mesh that enables it (enablePrometheusMerge, the default):
// unless the pod's merge annotation or its prometheus.io/scrape annotation
// parses as false (istio pkg/kube/inject, enablePrometheusMerge and
// getPrometheusScrape).
func istioMergesMetrics(annotations map[string]string) bool {
	for _, k := range []string{istioMergeMetricsAnnotation, "prometheus.io/scrape"} {
		if v, ok := annotations[k]; ok {
			if b, err := strconv.ParseBool(v); err == nil && !b {
				return false
			}
		}
	}
	return true
}

// injectSidecar returns a copy of the pod template as Istio's sidecar
// injector (default mesh config) would admit it, with what the checks here
// depend on:
//   - metrics merging (applyPrometheusMerge): the prometheus.io annotations
//     move into the sidecar's ISTIO_PROMETHEUS_ANNOTATIONS and point at the
//     agent, port 15020, path /stats/prometheus;
//   - the init container (injection-template.yaml): without Istio CNI
//     istio-init, which programs iptables as root with NET_ADMIN and
//     NET_RAW; with CNI istio-validation, as UID 1337 with no capabilities;
//   - istio-proxy as UID 1337, all capabilities dropped, port 15090.
//
// Probe rewriting (to /app-health on 15020) and the volumes are left out: no
// check here reads them.
func injectSidecar(tpl *corev1.PodTemplateSpec, cni bool) *corev1.PodTemplateSpec {
	pod := tpl.DeepCopy()
	proxy := corev1.Container{
		Name:  "istio-proxy",
		Image: "docker.io/istio/proxyv2:1.28.0",
		Args:  []string{"proxy", "sidecar"},
		Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptrTo(false),
			Privileged:               ptrTo(false),
			ReadOnlyRootFilesystem:   ptrTo(true),
			RunAsUser:                ptrTo[int64](1337),
			RunAsGroup:               ptrTo[int64](1337),
			RunAsNonRoot:             ptrTo(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	if istioMergesMetrics(pod.Annotations) {
		scrape := map[string]string{}
		for k, v := range pod.Annotations {
			if name, ok := strings.CutPrefix(k, "prometheus.io/"); ok {
				scrape[name] = v
				delete(pod.Annotations, k)
			}
		}
		if len(scrape) > 0 {
			js, _ := json.Marshal(scrape)
			proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "ISTIO_PROMETHEUS_ANNOTATIONS", Value: string(js)})
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations["prometheus.io/port"] = strconv.Itoa(istioStatusPort)
		pod.Annotations["prometheus.io/path"] = "/stats/prometheus"
		pod.Annotations["prometheus.io/scrape"] = "true"
	}
	init := corev1.Container{
		Name:  "istio-validation",
		Image: proxy.Image,
		Args:  []string{"istio-iptables", "--run-validation", "--skip-rule-apply"},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptrTo(false),
			Privileged:               ptrTo(false),
			ReadOnlyRootFilesystem:   ptrTo(true),
			RunAsUser:                ptrTo[int64](1337),
			RunAsGroup:               ptrTo[int64](1337),
			RunAsNonRoot:             ptrTo(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	if !cni {
		init.Name = "istio-init"
		init.Args = []string{"istio-iptables"}
		init.SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptrTo(false),
			Privileged:               ptrTo(false),
			ReadOnlyRootFilesystem:   ptrTo(false),
			RunAsUser:                ptrTo[int64](0),
			RunAsGroup:               ptrTo[int64](0),
			RunAsNonRoot:             ptrTo(false),
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		}
	}
	pod.Spec.InitContainers = append([]corev1.Container{init}, pod.Spec.InitContainers...)
	pod.Spec.Containers = append(pod.Spec.Containers, proxy)
	return pod
}

func ptrTo[T any](v T) *T { return &v }

// peer is where a connection comes from: its namespace's and pod's labels.
type peer struct {
	namespace labels.Set
	pod       labels.Set
}

// admits reports whether the NetworkPolicy lets src reach TCP port on a pod
// of spec in the policy's namespace (a peer with only a podSelector is in
// that namespace; ipBlock peers are not considered).
func admits(np *networkingv1.NetworkPolicy, spec *corev1.PodSpec, src peer, port int32) bool {
	for _, r := range np.Spec.Ingress {
		portOK := len(r.Ports) == 0
		for _, pt := range r.Ports {
			if pt.Protocol != nil && *pt.Protocol != corev1.ProtocolTCP {
				continue
			}
			if pt.Port == nil || portMatches(*pt.Port, pt.EndPort, spec, port) {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		if len(r.From) == 0 {
			return true
		}
		for _, f := range r.From {
			if f.IPBlock != nil {
				continue
			}
			nsOK := src.namespace["kubernetes.io/metadata.name"] == np.Namespace
			if f.NamespaceSelector != nil {
				sel, err := metav1.LabelSelectorAsSelector(f.NamespaceSelector)
				nsOK = err == nil && sel.Matches(src.namespace)
			}
			podOK := true
			if f.PodSelector != nil {
				sel, err := metav1.LabelSelectorAsSelector(f.PodSelector)
				podOK = err == nil && sel.Matches(src.pod)
			}
			if nsOK && podOK {
				return true
			}
		}
	}
	return false
}

// portMatches resolves a NetworkPolicy port (a number, a range, or a name
// any of the pod's containers declares) against port.
func portMatches(p intstr.IntOrString, end *int32, spec *corev1.PodSpec, port int32) bool {
	if p.Type == intstr.Int {
		if end != nil {
			return p.IntVal <= port && port <= *end
		}
		return p.IntVal == port
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal && cp.ContainerPort == port {
				return true
			}
		}
	}
	return false
}

// prometheus is the default metricsFrom peer: a Prometheus pod in namespace
// monitoring.
var prometheus = peer{
	namespace: labels.Set{"kubernetes.io/metadata.name": "monitoring"},
	pod:       labels.Set{"app.kubernetes.io/name": "prometheus"},
}

// TestSidecarShapes checks the authorizer's pod without a sidecar and as
// Istio's injector leaves it, with and without Istio CNI: Prometheus must
// reach the port the pod's annotations tell it to scrape, the pod must pass
// Pod Security "restricted" where the namespace can enforce it, and without
// CNI it must fail even "baseline" (why the docs ask for CNI or ambient).
func TestSidecarShapes(t *testing.T) {
	kube, _, err := checkKubernetes(readYAMLFiles(t, kubeDir))
	if err != nil {
		t.Fatalf("deploy/kubernetes:\n%v", err)
	}
	workloads := []struct {
		name string
		w    func(t *testing.T) *workload
	}{
		{name: "deploy/kubernetes", w: func(*testing.T) *workload { return kube }},
		{name: "chart defaults", w: func(t *testing.T) *workload {
			return renderChart(t, helmBinary(t), "extauthz", "extauthz")
		}},
		{name: "chart without merging", w: func(t *testing.T) *workload {
			return renderChart(t, helmBinary(t), "extauthz", "extauthz", "--set", "istio.mergeMetrics=false")
		}},
		{name: "chart with tls values", w: func(t *testing.T) *workload {
			return renderChart(t, helmBinary(t), "edge", "auth", "-f", filepath.Join(chartDir, "ci", "tls-values.yaml"))
		}},
	}
	shapes := []struct {
		name      string
		inject    func(*corev1.PodTemplateSpec) *corev1.PodTemplateSpec
		wantLevel psaapi.Level // the strictest Pod Security level the pod passes
	}{
		{name: "no sidecar", inject: (*corev1.PodTemplateSpec).DeepCopy, wantLevel: psaapi.LevelRestricted},
		{name: "sidecar with Istio CNI", inject: func(p *corev1.PodTemplateSpec) *corev1.PodTemplateSpec { return injectSidecar(p, true) }, wantLevel: psaapi.LevelRestricted},
		{name: "sidecar without Istio CNI", inject: func(p *corev1.PodTemplateSpec) *corev1.PodTemplateSpec { return injectSidecar(p, false) }, wantLevel: psaapi.LevelPrivileged},
	}
	for _, wl := range workloads {
		t.Run(wl.name, func(t *testing.T) {
			t.Parallel()
			w := wl.w(t)
			if len(w.netpols) != 1 {
				t.Fatalf("%d NetworkPolicies, want 1", len(w.netpols))
			}
			np := w.netpols[0]
			for _, sh := range shapes {
				t.Run(sh.name, func(t *testing.T) {
					pod := sh.inject(&w.deployment.Spec.Template)
					if pod.Annotations["prometheus.io/scrape"] != "true" {
						t.Fatalf("pod annotations %v: Prometheus would not scrape it", pod.Annotations)
					}
					port, err := strconv.ParseInt(pod.Annotations["prometheus.io/port"], 10, 32)
					if err != nil {
						t.Fatalf("prometheus.io/port: %v", err)
					}
					if !admits(np, &pod.Spec, prometheus, int32(port)) {
						t.Errorf("NetworkPolicy %s does not let namespace monitoring reach port %d, which prometheus.io/port names", np.Name, port)
					}
					if admits(np, &pod.Spec, peer{namespace: labels.Set{"kubernetes.io/metadata.name": "default"}}, int32(port)) {
						t.Errorf("NetworkPolicy %s lets namespace default reach the metrics on %d", np.Name, port)
					}
					for _, level := range []psaapi.Level{psaapi.LevelBaseline, psaapi.LevelRestricted} {
						err := checkPodSecurity(level, &pod.ObjectMeta, &pod.Spec)
						want := level == psaapi.LevelBaseline && sh.wantLevel != psaapi.LevelPrivileged ||
							level == psaapi.LevelRestricted && sh.wantLevel == psaapi.LevelRestricted
						if (err == nil) != want {
							t.Errorf("Pod Security %s: %v, want passing %v", level, err, want)
						}
					}
				})
			}
		})
	}
}

// TestSidecarShapesCanFail shows the scrape-port test catching the
// NetworkPolicy this repository shipped before: monitoring admitted to the
// admin port only, so a sidecar's metrics merging stopped every scrape.
func TestSidecarShapesCanFail(t *testing.T) {
	kube, _, err := checkKubernetes(readYAMLFiles(t, kubeDir))
	if err != nil {
		t.Fatalf("deploy/kubernetes:\n%v", err)
	}
	np := kube.netpols[0].DeepCopy()
	for i, r := range np.Spec.Ingress {
		np.Spec.Ingress[i].Ports = slices.DeleteFunc(r.Ports, func(p networkingv1.NetworkPolicyPort) bool {
			return p.Port != nil && *p.Port == intstr.FromInt32(istioStatusPort)
		})
	}
	plain := &kube.deployment.Spec.Template
	if !admits(np, &plain.Spec, prometheus, 9090) {
		t.Fatal("without a sidecar, monitoring should still reach the admin port")
	}
	injected := injectSidecar(plain, true)
	if got := injected.Annotations["prometheus.io/port"]; got != "15020" {
		t.Fatalf("injected prometheus.io/port %q, want 15020", got)
	}
	if admits(np, &injected.Spec, prometheus, istioStatusPort) {
		t.Error("the admin-port-only NetworkPolicy admits the merged-metrics port")
	}
	w := *kube
	w.netpols = []*networkingv1.NetworkPolicy{np}
	if err := w.check(); err == nil || !strings.Contains(err.Error(), "15020") {
		t.Errorf("check() = %v, want a problem naming 15020", err)
	}
	// Merging turned off on the pod: the admin-port rule is enough.
	w.deployment = kube.deployment.DeepCopy()
	w.deployment.Spec.Template.Annotations[istioMergeMetricsAnnotation] = "false"
	if err := w.check(); err != nil {
		t.Errorf("with merging off: %v", err)
	}
	if got := injectSidecar(&w.deployment.Spec.Template, true).Annotations["prometheus.io/port"]; got != "9090" {
		t.Errorf("with merging off the injector left prometheus.io/port %q, want 9090", got)
	}
}
