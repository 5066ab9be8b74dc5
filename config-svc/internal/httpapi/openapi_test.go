package httpapi

import (
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/acme/analytics/config-svc/api"
	"gopkg.in/yaml.v3"
)

type openAPIOperation struct {
	Tags        []string                  `yaml:"tags"`
	RequestBody map[string]any            `yaml:"requestBody"`
	Responses   map[string]map[string]any `yaml:"responses"`
	Security    *[]map[string]any         `yaml:"security"`
}

// documented returns the operations of openapi.yaml by "METHOD /path".
func documented(t testing.TB) map[string]openAPIOperation {
	t.Helper()
	ops, err := parseOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

func parseOpenAPI() (map[string]openAPIOperation, error) {
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		return nil, fmt.Errorf("openapi.yaml is version %q, want 3.x", doc.OpenAPI)
	}
	ops := map[string]openAPIOperation{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			b, err := yaml.Marshal(raw)
			if err != nil {
				return nil, err
			}
			var op openAPIOperation
			if err := yaml.Unmarshal(b, &op); err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, path, err)
			}
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return ops, nil
}

// TestOpenAPIMatchesRoutes checks that every documented operation is routed
// by the handlers to the handler documented, and every routed handler is
// documented, with the tag and security its access level implies and the
// statuses it can answer.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	ops := documented(t)
	unavailable := reaching(t, "internalError")
	srv := New(Options{})
	routes := map[string]Route{}
	for _, rt := range srv.Routes() {
		routes[rt.Method+" "+rt.Path] = rt
	}
	for key := range ops {
		if _, ok := routes[key]; !ok {
			t.Errorf("openapi.yaml documents %s, which no handler serves", key)
		}
	}
	mux := http.NewServeMux()
	srv.Register(mux)
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	for key, rt := range routes {
		op, ok := ops[key]
		if !ok {
			t.Errorf("handler %s is not documented in openapi.yaml", key)
			continue
		}
		// The mux sends a concrete request to this very route.
		concrete := param.ReplaceAllString(rt.Path, "x")
		_, pattern := mux.Handler(httptest.NewRequest(rt.Method, concrete, nil))
		if pattern != key {
			t.Errorf("%s %s is routed to %q, want %q", rt.Method, concrete, pattern, key)
		}
		internal := strings.HasPrefix(rt.Path, "/internal/")
		if hasTag := len(op.Tags) > 0 && op.Tags[0] == "internal"; hasTag != internal {
			t.Errorf("%s: tag %v; internal endpoints, and only they, are tagged internal", key, op.Tags)
		}
		if (rt.Access == Public) != (op.Security != nil && len(*op.Security) == 0) {
			t.Errorf("%s: public endpoints, and only they, must say security: []", key)
		}
		codes := expectedCodes(rt.Access)
		if op.RequestBody != nil {
			codes = append(codes, "400", "413") // bad JSON, body over the limit
		}
		for _, code := range codes {
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("%s: every %v endpoint can answer %s; document it", key, rt.Access, code)
			}
		}
		if name := handlerName(rt.Handler); unavailable[name] {
			if _, ok := op.Responses["503"]; !ok {
				t.Errorf("%s: %s can call internalError, which answers 503 when storage is unavailable; document it", key, name)
			}
		}
	}
}

// handlerName is the name of the function or method h is.
func handlerName(h http.HandlerFunc) string {
	name := runtime.FuncForPC(reflect.ValueOf(h).Pointer()).Name()
	name = strings.TrimSuffix(name, "-fm") // a method value
	return name[strings.LastIndexByte(name, '.')+1:]
}

// reaching returns the names of the package's functions and methods from
// whose code target can be called, found in the source: a function reaches
// what it names (f, or its receiver's s.f) and what those reach. Names
// are taken without their types, which can only find too much.
func reaching(t testing.TB, target string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	names := map[string][]string{} // function -> the functions it names
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := goparser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			recv := ""
			if fd.Recv != nil && len(fd.Recv.List) > 0 && len(fd.Recv.List[0].Names) > 0 {
				recv = fd.Recv.List[0].Names[0].Name
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.SelectorExpr:
					if id, ok := x.X.(*ast.Ident); ok && id.Name == recv {
						names[fd.Name.Name] = append(names[fd.Name.Name], x.Sel.Name)
					}
					return false // a field or another package's name
				case *ast.Ident:
					names[fd.Name.Name] = append(names[fd.Name.Name], x.Name)
				}
				return true
			})
		}
	}
	out := map[string]bool{target: true}
	for changed := true; changed; {
		changed = false
		for fn, named := range names {
			for _, n := range named {
				if out[n] && !out[fn] {
					out[fn], changed = true, true
				}
			}
		}
	}
	return out
}

func expectedCodes(a Access) []string {
	// Any endpoint refuses a query parameter it does not take.
	switch a {
	case Public:
		return []string{"400"}
	}
	return []string{"400", "401", "403"}
}

func (a Access) String() string {
	return [...]string{"public", "member", "admin", "service"}[a]
}

// undocumentedResponses lists the statuses the tests observed that
// openapi.yaml does not document for their operation.
func undocumentedResponses() []string {
	ops, err := parseOpenAPI()
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	observed.Range(func(k, _ any) bool {
		key := k.(string)
		i := strings.LastIndexByte(key, ' ')
		op, code := key[:i], key[i+1:]
		if o, ok := ops[op]; ok {
			if _, ok := o.Responses[code]; !ok {
				out = append(out, fmt.Sprintf("%s answered %s", op, code))
			}
		}
		return true
	})
	sort.Strings(out)
	return out
}
