package manifests_test

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Paths relative to this package.
const (
	kubeDir  = "../kubernetes"
	istioDir = "../istio"
	chartDir = "../helm/extauthz"
)

// readYAMLFiles reads every .yaml file under dir, keyed by its slash path
// relative to dir.
func readYAMLFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	if len(files) == 0 {
		t.Fatalf("no .yaml files under %s", dir)
	}
	return files
}

// checkKubernetes decodes every file of deploy/kubernetes strictly, checks
// the kustomization against the files, and checks the workload its resources
// make up. It returns the workload and the kustomization's namespace.
func checkKubernetes(files map[string][]byte) (*workload, string, error) {
	var errs []error
	decoded := map[string][]object{}
	for _, name := range sortedKeys(files) {
		objs, err := decodeAll(name, files[name])
		if err != nil {
			errs = append(errs, err)
		}
		decoded[name] = objs
	}
	if len(errs) > 0 {
		return nil, "", errors.Join(errs...)
	}

	root := only[*kustomization](decoded["kustomization.yaml"])
	if root == nil || root.Kind != "Kustomization" {
		return nil, "", errors.New("kustomization.yaml: no Kustomization")
	}
	var p problems
	// Every top-level manifest is a resource, and every resource exists.
	for name := range files {
		if !strings.Contains(name, "/") && name != "kustomization.yaml" && !slices.Contains(root.Resources, name) {
			p.addf("kustomization.yaml: %s is not listed in resources", name)
		}
	}
	var objs []object
	for _, r := range root.Resources {
		if _, ok := files[r]; !ok {
			p.addf("kustomization.yaml: resource %s does not exist", r)
		}
		objs = append(objs, decoded[r]...)
	}
	// Components are Component kustomizations whose patches exist.
	for name, o := range decoded {
		if path.Base(name) != "kustomization.yaml" || name == "kustomization.yaml" {
			continue
		}
		k := only[*kustomization](o)
		if k == nil || k.Kind != "Component" {
			p.addf("%s: not a kustomize Component", name)
			continue
		}
		for _, pt := range k.Patches {
			if (pt.Path == "") == (pt.Patch == "") {
				p.addf("%s: a patch needs a path or an inline patch, not both", name)
				continue
			}
			if pt.Patch != "" {
				if pt.Target == nil || pt.Target.Kind == "" || pt.Target.Name == "" {
					p.addf("%s: an inline patch needs a target kind and name", name)
				}
				continue
			}
			if _, ok := files[path.Join(path.Dir(name), pt.Path)]; !ok {
				p.addf("%s: patch %s does not exist", name, pt.Path)
			}
		}
	}

	w, err := collectWorkload(objs)
	if err != nil {
		return nil, "", errors.Join(append(p, err)...)
	}
	for _, o := range objs {
		ns := o.namespace
		if o.kind == "Namespace" {
			ns = o.name
		}
		if ns != root.Namespace {
			p.addf("%s: namespace %q, but kustomization.yaml sets %q", o, ns, root.Namespace)
		}
	}
	c := w.container()
	for _, img := range root.Images {
		if c != nil && !strings.HasPrefix(c.Image, img.Name+":") {
			p.addf("kustomization.yaml: images entry %s does not match the container image %s", img.Name, c.Image)
		}
		if img.NewTag == "" || img.NewTag == "latest" {
			p.addf("kustomization.yaml: images entry %s needs a version newTag", img.Name)
		}
	}
	if err := w.check(); err != nil {
		p = append(p, err)
	}
	return w, root.Namespace, p.err()
}

// only returns the single decoded value of type T among objs, or nil.
func only[T any](objs []object) T {
	var zero T
	if len(objs) != 1 {
		return zero
	}
	v, _ := objs[0].value.(T)
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestKubernetesManifests(t *testing.T) {
	w, ns, err := checkKubernetes(readYAMLFiles(t, kubeDir))
	if err != nil {
		t.Fatalf("deploy/kubernetes:\n%v", err)
	}
	want := []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"}
	if got := w.kinds(); !slices.Equal(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	if ns != "extauthz" || w.services[0].Name != "extauthz" {
		t.Errorf("Service %s in namespace %s, want extauthz.extauthz (the Istio providers' address)", w.services[0].Name, ns)
	}
	if w.config == nil {
		t.Fatal("config.yaml was not parsed")
	}
}

// peerBinary finds a peer tool from $envVar or PATH. Without one the test is
// skipped, or fails when EXTAUTHZ_REQUIRE_PEERS=1.
func peerBinary(t *testing.T, name, envVar, install string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found on PATH or in $%s (install: %s)", name, envVar, install)
	if os.Getenv("EXTAUTHZ_REQUIRE_PEERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// copyDir copies dir into a new temporary directory and returns its path.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatalf("copy %s: %v", dir, err)
	}
	return dst
}

// TestKustomizeBuild builds the kustomization, alone and with its optional
// components, and checks what kustomize outputs.
func TestKustomizeBuild(t *testing.T) {
	bin := peerBinary(t, "kustomize", "KUSTOMIZE_BIN", "go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2")
	tlsEnv := map[string]string{"AUTHZ_TLS_CERT_FILE": "/etc/extauthz-tls/tls.crt", "AUTHZ_TLS_KEY_FILE": "/etc/extauthz-tls/tls.key"}
	tests := []struct {
		name        string
		components  []string
		wantEnv     map[string]string // the Secret-file variables, exactly
		wantSecrets []string
		wantErr     string // the checks must fail naming this
	}{
		{name: "base"},
		{name: "private-ca", components: []string{"components/private-ca"},
			wantEnv: map[string]string{"AUTHZ_JWKS_CA_FILE": "/etc/extauthz-jwks-ca/ca.crt"}, wantSecrets: []string{"extauthz-idp-ca"}},
		{name: "tls", components: []string{"components/tls"}, wantEnv: tlsEnv, wantSecrets: []string{"extauthz-tls"}},
		{name: "tls and mtls", components: []string{"components/tls", "components/mtls"},
			wantEnv:     map[string]string{"AUTHZ_TLS_CERT_FILE": "/etc/extauthz-tls/tls.crt", "AUTHZ_TLS_KEY_FILE": "/etc/extauthz-tls/tls.key", "AUTHZ_TLS_CLIENT_CA_FILE": "/etc/extauthz-client-ca/ca.crt"},
			wantSecrets: []string{"extauthz-tls"}},
		{name: "everything", components: []string{"components/private-ca", "components/tls", "components/mtls"},
			wantEnv: map[string]string{"AUTHZ_TLS_CERT_FILE": "/etc/extauthz-tls/tls.crt", "AUTHZ_TLS_KEY_FILE": "/etc/extauthz-tls/tls.key",
				"AUTHZ_TLS_CLIENT_CA_FILE": "/etc/extauthz-client-ca/ca.crt", "AUTHZ_JWKS_CA_FILE": "/etc/extauthz-jwks-ca/ca.crt"},
			wantSecrets: []string{"extauthz-tls", "extauthz-idp-ca"}},
		{name: "mtls without tls", components: []string{"components/mtls"}, wantErr: "mutual TLS needs --tls-cert-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := kustomizeBuild(t, bin, tc.components...)
			err := w.check()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("check() = %v, want a problem naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("checks:\n%v", err)
			}
			checkSecretEnv(t, w, tc.wantEnv)
			for _, secret := range tc.wantSecrets {
				if !hasSecretVolume(w, secret) {
					t.Errorf("no volume from Secret %s", secret)
				}
			}
			_, servingTLS := tc.wantEnv["AUTHZ_TLS_CERT_FILE"]
			if p := w.container().StartupProbe; servingTLS != (p.HTTPGet != nil) || servingTLS == (p.GRPC != nil) {
				t.Errorf("startup probe %+v: want /readyz with serving TLS, gRPC health without", p)
			}
		})
	}
}

// TestTLSWiringChecksFail breaks the TLS wiring of the built components in
// the ways the checks must catch.
func TestTLSWiringChecksFail(t *testing.T) {
	bin := peerBinary(t, "kustomize", "KUSTOMIZE_BIN", "go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2")
	base := kustomizeBuild(t, bin, "components/tls", "components/mtls")
	if err := base.check(); err != nil {
		t.Fatalf("baseline:\n%v", err)
	}
	tests := []struct {
		name   string
		mutate func(c *corev1.Container, spec *corev1.PodSpec)
		want   string
	}{
		{name: "grpc startup probe", want: "cannot speak TLS", mutate: func(c *corev1.Container, _ *corev1.PodSpec) {
			c.StartupProbe.HTTPGet = nil
			c.StartupProbe.GRPC = &corev1.GRPCAction{Port: 9191}
		}},
		{name: "subPath mount", want: "subPath", mutate: func(c *corev1.Container, _ *corev1.PodSpec) {
			for i, m := range c.VolumeMounts {
				if m.Name == "tls" {
					c.VolumeMounts[i].MountPath = "/etc/extauthz-tls/tls.crt"
					c.VolumeMounts[i].SubPath = "tls.crt"
				}
			}
		}},
		{name: "key from a ConfigMap", want: "AUTHZ_TLS_KEY_FILE", mutate: func(c *corev1.Container, _ *corev1.PodSpec) {
			for i, e := range c.Env {
				if e.Name == "AUTHZ_TLS_KEY_FILE" {
					c.Env[i].Value = "/etc/extauthz/config.yaml"
				}
			}
		}},
		{name: "cert without key", want: "go together", mutate: func(c *corev1.Container, _ *corev1.PodSpec) {
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "AUTHZ_TLS_KEY_FILE" })
		}},
		{name: "client CA not projected", want: "does not project ca.crt", mutate: func(_ *corev1.Container, spec *corev1.PodSpec) {
			for _, v := range spec.Volumes {
				if v.Name == "client-ca" {
					v.Secret.Items[0].Path = "bundle.pem"
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := *base
			w.deployment = base.deployment.DeepCopy()
			spec := &w.deployment.Spec.Template.Spec
			tc.mutate(&spec.Containers[0], spec)
			if err := w.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check() = %v, want a problem naming %q", err, tc.want)
			}
		})
	}
}

// kustomizeBuild builds a copy of deploy/kubernetes with the components
// enabled and collects the workload.
func kustomizeBuild(t *testing.T, bin string, components ...string) *workload {
	t.Helper()
	dir := copyDir(t, kubeDir)
	if len(components) > 0 {
		k := filepath.Join(dir, "kustomization.yaml")
		data, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, "components:\n"...)
		for _, c := range components {
			data = append(data, "  - "+c+"\n"...)
		}
		if err := os.WriteFile(k, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), bin, "build", dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build: %v\n%s", err, stderrOf(err))
	}
	objs, err := decodeAll("kustomize build", out)
	if err != nil {
		t.Fatal(err)
	}
	w, err := collectWorkload(objs)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// checkSecretEnv checks the container's Secret-file variables are exactly want.
func checkSecretEnv(t *testing.T, w *workload, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, e := range w.container().Env {
		if slices.Contains(secretFileVars, e.Name) {
			got[e.Name] = e.Value
		}
	}
	if len(want) == 0 {
		want = map[string]string{}
	}
	if !maps.Equal(got, want) {
		t.Errorf("Secret-file variables %v, want %v", got, want)
	}
}

func hasSecretVolume(w *workload, secret string) bool {
	return slices.ContainsFunc(w.deployment.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == secret
	})
}

func stderrOf(err error) string {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return string(ee.Stderr)
	}
	return ""
}
