package manifests_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/authz"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// runtimeEnv returns the container's Go runtime variables (GOGC,
// GOMEMLIMIT, AUTOMEMLIMIT) by name; one from the downward API shows as
// its resource.
func runtimeEnv(c *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.Name != "GOGC" && e.Name != "GOMEMLIMIT" && e.Name != "AUTOMEMLIMIT" {
			continue
		}
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil {
			env[e.Name] = e.ValueFrom.ResourceFieldRef.Resource
		}
	}
	return env
}

// ingressPorts lists the numbered ports a NetworkPolicy's ingress rules
// open, sorted.
func ingressPorts(np *networkingv1.NetworkPolicy) []int32 {
	var ports []int32
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.IntVal != 0 {
				ports = append(ports, p.Port.IntVal)
			}
		}
	}
	slices.Sort(ports)
	return ports
}

// helm runs the helm binary with its cache, config and data homes in a
// temporary directory and no kubeconfig, and returns stdout.
func helm(t *testing.T, bin string, args ...string) ([]byte, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig"),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		out = append(out, stderr.Bytes()...)
	}
	return out, err
}

// kubeVersion is the Kubernetes version the chart is linted and rendered
// for: the oldest it supports (Chart.yaml kubeVersion), since the preStop
// sleep action needs 1.30. helm's own default is far older.
const kubeVersion = "1.30.0"

func helmBinary(t *testing.T) string {
	return peerBinary(t, "helm", "HELM_BIN", "GOBIN=<dir> go install helm.sh/helm/v3/cmd/helm@v3.22.0")
}

func TestHelmLint(t *testing.T) {
	bin := helmBinary(t)
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		// failInTemplate: refused by a fail in a template, not by the
		// schema. helm template (and install) stop there; helm lint runs
		// templates in lint mode, where helm turns fail into an [INFO]
		// line (pkg/engine/engine.go), so lint only reports it.
		failInTemplate bool
	}{
		{name: "defaults"},
		{name: "ci tls values", args: []string{"-f", filepath.Join(chartDir, "ci", "tls-values.yaml")}},
		{name: "bad values file", args: []string{"-f", filepath.Join("testdata", "bad-values.yaml")}, wantErr: true},
		{name: "misspelt key", args: []string{"--set", "replicaCont=3"}, wantErr: true},
		{name: "string replicas", args: []string{"--set", "replicaCount=two"}, wantErr: true},
		{name: "tls without secret", args: []string{"--set", "tls.enabled=true"}, wantErr: true},
		{name: "mutual TLS without TLS", args: []string{"--set", "tls.clientCA.enabled=true"}, wantErr: true},
		{name: "JWKS CA without secret", args: []string{"--set", "jwksCA.enabled=true"}, wantErr: true},
		{name: "old tls.caKey", args: []string{"--set", "tls.caKey=ca.crt"}, wantErr: true},
		{name: "duration without unit", args: []string{"--set", "clockSkew=60"}, wantErr: true},
		{name: "cpu target over 100", args: []string{"--set", "autoscaling.targetCPUUtilizationPercentage=150"}, wantErr: true},
		{name: "unknown log format", args: []string{"--set", "logFormat=xml"}, wantErr: true},
		{name: "rule path without slash", args: []string{"--set", "rules[0].path=public"}, wantErr: true},
		{name: "no providers", args: []string{"--set", "providers=null"}, wantErr: true},
		// What the API server would reject at install: the kubelet's sleep
		// must end before the grace period (a fail in deployment.yaml), the
		// HPA's minReplicas is at most maxReplicas (a fail in hpa.yaml), and
		// quantities follow Kubernetes' format (the schema).
		{name: "preStop as long as the grace period", args: []string{"--set", "preStopSleepSeconds=30"}, failInTemplate: true},
		{name: "preStop longer than the grace period", args: []string{"--set", "preStopSleepSeconds=20", "--set", "terminationGracePeriodSeconds=15"}, failInTemplate: true},
		{name: "preStop just under the grace period", args: []string{"--set", "preStopSleepSeconds=29"}},
		{name: "min replicas above max", args: []string{"--set", "autoscaling.minReplicas=5", "--set", "autoscaling.maxReplicas=3"}, failInTemplate: true},
		{name: "min above max without the HPA", args: []string{"--set", "autoscaling.enabled=false", "--set", "autoscaling.minReplicas=5", "--set", "autoscaling.maxReplicas=3"}},
		{name: "memory quantity lots", args: []string{"--set", "resources.limits.memory=lots"}, wantErr: true},
		{name: "memory quantity with a bad unit", args: []string{"--set", "resources.requests.memory=256MB"}, wantErr: true},
		{name: "negative cpu", args: []string{"--set", "resources.requests.cpu=-1"}, wantErr: true},
		{name: "quantity forms", args: []string{"--set", "resources.requests.cpu=0.25", "--set-string", "resources.limits.cpu=1500m", "--set", "resources.requests.memory=1e8", "--set", "resources.limits.memory=1Gi"}},
		{name: "unknown resource name", args: []string{"--set", "resources.limits.memroy=1Gi"}, wantErr: true},
		{name: "unknown forward-auth source", args: []string{"--set", "forwardAuthSource=x-original-uri"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// helm lint --strict, and helm template, which is what install
			// runs first: both must refuse what the schema refuses.
			out, err := helm(t, bin, slices.Concat([]string{"lint", chartDir, "--strict", "--kube-version", kubeVersion}, tc.args)...)
			if (err != nil) != tc.wantErr {
				t.Errorf("helm lint %v: err = %v, wantErr %v\n%s", tc.args, err, tc.wantErr, out)
			}
			out, err = helm(t, bin, slices.Concat([]string{"template", "extauthz", chartDir, "--kube-version", kubeVersion}, tc.args)...)
			if (err != nil) != (tc.wantErr || tc.failInTemplate) {
				t.Errorf("helm template %v: err = %v, wantErr %v\n%s", tc.args, err, tc.wantErr || tc.failInTemplate, out)
			}
			if tc.failInTemplate && !strings.Contains(string(out), "must") {
				t.Errorf("helm template %v: the error does not say what must hold:\n%s", tc.args, out)
			}
		})
	}
}

// TestHelmKubeVersion renders the chart for Kubernetes versions around the
// oldest it supports: the preStop sleep action needs 1.30, and Chart.yaml's
// kubeVersion makes helm refuse older clusters instead of rendering a pod
// the API server would reject.
func TestHelmKubeVersion(t *testing.T) {
	bin := helmBinary(t)
	tests := []struct {
		version string
		wantErr bool
	}{
		{version: "1.28.0", wantErr: true},
		{version: "1.29.15", wantErr: true},
		{version: kubeVersion},
		{version: "1.30.2-eks-1234"},
		{version: "1.37.2"},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			out, err := helm(t, bin, "template", "extauthz", chartDir, "--kube-version", tc.version)
			if (err != nil) != tc.wantErr {
				t.Errorf("helm template --kube-version %s: err = %v, wantErr %v\n%s", tc.version, err, tc.wantErr, out)
			}
			if tc.wantErr && !strings.Contains(string(out), "kubeVersion") {
				t.Errorf("error does not name kubeVersion:\n%s", out)
			}
		})
	}
}

// renderChart runs helm template and checks the workload it renders.
func renderChart(t *testing.T, bin, release, namespace string, args ...string) *workload {
	t.Helper()
	out, err := helm(t, bin, slices.Concat([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, args)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs, err := decodeAll("helm template", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.namespace != namespace {
			t.Errorf("%s: namespace %q, want the release namespace %q", o, o.namespace, namespace)
		}
	}
	w, err := collectWorkload(objs)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestHelmTemplate(t *testing.T) {
	bin := helmBinary(t)
	kube, _, err := checkKubernetes(readYAMLFiles(t, kubeDir))
	if err != nil {
		t.Fatalf("deploy/kubernetes:\n%v", err)
	}
	tests := []struct {
		name      string
		release   string
		namespace string
		args      []string
		wantKinds []string
		check     func(t *testing.T, w *workload)
	}{
		{
			name:      "defaults",
			release:   "extauthz",
			namespace: "extauthz",
			wantKinds: []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"},
			check: func(t *testing.T, w *workload) {
				// The chart's defaults deploy what deploy/kubernetes does.
				if w.deployment.Name != kube.deployment.Name || w.services[0].Name != kube.services[0].Name {
					t.Errorf("names %s/%s, want %s/%s like deploy/kubernetes", w.deployment.Name, w.services[0].Name, kube.deployment.Name, kube.services[0].Name)
				}
				if got, want := w.container().Image, kube.container().Image; got != want {
					t.Errorf("image %s, want %s like deploy/kubernetes", got, want)
				}
				if !reflect.DeepEqual(w.config.Providers, kube.config.Providers) || !reflect.DeepEqual(w.config.Rules, kube.config.Rules) {
					t.Errorf("providers/rules differ from deploy/kubernetes/configmap.yaml:\n%+v\n%+v", w.config, kube.config)
				}
				if hasSecretVolume(w, "") || slices.ContainsFunc(w.container().Env, func(e corev1.EnvVar) bool { return slices.Contains(secretFileVars, e.Name) }) {
					t.Errorf("TLS pieces rendered with tls and jwksCA disabled")
				}
				if w.container().StartupProbe.GRPC == nil {
					t.Errorf("startup probe %+v, want gRPC health without TLS", w.container().StartupProbe)
				}
				// Like deploy/kubernetes: the server's own memory limit (no
				// GOMEMLIMIT), memory requested up to the limit, ephemeral
				// storage bounded, the HTTP check pinned to Istio's shape.
				if got, want := w.container().Resources, kube.container().Resources; !equality.Semantic.DeepEqual(got, want) {
					t.Errorf("resources %v, want %v like deploy/kubernetes", got, want)
				}
				if got, want := runtimeEnv(w.container()), runtimeEnv(kube.container()); !maps.Equal(got, want) {
					t.Errorf("Go runtime variables %v, want %v like deploy/kubernetes", got, want)
				}
				if got := w.config.ForwardAuthSource; got != authz.SourceRequest {
					t.Errorf("forward_auth_source %q, want %q", got, authz.SourceRequest)
				}
				if got, want := ingressPorts(w.netpols[0]), ingressPorts(kube.netpols[0]); !slices.Equal(got, want) {
					t.Errorf("NetworkPolicy ingress ports %v, want %v like deploy/kubernetes", got, want)
				}
			},
		},
		{
			name:      "tls, fixed replicas, service monitor",
			release:   "edge",
			namespace: "auth",
			args:      []string{"-f", filepath.Join(chartDir, "ci", "tls-values.yaml")},
			wantKinds: []string{"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount", "ServiceMonitor"},
			check: func(t *testing.T, w *workload) {
				if w.deployment.Name != "edge-extauthz" {
					t.Errorf("Deployment %s, want edge-extauthz", w.deployment.Name)
				}
				if r := w.deployment.Spec.Replicas; r == nil || *r != 3 {
					t.Errorf("replicas = %v, want 3 with autoscaling off", r)
				}
				// Serving TLS and mutual TLS from the cert-manager Secret, the
				// JWKS CA from its own.
				wantEnv := map[string]string{
					"AUTHZ_TLS_CERT_FILE":      "/etc/extauthz-tls/tls.crt",
					"AUTHZ_TLS_KEY_FILE":       "/etc/extauthz-tls/tls.key",
					"AUTHZ_TLS_CLIENT_CA_FILE": "/etc/extauthz-client-ca/ca.crt",
					"AUTHZ_JWKS_CA_FILE":       "/etc/extauthz-jwks-ca/ca.crt",
				}
				checkSecretEnv(t, w, wantEnv)
				for _, secret := range []string{"extauthz-serving-tls", "extauthz-idp-ca"} {
					if !hasSecretVolume(w, secret) {
						t.Errorf("no volume from Secret %s", secret)
					}
				}
				if p := w.container().StartupProbe; p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
					t.Errorf("startup probe %+v, want /readyz on the admin port with TLS", p)
				}
				if w.config.TLSCertFile != wantEnv["AUTHZ_TLS_CERT_FILE"] || w.config.TLSClientCAFile != wantEnv["AUTHZ_TLS_CLIENT_CA_FILE"] || w.config.JWKSCAFile != wantEnv["AUTHZ_JWKS_CA_FILE"] {
					t.Errorf("the server would load TLS %q, client CA %q, JWKS CA %q from the rendered settings", w.config.TLSCertFile, w.config.TLSClientCAFile, w.config.JWKSCAFile)
				}
				if got, want := claimHeaders(w.config), []string{"x-jwt-email", "x-jwt-sub"}; !slices.Equal(got, want) {
					t.Errorf("claim headers %v, want %v", got, want)
				}
				if len(w.config.Providers) != 2 {
					t.Errorf("%d providers, want 2", len(w.config.Providers))
				}
				if w.deployment.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" || len(w.deployment.Spec.Template.Spec.Tolerations) != 1 {
					t.Errorf("nodeSelector/tolerations not rendered")
				}
				if w.deployment.Spec.Template.Annotations["example.com/team"] != "platform" {
					t.Errorf("podAnnotations not rendered")
				}
			},
		},
		// Value variants: each renders, decodes strictly and passes every
		// check, Pod Security "restricted" included.
		{name: "fixed replicas", release: "extauthz", namespace: "extauthz", args: []string{"--set", "autoscaling.enabled=false", "--set", "replicaCount=3"}},
		{name: "no network policy or PDB", release: "extauthz", namespace: "extauthz", args: []string{"--set", "networkPolicy.enabled=false", "--set", "podDisruptionBudget.enabled=false"},
			wantKinds: []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Service", "ServiceAccount"}},
		{name: "service monitor, no annotations", release: "extauthz", namespace: "extauthz", args: []string{"--set", "prometheusAnnotations=false", "--set", "serviceMonitor.enabled=true"},
			check: func(t *testing.T, w *workload) {
				if _, ok := w.deployment.Spec.Template.Annotations["prometheus.io/port"]; ok {
					t.Errorf("prometheus.io annotations with prometheusAnnotations=false")
				}
			}},
		{name: "metrics merging off", release: "extauthz", namespace: "extauthz", args: []string{"--set", "istio.mergeMetrics=false"},
			check: func(t *testing.T, w *workload) {
				if got := w.deployment.Spec.Template.Annotations[istioMergeMetricsAnnotation]; got != "false" {
					t.Errorf("%s = %q, want \"false\"", istioMergeMetricsAnnotation, got)
				}
				if slices.Contains(ingressPorts(w.netpols[0]), istioStatusPort) {
					t.Errorf("NetworkPolicy opens %d with merging off", istioStatusPort)
				}
			}},
		{name: "runtime limit off, Go's GOGC", release: "extauthz", namespace: "extauthz", args: []string{"--set", "goRuntime.memoryLimitFromContainer=false", "--set", "goRuntime.gogc="},
			check: func(t *testing.T, w *workload) {
				if got, want := runtimeEnv(w.container()), map[string]string{"AUTOMEMLIMIT": "off"}; !maps.Equal(got, want) {
					t.Errorf("Go runtime variables %v, want %v", got, want)
				}
			}},
		{name: "GOMEMLIMIT below the server's share", release: "extauthz", namespace: "extauthz", args: []string{"--set", "extraEnv[0].name=GOMEMLIMIT", "--set", "extraEnv[0].value=200MiB"}},
		{name: "bigger pod", release: "extauthz", namespace: "extauthz", args: []string{"--set", "resources.requests.memory=1Gi", "--set", "resources.limits.memory=1Gi", "--set", "resources.limits.cpu=2", "--set", "resources.limits.ephemeral-storage=1Gi"}},
		{name: "nginx in front", release: "extauthz", namespace: "extauthz", args: []string{"--set", "forwardAuthSource=x-original"},
			check: func(t *testing.T, w *workload) {
				if got := w.config.ForwardAuthSource; got != authz.SourceOriginal {
					t.Errorf("forward_auth_source %q, want %q", got, authz.SourceOriginal)
				}
			}},
		{name: "serving TLS only", release: "extauthz", namespace: "extauthz", args: []string{"--set", "tls.enabled=true", "--set", "tls.secretName=extauthz-tls"}},
		{name: "JWKS CA only", release: "extauthz", namespace: "extauthz", args: []string{"--set", "jwksCA.enabled=true", "--set", "jwksCA.secretName=idp-ca"}},
		{name: "other ports and names", release: "authz", namespace: "mesh", args: []string{"--set", "ports.grpc=50051", "--set", "ports.http=8081", "--set", "ports.admin=8080", "--set", "fullnameOverride=gate"}},
		{name: "pod spread by affinity", release: "extauthz", namespace: "extauthz", args: []string{"--set", "topologySpreadConstraints=null",
			"--set", "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey=kubernetes.io/hostname",
			"--set", "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels.app=extauthz"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := renderChart(t, bin, tc.release, tc.namespace, tc.args...)
			if err := w.check(); err != nil {
				t.Fatalf("checks:\n%v", err)
			}
			want := tc.wantKinds
			if want == nil {
				want = []string{"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"}
				if !slices.Contains(tc.args, "autoscaling.enabled=false") {
					want = append(want, "HorizontalPodAutoscaler")
				}
				if slices.Contains(tc.args, "serviceMonitor.enabled=true") {
					want = append(want, "ServiceMonitor")
				}
				slices.Sort(want)
			}
			if got := w.kinds(); !slices.Equal(got, want) {
				t.Errorf("kinds = %v, want %v", got, want)
			}
			if tc.check != nil {
				tc.check(t, w)
			}
		})
	}
}

// TestHelmTemplateChecksFail renders values that pass the schema but break
// a hardening or wiring rule, so the checks on rendered output can fail.
func TestHelmTemplateChecksFail(t *testing.T) {
	bin := helmBinary(t)
	tests := []struct {
		name string
		args []string
		want string // part of the expected problem
	}{
		{name: "writable root", args: []string{"--set", "securityContext.readOnlyRootFilesystem=false"}, want: "readOnlyRootFilesystem"},
		{name: "privilege escalation", args: []string{"--set", "securityContext.allowPrivilegeEscalation=true"}, want: "allowPrivilegeEscalation"},
		{name: "no preStop", args: []string{"--set", "preStopSleepSeconds=0"}, want: "preStop"},
		{name: "short grace", args: []string{"--set", "terminationGracePeriodSeconds=10"}, want: "terminationGracePeriodSeconds"},
		{name: "single replica", args: []string{"--set", "autoscaling.enabled=false", "--set", "replicaCount=1"}, want: "replicas"},
		{name: "pdb blocks drains", args: []string{"--set", "podDisruptionBudget.minAvailable=2"}, want: "blocks every node drain"},
		{name: "no spread", args: []string{"--set", "topologySpreadConstraints=null"}, want: "topology spread"},
		{name: "capability added", args: []string{"--set", "securityContext.capabilities.add={NET_RAW}"}, want: `Pod Security "restricted"`},
		{name: "root user", args: []string{"--set", "podSecurityContext.runAsUser=0", "--set", "podSecurityContext.runAsNonRoot=false", "--set", "securityContext.runAsNonRoot=false"}, want: `Pod Security "restricted"`},
		{name: "unconfined seccomp", args: []string{"--set", "podSecurityContext.seccompProfile.type=Unconfined", "--set", "securityContext.seccompProfile.type=Unconfined"}, want: `Pod Security "restricted"`},
		{name: "memory request below the limit", args: []string{"--set", "resources.requests.memory=64Mi"}, want: "memory request 64Mi is below the limit"},
		{name: "no ephemeral storage limit", args: []string{"--set", "resources.limits.ephemeral-storage=null"}, want: "ephemeral-storage needs both"},
		{name: "ephemeral storage under /tmp", args: []string{"--set", "resources.requests.ephemeral-storage=8Mi", "--set", "resources.limits.ephemeral-storage=16Mi"}, want: "does not cover the emptyDir"},
		{name: "GOMEMLIMIT at the limit", args: []string{"--set", "extraEnv[0].name=GOMEMLIMIT", "--set", "extraEnv[0].valueFrom.resourceFieldRef.resource=limits.memory"}, want: "GOMEMLIMIT is 268435456 bytes, 100%"},
		{name: "GOMEMLIMIT in MiB units", args: []string{"--set", "extraEnv[0].name=GOMEMLIMIT", "--set", "extraEnv[0].valueFrom.resourceFieldRef.resource=limits.memory", "--set", "extraEnv[0].valueFrom.resourceFieldRef.divisor=1Mi"}, want: "under half the memory limit"},
		{name: "AUTOMEMLIMIT at 100%", args: []string{"--set", "extraEnv[0].name=AUTOMEMLIMIT", "--set-string", "extraEnv[0].value=1"}, want: "AUTOMEMLIMIT"},
		{name: "forward auth not pinned", args: []string{"--set", "forwardAuthSource=auto"}, want: "forward_auth_source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := renderChart(t, bin, "extauthz", "extauthz", tc.args...)
			err := w.check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check() = %v, want a problem mentioning %q", err, tc.want)
			}
		})
	}
}

// TestHelmNotes renders NOTES.txt (wrapped in a ConfigMap in a copy of the
// chart, since helm template does not print notes and helm install needs a
// cluster) and checks the Istio snippet it prints against the rendered
// Service.
func TestHelmNotes(t *testing.T) {
	bin := helmBinary(t)
	chart := copyDir(t, chartDir)
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var wrapper strings.Builder
	wrapper.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  NOTES.txt: |\n")
	for line := range strings.Lines(string(notes)) {
		wrapper.WriteString("    " + line)
	}
	if err := os.WriteFile(filepath.Join(chart, "templates", "zz-notes.yaml"), []byte(wrapper.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		release   string
		namespace string
		args      []string
		wantHost  string
		// wantTLS is the mode of the DestinationRule the notes must print
		// with serving TLS ("" without: plaintext providers, no rule).
		wantTLS networkingv1alpha3.ClientTLSSettings_TLSmode
	}{
		{name: "defaults", release: "extauthz", namespace: "extauthz", wantHost: "extauthz.extauthz.svc.cluster.local"},
		{name: "tls values", release: "edge", namespace: "auth", args: []string{"-f", filepath.Join(chartDir, "ci", "tls-values.yaml")}, wantHost: "edge-extauthz.auth.svc.cluster.local",
			wantTLS: networkingv1alpha3.ClientTLSSettings_MUTUAL},
		{name: "serving TLS only", release: "extauthz", namespace: "extauthz", args: []string{"--set", "tls.enabled=true", "--set", "tls.secretName=extauthz-tls", "--set", "ports.grpc=50051"}, wantHost: "extauthz.extauthz.svc.cluster.local",
			wantTLS: networkingv1alpha3.ClientTLSSettings_SIMPLE},
		{name: "other ports", release: "authz", namespace: "mesh", args: []string{"--set", "ports.grpc=50051", "--set", "ports.http=8081"}, wantHost: "authz-extauthz.mesh.svc.cluster.local"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := helm(t, bin, slices.Concat([]string{"template", tc.release, chart, "--namespace", tc.namespace, "--kube-version", kubeVersion}, tc.args)...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			objs, err := decodeAll("helm template", out)
			if err != nil {
				t.Fatal(err)
			}
			var text string
			var rest []object
			for _, o := range objs {
				if cm, ok := o.value.(*corev1.ConfigMap); ok && cm.Name == "notes" {
					text = cm.Data["NOTES.txt"]
					continue
				}
				rest = append(rest, o)
			}
			w, err := collectWorkload(rest)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.check(); err != nil {
				t.Fatalf("checks:\n%v", err)
			}
			target, err := targetOf(w, "")
			if err != nil {
				t.Fatal(err)
			}
			if target.host != tc.wantHost {
				t.Errorf("service host %s, want %s", target.host, tc.wantHost)
			}
			snippet, ok := notesBlock(text, "extensionProviders")
			if !ok {
				t.Fatalf("NOTES.txt has no extensionProviders snippet:\n%s", text)
			}
			mesh, err := decodeMeshConfigYAML([]byte(snippet))
			if err != nil {
				t.Fatalf("NOTES.txt snippet is not a MeshConfig: %v\n%s", err, snippet)
			}
			if _, err := checkProviders(mesh, target); err != nil {
				t.Errorf("NOTES.txt snippet:\n%v", err)
			}
			// The providers speak plaintext: with serving TLS on, the notes
			// must also print the DestinationRule that originates TLS to
			// both check ports, or every Check fails (503).
			dr, ok := notesBlock(text, "destinationRule")
			if tc.wantTLS == networkingv1alpha3.ClientTLSSettings_DISABLE {
				if ok {
					t.Errorf("NOTES.txt prints a TLS DestinationRule without serving TLS:\n%s", dr)
				}
				return
			}
			if !ok {
				t.Fatalf("serving TLS, but NOTES.txt prints only plaintext providers:\n%s", text)
			}
			if err := checkTLSOrigination([]byte(dr), target, tc.wantTLS); err != nil {
				t.Errorf("NOTES.txt DestinationRule:\n%v\n%s", err, dr)
			}
		})
	}
}

// notesBlock returns the text NOTES.txt prints between "# --- name ---" and
// the next "# --- end ---".
func notesBlock(text, name string) (string, bool) {
	_, block, ok := strings.Cut(text, "# --- "+name+" ---\n")
	block, _, ok2 := strings.Cut(block, "# --- end ---")
	return block, ok && ok2
}

// checkTLSOrigination decodes a DestinationRule strictly and checks that it
// originates TLS of the given mode, verified against the authorizer's name,
// on both ports the providers call.
func checkTLSOrigination(doc []byte, target authzTarget, mode networkingv1alpha3.ClientTLSSettings_TLSmode) error {
	objs, err := decodeAll("NOTES.txt", doc)
	if err != nil {
		return err
	}
	if len(objs) != 1 {
		return fmt.Errorf("%d documents, want one DestinationRule", len(objs))
	}
	dr, ok := objs[0].value.(*destinationRule)
	if !ok {
		return fmt.Errorf("%s is not a DestinationRule", objs[0])
	}
	var p problems
	if dr.Spec.GetHost() != target.host {
		p.addf("host %s, want %s", dr.Spec.GetHost(), target.host)
	}
	// Sidecars use credentialName only from a rule with a workloadSelector.
	if len(dr.Spec.GetWorkloadSelector().GetMatchLabels()) == 0 {
		p.addf("no workloadSelector: sidecars would ignore credentialName")
	}
	tls := map[uint32]*networkingv1alpha3.ClientTLSSettings{}
	for _, pl := range dr.Spec.GetTrafficPolicy().GetPortLevelSettings() {
		tls[pl.GetPort().GetNumber()] = pl.GetTls()
	}
	for _, port := range []uint32{target.grpcPort, target.httpPort} {
		s := tls[port]
		switch {
		case s == nil:
			p.addf("port %d: no TLS settings", port)
		case s.GetMode() != mode:
			p.addf("port %d: mode %v, want %v", port, s.GetMode(), mode)
		case s.GetSni() != target.host || s.GetInsecureSkipVerify().GetValue():
			p.addf("port %d: sni %q (want %s), insecureSkipVerify %v", port, s.GetSni(), target.host, s.GetInsecureSkipVerify().GetValue())
		case s.GetCredentialName() == "":
			p.addf("port %d: no credentialName with the CA (and client certificate) to use", port)
		}
	}
	return p.err()
}
