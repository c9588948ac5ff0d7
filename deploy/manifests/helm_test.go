package manifests_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

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

func helmBinary(t *testing.T) string {
	return peerBinary(t, "helm", "HELM_BIN", "GOBIN=<dir> go install helm.sh/helm/v3/cmd/helm@v3.22.0")
}

func TestHelmLint(t *testing.T) {
	bin := helmBinary(t)
	tests := []struct {
		name    string
		args    []string
		wantErr bool
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := helm(t, bin, append([]string{"lint", chartDir, "--strict"}, tc.args...)...)
			if (err != nil) != tc.wantErr {
				t.Errorf("helm lint %v: err = %v, wantErr %v\n%s", tc.args, err, tc.wantErr, out)
			}
		})
	}
}

// renderChart runs helm template and checks the workload it renders.
func renderChart(t *testing.T, bin, release, namespace string, args ...string) *workload {
	t.Helper()
	out, err := helm(t, bin, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := renderChart(t, bin, tc.release, tc.namespace, tc.args...)
			if err := w.check(); err != nil {
				t.Fatalf("checks:\n%v", err)
			}
			if got := w.kinds(); !slices.Equal(got, tc.wantKinds) {
				t.Errorf("kinds = %v, want %v", got, tc.wantKinds)
			}
			tc.check(t, w)
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
	}{
		{name: "defaults", release: "extauthz", namespace: "extauthz", wantHost: "extauthz.extauthz.svc.cluster.local"},
		{name: "tls values", release: "edge", namespace: "auth", args: []string{"-f", filepath.Join(chartDir, "ci", "tls-values.yaml")}, wantHost: "edge-extauthz.auth.svc.cluster.local"},
		{name: "other ports", release: "authz", namespace: "mesh", args: []string{"--set", "ports.grpc=50051", "--set", "ports.http=8081"}, wantHost: "authz-extauthz.mesh.svc.cluster.local"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := helm(t, bin, append([]string{"template", tc.release, chart, "--namespace", tc.namespace}, tc.args...)...)
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
			_, snippet, ok := strings.Cut(text, "# --- extensionProviders ---\n")
			snippet, _, ok2 := strings.Cut(snippet, "# --- end ---")
			if !ok || !ok2 {
				t.Fatalf("NOTES.txt has no extensionProviders snippet:\n%s", text)
			}
			mesh, err := decodeMeshConfigYAML([]byte(snippet))
			if err != nil {
				t.Fatalf("NOTES.txt snippet is not a MeshConfig: %v\n%s", err, snippet)
			}
			if _, err := checkProviders(mesh, target); err != nil {
				t.Errorf("NOTES.txt snippet:\n%v", err)
			}
		})
	}
}
