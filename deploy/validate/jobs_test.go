package validate

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// A jobTemplate is a Job template of deploy/k8s/jobs: not part of any
// kustomization, every run a Job of its own, made by envsubst from the
// variables the operator exports (docs/operations.md).
type jobTemplate struct {
	file   string // under deploy/k8s/jobs
	binary string
	// filled are the container's variables (and "args" for its
	// arguments) whose value must be the operator's: a ${VAR} of envsubst.
	filled []string
	// runs are sets of values an operator may give, by what each is: every
	// one must give a configuration the binary accepts (TestEnvValuesValid).
	runs map[string]map[string]string
}

var jobTemplates = []jobTemplate{
	{
		file:   "reprocess.yaml",
		binary: "reprocess",
		filled: []string{"REPROCESS_PROPERTY", "REPROCESS_FROM", "REPROCESS_TO", "REPROCESS_RULES"},
		runs:   map[string]map[string]string{"a range": reprocessOperands},
	},
	{
		file:   "reprocess-all.yaml",
		binary: "reprocess",
		filled: []string{"REPROCESS_FROM", "REPROCESS_TO", "REPROCESS_PARALLEL", "REPROCESS_RUN"},
		runs: map[string]map[string]string{
			"every property": {"FROM": "2026-01-01", "TO": "2026-01-31", "PARALLEL": "2", "RUN": "2026-12-06T15:04:05Z"},
		},
	},
	{
		file:   "deadletters.yaml",
		binary: "deadletters",
		filled: []string{"args", "DEADLETTERS_SINCE", "DEADLETTERS_FROM", "DEADLETTERS_TRACKING_ID",
			"DEADLETTERS_REASON", "DEADLETTERS_STAGE", "DEADLETTERS_DRY_RUN"},
		runs: map[string]map[string]string{
			// The optional filters empty: the binary takes "" for unset.
			"list, no filter": {"COMMAND": "list", "SINCE": "", "FROM": "", "TRACKING_ID": "", "REASON": "", "STAGE": "", "DRY_RUN": "false"},
			"replay dry run, every filter": {"COMMAND": "replay", "SINCE": "72h", "FROM": "", "TRACKING_ID": "AT-0000000001",
				"REASON": "unknown_property", "STAGE": "processing", "DRY_RUN": "true"},
			"replay from a time": {"COMMAND": "replay", "SINCE": "", "FROM": "2026-01-01T00:00:00Z", "TRACKING_ID": "", "REASON": "", "STAGE": "", "DRY_RUN": "false"},
		},
	},
}

// imageVars are the variables of a template's image, not its binary's.
var imageVars = []string{"REGISTRY", "TAG"}

// readJobTemplate returns the text of a template.
func readJobTemplate(t *testing.T, jt jobTemplate) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "deploy", "k8s", "jobs", jt.file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fillJobTemplate is envsubst of the template with the operator's values
// vars, the image's variables left as they are.
func fillJobTemplate(t *testing.T, jt jobTemplate, text []byte, vars map[string]string) *batchv1.Job {
	t.Helper()
	filled := regexp.MustCompile(`\$\{([A-Z_]+)\}`).ReplaceAllFunc(text, func(m []byte) []byte {
		name := string(m[2 : len(m)-1])
		v, ok := vars[name]
		if !ok {
			if !slices.Contains(imageVars, name) {
				t.Errorf("jobs/%s: no value for ${%s}", jt.file, name)
			}
			return m
		}
		return []byte(v)
	})
	return decodeJob(t, jt, filled)
}

// decodeJob decodes a template's text, strictly, as the Job it must be.
func decodeJob(t *testing.T, jt jobTemplate, text []byte) *batchv1.Job {
	t.Helper()
	obj, _, err := decodeStrict(text)
	if err != nil {
		t.Fatalf("jobs/%s: %v", jt.file, err)
	}
	j, ok := obj.(*batchv1.Job)
	if !ok {
		t.Fatalf("jobs/%s holds a %T, want a Job", jt.file, obj)
	}
	return j
}

// TestJobTemplates: each Job template decodes strictly, runs its binary
// with the deployment's rules for its environment, refers only to
// ConfigMaps of the base and Secrets that create-secrets.sh makes, takes
// the operator's values where they belong, and names in its header's
// envsubst command exactly the variables it uses (envsubst leaves any other
// as written: the binary would get "${FROM}").
func TestJobTemplates(t *testing.T) {
	base := build(t, filepath.Join(root(t), "deploy", "k8s", "base"))
	secrets := declaredSecrets(t)
	files, err := filepath.Glob(filepath.Join(root(t), "deploy", "k8s", "jobs", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(jobTemplates, func(jt jobTemplate) bool { return jt.file == filepath.Base(f) }) {
			t.Errorf("jobs/%s is not in jobTemplates: it would go unchecked", filepath.Base(f))
		}
	}
	for _, jt := range jobTemplates {
		t.Run(jt.file, func(t *testing.T) {
			text := readJobTemplate(t, jt)
			j := decodeJob(t, jt, text)
			if j.GenerateName == "" || j.Name != "" {
				t.Errorf("the template must use generateName, so that every run is a Job of its own")
			}
			c := j.Spec.Template.Spec.Containers[0]
			if imageBinary(c.Image) != jt.binary {
				t.Errorf("image %s does not run %s", c.Image, jt.binary)
			}
			vars := map[string]corev1.EnvVar{}
			var names []string
			for _, e := range c.Env {
				vars[e.Name] = e
				names = append(names, e.Name)
				if e.ValueFrom == nil {
					continue
				}
				if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
					if _, err := base.configMapValue(ref); err != nil {
						t.Errorf("%s: %v", e.Name, err)
					}
				}
				if ref := e.ValueFrom.SecretKeyRef; ref != nil && !slices.Contains(secrets[ref.Name], ref.Key) {
					t.Errorf("%s: Secret %s key %s is not made by create-secrets.sh", e.Name, ref.Name, ref.Key)
				}
			}
			literal := func(n string) (string, bool) {
				e, ok := vars[n]
				return e.Value, ok && e.ValueFrom == nil
			}
			fromSecret := func(n string) bool { e := vars[n]; return e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil }
			for _, err := range envRules(jt.binary, names, literal, fromSecret) {
				t.Error(err)
			}
			if err := consulToken(vars, jt.binary); err != nil {
				t.Error(err)
			}
			for _, n := range jt.filled {
				v, _ := literal(n)
				if n == "args" {
					v = strings.Join(c.Args, " ")
				}
				if !regexp.MustCompile(`^\$\{[A-Z_]+\}$`).MatchString(v) {
					t.Errorf("%s = %q, want a placeholder the operator fills", n, v)
				}
			}
			if sc := j.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("the Job does not run as non-root")
			}
			// A job that holds a day's or a range's users in memory has a
			// GOMEMLIMIT within its memory limit, as processing has: the
			// collector works harder before the pod would be killed.
			if _, ok := vars["GOMEMLIMIT"]; !ok && jt.binary == "reprocess" {
				t.Errorf("no GOMEMLIMIT: the heap may grow past the container's memory limit before the collector runs")
			}
			for _, err := range goMemoryLimit(c, vars) {
				t.Error(err)
			}

			// The header's `envsubst '$A $B ...'` against the ${VAR}s of
			// the manifest (comments left out) and the runs' values.
			used := map[string]bool{}
			for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(string(stripComments(text)), -1) {
				used[m[1]] = true
			}
			m := regexp.MustCompile(`envsubst '([^']*)'`).FindStringSubmatch(string(text))
			if m == nil {
				t.Fatalf("jobs/%s: its header shows no envsubst '$VAR ...' command", jt.file)
			}
			listed := map[string]bool{}
			for _, v := range strings.Fields(m[1]) {
				listed[strings.TrimPrefix(v, "$")] = true
			}
			if !maps.Equal(used, listed) {
				t.Errorf("the header's envsubst substitutes %v; the manifest uses %v", slices.Sorted(maps.Keys(listed)), slices.Sorted(maps.Keys(used)))
			}
			for what, run := range jt.runs {
				for v := range used {
					if _, ok := run[v]; !ok && !slices.Contains(imageVars, v) {
						t.Errorf("jobTemplates run %q: no value for ${%s}", what, v)
					}
				}
			}
		})
	}
}

// The run over every property is an indexed Job whose pods each take one
// slice: as many slices as pods, every pod running at once. Each slice is
// retried on its own (a slice that keeps failing neither uses up the
// others' retries nor, failing the Job, stops them mid-run), and a failed
// pod is replaced only once it has ended: two pods of one slice would run
// its properties' jobs against each other.
func TestReprocessAllSlices(t *testing.T) {
	jt := jobTemplates[slices.IndexFunc(jobTemplates, func(jt jobTemplate) bool { return jt.file == "reprocess-all.yaml" })]
	j := decodeJob(t, jt, readJobTemplate(t, jt))
	spec := j.Spec
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion || spec.Completions == nil || spec.Parallelism == nil {
		t.Fatalf("want an indexed Job with completions and parallelism set: %+v", spec)
	}
	if spec.BackoffLimitPerIndex == nil || spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("backoffLimitPerIndex %v, restartPolicy %s: want retries per slice (which take restartPolicy Never)", spec.BackoffLimitPerIndex, spec.Template.Spec.RestartPolicy)
	}
	if spec.PodReplacementPolicy == nil || *spec.PodReplacementPolicy != batchv1.Failed {
		t.Errorf("podReplacementPolicy %v: want Failed, a slice's pod replaced once it has ended", spec.PodReplacementPolicy)
	}
	var slice string
	for _, e := range spec.Template.Spec.Containers[0].Env {
		if e.Name == "REPROCESS_SLICE" {
			slice = e.Value
		}
	}
	if want := fmt.Sprintf("$(SLICE_INDEX)/%d", *spec.Completions); slice != want || *spec.Parallelism != *spec.Completions {
		t.Errorf("REPROCESS_SLICE %q, completions %d, parallelism %d: want %q and every pod at once", slice, *spec.Completions, *spec.Parallelism, want)
	}
}
