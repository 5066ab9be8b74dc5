package validate

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func dockerfilePath(t *testing.T) string {
	return filepath.Join(root(t), "deploy", "docker", "Dockerfile")
}

// parseDockerfile parses the Dockerfile with BuildKit's own parser and
// linter; a lint warning is a failure.
func parseDockerfile(t *testing.T) ([]instructions.Stage, []instructions.ArgCommand) {
	t.Helper()
	b, err := os.ReadFile(dockerfilePath(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, description, url, msg string, _ []parser.Range) {
		t.Errorf("Dockerfile lint %s: %s", rule, msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile instructions: %v", err)
	}
	return stages, metaArgs
}

func dockerfileStages(t *testing.T) []string {
	stages, _ := parseDockerfile(t)
	var names []string
	for _, s := range stages {
		names = append(names, s.Name)
	}
	return names
}

// TestDockerfile: a multi-stage build whose build stage compiles one static
// binary (CGO_ENABLED=0) from the whole workspace with a Go at least as new
// as go.work asks for, and whose runtime stages hold the binary alone on a
// minimal base, as a numeric non-root user, with no secret anywhere.
func TestDockerfile(t *testing.T) {
	stages, metaArgs := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages: want a multi-stage build", len(stages))
	}
	args := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			args[kv.Key] = kv.ValueString()
		}
	}
	byName := map[string]instructions.Stage{}
	for _, s := range stages {
		byName[s.Name] = s
	}
	build, ok := byName["build"]
	if !ok {
		t.Fatalf("no stage named build")
	}
	if !strings.HasPrefix(build.BaseName, "golang:") {
		t.Errorf("build stage starts from %s, want golang", build.BaseName)
	}
	goVersion := args["GO_VERSION"]
	if build.BaseName != "golang:${GO_VERSION}" || goVersion == "" {
		t.Errorf("build stage's Go version must be the GO_VERSION argument, got %s (GO_VERSION=%q)", build.BaseName, goVersion)
	}
	if work := goWorkVersion(t); versionLess(goVersion, work) {
		t.Errorf("the image's Go %s is older than go.work's %s", goVersion, work)
	}
	env := map[string]string{}
	copiedWorkspace, built := false, false
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env[kv.Key] = kv.Value
			}
		case *instructions.CopyCommand:
			if c.From == "" && slices.Equal(c.SourcePaths, []string{"."}) {
				copiedWorkspace = true
			}
		case *instructions.RunCommand:
			line := strings.Join(c.CmdLine, " ")
			if strings.Contains(line, "go build") {
				built = true
				for _, want := range []string{"-trimpath", `"${PACKAGE}"`, "-o /out/app"} {
					if !strings.Contains(line, want) {
						t.Errorf("go build lacks %s: %s", want, line)
					}
				}
			}
		}
	}
	if env["CGO_ENABLED"] != "0" {
		t.Errorf("the build stage does not set CGO_ENABLED=0: the binary would not be static")
	}
	if env["GOTOOLCHAIN"] != "local" {
		t.Errorf("the build stage may download another Go toolchain (set GOTOOLCHAIN=local)")
	}
	if !copiedWorkspace {
		t.Errorf("the build stage does not copy the whole workspace (COPY . .): go.work would not resolve")
	}
	if !built {
		t.Errorf("the build stage does not run go build")
	}

	// Runtime stages: the default (last) one and collection's.
	last := stages[len(stages)-1]
	if last.Name != "service" {
		t.Errorf("the last (default) stage is %q, want service", last.Name)
	}
	for _, name := range []string{"service", "collection"} {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no stage %s", name)
			continue
		}
		if !regexp.MustCompile(`^(gcr\.io/distroless/static[^:]*:nonroot|scratch)$`).MatchString(s.BaseName) {
			t.Errorf("stage %s starts from %s, want a distroless static base or scratch", name, s.BaseName)
		}
		user, entry, fromBuild := "", false, false
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.UserCommand:
				user = c.User
			case *instructions.EntrypointCommand:
				entry = !c.PrependShell && slices.Equal(c.CmdLine, []string{"/app"})
			case *instructions.CopyCommand:
				if c.From == "build" && slices.Contains(c.SourcePaths, "/out/app") {
					fromBuild = true
				}
			case *instructions.RunCommand:
				t.Errorf("stage %s runs a command; a runtime stage only copies", name)
			}
		}
		uid, _, _ := strings.Cut(user, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("stage %s runs as %q; want a numeric non-root USER (Kubernetes' runAsNonRoot checks it)", name, user)
		}
		if !entry {
			t.Errorf("stage %s's ENTRYPOINT is not [\"/app\"]", name)
		}
		if !fromBuild {
			t.Errorf("stage %s does not copy the binary from the build stage", name)
		}
	}

	// No secret is baked in: no ARG or ENV that carries one.
	secret := regexp.MustCompile(`(?i)secret|password|token|private`)
	for _, s := range stages {
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					if secret.MatchString(kv.Key) {
						t.Errorf("stage %s sets %s in the image", s.Name, kv.Key)
					}
				}
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					if secret.MatchString(kv.Key) {
						t.Errorf("stage %s takes %s as a build argument (it would stay in the image's history)", s.Name, kv.Key)
					}
				}
			}
		}
	}
}

// TestDockerignore: the build context keeps everything the workspace needs
// (go.work, each module's go.mod, go.sum, sources and embedded files) and
// leaves out local artefacts.
func TestDockerignore(t *testing.T) {
	repo := root(t)
	f, err := os.Open(filepath.Join(repo, "deploy", "docker", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(rel string) bool {
		ok, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, p := range []string{"bin/devstack", ".dev/logs/x.log", ".git/HEAD", "collection-svc/.geoip/node_modules/x"} {
		if !excluded(p) {
			t.Errorf("%s is sent to the build", p)
		}
	}
	if excluded("go.work") {
		t.Errorf("go.work is excluded from the build context")
	}
	for _, mod := range goWorkModules(t) {
		err := filepath.WalkDir(filepath.Join(repo, mod), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(repo, path)
			if d.IsDir() {
				if d.Name() == ".geoip" || d.Name() == "node_modules" || d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			switch filepath.Ext(path) {
			case ".go", ".mod", ".sum", ".cql", ".js", ".json", ".csv", ".txt":
				if excluded(rel) {
					t.Errorf("%s is excluded from the build context", rel)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// goWorkModules returns the directories go.work uses.
func goWorkModules(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "use ("):
			in = true
		case in && l == ")":
			in = false
		case in && l != "":
			mods = append(mods, strings.TrimPrefix(l, "./"))
		case strings.HasPrefix(l, "use "):
			mods = append(mods, strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(l, "use")), "./"))
		}
	}
	if len(mods) == 0 {
		t.Fatal("go.work uses no module")
	}
	return mods
}

func goWorkVersion(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(root(t), "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.work has no go line")
	}
	return string(m[1])
}

// versionLess compares dotted Go versions (1.26.7 < 1.26.8 < 1.27).
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
