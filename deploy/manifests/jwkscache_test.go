package manifests_test

import (
	"testing"
)

// TestJWKSCacheDir: the raw manifests and the chart keep each provider's
// last good key set on an emptyDir (it outlives a container restart), so
// that a restart during an identity-provider outage still verifies tokens.
func TestJWKSCacheDir(t *testing.T) {
	for name, w := range map[string]*workload{
		"kustomize": kustomizeBuild(t, peerBinary(t, "kustomize", "KUSTOMIZE_BIN", "go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2")),
		"chart":     renderChart(t, helmBinary(t), "extauthz", "extauthz"),
	} {
		t.Run(name, func(t *testing.T) {
			spec := w.deployment.Spec.Template.Spec
			c := spec.Containers[0]
			dir := ""
			for _, e := range c.Env {
				if e.Name == "AUTHZ_JWKS_CACHE_DIR" {
					dir = e.Value
				}
			}
			if dir == "" {
				t.Fatal("AUTHZ_JWKS_CACHE_DIR is not set")
			}
			volume := ""
			for _, m := range c.VolumeMounts {
				if m.MountPath == dir && !m.ReadOnly {
					volume = m.Name
				}
			}
			for _, v := range spec.Volumes {
				if v.Name == volume && v.EmptyDir != nil {
					return
				}
			}
			t.Errorf("%s is not a writable emptyDir mount (volume %q)", dir, volume)
		})
	}
}
