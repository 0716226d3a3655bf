package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const k8sClusterDir = repo + "/deploy/kubernetes-cluster"

// kustomize renders the kustomization in dir with the kustomize library
// (what `kubectl kustomize` runs, so CI needs no kubectl) and, where kubectl
// is installed, with `kubectl kustomize` too, which must render the same
// objects. It returns every rendered object strictly decoded, by
// Kind/name, after checking each is in namespace medcall.
func kustomize(t *testing.T, dir string) map[string]any {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeRendered(t, out)
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		b, err := exec.Command(kubectl, "kustomize", dir).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v %s", dir, err, exitStderr(err))
		}
		if a, b := keys(objs), keys(decodeRendered(t, b)); !slices.Equal(sorted(a), sorted(b)) {
			t.Errorf("kubectl kustomize %s renders %v, the kustomize library %v", dir, b, a)
		}
	}
	return objs
}

func decodeRendered(t *testing.T, out []byte) map[string]any {
	t.Helper()
	objs := map[string]any{}
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var obj struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil || k8sTypes[obj.Kind] == nil {
			t.Fatalf("rendered object of kind %q: %v", obj.Kind, err)
		}
		v := k8sTypes[obj.Kind]()
		if err := decodeStrict(doc, v); err != nil {
			t.Errorf("rendered %s/%s: %v", obj.Kind, obj.Metadata.Name, err)
		}
		if obj.Kind != "Namespace" && obj.Metadata.Namespace != "medcall" {
			t.Errorf("rendered %s/%s is not in namespace medcall", obj.Kind, obj.Metadata.Name)
		}
		objs[obj.Kind+"/"+obj.Metadata.Name] = v
	}
	return objs
}

func sorted(s []string) []string { slices.Sort(s); return s }

// exampleSecrets are the names of the Secrets the example files describe.
func exampleSecrets(t *testing.T, files ...string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			var s corev1.Secret
			if err := decodeStrict(doc, &s); err != nil || s.Kind != "Secret" {
				t.Fatalf("%s: not a Secret: %v", f, err)
			}
			names[s.Name] = true
		}
	}
	return names
}

// secretRefs checks that every Secret a pod reads is described in the
// example files.
func secretRefs(t *testing.T, what string, pod corev1.PodSpec, secrets map[string]bool) {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Secret != nil && !secrets[v.Secret.SecretName] {
			t.Errorf("%s volume %s: Secret %s is in no secrets.example.yaml", what, v.Name, v.Secret.SecretName)
		}
	}
	for _, c := range pod.Containers {
		for _, e := range c.Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && !secrets[r.SecretKeyRef.Name] {
				t.Errorf("%s env %s: Secret %s is in no secrets.example.yaml", what, e.Name, r.SecretKeyRef.Name)
			}
		}
	}
}

var minioPool = regexp.MustCompile(`^http://([a-z0-9-]+)-\{0\.\.\.(\d+)\}\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:9000(/\S+)$`)

// TestKubernetesCluster renders the cluster overlay and checks it is what
// docs/cluster.md and docs/deployment.md promise: several medcall nodes in
// cluster mode (Redis URL from a Secret, each node's own URL and id, drain
// within the grace period), a Redis whose every write is fsynced to a
// persistent volume, and a distributed MinIO of four pods with a drive
// each in one erasure set, reached by stable names through a headless
// Service.
func TestKubernetesCluster(t *testing.T) {
	objs := kustomize(t, k8sClusterDir)
	secrets := exampleSecrets(t, k8sDir+"/secrets.example.yaml", k8sClusterDir+"/secrets.example.yaml")

	d, ok := objs["Deployment/medcall"].(*appsv1.Deployment)
	if !ok {
		t.Fatalf("no Deployment medcall among %v", keys(objs))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("medcall: %v replicas; a cluster has several", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	env := map[string]corev1.EnvVar{}
	var envNames []string
	for _, e := range c.Env {
		env[e.Name] = e
		envNames = append(envNames, e.Name)
	}
	checkServeArgs(t, "deploy/kubernetes-cluster", c.Args, envNames)
	args := map[string]string{}
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(a, "="); ok {
			args[k] = v
		}
	}
	if r := env["MEDCALL_REDIS_URL"].ValueFrom; r == nil || r.SecretKeyRef == nil || args["--redis-url"] != "" {
		t.Error("medcall: the Redis URL (it may hold a password) must come from a Secret in MEDCALL_REDIS_URL, not the command line")
	}
	// Redirects send clients to --node-url: it must name this pod's node,
	// over TLS, on the port the pod serves.
	nodeURL := args["--node-url"]
	if f := env["NODE_NAME"].ValueFrom; !strings.HasPrefix(nodeURL, "wss://$(NODE_NAME).") || f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("medcall --node-url %q: want wss://$(NODE_NAME).… with NODE_NAME from spec.nodeName", nodeURL)
	}
	if _, port, _ := strings.Cut(args["--addr"], ":"); !strings.Contains(nodeURL, ":"+port+"/v1/signal") || args["--tls-cert"] == "" || args["--tls-key"] == "" {
		t.Errorf("medcall serves %s (TLS %q) but announces %s", args["--addr"], args["--tls-cert"], nodeURL)
	}
	if f := env["POD_NAME"].ValueFrom; args["--node-id"] != "$(POD_NAME)" || f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("medcall --node-id %q: want $(POD_NAME), unique per pod", args["--node-id"])
	}
	mounted := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounted[m.MountPath] = m.Name
	}
	if mounted[filepath.Dir(args["--tls-cert"])] == "" {
		t.Errorf("medcall --tls-cert %s is on no mounted volume", args["--tls-cert"])
	}
	drain, _ := time.ParseDuration(args["--drain-timeout"])
	shutdown, _ := time.ParseDuration(args["--shutdown-timeout"])
	if drain == 0 || shutdown == 0 {
		t.Errorf("medcall: --drain-timeout %q and --shutdown-timeout %q must be set", args["--drain-timeout"], args["--shutdown-timeout"])
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < pause+drain+shutdown {
		t.Errorf("medcall: termination grace %v shorter than preStop %v + drain %v + shutdown %v", *g, pause, drain, shutdown)
	}
	secretRefs(t, "medcall", pod, secrets)

	checkRedis(t, objs, secrets)
	checkDistributedMinIO(t, objs, secrets)
}

func checkRedis(t *testing.T, objs map[string]any, secrets map[string]bool) {
	t.Helper()
	r, ok := objs["StatefulSet/redis"].(*appsv1.StatefulSet)
	if !ok {
		t.Fatalf("no StatefulSet redis among %v", keys(objs))
	}
	c := r.Spec.Template.Spec.Containers[0]
	cmd := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	for _, want := range []string{"redis-server", "--appendonly yes", "--appendfsync always", "--dir /data"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis runs %q: missing %q (a binding must be on disk before it is acknowledged)", cmd, want)
		}
	}
	if strings.Contains(cmd, "requirepass") {
		t.Error("redis: the password is on the command line; put it in the config file from the Secret")
	}
	data := false
	for _, m := range c.VolumeMounts {
		data = data || m.MountPath == "/data" && slices.ContainsFunc(r.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name })
	}
	if !data {
		t.Error("redis: /data (the append-only file) is not on a persistent volume claim")
	}
	secretRefs(t, "redis", r.Spec.Template.Spec, secrets)
	if svc, ok := objs["Service/redis"].(*corev1.Service); !ok || !matches(svc.Spec.Selector, r.Spec.Template.Labels) {
		t.Error("no Service redis selecting the redis pod")
	}
}

func checkDistributedMinIO(t *testing.T, objs map[string]any, secrets map[string]bool) {
	t.Helper()
	m, ok := objs["StatefulSet/minio"].(*appsv1.StatefulSet)
	if !ok {
		t.Fatalf("no StatefulSet minio among %v", keys(objs))
	}
	replicas := int32(1)
	if m.Spec.Replicas != nil {
		replicas = *m.Spec.Replicas
	}
	c := m.Spec.Template.Spec.Containers[0]
	var pools []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "http") {
			pools = append(pools, a)
		}
	}
	if len(pools) != 1 {
		t.Fatalf("minio args %v: want one pool of endpoint URLs", c.Args)
	}
	p := minioPool.FindStringSubmatch(pools[0])
	if p == nil {
		t.Fatalf("minio pool %q: want http://NAME-{0...N}.SERVICE.NAMESPACE.svc.cluster.local:9000/PATH", pools[0])
	}
	last, _ := strconv.Atoi(p[2])
	if p[1] != m.Name || int32(last+1) != replicas || p[3] != m.Spec.ServiceName || p[4] != "medcall" {
		t.Errorf("minio pool %q does not name the %d pods %s-N of Service %s in namespace medcall", pools[0], replicas, m.Name, m.Spec.ServiceName)
	}
	if replicas < 4 {
		t.Errorf("minio: %d pods of one drive each; erasure coding that survives a lost pod needs at least 4", replicas)
	}
	if m.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Error("minio: pods must start in parallel (each waits for its peers before it is ready)")
	}
	drive := false
	for _, vm := range c.VolumeMounts {
		drive = drive || vm.MountPath == p[5] && slices.ContainsFunc(m.Spec.VolumeClaimTemplates, func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == vm.Name })
	}
	if !drive {
		t.Errorf("minio: the drive %s is not on a per-pod persistent volume claim", p[5])
	}
	hl, ok := objs["Service/"+m.Spec.ServiceName].(*corev1.Service)
	if !ok || hl.Spec.ClusterIP != corev1.ClusterIPNone || !hl.Spec.PublishNotReadyAddresses || !matches(hl.Spec.Selector, m.Spec.Template.Labels) {
		t.Errorf("minio: Service %s must be headless, publish not-ready pods and select the minio pods", m.Spec.ServiceName)
	}
	pdb, ok := objs["PodDisruptionBudget/minio"].(*policyv1.PodDisruptionBudget)
	if !ok || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || !matches(pdb.Spec.Selector.MatchLabels, m.Spec.Template.Labels) {
		t.Error("minio: no PodDisruptionBudget letting at most one pod go")
	}
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	}
	if !env["MINIO_ROOT_USER"] || !env["MINIO_ROOT_PASSWORD"] {
		t.Error("minio: root credentials must come from a Secret")
	}
	secretRefs(t, "minio", m.Spec.Template.Spec, secrets)
}
