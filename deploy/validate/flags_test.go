package validate

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
)

// TestEnvMatchesFlags runs each built binary's -help and checks that every
// <BINARY>_<FLAG> variable that compose or the Kubernetes manifests give it
// names a flag the binary has: a misspelt or removed flag would otherwise be
// ignored in silence (pkg/flagenv reads only the variables of defined
// flags). It needs the binaries, so it runs only with DEPLOY_VALIDATE_BIN
// set to their directory, e.g. after `make build`:
//
//	DEPLOY_VALIDATE_BIN=$PWD/bin bash -c 'cd deploy/validate && GOWORK=off go test -run TestEnvMatchesFlags .'
func TestEnvMatchesFlags(t *testing.T) {
	dir := binDir(t, "to check variables against their flags")
	given := map[string]map[string]string{} // binary → variable → where
	add := func(binary, name, where string) {
		if helperEnv[name] {
			return
		}
		if given[binary] == nil {
			given[binary] = map[string]string{}
		}
		given[binary][name] = where
	}
	p := loadCompose(t, composeEnv)
	for name, s := range p.Services {
		if b := imageBinary(s.Image); b != "" {
			for k := range s.Environment {
				add(b, k, "compose service "+name)
			}
		}
	}
	for _, overlay := range []string{"base", "overlays/small", "overlays/large"} {
		b := build(t, filepath.Join(root(t), "deploy", "k8s", overlay))
		for _, d := range b.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				for _, e := range c.Env {
					add(imageBinary(c.Image), e.Name, "k8s "+overlay+" Deployment "+d.Name)
				}
			}
		}
		for _, j := range b.jobs {
			for _, c := range j.Spec.Template.Spec.Containers {
				if bin := imageBinary(c.Image); bin != "" {
					for _, e := range c.Env {
						add(bin, e.Name, "k8s "+overlay+" Job "+j.Name)
					}
				}
			}
		}
	}
	for _, jt := range jobTemplates {
		if obj, _, err := decodeStrict(readJobTemplate(t, jt)); err == nil { // else TestJobTemplates fails
			for _, c := range obj.(*batchv1.Job).Spec.Template.Spec.Containers {
				for _, e := range c.Env {
					add(imageBinary(c.Image), e.Name, "k8s jobs/"+jt.file)
				}
			}
		}
	}
	envOfFlag := regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
	binaries := make([]string, 0, len(given))
	for b := range given {
		binaries = append(binaries, b)
	}
	sort.Strings(binaries)
	for _, binary := range binaries {
		t.Run(binary, func(t *testing.T) {
			path := filepath.Join(dir, binary)
			if _, err := os.Stat(path); err != nil {
				t.Skipf("%s is not built", path)
			}
			out, err := exec.Command(path, "-help").CombinedOutput()
			if err != nil {
				t.Fatalf("%s -help: %v\n%s", binary, err, out)
			}
			flags := map[string]bool{}
			for _, m := range envOfFlag.FindAllStringSubmatch(string(out), -1) {
				flags[m[1]] = true
			}
			if len(flags) == 0 {
				t.Fatalf("%s -help names no environment variable", binary)
			}
			var names []string
			for n := range given[binary] {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if !flags[n] {
					t.Errorf("%s (%s) is no flag of %s", n, given[binary][n], binary)
				}
			}
		})
	}
}

// binDir returns the absolute directory of built binaries that
// DEPLOY_VALIDATE_BIN names, and skips the test, saying what it would have
// checked (why), when it is not set.
func binDir(t *testing.T, why string) string {
	t.Helper()
	dir := os.Getenv("DEPLOY_VALIDATE_BIN")
	if dir == "" {
		t.Skip("set DEPLOY_VALIDATE_BIN to a directory of built binaries (make build's bin/) " + why)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
