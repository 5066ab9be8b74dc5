package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
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
// documented, with the tag and security its access level implies.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	ops := documented(t)
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
	}
}

func expectedCodes(a Access) []string {
	switch a {
	case Public:
		return nil
	}
	return []string{"401", "403"}
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
