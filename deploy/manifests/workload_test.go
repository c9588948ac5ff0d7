package manifests_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
)

const (
	// configPath is where the manifests mount the config file (AUTHZ_CONFIG).
	configPath = "/etc/extauthz/config.yaml"
	// defaultShutdownGrace is the server's --shutdown-grace default, used
	// when no config was loaded.
	defaultShutdownGrace = 10 * time.Second
)

// workload is the set of objects that deploy one authorizer.
type workload struct {
	namespaces      []*corev1.Namespace
	deployment      *appsv1.Deployment
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	serviceAccounts map[string]*corev1.ServiceAccount
	secrets         map[string]*corev1.Secret
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	netpols         []*networkingv1.NetworkPolicy
	serviceMonitors []*monitoringv1.ServiceMonitor

	config *config.Config // the mounted config.yaml, as the server loads it
}

// collectWorkload sorts decoded objects into a workload. Objects that do not
// belong in one (an AuthorizationPolicy, a Kustomization) are an error.
func collectWorkload(objs []object) (*workload, error) {
	w := &workload{
		configMaps:      map[string]*corev1.ConfigMap{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		secrets:         map[string]*corev1.Secret{},
	}
	var errs []error
	for _, o := range objs {
		switch v := o.value.(type) {
		case *corev1.Namespace:
			w.namespaces = append(w.namespaces, v)
		case *appsv1.Deployment:
			if w.deployment != nil {
				errs = append(errs, fmt.Errorf("%s: a second Deployment", o))
			}
			w.deployment = v
		case *corev1.Service:
			w.services = append(w.services, v)
		case *corev1.ConfigMap:
			w.configMaps[v.Name] = v
		case *corev1.ServiceAccount:
			w.serviceAccounts[v.Name] = v
		case *corev1.Secret:
			w.secrets[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			w.pdbs = append(w.pdbs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			w.hpas = append(w.hpas, v)
		case *networkingv1.NetworkPolicy:
			w.netpols = append(w.netpols, v)
		case *monitoringv1.ServiceMonitor:
			w.serviceMonitors = append(w.serviceMonitors, v)
		default:
			errs = append(errs, fmt.Errorf("%s: not part of the workload", o))
		}
	}
	if w.deployment == nil {
		errs = append(errs, errors.New("no Deployment"))
	}
	return w, errors.Join(errs...)
}

// kinds lists the kinds present, sorted, for comparing two renderings.
func (w *workload) kinds() []string {
	var ks []string
	add := func(k string, n int) {
		if n > 0 {
			ks = append(ks, k)
		}
	}
	add("Namespace", len(w.namespaces))
	add("Deployment", 1)
	add("Service", len(w.services))
	add("ConfigMap", len(w.configMaps))
	add("ServiceAccount", len(w.serviceAccounts))
	add("Secret", len(w.secrets))
	add("PodDisruptionBudget", len(w.pdbs))
	add("HorizontalPodAutoscaler", len(w.hpas))
	add("NetworkPolicy", len(w.netpols))
	add("ServiceMonitor", len(w.serviceMonitors))
	slices.Sort(ks)
	return ks
}

// problems collects what a check found wrong.
type problems []error

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }
func (p problems) err() error                       { return errors.Join(p...) }

// check runs every cross-object check on the workload and returns all
// problems found.
func (w *workload) check() error {
	var p problems
	d := w.deployment
	pod := &d.Spec.Template
	w.checkDeployment(&p)
	c := w.container()
	if c == nil {
		return p.err()
	}
	podLabels := labels.Set(pod.Labels)

	// The pod passes Pod Security "restricted", and the shipped namespace
	// enforces it (and audits and warns at it).
	if err := checkPodSecurity(psaapi.LevelRestricted, &pod.ObjectMeta, &pod.Spec); err != nil {
		p.addf("Deployment %s: pod template %v", d.Name, err)
	}
	for _, ns := range w.namespaces {
		for _, l := range podSecurityLabels {
			if got := ns.Labels[l]; got != string(psaapi.LevelRestricted) {
				p.addf("Namespace %s: label %s is %q, want %q", ns.Name, l, got, psaapi.LevelRestricted)
			}
		}
	}

	// Services select the pods and target declared ports.
	if len(w.services) == 0 {
		p.addf("no Service")
	}
	for _, s := range w.services {
		where := "Service " + s.Name
		if len(s.Spec.Selector) == 0 {
			p.addf("%s: empty selector", where)
		} else if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			p.addf("%s: selector %v does not match the pod labels", where, s.Spec.Selector)
		}
		byTarget := map[string]corev1.ServicePort{}
		for _, sp := range s.Spec.Ports {
			cp, ok := containerPort(c, sp.TargetPort)
			if !ok {
				p.addf("%s: port %s targets %s, which the container does not declare", where, sp.Name, sp.TargetPort.String())
				continue
			}
			byTarget[cp.Name] = sp
		}
		for _, name := range []string{"grpc", "http"} {
			if _, ok := byTarget[name]; !ok {
				p.addf("%s: no port targets the container's %s port", where, name)
			}
		}
		if sp, ok := byTarget["grpc"]; ok {
			if sp.Name != "grpc" && !strings.HasPrefix(sp.Name, "grpc-") {
				p.addf("%s: gRPC port is named %q; Istio needs the grpc name prefix or appProtocol", where, sp.Name)
			}
			if sp.AppProtocol == nil || *sp.AppProtocol != "grpc" {
				p.addf("%s: gRPC port %s has no appProtocol: grpc", where, sp.Name)
			}
		}
	}

	// The HPA scales this Deployment on CPU, and owns the replica count.
	minReplicas := int32(1)
	if d.Spec.Replicas != nil {
		minReplicas = *d.Spec.Replicas
	}
	for _, h := range w.hpas {
		where := "HorizontalPodAutoscaler " + h.Name
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
			p.addf("%s: targets %s %s %q, not apps/v1 Deployment %q", where, ref.APIVersion, ref.Kind, ref.Name, d.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			p.addf("%s: minReplicas must be at least 2 for availability", where)
		} else {
			minReplicas = *h.Spec.MinReplicas
			if h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				p.addf("%s: maxReplicas %d < minReplicas %d", where, h.Spec.MaxReplicas, *h.Spec.MinReplicas)
			}
		}
		cpu := false
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
				m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil &&
				*m.Resource.Target.AverageUtilization > 0 && *m.Resource.Target.AverageUtilization <= 100 {
				cpu = true
			}
		}
		if !cpu {
			p.addf("%s: no CPU utilization target between 1 and 100", where)
		}
		if d.Spec.Replicas != nil {
			p.addf("Deployment %s: sets replicas although HPA %s owns the count (every apply would reset it)", d.Name, h.Name)
		}
	}
	if len(w.hpas) == 0 && minReplicas < 2 {
		p.addf("Deployment %s: %d replicas and no HPA; at least 2 are needed for availability", d.Name, minReplicas)
	}

	// The PDB selects the pods and still lets a node drain.
	for _, b := range w.pdbs {
		where := "PodDisruptionBudget " + b.Name
		if sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector); err != nil || b.Spec.Selector == nil || sel.Empty() || !sel.Matches(podLabels) {
			p.addf("%s: selector does not match the pod labels", where)
		}
		switch {
		case (b.Spec.MinAvailable == nil) == (b.Spec.MaxUnavailable == nil):
			p.addf("%s: set exactly one of minAvailable and maxUnavailable", where)
		case b.Spec.MinAvailable != nil && b.Spec.MinAvailable.Type == intstr.Int && b.Spec.MinAvailable.IntVal >= minReplicas:
			p.addf("%s: minAvailable %d with %d replicas blocks every node drain", where, b.Spec.MinAvailable.IntVal, minReplicas)
		case b.Spec.MaxUnavailable != nil && b.Spec.MaxUnavailable.Type == intstr.Int && b.Spec.MaxUnavailable.IntVal < 1:
			p.addf("%s: maxUnavailable 0 blocks every node drain", where)
		}
	}

	// The NetworkPolicy admits the check ports only from named peers and
	// lets out only DNS and HTTPS.
	for _, np := range w.netpols {
		w.checkNetworkPolicy(&p, np, c)
	}

	// The ServiceMonitor scrapes the admin port through a Service.
	for _, sm := range w.serviceMonitors {
		where := "ServiceMonitor " + sm.Name
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() {
			p.addf("%s: empty or invalid selector", where)
			continue
		}
		var svc *corev1.Service
		for _, s := range w.services {
			if sel.Matches(labels.Set(s.Labels)) {
				svc = s
			}
		}
		if svc == nil {
			p.addf("%s: selects no Service", where)
			continue
		}
		if len(sm.Spec.Endpoints) == 0 {
			p.addf("%s: no endpoints", where)
		}
		for _, ep := range sm.Spec.Endpoints {
			var target *corev1.ServicePort
			for i, sp := range svc.Spec.Ports {
				if sp.Name == ep.Port {
					target = &svc.Spec.Ports[i]
				}
			}
			if target == nil {
				p.addf("%s: endpoint port %q is not a port of Service %s", where, ep.Port, svc.Name)
				continue
			}
			if cp, ok := containerPort(c, target.TargetPort); !ok || cp.Name != "admin" || ep.Path != "/metrics" {
				p.addf("%s: endpoint %q %s does not scrape /metrics on the admin port", where, ep.Port, ep.Path)
			}
		}
	}
	return p.err()
}

// container returns the authorizer container.
func (w *workload) container() *corev1.Container {
	for i := range w.deployment.Spec.Template.Spec.Containers {
		if c := &w.deployment.Spec.Template.Spec.Containers[i]; c.Name == "extauthz" {
			return c
		}
	}
	return nil
}

func (w *workload) checkDeployment(p *problems) {
	d := w.deployment
	where := "Deployment " + d.Name
	pod := &d.Spec.Template
	podLabels := labels.Set(pod.Labels)
	spec := &pod.Spec

	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels)+len(d.Spec.Selector.MatchExpressions) == 0 {
		p.addf("%s: no selector", where)
	} else if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		p.addf("%s: selector does not match the pod template labels %v", where, pod.Labels)
	}

	c := w.container()
	if c == nil {
		p.addf("%s: no container named extauthz", where)
		return
	}
	cw := where + " container " + c.Name
	for _, other := range spec.Containers {
		if other.Image == "" {
			p.addf("%s: container %s has no image", where, other.Name)
		}
	}
	if c.Image != "" {
		ref := c.Image[strings.LastIndex(c.Image, "/")+1:]
		if !strings.Contains(ref, ":") || strings.HasSuffix(ref, ":latest") {
			p.addf("%s: image %q is not pinned to a version tag", cw, c.Image)
		}
	}

	// Ports: grpc, http, admin, named and unique.
	seen := map[string]bool{}
	for _, cp := range c.Ports {
		if cp.Name == "" {
			p.addf("%s: port %d has no name", cw, cp.ContainerPort)
		}
		if seen[cp.Name] {
			p.addf("%s: port name %q used twice", cw, cp.Name)
		}
		seen[cp.Name] = true
	}
	for _, name := range []string{"grpc", "http", "admin"} {
		if !seen[name] {
			p.addf("%s: no port named %s", cw, name)
		}
	}

	// Probes: liveness /healthz and readiness /readyz on the admin port, and
	// gRPC health on the grpc port.
	httpProbe := func(kind string, pr *corev1.Probe, wantPath string) {
		if pr == nil || pr.HTTPGet == nil {
			p.addf("%s: no HTTP %s probe", cw, kind)
			return
		}
		if pr.HTTPGet.Path != wantPath {
			p.addf("%s: %s probe path %q, want %q", cw, kind, pr.HTTPGet.Path, wantPath)
		}
		if cp, ok := containerPort(c, pr.HTTPGet.Port); !ok {
			p.addf("%s: %s probe port %s is not a declared container port", cw, kind, pr.HTTPGet.Port.String())
		} else if cp.Name != "admin" {
			p.addf("%s: %s probe on port %s, want the admin port", cw, kind, cp.Name)
		}
	}
	httpProbe("liveness", c.LivenessProbe, "/healthz")
	httpProbe("readiness", c.ReadinessProbe, "/readyz")
	// With serving TLS the grpc port speaks only TLS, and the kubelet's grpc
	// probe only plaintext: the startup probe must ask /readyz instead.
	servingTLS := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "AUTHZ_TLS_CERT_FILE" && e.Value != "" })
	grpcProbe := false
	for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if pr == nil || pr.GRPC == nil {
			continue
		}
		grpcProbe = true
		if servingTLS {
			p.addf("%s: grpc probe on port %d with serving TLS: the kubelet's grpc probe cannot speak TLS", cw, pr.GRPC.Port)
		}
		if cp, ok := containerPort(c, intstr.FromInt32(pr.GRPC.Port)); !ok || cp.Name != "grpc" {
			p.addf("%s: grpc probe on port %d, which is not the declared grpc port", cw, pr.GRPC.Port)
		}
	}
	if servingTLS {
		httpProbe("startup", c.StartupProbe, "/readyz")
	} else if !grpcProbe {
		p.addf("%s: no grpc health probe", cw)
	}

	// Hardening.
	psc := spec.SecurityContext
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if !isTrue(csc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		p.addf("%s: runAsNonRoot is not set", cw)
	}
	for _, uid := range []*int64{csc.RunAsUser, psc.RunAsUser} {
		if uid != nil && *uid == 0 {
			p.addf("%s: runs as UID 0", cw)
		}
	}
	runtimeDefault := func(s *corev1.SeccompProfile) bool {
		return s != nil && s.Type == corev1.SeccompProfileTypeRuntimeDefault
	}
	if !runtimeDefault(csc.SeccompProfile) && !(csc.SeccompProfile == nil && runtimeDefault(psc.SeccompProfile)) {
		p.addf("%s: seccompProfile is not RuntimeDefault", cw)
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		p.addf("%s: allowPrivilegeEscalation is not false", cw)
	}
	if !isTrue(csc.ReadOnlyRootFilesystem) {
		p.addf("%s: readOnlyRootFilesystem is not true", cw)
	}
	if isTrue(csc.Privileged) {
		p.addf("%s: privileged", cw)
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		p.addf("%s: capabilities must drop ALL and add none", cw)
	}

	// Resources: requests and limits for CPU, memory and ephemeral storage.
	// The memory request is the limit: a pod using more memory than it
	// requested is among the first the kubelet evicts under node memory
	// pressure, and every protected request needs the authorizer.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		switch {
		case !okReq || !okLim:
			p.addf("%s: %s needs both a request and a limit", cw, r)
		case req.Cmp(lim) > 0:
			p.addf("%s: %s request %s is above the limit %s", cw, r, req.String(), lim.String())
		case r == corev1.ResourceMemory && req.Cmp(lim) != 0:
			p.addf("%s: memory request %s is below the limit %s: an early eviction candidate under node memory pressure; request the limit", cw, req.String(), lim.String())
		}
	}
	// The pod's ephemeral storage limit (its containers') must hold its
	// emptyDir volumes, which count against it.
	if lim, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]; ok {
		var dirs resource.Quantity
		for _, v := range spec.Volumes {
			if v.EmptyDir == nil || v.EmptyDir.Medium == corev1.StorageMediumMemory {
				continue
			}
			if v.EmptyDir.SizeLimit == nil {
				p.addf("%s: emptyDir %s has no sizeLimit", where, v.Name)
				continue
			}
			dirs.Add(*v.EmptyDir.SizeLimit)
		}
		if dirs.Cmp(lim) >= 0 {
			p.addf("%s: ephemeral-storage limit %s does not cover the emptyDir volumes (%s) and the container's logs", cw, lim.String(), dirs.String())
		}
	}
	checkGoMemLimit(p, cw, c)

	// Spread across nodes.
	spread := false
	for _, tsc := range spec.TopologySpreadConstraints {
		if tsc.TopologyKey != "kubernetes.io/hostname" {
			continue
		}
		if sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector); err == nil && tsc.LabelSelector != nil && !sel.Empty() && sel.Matches(podLabels) {
			spread = true
		} else {
			p.addf("%s: hostname topology spread selector does not match the pod labels", where)
		}
	}
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, t := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			spread = spread || t.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname"
		}
		for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			spread = spread || t.TopologyKey == "kubernetes.io/hostname"
		}
	}
	if !spread {
		p.addf("%s: no topology spread or anti-affinity across nodes", where)
	}

	// Service account without a token.
	if !isFalse(spec.AutomountServiceAccountToken) {
		p.addf("%s: pod automountServiceAccountToken is not false", where)
	}
	if sa, ok := w.serviceAccounts[spec.ServiceAccountName]; !ok {
		p.addf("%s: ServiceAccount %q is not among the objects", where, spec.ServiceAccountName)
	} else if !isFalse(sa.AutomountServiceAccountToken) {
		p.addf("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name)
	}

	// Volumes: each mount has a volume; ConfigMaps exist; the config file
	// comes from a mounted ConfigMap key, and the TLS and CA files from
	// mounted Secret keys.
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		if v.ConfigMap != nil {
			if _, ok := w.configMaps[v.ConfigMap.Name]; !ok {
				p.addf("%s: volume %s uses ConfigMap %q, which is not among the objects", where, v.Name, v.ConfigMap.Name)
			}
		}
	}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			p.addf("%s: mount %s has no volume", cw, m.Name)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if v, ok := env["GOGC"]; ok && v != "off" {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			p.addf("%s: GOGC %q is not a positive percentage or off", cw, v)
		}
	}
	if env["AUTHZ_CONFIG"] != configPath {
		p.addf("%s: AUTHZ_CONFIG is %q, want %q", cw, env["AUTHZ_CONFIG"], configPath)
	} else if src, key, err := w.fileSource(c, volumes, configPath); err != nil {
		p.addf("%s: %s: %v", cw, configPath, err)
	} else if src.ConfigMap == nil {
		p.addf("%s: %s is not from a ConfigMap", cw, configPath)
	} else if cm := w.configMaps[src.ConfigMap.Name]; cm != nil {
		data, ok := cm.Data[key]
		if !ok {
			p.addf("ConfigMap %s: no key %s", cm.Name, key)
		} else if cfg, err := parseServerFile(data, env); err != nil {
			p.addf("ConfigMap %s: %s: %v", cm.Name, key, err)
		} else {
			w.config = cfg
			w.checkConfig(p, cfg, c)
		}
	}
	for _, name := range secretFileVars {
		f, ok := env[name]
		if !ok {
			continue
		}
		if src, _, err := w.fileSource(c, volumes, f); err != nil {
			p.addf("%s: %s %s: %v", cw, name, f, err)
		} else if src.Secret == nil || src.Secret.SecretName == "" {
			p.addf("%s: %s %s is not from a Secret", cw, name, f)
		}
		// A subPath mount is a copy taken at start: a rotated certificate
		// would never reach the pod, and the server reloads only what changes.
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" && (m.MountPath == f || strings.HasPrefix(f, strings.TrimSuffix(m.MountPath, "/")+"/")) {
				p.addf("%s: %s %s is mounted with subPath %s: updates of the Secret never reach the pod", cw, name, f, m.SubPath)
			}
		}
	}

	// Graceful stop: preStop pause, then the server's shutdown grace, both
	// inside terminationGracePeriodSeconds.
	var pause time.Duration
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		p.addf("%s: no preStop hook", cw)
	} else if s := c.Lifecycle.PreStop.Sleep; s != nil {
		pause = time.Duration(s.Seconds) * time.Second
		if pause <= 0 {
			p.addf("%s: preStop sleep of %v", cw, pause)
		}
	} else {
		p.addf("%s: preStop is not a sleep action (the image has no shell)", cw)
	}
	grace := defaultShutdownGrace
	if w.config != nil {
		grace = w.config.ShutdownGrace
	}
	if spec.TerminationGracePeriodSeconds == nil {
		p.addf("%s: terminationGracePeriodSeconds is not set", where)
	} else if tg := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; tg <= pause+grace {
		p.addf("%s: terminationGracePeriodSeconds %v does not cover the preStop pause %v plus shutdown grace %v", where, tg, pause, grace)
	}
}

// fileSource finds the volume and key that provide file f in container c.
func (w *workload) fileSource(c *corev1.Container, volumes map[string]corev1.Volume, f string) (corev1.VolumeSource, string, error) {
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/")
		rel, ok := strings.CutPrefix(f, dir+"/")
		if !ok {
			continue
		}
		v, ok := volumes[m.Name]
		if !ok {
			return corev1.VolumeSource{}, "", fmt.Errorf("mount %s has no volume", m.Name)
		}
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
		case v.Secret != nil:
			items = v.Secret.Items
		default:
			return corev1.VolumeSource{}, "", fmt.Errorf("volume %s is neither a ConfigMap nor a Secret", v.Name)
		}
		key := rel
		if len(items) > 0 {
			key = ""
			for _, it := range items {
				if path.Clean(it.Path) == rel {
					key = it.Key
				}
			}
			if key == "" {
				return corev1.VolumeSource{}, "", fmt.Errorf("volume %s does not project %s", v.Name, rel)
			}
		}
		return v.VolumeSource, key, nil
	}
	return corev1.VolumeSource{}, "", errors.New("no volume is mounted there")
}

func (w *workload) checkNetworkPolicy(p *problems, np *networkingv1.NetworkPolicy, c *corev1.Container) {
	where := "NetworkPolicy " + np.Name
	if sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil || sel.Empty() || !sel.Matches(labels.Set(w.deployment.Spec.Template.Labels)) {
		p.addf("%s: podSelector does not select the pods", where)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		p.addf("%s: policyTypes %v, want Ingress and Egress", where, np.Spec.PolicyTypes)
	}
	admitted := map[string]bool{}
	merging := istioMergesMetrics(w.deployment.Spec.Template.Annotations)
	for i, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			p.addf("%s: ingress rule %d admits every source", where, i)
		}
		if len(r.Ports) == 0 {
			p.addf("%s: ingress rule %d opens every port", where, i)
		}
		var admin, status bool
		for _, pt := range r.Ports {
			if pt.Port == nil {
				p.addf("%s: ingress rule %d opens every port", where, i)
				continue
			}
			if *pt.Port == intstr.FromInt32(istioStatusPort) {
				status = true // an injected sidecar's agent, not a container port of ours
				continue
			}
			cp, ok := containerPort(c, *pt.Port)
			if !ok {
				p.addf("%s: ingress rule %d port %s is not a container port", where, i, pt.Port.String())
				continue
			}
			admitted[cp.Name] = true
			admin = admin || cp.Name == "admin"
		}
		// With a sidecar, Istio's injector points prometheus.io/port at its
		// agent's status port (metrics merging): whoever may scrape the
		// admin port must reach that port too, or scraping stops the day the
		// pod gets a sidecar.
		switch {
		case admin && merging && !status:
			p.addf("%s: ingress rule %d admits the admin port but not %d, where Prometheus scrapes once a sidecar merges the metrics (or annotate the pod %s: \"false\")", where, i, istioStatusPort, istioMergeMetricsAnnotation)
		case status && !admin:
			p.addf("%s: ingress rule %d opens Istio's status port %d outside the metrics rule", where, i, istioStatusPort)
		}
	}
	for _, name := range []string{"grpc", "http"} {
		if !admitted[name] {
			p.addf("%s: no ingress rule for the %s port", where, name)
		}
	}
	egress := map[string]bool{}
	for i, r := range np.Spec.Egress {
		if len(r.Ports) == 0 {
			p.addf("%s: egress rule %d allows every port", where, i)
		}
		for _, pt := range r.Ports {
			proto := corev1.ProtocolTCP
			if pt.Protocol != nil {
				proto = *pt.Protocol
			}
			if pt.Port == nil {
				p.addf("%s: egress rule %d allows every port", where, i)
				continue
			}
			egress[fmt.Sprintf("%s/%s", proto, pt.Port.String())] = true
		}
	}
	for _, want := range []string{"UDP/53", "TCP/53", "TCP/443"} {
		if !egress[want] {
			p.addf("%s: no egress to %s (DNS and JWKS over HTTPS)", where, want)
		}
	}
}

// containerPort resolves a named or numbered port against c's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

// parseServerFile loads config.yaml with the server's own loader (config.Load
// with --config and an empty environment), so a key the server rejects fails
// here too, and checks that it has providers and rules.
// secretFileVars are the variables that name a file the server reads from a
// Secret: the serving certificate, key and client CA, and the JWKS CA
// (SSL_CERT_FILE, Go's own, replaces the system roots).
var secretFileVars = []string{"AUTHZ_TLS_CERT_FILE", "AUTHZ_TLS_KEY_FILE", "AUTHZ_TLS_CLIENT_CA_FILE", "AUTHZ_JWKS_CA_FILE", "SSL_CERT_FILE"}

// parseServerFile loads the config file the way the server does, with the
// container's AUTHZ_* variables (but AUTHZ_CONFIG, which names the file
// where it is mounted) as its environment, so that the settings the
// manifests pass as variables are validated too.
func parseServerFile(data string, containerEnv map[string]string) (*config.Config, error) {
	dir, err := os.MkdirTemp("", "extauthz-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		return nil, err
	}
	lookup := func(name string) (string, bool) {
		if name == "AUTHZ_CONFIG" || !strings.HasPrefix(name, "AUTHZ_") {
			return "", false
		}
		v, ok := containerEnv[name]
		return v, ok
	}
	cfg, err := config.Load([]string{"--config", f}, lookup, io.Discard)
	if err != nil {
		return nil, err
	}
	var p problems
	if len(cfg.Providers) == 0 {
		p.addf("no providers")
	}
	if len(cfg.Rules) == 0 {
		p.addf("no rules")
	}
	return cfg, p.err()
}

// claimHeaders returns the header names the server emits on allow, sorted.
func claimHeaders(cfg *config.Config) []string {
	hs := cfg.ClaimHeaders
	if len(hs) == 0 {
		hs = authz.DefaultClaimHeaders()
	}
	return slices.Sorted(maps.Keys(hs))
}

// checkConfig cross-checks the config file's listen addresses with the
// container ports, and checks that the HTTP check reads the original request
// from one place.
func (w *workload) checkConfig(p *problems, cfg *config.Config, c *corev1.Container) {
	// auto would accept either header family, so a proxy that passes client
	// headers on would let a client pick the path that is checked.
	if cfg.ForwardAuthSource == "" || cfg.ForwardAuthSource == authz.SourceAuto {
		p.addf("config forward_auth_source %q: pin it to the front (request for Istio and Envoy's HTTP mode)", cfg.ForwardAuthSource)
	}
	for _, a := range []struct{ key, port, addr string }{
		{"grpc_addr", "grpc", cfg.GRPCAddr},
		{"http_addr", "http", cfg.HTTPAddr},
		{"admin_addr", "admin", cfg.AdminAddr},
	} {
		_, port, err := net.SplitHostPort(a.addr)
		n, err2 := strconv.Atoi(port)
		if err != nil || err2 != nil {
			p.addf("config %s: %q is not host:port", a.key, a.addr)
			continue
		}
		cp, ok := containerPort(c, intstr.FromString(a.port))
		if !ok || int(cp.ContainerPort) != n {
			p.addf("config %s %q does not listen on the container's %s port %d", a.key, a.addr, a.port, cp.ContainerPort)
		}
	}
}
