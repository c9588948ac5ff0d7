package manifests_test

import (
	"maps"
	"strings"
	"testing"
)

// goGCEnv is the GOGC entry of deploy/kubernetes/deployment.yaml, after
// which the mutations below add Go runtime variables.
const goGCEnv = "            - name: GOGC\n              value: \"400\"\n"

// goMemLimitEnv is a GOMEMLIMIT entry from the downward API.
func goMemLimitEnv(resource, divisor string) string {
	s := "            - name: GOMEMLIMIT\n              valueFrom:\n                resourceFieldRef:\n                  containerName: extauthz\n                  resource: " + resource + "\n"
	if divisor != "" {
		s += "                  divisor: " + divisor + "\n"
	}
	return s
}

// TestMutationsFail edits one file of deploy/kubernetes or deploy/istio at a
// time and expects the checks to fail, naming the problem. It shows that each
// kind of check can fail: strict decoding (unknown, misspelt or mis-cased
// fields, unknown kinds, bad enum values) and the cross-object checks.
func TestMutationsFail(t *testing.T) {
	kube := readYAMLFiles(t, kubeDir)
	istio := readYAMLFiles(t, istioDir)

	// The unmutated files pass; otherwise every case below would pass
	// vacuously.
	w, ns, err := checkKubernetes(kube)
	if err != nil {
		t.Fatalf("baseline deploy/kubernetes:\n%v", err)
	}
	target, err := targetOf(w, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkIstio(istio, target); err != nil {
		t.Fatalf("baseline deploy/istio:\n%v", err)
	}

	tests := []struct {
		name  string
		istio bool   // mutate deploy/istio instead of deploy/kubernetes
		file  string // relative to the directory
		old   string // replaced once; must occur in the file
		new   string
		want  string // part of the expected error
	}{
		// Strict decoding.
		{name: "unknown field", file: "deployment.yaml", old: "          image: ", new: "          imagez: ", want: `unknown field "imagez"`},
		{name: "mis-cased field", file: "deployment.yaml", old: "imagePullPolicy:", new: "imagePullpolicy:", want: "imagePullpolicy"},
		{name: "wrong type", file: "hpa.yaml", old: "minReplicas: 2", new: "minReplicas: two", want: "minReplicas"},
		{name: "unknown kind", file: "pdb.yaml", old: "kind: PodDisruptionBudget", new: "kind: PodDisruptionBudgett", want: `unknown kind "PodDisruptionBudgett"`},
		{name: "duplicate key", file: "service.yaml", old: "  type: ClusterIP\n", new: "  type: ClusterIP\n  type: NodePort\n", want: "already set"},
		{name: "unknown kustomization field", file: "kustomization.yaml", old: "resources:", new: "resource:", want: "resource"},
		{name: "unknown config key", file: "configmap.yaml", old: "    clock_skew: 60s", new: "    clock_skw: 60s", want: "clock_skw"},
		{name: "unknown mesh field", istio: true, file: "istio-operator.yaml", old: "failOpen: false", new: "failopen: false", want: "failopen"},
		{name: "unknown istiod values field", istio: true, file: "istiod-values.yaml", old: "timeout: 0.5s", new: "timout: 0.5s", want: "timout"},
		{name: "bad policy action", istio: true, file: "authorization-policy.yaml", old: "action: CUSTOM", new: "action: CUSTOMM", want: "CUSTOMM"},
		{name: "unknown policy field", istio: true, file: "authorization-policy.yaml", old: "    - to:", new: "    - too:", want: "too"},

		// Cross-object and content checks.
		{name: "selector misses pod labels", file: "deployment.yaml", old: "      app.kubernetes.io/instance: extauthz\n  strategy:", new: "      app.kubernetes.io/instance: other\n  strategy:", want: "selector does not match"},
		{name: "probe on undeclared port", file: "deployment.yaml", old: "path: /healthz\n              port: admin", new: "path: /healthz\n              port: admn", want: "liveness probe port admn"},
		{name: "readiness path", file: "deployment.yaml", old: "path: /readyz", new: "path: /healthz", want: "readiness probe path"},
		{name: "grpc probe port", file: "deployment.yaml", old: "grpc:\n              port: 9191", new: "grpc:\n              port: 9192", want: "grpc probe on port 9192"},
		{name: "writable root filesystem", file: "deployment.yaml", old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false", want: "readOnlyRootFilesystem"},
		{name: "capabilities kept", file: "deployment.yaml", old: "drop: [ALL]", new: "drop: [NET_RAW]", want: "drop ALL"},
		{name: "no seccomp", file: "deployment.yaml", old: "            seccompProfile:\n              type: RuntimeDefault\n          volumeMounts", new: "            seccompProfile:\n              type: Unconfined\n          volumeMounts", want: "RuntimeDefault"},
		{name: "no memory limit", file: "deployment.yaml", old: "              cpu: \"1\"\n              memory: 256Mi\n", new: "              cpu: \"1\"\n", want: "memory needs both"},
		{name: "memory request below the limit", file: "deployment.yaml", old: "              memory: 256Mi\n              ephemeral-storage: 64Mi", new: "              memory: 64Mi\n              ephemeral-storage: 64Mi", want: "memory request 64Mi is below the limit 256Mi"},
		{name: "no ephemeral storage limit", file: "deployment.yaml", old: "              ephemeral-storage: 128Mi\n", new: "", want: "ephemeral-storage needs both"},
		{name: "ephemeral storage under /tmp", file: "deployment.yaml", old: "              ephemeral-storage: 128Mi\n", new: "              ephemeral-storage: 16Mi\n", want: "does not cover the emptyDir"},
		{name: "capability added", file: "deployment.yaml", old: "              drop: [ALL]", new: "              drop: [ALL]\n              add: [NET_ADMIN]", want: `Pod Security "restricted"`},
		{name: "host network", file: "deployment.yaml", old: "      automountServiceAccountToken: false", new: "      automountServiceAccountToken: false\n      hostNetwork: true", want: "host namespaces"},
		{name: "hostPath volume", file: "deployment.yaml", old: "        - name: tmp\n          emptyDir:\n            sizeLimit: 16Mi", new: "        - name: tmp\n          hostPath:\n            path: /tmp", want: `restricted volume type "hostPath"`},
		{name: "namespace not enforcing restricted", file: "namespace.yaml", old: "pod-security.kubernetes.io/enforce: restricted", new: "pod-security.kubernetes.io/enforce: baseline", want: `label pod-security.kubernetes.io/enforce is "baseline"`},
		{name: "namespace without warn", file: "namespace.yaml", old: "    pod-security.kubernetes.io/warn: restricted\n", new: "", want: "pod-security.kubernetes.io/warn"},
		{name: "unpinned image", file: "deployment.yaml", old: "extauthz:0.1.0", new: "extauthz:latest", want: "not pinned"},
		{name: "wrong config path", file: "deployment.yaml", old: "value: /etc/extauthz/config.yaml", new: "value: /etc/extauthz/conf.yaml", want: "AUTHZ_CONFIG"},
		{name: "GOMEMLIMIT at the memory limit", file: "deployment.yaml", old: goGCEnv, new: goGCEnv + goMemLimitEnv("limits.memory", ""), want: "GOMEMLIMIT is 268435456 bytes, 100% of the memory limit 256Mi; the server's own limit is 90%"},
		{name: "GOMEMLIMIT from requests", file: "deployment.yaml", old: goGCEnv, new: goGCEnv + goMemLimitEnv("requests.memory", ""), want: "GOMEMLIMIT: is not a literal or this container's limits.memory"},
		{name: "GOMEMLIMIT in MiB", file: "deployment.yaml", old: goGCEnv, new: goGCEnv + goMemLimitEnv("limits.memory", "1Mi"), want: "GOMEMLIMIT is 256 bytes, under half"},
		{name: "GOMEMLIMIT literal at the limit", file: "deployment.yaml", old: goGCEnv, new: goGCEnv + "            - name: GOMEMLIMIT\n              value: 256MiB\n", want: "GOMEMLIMIT is 268435456 bytes"},
		{name: "GOMEMLIMIT not a size", file: "deployment.yaml", old: goGCEnv, new: goGCEnv + "            - name: GOMEMLIMIT\n              value: 200Mi\n", want: `"200Mi" is not a byte count`},
		{name: "AUTOMEMLIMIT above the server's", file: "deployment.yaml", old: goGCEnv, new: goGCEnv + "            - name: AUTOMEMLIMIT\n              value: \"0.95\"\n", want: `AUTOMEMLIMIT "0.95"`},
		{name: "GOGC not a number", file: "deployment.yaml", old: "value: \"400\"", new: "value: \"400%\"", want: "GOGC"},
		{name: "config key not projected", file: "deployment.yaml", old: "path: config.yaml", new: "path: settings.yaml", want: "does not project config.yaml"},
		{name: "missing configmap", file: "deployment.yaml", old: "name: extauthz-config", new: "name: extauthz-cfg", want: `ConfigMap "extauthz-cfg"`},
		{name: "token automounted", file: "serviceaccount.yaml", old: "automountServiceAccountToken: false", new: "automountServiceAccountToken: true", want: "ServiceAccount extauthz: automountServiceAccountToken"},
		{name: "grace too short", file: "deployment.yaml", old: "terminationGracePeriodSeconds: 30", new: "terminationGracePeriodSeconds: 12", want: "terminationGracePeriodSeconds"},
		{name: "service targets undeclared port", file: "service.yaml", old: "targetPort: grpc", new: "targetPort: grpcc", want: "targets grpcc"},
		{name: "service grpc appProtocol", file: "service.yaml", old: "appProtocol: grpc", new: "appProtocol: http", want: "appProtocol: grpc"},
		{name: "service selector", file: "service.yaml", old: "  selector:\n    app.kubernetes.io/name: extauthz", new: "  selector:\n    app.kubernetes.io/name: extauth", want: "Service extauthz: selector"},
		{name: "hpa target", file: "hpa.yaml", old: "    name: extauthz\n  minReplicas", new: "    name: extauth\n  minReplicas", want: "targets apps/v1 Deployment"},
		{name: "hpa and replicas", file: "deployment.yaml", old: "  revisionHistoryLimit: 5", new: "  replicas: 2\n  revisionHistoryLimit: 5", want: "HPA extauthz owns the count"},
		{name: "pdb blocks drains", file: "pdb.yaml", old: "minAvailable: 1", new: "minAvailable: 2", want: "blocks every node drain"},
		{name: "netpol wrong port", file: "networkpolicy.yaml", old: "        - port: 9192\n", new: "        - port: 9000\n", want: "port 9000 is not a container port"},
		{name: "netpol open ingress", file: "networkpolicy.yaml", old: "  ingress:\n    - from:", new: "  ingress:\n    - ports: [{port: 9191}]\n    - from:", want: "admits every source"},
		{name: "netpol open egress", file: "networkpolicy.yaml", old: "  egress:\n", new: "  egress:\n    - to: [{ipBlock: {cidr: 0.0.0.0/0}}]\n", want: "allows every port"},
		{name: "netpol without the merged metrics port", file: "networkpolicy.yaml", old: "        - port: 15020\n          protocol: TCP\n", new: "", want: "admits the admin port but not 15020"},
		{name: "netpol merged metrics port to callers", file: "networkpolicy.yaml", old: "        - port: 9192\n          protocol: TCP\n", new: "        - port: 9192\n          protocol: TCP\n        - port: 15020\n          protocol: TCP\n", want: "opens Istio's status port 15020 outside the metrics rule"},
		{name: "netpol no dns", file: "networkpolicy.yaml", old: "        - port: 53\n          protocol: UDP", new: "        - port: 54\n          protocol: UDP", want: "UDP/53"},
		{name: "config port mismatch", file: "configmap.yaml", old: `grpc_addr: ":9191"`, new: `grpc_addr: ":50051"`, want: "grpc_addr"},
		{name: "config without providers", file: "configmap.yaml", old: "    providers:\n", new: "    providerz: []\n    unused:\n", want: "providerz"},
		{name: "forward auth source auto", file: "configmap.yaml", old: "forward_auth_source: request", new: "forward_auth_source: auto", want: `forward_auth_source "auto"`},
		{name: "forward auth source unset", file: "configmap.yaml", old: "    forward_auth_source: request\n", new: "", want: "forward_auth_source"},
		{name: "rule both public and scoped", file: "configmap.yaml", old: "        public: true", new: "        public: true\n        scopes: [read]", want: "cannot be both public and require scopes"},
		{name: "namespace mismatch", file: "pdb.yaml", old: "namespace: extauthz", new: "namespace: default", want: `namespace "default"`},
		{name: "resource not listed", file: "kustomization.yaml", old: "  - pdb.yaml\n", new: "", want: "pdb.yaml is not listed"},
		{name: "fail open", istio: true, file: "istio-operator.yaml", old: "failOpen: false", new: "failOpen: true", want: "failOpen is true"},
		{name: "timeout under unknown-kid wait", file: "configmap.yaml", old: "    clock_skew: 60s\n", new: "    clock_skew: 60s\n    jwks_unknown_kid_wait: 600ms\n", want: "unknown-kid wait 600ms"},
		{name: "long timeout", istio: true, file: "istio-operator.yaml", old: "timeout: 0.5s", new: "timeout: 5s", want: "timeout 5s"},
		{name: "wrong service host", istio: true, file: "istio-operator.yaml", old: "service: extauthz.extauthz.svc.cluster.local\n          port: 9191", new: "service: extauthz.default.svc.cluster.local\n          port: 9191", want: "want extauthz.extauthz.svc.cluster.local:9191"},
		{name: "http provider on grpc port", istio: true, file: "istio-operator.yaml", old: "port: 9192", new: "port: 9191", want: "want extauthz.extauthz.svc.cluster.local:9192"},
		{name: "spoofable path header", istio: true, file: "istio-operator.yaml", old: "includeRequestHeadersInCheck: [authorization]", new: "includeRequestHeadersInCheck: [authorization, x-forwarded-uri]", want: "x-forwarded-uri"},
		{name: "claim header not forwarded", istio: true, file: "istio-operator.yaml", old: "headersToUpstreamOnAllow: [x-jwt-sub, x-jwt-payload]", new: "headersToUpstreamOnAllow: [x-jwt-sub]", want: "lacks claim header x-jwt-payload"},
		{name: "operator and values differ", istio: true, file: "istiod-values.yaml", old: "name: extauthz-http", new: "name: extauthz-http2", want: "differs"},
		{name: "unknown provider", istio: true, file: "authorization-policy.yaml", old: "name: extauthz-grpc", new: "name: extauthz-grcp", want: `provider "extauthz-grcp"`},
		{name: "notPaths carve-out", istio: true, file: "authorization-policy.yaml", old: `paths: ["/*"]`, new: `notPaths: ["/public*"]`, want: "notPaths"},
		{name: "policy without rules", istio: true, file: "authorization-policy.yaml", old: "  rules:\n    - to:\n        - operation:\n            paths: [\"/*\"]\n", new: "", want: "never matches"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kubeFiles, istioFiles := maps.Clone(kube), maps.Clone(istio)
			files := kubeFiles
			if tc.istio {
				files = istioFiles
			}
			orig, ok := files[tc.file]
			if !ok || !strings.Contains(string(orig), tc.old) {
				t.Fatalf("%s does not contain %q; update the test", tc.file, tc.old)
			}
			files[tc.file] = []byte(strings.Replace(string(orig), tc.old, tc.new, 1))

			w, ns, err := checkKubernetes(kubeFiles)
			if err == nil {
				var target authzTarget
				if target, err = targetOf(w, ns); err == nil {
					err = checkIstio(istioFiles, target)
				}
			}
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}
