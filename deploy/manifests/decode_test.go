package manifests_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// object is one decoded YAML document.
type object struct {
	source     string // file name and document number, for messages
	apiVersion string
	kind       string
	name       string
	namespace  string
	value      any // a pointer to the real type: *appsv1.Deployment, *authorizationPolicy, ...
}

func (o object) String() string {
	return fmt.Sprintf("%s (%s %s)", o.source, o.kind, o.name)
}

// decoders maps "apiVersion kind" to a strict decoder into the real type. A
// document of any other kind fails decoding.
var decoders = map[string]func(doc []byte) (any, error){
	"v1 Namespace":                                  strictInto[corev1.Namespace],
	"v1 ServiceAccount":                             strictInto[corev1.ServiceAccount],
	"v1 ConfigMap":                                  strictInto[corev1.ConfigMap],
	"v1 Secret":                                     strictInto[corev1.Secret],
	"v1 Service":                                    strictInto[corev1.Service],
	"apps/v1 Deployment":                            strictInto[appsv1.Deployment],
	"policy/v1 PodDisruptionBudget":                 strictInto[policyv1.PodDisruptionBudget],
	"autoscaling/v2 HorizontalPodAutoscaler":        strictInto[autoscalingv2.HorizontalPodAutoscaler],
	"networking.k8s.io/v1 NetworkPolicy":            strictInto[networkingv1.NetworkPolicy],
	"monitoring.coreos.com/v1 ServiceMonitor":       strictInto[monitoringv1.ServiceMonitor],
	"security.istio.io/v1 AuthorizationPolicy":      decodeAuthorizationPolicy,
	"networking.istio.io/v1 DestinationRule":        decodeDestinationRule,
	"security.istio.io/v1beta1 AuthorizationPolicy": decodeAuthorizationPolicy,
	"install.istio.io/v1alpha1 IstioOperator":       decodeIstioOperator,
	"kustomize.config.k8s.io/v1beta1 Kustomization": strictInto[kustomization],
	"kustomize.config.k8s.io/v1alpha1 Component":    strictInto[kustomization],
}

// strictInto decodes doc into a new T twice: with sigs.k8s.io/yaml's
// UnmarshalStrict (duplicate keys, unknown fields, wrong types) and with
// sigs.k8s.io/json's UnmarshalStrict, the apiserver's decoder, which also
// rejects a field whose case differs (encoding/json would accept
// "imagePullpolicy" for imagePullPolicy).
func strictInto[T any](doc []byte) (any, error) {
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	v = new(T)
	strictErrs, err := kjson.UnmarshalStrict(js, v)
	if err != nil {
		return nil, err
	}
	if len(strictErrs) > 0 {
		return nil, errors.Join(strictErrs...)
	}
	return v, nil
}

// protoStrict decodes JSON into m with protojson, rejecting unknown fields.
func protoStrict(js []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(js, m)
}

// authorizationPolicy is the Kubernetes envelope of an Istio
// AuthorizationPolicy; Spec is the istio.io/api message.
type authorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	RawSpec           json.RawMessage `json:"spec"`

	Spec *securityv1beta1.AuthorizationPolicy `json:"-"`
}

// destinationRule is the Kubernetes envelope of an Istio DestinationRule
// (the one NOTES.txt prints for serving TLS); Spec is the istio.io/api
// message.
type destinationRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	RawSpec           json.RawMessage `json:"spec"`

	Spec *networkingv1alpha3.DestinationRule `json:"-"`
}

func decodeDestinationRule(doc []byte) (any, error) {
	v, err := strictInto[destinationRule](doc)
	if err != nil {
		return nil, err
	}
	dr := v.(*destinationRule)
	dr.Spec = &networkingv1alpha3.DestinationRule{}
	if err := protoStrict(dr.RawSpec, dr.Spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return dr, nil
}

func decodeAuthorizationPolicy(doc []byte) (any, error) {
	v, err := strictInto[authorizationPolicy](doc)
	if err != nil {
		return nil, err
	}
	ap := v.(*authorizationPolicy)
	ap.Spec = &securityv1beta1.AuthorizationPolicy{}
	if err := protoStrict(ap.RawSpec, ap.Spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return ap, nil
}

// istioOperator models only the part of install.istio.io/v1alpha1
// IstioOperator this repository uses (its Go type lives in istio/istio, not
// istio.io/api); spec.meshConfig is decoded into the real MeshConfig.
type istioOperator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MeshConfig json.RawMessage `json:"meshConfig"`
	} `json:"spec"`

	MeshConfig *meshv1alpha1.MeshConfig `json:"-"`
}

func decodeIstioOperator(doc []byte) (any, error) {
	v, err := strictInto[istioOperator](doc)
	if err != nil {
		return nil, err
	}
	op := v.(*istioOperator)
	op.MeshConfig, err = decodeMeshConfig(op.Spec.MeshConfig)
	if err != nil {
		return nil, fmt.Errorf("spec.meshConfig: %w", err)
	}
	return op, nil
}

// istiodValues models the part of the istiod Helm chart's values this
// repository sets.
type istiodValues struct {
	MeshConfig json.RawMessage `json:"meshConfig"`
}

func decodeIstiodValues(doc []byte) (*meshv1alpha1.MeshConfig, error) {
	v, err := strictInto[istiodValues](doc)
	if err != nil {
		return nil, err
	}
	m, err := decodeMeshConfig(v.(*istiodValues).MeshConfig)
	if err != nil {
		return nil, fmt.Errorf("meshConfig: %w", err)
	}
	return m, nil
}

func decodeMeshConfig(js []byte) (*meshv1alpha1.MeshConfig, error) {
	if len(js) == 0 || string(js) == "null" {
		return nil, errors.New("missing")
	}
	m := &meshv1alpha1.MeshConfig{}
	if err := protoStrict(js, m); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeMeshConfigYAML decodes a YAML MeshConfig fragment (as printed by the
// chart's NOTES.txt).
func decodeMeshConfigYAML(doc []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	return decodeMeshConfig(js)
}

// kustomization models the kustomize.config.k8s.io fields this repository
// uses; anything else in a kustomization.yaml fails decoding.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Components []string `json:"components,omitempty"`
	Patches    []struct {
		Path   string `json:"path,omitempty"`
		Patch  string `json:"patch,omitempty"` // an inline JSON 6902 or strategic-merge patch
		Target *struct {
			Group   string `json:"group,omitempty"`
			Version string `json:"version,omitempty"`
			Kind    string `json:"kind,omitempty"`
			Name    string `json:"name,omitempty"`
		} `json:"target,omitempty"`
	} `json:"patches,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// decodeAll splits a multi-document YAML stream and decodes each non-empty
// document strictly into its real type.
func decodeAll(source string, data []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []object
	var errs []error
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		src := fmt.Sprintf("%s#%d", source, i)
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src, err))
			continue
		}
		if t := strings.TrimSpace(string(js)); t == "null" || t == "" {
			continue // only comments or an empty document
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src, err))
			continue
		}
		decode, ok := decoders[head.APIVersion+" "+head.Kind]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown kind %q in apiVersion %q", src, head.Kind, head.APIVersion))
			continue
		}
		v, err := decode(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s %s: %w", src, head.Kind, head.Metadata.Name, err))
			continue
		}
		objs = append(objs, object{
			source:     src,
			apiVersion: head.APIVersion,
			kind:       head.Kind,
			name:       head.Metadata.Name,
			namespace:  head.Metadata.Namespace,
			value:      v,
		})
	}
	return objs, errors.Join(errs...)
}
