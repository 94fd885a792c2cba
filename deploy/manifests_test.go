// Package deploy holds the deployment files of the BFF (Dockerfile,
// compose.yaml, HAProxy and Kubernetes manifests) and the test that
// checks the manifests. It is a module of its own so that the service's
// module does not require the Kubernetes API types.
package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// manifests decodes every document of k8s/*.yaml strictly into its
// Kubernetes API type: an unknown or misspelt field, a wrong type or an
// unknown kind fails.
func manifests(t *testing.T) []any {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	var out []any
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + "/" + tm.Kind {
			case "apps/v1/Deployment":
				obj = &appsv1.Deployment{}
			case "v1/Service":
				obj = &corev1.Service{}
			case "v1/ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1/Secret":
				obj = &corev1.Secret{}
			case "policy/v1/PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			case "autoscaling/v2/HorizontalPodAutoscaler":
				obj = &autoscalingv2.HorizontalPodAutoscaler{}
			case "batch/v1/Job":
				obj = &batchv1.Job{}
			default:
				t.Fatalf("%s #%d: unexpected kind %q of %q", f, i, tm.Kind, tm.APIVersion)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s #%d (%s): %v", f, i, tm.Kind, err)
			}
			out = append(out, obj)
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func only[T any](t *testing.T, objs []any) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want exactly one %T, found %d", zero, len(found))
	}
	return found[0]
}

// configTable returns the variable names `bff -h` lists (the config
// table of the service).
func configTable(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "run", "./cmd/bff", "-h")
	cmd.Dir = ".."
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // -h may exit non-zero; the table is what counts
	var names []string
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 && regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`).MatchString(f[0]) && f[0] != "VARIABLE" {
			names = append(names, f[0])
		}
	}
	if len(names) < 20 {
		t.Fatalf("`bff -h` listed %d variables:\n%s", len(names), out.String())
	}
	return names
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := manifests(t)
	dep := only[*appsv1.Deployment](t, objs)
	svc := only[*corev1.Service](t, objs)
	pdb := only[*policyv1.PodDisruptionBudget](t, objs)
	hpa := only[*autoscalingv2.HorizontalPodAutoscaler](t, objs)
	cm := only[*corev1.ConfigMap](t, objs)

	labels := dep.Spec.Template.Labels
	matches := func(sel map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if !matches(dep.Spec.Selector.MatchLabels) || !matches(svc.Spec.Selector) || !matches(pdb.Spec.Selector.MatchLabels) {
		t.Fatalf("selectors do not match the pod labels %v", labels)
	}
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Name {
		t.Fatalf("HPA targets %v", hpa.Spec.ScaleTargetRef)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || pdb.Spec.MaxUnavailable == nil {
		t.Fatalf("HPA min replicas %v, PDB %v: a disruption must leave instances serving", hpa.Spec.MinReplicas, pdb.Spec)
	}

	c := dep.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe: %+v", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/livez" {
		t.Errorf("liveness probe: %+v", c.LivenessProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no preStop sleep: %+v", c.Lifecycle)
	}
	grace, err := time.ParseDuration(cm.Data["SHUTDOWN_GRACE"])
	if err != nil {
		t.Fatalf("SHUTDOWN_GRACE in the ConfigMap: %v", err)
	}
	tgps := dep.Spec.Template.Spec.TerminationGracePeriodSeconds
	need := grace + time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second
	if tgps == nil || time.Duration(*tgps)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %v must exceed SHUTDOWN_GRACE + preStop = %s", tgps, need)
	}
	sc := dep.Spec.Template.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("pods must run as non-root")
	}
}

// TestManifestValuesLoad starts `bff migrate` with exactly the environment
// the ConfigMap and Secret give a pod, with the database pointed at a port
// where nothing listens: the configuration must load (a bad value fails
// first, naming its variable), and the command then fails on the
// database alone.
func TestManifestValuesLoad(t *testing.T) {
	objs := manifests(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.ConfigMap:
			for k, val := range v.Data {
				env = append(env, k+"="+val)
			}
		case *corev1.Secret:
			for k, val := range v.StringData {
				if k == "DATABASE_URL" || k == "DATABASE_MIGRATE_URL" {
					val = "postgres://bff@127.0.0.1:1/bff?sslmode=disable&connect_timeout=1"
				}
				env = append(env, k+"="+val)
			}
		}
	}
	bin := filepath.Join(t.TempDir(), "bff")
	build := exec.Command("go", "build", "-o", bin, "./cmd/bff")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bff: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "migrate")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("bff migrate succeeded against a closed port:\n%s", out)
	}
	if strings.Contains(string(out), "invalid ") || !regexp.MustCompile(`(?i)connect|dial|refused|unavailable`).Match(out) {
		t.Fatalf("the manifests' configuration did not load:\n%s", out)
	}
}

// TestManifestsCoverTheConfigTable: every variable the manifests set is
// one of `bff -h`, and the ConfigMap and Secret together set every one.
func TestManifestsCoverTheConfigTable(t *testing.T) {
	objs := manifests(t)
	table := configTable(t)
	set := map[string]string{} // variable -> where
	add := func(name, where string) {
		if prev, dup := set[name]; dup && prev != where {
			t.Errorf("%s is set in both %s and %s", name, prev, where)
		}
		set[name] = where
	}
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.ConfigMap:
			for k := range v.Data {
				add(k, "ConfigMap "+v.Name)
			}
		case *corev1.Secret:
			for k := range v.StringData {
				add(k, "Secret "+v.Name)
			}
			for k := range v.Data {
				add(k, "Secret "+v.Name)
			}
		}
	}
	var pods []corev1.PodSpec
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.Deployment:
			pods = append(pods, v.Spec.Template.Spec)
		case *batchv1.Job:
			pods = append(pods, v.Spec.Template.Spec)
		}
	}
	for _, p := range pods {
		for _, c := range append(slices.Clone(p.InitContainers), p.Containers...) {
			for _, e := range c.Env {
				if !slices.Contains(table, e.Name) {
					t.Errorf("container %s sets %s, which is not a variable of `bff -h`", c.Name, e.Name)
				}
			}
		}
	}
	for name, where := range set {
		if !slices.Contains(table, name) {
			t.Errorf("%s sets %s, which is not a variable of `bff -h` (a typo?)", where, name)
		}
	}
	var missing []string
	for _, name := range table {
		if _, ok := set[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("variables of `bff -h` in neither the ConfigMap nor the Secret (add them to deploy/k8s/configmap.yaml or secret.yaml): %s",
			strings.Join(missing, ", "))
	}
	if len(missing) == 0 {
		t.Logf("%d variables, all in the manifests", len(table))
	}
}
