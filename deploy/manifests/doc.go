// Package manifests owns the offline validation of the deployment manifests:
// the Kubernetes manifests and kustomize component in deploy/kubernetes, the
// Istio mesh config and AuthorizationPolicy in deploy/istio, and every object
// the Helm chart in deploy/helm/extauthz renders.
//
// It has no code of its own; its tests, part of `go test ./...`, decode each
// document strictly into its real API type (k8s.io/api, istio.io/api with
// protojson, the Prometheus Operator's ServiceMonitor), so an unknown or
// misspelt field fails, and then check what strict decoding cannot: that
// selectors match pod labels, probes and Service ports point at declared
// container ports, the pod is hardened, the config file parses and agrees with
// the ports, and the Istio providers match the Service and fail closed.
// Every rendered pod template is evaluated with the Pod Security admission
// plugin's own checks (k8s.io/pod-security-admission) at "restricted", and
// again as Istio's sidecar injector would leave it, where the NetworkPolicy
// must also admit the port Prometheus is then told to scrape. The chart is
// rendered for the oldest Kubernetes it supports.
//
// The Helm tests run the helm binary named by $HELM_BIN or found on PATH, and
// the kustomize tests the binary named by $KUSTOMIZE_BIN or found on PATH; each
// is skipped when its binary is missing, unless EXTAUTHZ_REQUIRE_PEERS=1, which
// makes a missing binary a failure. No test uses the network.
package manifests
