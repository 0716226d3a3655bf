package check

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const k8sDir = repo + "/deploy/kubernetes"

// decodeStrict decodes one YAML document into v, refusing unknown fields
// (a misspelt or misplaced field is an error, as `kubectl apply
// --validate=strict` would say).
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// k8sTypes are the kinds the manifests may use, with their API versions.
var k8sTypes = map[string]func() any{
	"Namespace": func() any { return &corev1.Namespace{} }, "Deployment": func() any { return &appsv1.Deployment{} },
	"StatefulSet": func() any { return &appsv1.StatefulSet{} }, "Service": func() any { return &corev1.Service{} },
	"PersistentVolumeClaim": func() any { return &corev1.PersistentVolumeClaim{} }, "Secret": func() any { return &corev1.Secret{} },
	"PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} }, "Ingress": func() any { return &networkingv1.Ingress{} },
	"NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
}
var k8sAPIVersions = map[string]string{"Deployment": "apps/v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1",
	"Ingress": "networking.k8s.io/v1", "NetworkPolicy": "networking.k8s.io/v1"}

// manifests reads every document of the kustomization's resources and of
// secrets.example.yaml, decoded strictly into its Kubernetes type.
func manifests(t *testing.T) map[string]any {
	t.Helper()
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
	}
	b, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(b, &kust); err != nil || kust.Kind != "Kustomization" || len(kust.Resources) == 0 {
		t.Fatalf("kustomization.yaml: %v %+v", err, kust)
	}
	out := map[string]any{}
	for _, file := range append(kust.Resources, "secrets.example.yaml") {
		b, err := os.ReadFile(filepath.Join(k8sDir, file))
		if err != nil {
			t.Fatalf("kustomization resource %s: %v", file, err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal(doc, &head); err != nil || head.Kind == "" {
				t.Errorf("%s document %d: no kind (%v)", file, i, err)
				continue
			}
			if want := k8sAPIVersions[head.Kind]; want == "" && head.APIVersion != "v1" || want != "" && head.APIVersion != want {
				t.Errorf("%s: %s has apiVersion %s", file, head.Kind, head.APIVersion)
			}
			mk := k8sTypes[head.Kind]
			if mk == nil {
				t.Errorf("%s: kind %s is not checked; add it to the test", file, head.Kind)
				continue
			}
			v := mk()
			if err := decodeStrict(doc, v); err != nil {
				t.Errorf("%s: %s: %v", file, head.Kind, err)
				continue
			}
			var meta struct{ Metadata struct{ Name string } }
			_ = yaml.Unmarshal(doc, &meta)
			out[head.Kind+"/"+meta.Metadata.Name] = v
		}
	}
	return out
}

// TestKubernetesManifests: every manifest decodes strictly into the
// Kubernetes API types, and the medcall Deployment is what docs/deployment.md
// promises: probes on /healthz and /readyz, graceful drain, non-root with a
// read-only root and no capabilities, resource requests, keys from Secrets,
// flags serve knows, a PodDisruptionBudget over its pods.
func TestKubernetesManifests(t *testing.T) {
	objs := manifests(t)
	d, ok := objs["Deployment/medcall"].(*appsv1.Deployment)
	if !ok {
		t.Fatalf("no Deployment medcall among %v", keys(objs))
	}
	pod := d.Spec.Template.Spec
	if !pod.HostNetwork || d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxSurge.IntValue() != 0 {
		t.Error("medcall: hostNetwork with maxSurge 0 (a new pod cannot bind the node's ports before the old one leaves)")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("medcall: %d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	var env []string
	for _, e := range c.Env {
		env = append(env, e.Name)
		if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "KEY") {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("medcall: %s must come from a Secret", e.Name)
			}
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("medcall args %v do not start with serve", c.Args)
	}
	checkServeArgs(t, "deploy/kubernetes/medcall.yaml", c.Args, env)
	shutdown := 10 * time.Second
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--shutdown-timeout="); ok {
			shutdown, _ = time.ParseDuration(v)
		}
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("medcall %s probe: want GET %s on the admin port, got %+v", name, path, p)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("startup", c.StartupProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("medcall: no preStop pause (the image has no shell, so it must be a sleep action)")
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < pause+shutdown {
		t.Errorf("medcall: termination grace %v shorter than preStop %v + --shutdown-timeout %v", g, pause, shutdown)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("medcall container securityContext %+v: want read-only root, no privilege escalation, drop ALL", sc)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.SeccompProfile == nil {
		t.Errorf("medcall pod securityContext %+v: want non-root user and a seccomp profile", psc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("medcall: no CPU or memory request")
	}
	secrets := map[string]bool{}
	for k := range objs {
		if name, ok := strings.CutPrefix(k, "Secret/"); ok {
			secrets[name] = true
		}
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && !secrets[v.Secret.SecretName] {
			t.Errorf("volume %s: Secret %s not in secrets.example.yaml", v.Name, v.Secret.SecretName)
		}
		if v.PersistentVolumeClaim != nil && objs["PersistentVolumeClaim/"+v.PersistentVolumeClaim.ClaimName] == nil {
			t.Errorf("volume %s: no PersistentVolumeClaim %s", v.Name, v.PersistentVolumeClaim.ClaimName)
		}
	}
	for _, e := range c.Env {
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && !secrets[r.SecretKeyRef.Name] {
			t.Errorf("env %s: Secret %s not in secrets.example.yaml", e.Name, r.SecretKeyRef.Name)
		}
	}
	pdb, ok := objs["PodDisruptionBudget/medcall"].(*policyv1.PodDisruptionBudget)
	if !ok || pdb.Spec.Selector == nil || !matches(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Error("no PodDisruptionBudget selecting the medcall pods")
	}
	svc, ok := objs["Service/medcall"].(*corev1.Service)
	if !ok || !matches(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Error("no Service selecting the medcall pods")
	}
	t.Logf("%d objects decoded strictly: %v", len(objs), keys(objs))
}

func matches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestKustomizeRenders renders the single-node kustomization (with the
// kustomize library, and with kubectl too where it is installed) and decodes
// the result strictly.
func TestKustomizeRenders(t *testing.T) {
	if n := len(kustomize(t, k8sDir)); n < 9 {
		t.Errorf("kustomize rendered %d objects", n)
	}
}
