package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
)

// TestRuleVersionsAndPointInTime: every change is a new immutable version
// with the time it took effect; the current version and the version in
// effect at any past time can be read.
func TestRuleVersionsAndPointInTime(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Versions")
	p := e.createProperty(a, map[string]any{"name": "Site", "hostnames": []string{"example.com"}})
	base := "/v1/properties/" + p.ID + "/rules"

	var v1 configclient.RuleVersion
	r := e.must(http.StatusOK, a.as(), "GET", base, nil)
	r.decode(t, &v1)
	if v1.Version != 1 || r.header.Get("ETag") != `"1"` || !reflect.DeepEqual(v1.Rules, rules.Defaults().Normalize()) {
		t.Fatalf("first rules = %+v (ETag %s), want the defaults as version 1", v1, r.header.Get("ETag"))
	}

	// Version 2: internal traffic and a goal. Fields left out keep their
	// defaults (bot filtering stays on).
	var v2 configclient.RuleVersion
	e.must(http.StatusOK, a.as(), "PUT", base, `{
		"exclusions": {"ip": ["10.0.0.0/8", "203.0.113.7"]},
		"goals": [{"id": "signup", "name": "Signed up", "page_path": "^/welcome$", "value": 5}]
	}`, "If-Match", `"1"`).decode(t, &v2)
	if v2.Version != 2 || !v2.Rules.BotFiltering || v2.Rules.SessionTimeoutMinutes != 30 || len(v2.Rules.Exclusions.IP) != 2 || !v2.EffectiveAt.After(v1.EffectiveAt) {
		t.Fatalf("version 2 = %+v", v2)
	}

	// The same document again makes no new version.
	var same configclient.RuleVersion
	e.must(http.StatusOK, a.as(), "PUT", base, `{"exclusions": {"ip": ["10.0.0.0/8", "203.0.113.7"]},
		"goals": [{"id": "signup", "name": "Signed up", "page_path": "^/welcome$", "value": 5}]}`).decode(t, &same)
	if same.Version != 2 {
		t.Fatalf("an unchanged document made version %d", same.Version)
	}

	// A stale If-Match is refused.
	r = e.do(a.as(), "PUT", base, `{"bot_filtering": false}`, "If-Match", `"1"`)
	if r.code != http.StatusPreconditionFailed || r.apiError().Code != "precondition_failed" || r.header.Get("ETag") != `"2"` {
		t.Fatalf("stale If-Match = %d %s (ETag %s)", r.code, r.body, r.header.Get("ETag"))
	}

	var v3 configclient.RuleVersion
	e.must(http.StatusOK, a.as(), "PUT", base, `{"bot_filtering": false, "session_timeout_minutes": 45}`).decode(t, &v3)
	if v3.Version != 3 || v3.Rules.BotFiltering || len(v3.Rules.Goals) != 0 {
		t.Fatalf("version 3 = %+v (a PUT replaces the whole document)", v3)
	}

	// Changing the property's hostnames makes version 4 with the same rules.
	e.must(http.StatusOK, a.as(), "PATCH", "/v1/properties/"+p.ID, map[string]any{"hostnames": []string{"example.com", "example.org"}})
	var v4 configclient.RuleVersion
	e.must(http.StatusOK, a.as(), "GET", base, nil).decode(t, &v4)
	if v4.Version != 4 || len(v4.Hostnames) != 2 || !reflect.DeepEqual(v4.Rules, v3.Rules) {
		t.Fatalf("after a hostname change: %+v", v4)
	}
	// A PATCH that leaves the hostnames as they are makes no version.
	e.must(http.StatusOK, a.as(), "PATCH", "/v1/properties/"+p.ID, map[string]any{"name": "Renamed", "hostnames": []string{"example.com", "example.org"}})

	var history struct{ Versions []RuleVersionSummary }
	e.must(http.StatusOK, a.as(), "GET", base+"/versions", nil).decode(t, &history)
	var got []int
	for _, v := range history.Versions {
		got = append(got, v.Version)
	}
	if !reflect.DeepEqual(got, []int{4, 3, 2, 1}) {
		t.Fatalf("history = %v, want newest first [4 3 2 1]", got)
	}

	atTests := []struct {
		name string
		at   time.Time
		want int
	}{
		{"when version 1 took effect", v1.EffectiveAt, 1},
		{"just before version 2", v2.EffectiveAt.Add(-time.Nanosecond), 1},
		{"when version 2 took effect", v2.EffectiveAt, 2},
		{"just before version 3", v3.EffectiveAt.Add(-time.Nanosecond), 2},
		{"when version 3 took effect", v3.EffectiveAt, 3},
		{"now", time.Now().Add(time.Hour), 4},
	}
	for _, tt := range atTests {
		t.Run(tt.name, func(t *testing.T) {
			var v configclient.RuleVersion
			r := e.must(http.StatusOK, a.as(), "GET", base+"?at="+url.QueryEscape(tt.at.Format(time.RFC3339Nano)), nil)
			r.decode(t, &v)
			if v.Version != tt.want {
				t.Fatalf("rules at %s = version %d, want %d", tt.at.Format(time.RFC3339Nano), v.Version, tt.want)
			}
		})
	}
	if r := e.do(a.as(), "GET", base+"?at="+url.QueryEscape(v1.EffectiveAt.Add(-time.Second).Format(time.RFC3339)), nil); r.code != http.StatusNotFound {
		t.Fatalf("rules before the property existed = %d %s", r.code, r.body)
	}

	// Versions are immutable: version 2 reads as it was saved.
	var again configclient.RuleVersion
	e.must(http.StatusOK, a.as(), "GET", base+"/versions/2", nil).decode(t, &again)
	if !reflect.DeepEqual(again, v2) {
		t.Fatalf("version 2 now reads\n%+v\nwas\n%+v", again, v2)
	}
	e.must(http.StatusNotFound, a.as(), "GET", base+"/versions/9", nil)
	e.must(http.StatusNotFound, a.as(), "GET", base+"/versions/2147483648", nil) // past a CQL int

	// The pipeline's history endpoint has the same versions, oldest first.
	var internal configclient.RuleVersions
	e.must(http.StatusOK, service("processing"), "GET", "/internal/v1/properties/"+p.ID+"/rules/versions", nil).decode(t, &internal)
	if len(internal.Versions) != 4 || internal.Versions[0].Version != 1 || !reflect.DeepEqual(internal.Versions[1], v2) {
		t.Fatalf("internal history = %+v", internal)
	}
	if v, ok := versionAt(internal.Versions, v3.EffectiveAt.Add(time.Millisecond/2)); !ok || v.Version != 3 {
		t.Fatalf("version in effect just after version 3 = %d, %v; want 3", v.Version, ok)
	}
}

// TestIfMatchComparesStrongly: If-Match compares entity tags strongly
// (RFC 9110, 13.1.1), so a weak tag never matches, even the current
// version's: W/"1" was read as version 1 and the change made. A tag that
// cannot be one of ours (unquoted, "01") is refused, not read as a
// version; a list matches when any of its tags does. A refused PUT makes
// no version.
func TestIfMatchComparesStrongly(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Strong")
	p := e.createProperty(a, map[string]any{"name": "Site", "hostnames": []string{"example.com"}})
	base := "/v1/properties/" + p.ID + "/rules"
	doc := `{"bot_filtering": false}`
	current := func() int {
		t.Helper()
		var v configclient.RuleVersion
		e.must(http.StatusOK, a.as(), "GET", base, nil).decode(t, &v)
		return v.Version
	}
	for _, tt := range []struct {
		name, ifMatch string
		status        int
		code, in      string
	}{
		{"weak tag of the current version", `W/"1"`, http.StatusPreconditionFailed, "precondition_failed", `only the weak entity tag W/"1"`},
		{"weak tags only", `W/"1", W/"2"`, http.StatusPreconditionFailed, "precondition_failed", "never matches"},
		{"weak current and strong stale", `W/"1", "2"`, http.StatusPreconditionFailed, "precondition_failed", "not 2 as If-Match says"},
		{"unquoted version", `1`, http.StatusBadRequest, "invalid_field", "in double quotes"},
		{"leading zero", `"01"`, http.StatusBadRequest, "invalid_field", `"\"01\"" is not a rule version`},
		{"weak tag that is no version", `W/"abc"`, http.StatusBadRequest, "invalid_field", "not a rule version"},
		{"star in a list", `*, "1"`, http.StatusBadRequest, "invalid_field", "* stands alone"},
	} {
		r := e.do(a.as(), "PUT", base, doc, "If-Match", tt.ifMatch)
		if got := r.apiError(); r.code != tt.status || got.Code != tt.code || !strings.Contains(got.Message, tt.in) {
			t.Errorf("%s (If-Match: %s) = %d %s, want %d %s saying %q", tt.name, tt.ifMatch, r.code, r.body, tt.status, tt.code, tt.in)
		}
		if tt.code == "invalid_field" && r.apiError().Field != "If-Match" {
			t.Errorf("%s: field %q, want If-Match", tt.name, r.apiError().Field)
		}
		if v := current(); v != 1 {
			t.Fatalf("after %s the rules are at version %d, want 1: a refused PUT made a version", tt.name, v)
		}
	}
	// A list holding the current version's strong tag matches.
	var v2 configclient.RuleVersion
	e.must(http.StatusOK, a.as(), "PUT", base, doc, "If-Match", `"7", W/"9", "1"`).decode(t, &v2)
	if v2.Version != 2 {
		t.Fatalf("a list holding the current version made version %d, want 2", v2.Version)
	}
	// A weak tag of an older version: the rules changed since the client
	// read them. It was told only to drop the W/, given the current tag,
	// and so led to overwrite the change it never saw.
	r := e.do(a.as(), "PUT", base, `{}`, "If-Match", `W/"1"`)
	if msg := r.apiError().Message; r.code != http.StatusPreconditionFailed || !strings.Contains(msg, "not 1 as If-Match says; someone changed them") ||
		strings.Contains(msg, `at version 2: "2"`) {
		t.Errorf("a weak tag of an older version = %d %s, want 412 saying the rules changed since", r.code, r.body)
	}
	e.must(http.StatusOK, a.as(), "PUT", base, `{}`, "If-Match", `*`)
	if v := current(); v != 3 {
		t.Fatalf("If-Match: * left the rules at version %d, want 3", v)
	}
	// Elsewhere nothing has an ETag, so no tag can match: a PATCH sent
	// with one was made as if it held.
	r = e.do(a.as(), "PATCH", "/v1/properties/"+p.ID, `{"name": "Renamed"}`, "If-Match", `"3"`)
	if r.code != http.StatusPreconditionFailed || r.apiError().Code != "precondition_failed" || !strings.Contains(r.apiError().Message, "has no ETag") {
		t.Fatalf("PATCH of a property with If-Match: %d %s, want 412", r.code, r.body)
	}
	var got PropertyJSON
	e.must(http.StatusOK, a.as(), "GET", "/v1/properties/"+p.ID, nil).decode(t, &got)
	if got.Name != "Site" {
		t.Fatalf("a refused PATCH renamed the property %q", got.Name)
	}
	e.must(http.StatusOK, a.as(), "PATCH", "/v1/properties/"+p.ID, `{"name": "Renamed"}`, "If-Match", `*`)
}

// TestConcurrentRuleEditsGetDistinctVersions: edits racing for the next
// version number each get their own.
func TestConcurrentRuleEditsGetDistinctVersions(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Racy")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	const editors = 6
	var wg sync.WaitGroup
	versions := make(chan int, editors)
	for i := range editors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v configclient.RuleVersion
			r := e.do(a.as(), "PUT", "/v1/properties/"+p.ID+"/rules", map[string]any{"session_timeout_minutes": 10 + i})
			if r.code == http.StatusOK {
				r.decode(t, &v)
				versions <- v.Version
			} else if r.code != http.StatusConflict {
				t.Errorf("concurrent edit: %d %s", r.code, r.body)
			}
		}()
	}
	wg.Wait()
	close(versions)
	seen := map[int]bool{}
	for v := range versions {
		if seen[v] {
			t.Fatalf("two edits both became version %d", v)
		}
		seen[v] = true
	}
	var history struct{ Versions []RuleVersionSummary }
	e.must(http.StatusOK, a.as(), "GET", "/v1/properties/"+p.ID+"/rules/versions", nil).decode(t, &history)
	if len(history.Versions) != len(seen)+1 {
		t.Fatalf("%d versions stored, %d edits succeeded (+1 initial)", len(history.Versions), len(seen))
	}
}

func TestValidateRulesEndpoint(t *testing.T) {
	e := newEnv(t)
	a := e.signup("Dry run")
	p := e.createProperty(a, map[string]any{"name": "Site"})
	var ok struct {
		Valid   bool `json:"valid"`
		Cost    int  `json:"cost"`
		MaxCost int  `json:"max_cost"`
	}
	e.must(http.StatusOK, a.as(), "POST", "/v1/properties/"+p.ID+"/rules/validate", `{"pages": {"exclude": ["^/admin"]}}`).decode(t, &ok)
	if !ok.Valid || ok.Cost == 0 || ok.MaxCost != rules.MaxCost {
		t.Fatalf("validate = %+v", ok)
	}
	r := e.must(http.StatusBadRequest, a.as(), "POST", "/v1/properties/"+p.ID+"/rules/validate", `{"pages": {"exclude": ["("]}}`)
	if r.apiError().Field != "pages.exclude[0]" {
		t.Fatalf("validate error = %s", r.body)
	}
	var history struct{ Versions []RuleVersionSummary }
	e.must(http.StatusOK, a.as(), "GET", "/v1/properties/"+p.ID+"/rules/versions", nil).decode(t, &history)
	if len(history.Versions) != 1 {
		t.Fatal("validating saved a version")
	}
	if !strings.Contains(r.apiError().Message, "missing closing )") {
		t.Fatalf("message = %q", r.apiError().Message)
	}
}

// TestTooExpensiveNamesTheCostlyField: too_expensive names the field that
// costs too much, not the document's first problem: a document with a bad
// IP rule and 51 user-agent patterns answered too_expensive naming
// exclusions.ip[0].
func TestTooExpensiveNamesTheCostlyField(t *testing.T) {
	doc := rules.Defaults()
	doc.Exclusions.IP = []string{"10.0.0.1/8"}
	for i := range 51 {
		doc.Exclusions.UserAgents = append(doc.Exclusions.UserAgents, fmt.Sprintf("Bot%d", i))
	}
	_, err := rules.Validate(doc.Normalize(), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	w := httptest.NewRecorder()
	writeRulesError(w, err)
	var body struct {
		Error struct{ Code, Field, Message string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Code != "too_expensive" || body.Error.Field != "exclusions.user_agents" {
		t.Errorf("code %q, field %q; want too_expensive naming exclusions.user_agents (%s)", body.Error.Code, body.Error.Field, body.Error.Message)
	}
}
