package manifests_test

// Pod Security admission: the checks the API server's PodSecurity admission
// plugin runs, from its own package, on every rendered pod template.

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// podSecurityEvaluator is the admission plugin's evaluator with every check
// it ships, for the newest policy version it knows.
var podSecurityEvaluator = sync.OnceValues(func() (policy.Evaluator, error) {
	return policy.NewEvaluator(policy.DefaultChecks(), nil)
})

// podSecurityLabels are the namespace labels that make the admission plugin
// enforce, audit and warn; the shipped namespace sets each to "restricted".
var podSecurityLabels = []string{psaapi.EnforceLevelLabel, psaapi.AuditLevelLabel, psaapi.WarnLevelLabel}

// checkPodSecurity evaluates a pod at a Pod Security level (latest version)
// and returns one error naming every check it fails, or nil.
func checkPodSecurity(level psaapi.Level, meta *metav1.ObjectMeta, spec *corev1.PodSpec) error {
	eval, err := podSecurityEvaluator()
	if err != nil {
		return fmt.Errorf("pod security evaluator: %w", err)
	}
	results := eval.EvaluatePod(psaapi.LevelVersion{Level: level, Version: psaapi.LatestVersion()}, meta, spec)
	if agg := policy.AggregateCheckResults(results); !agg.Allowed {
		return fmt.Errorf("violates Pod Security %q: %s", level, agg.ForbiddenDetail())
	}
	return nil
}
