package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/tenant"
)

// TestRequests checks that configctl signs its requests as the operator
// service and maps each command to its endpoint.
func TestRequests(t *testing.T) {
	secret := "0123456789abcdef-secret"
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := tenant.FromRequest(r, []byte(secret), time.Now())
		if err != nil || id.Role != tenant.RoleService || id.UserID != "operator" {
			http.Error(w, "bad identity", http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got = append(got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"property", "AT-23456789AB"}, "GET /internal/v1/properties/by-tracking-id/AT-23456789AB"},
		{[]string{"property", "5b0d0000-0000-4000-8000-000000000000"}, "GET /internal/v1/properties/5b0d0000-0000-4000-8000-000000000000"},
		{[]string{"set-shards", "p1", "8"}, `PUT /internal/v1/properties/p1/processing-shards {"processing_shards": 8}`},
		{[]string{"changes", "42"}, "GET /internal/v1/changes?wait=0s&since=42"},
		{[]string{"properties"}, "GET /internal/v1/properties"},
		{[]string{"properties", "-4611686018427387904"}, "GET /internal/v1/properties?after=-4611686018427387904"},
		// An operator's typo stays in its operand: it went into the path
		// or query as typed, so "p1/../x" asked another endpoint and
		// "1&wait=60s" waited a minute.
		{[]string{"property", "p1/../x"}, "GET /internal/v1/properties/p1%2F..%2Fx"},
		{[]string{"set-shards", "p1?x", "8"}, `PUT /internal/v1/properties/p1%3Fx/processing-shards {"processing_shards": 8}`},
		{[]string{"changes", "1&wait=60s"}, "GET /internal/v1/changes?wait=0s&since=1%26wait%3D60s"},
	}
	for _, tt := range tests {
		got = nil
		var out bytes.Buffer
		cfg := config{BaseURL: srv.URL, IdentitySecret: secret, Command: tt.args}
		if err := run(context.Background(), cfg, &out); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if len(got) != 1 || got[0] != tt.want {
			t.Fatalf("%v sent %q, want %q", tt.args, got, tt.want)
		}
	}
	if err := run(context.Background(), config{BaseURL: srv.URL, IdentitySecret: secret}, io.Discard); err == nil {
		t.Fatal("no command accepted")
	}
	// A known command with the wrong operands says what it takes, and
	// sends nothing.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"set-shards", "p1"}, `set-shards takes <property id> <n>; got "p1"`},
		{[]string{"property"}, `property takes <tracking or property id>; got ""`},
		{[]string{"changes", "1", "2"}, `changes takes [since]; got "1 2"`},
		{[]string{"shards", "p1", "8"}, `unknown command "shards p1 8"`},
	} {
		got = nil
		err := run(context.Background(), config{BaseURL: srv.URL, IdentitySecret: secret, Command: tt.args}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) || len(got) != 0 {
			t.Errorf("%v: error %v and %d requests; want %q and none", tt.args, err, len(got), tt.want)
		}
	}
	if err := run(context.Background(), config{BaseURL: srv.URL, IdentitySecret: "wrong-secret-0123456", Command: []string{"changes"}}, io.Discard); err == nil {
		t.Fatal("a request with the wrong secret succeeded")
	}
}

// TestCostlyRules: costly-rules walks every page of properties and lists
// the rule versions, in effect or kept, that config-svc would now refuse
// for their cost, saying what is over; a property gone since it was
// listed is said and skipped.
func TestCostlyAndRefusedRules(t *testing.T) {
	secret := "0123456789abcdef-secret"
	// Version 7 is over the limit; version 8, in effect now, is not, but
	// it holds a template read as the group named "01" (nothing), which
	// config-svc refuses now. Stored versions hold every rule, defaults
	// included.
	versions := func(first int, edits ...func(*rules.Rules)) string {
		var h configclient.RuleVersions
		for i, edit := range edits {
			r := rules.Defaults()
			edit(&r)
			h.Versions = append(h.Versions, configclient.RuleVersion{Version: first + i, Rules: r})
		}
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	costly := func(r *rules.Rules) {
		r.Pages.Exclude = []string{strings.Repeat(`[^~]{0,60}`, 5) + `~`}
		r.PagePath.Replacements = []rules.Replacement{{Pattern: "a(.*z)?", Replace: "b"}}
	}
	misread := func(r *rules.Rules) {
		r.PagePath.Replacements = []rules.Replacement{{Pattern: `^/p/(\d+)`, Replace: "/p/$01"}}
	}
	admin := func(r *rules.Rules) { r.Pages.Exclude = []string{"^/admin"} }
	docs := map[string]string{
		"/internal/v1/properties":                   `{"property_ids": ["p1", "p2"], "next_after": "9"}`,
		"/internal/v1/properties?after=9":           `{"property_ids": ["p3"], "next_after": "12"}`,
		"/internal/v1/properties?after=12":          `{"property_ids": [], "next_after": ""}`,
		"/internal/v1/properties/p1":                `{"property_id": "p1", "tracking_id": "AT-3456789ABC"}`,
		"/internal/v1/properties/p1/rules/versions": versions(2, admin),
		"/internal/v1/properties/p2":                `{"property_id": "p2", "tracking_id": "AT-23456789AB"}`,
		"/internal/v1/properties/p2/rules/versions": versions(7, costly, misread),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := tenant.FromRequest(r, []byte(secret), time.Now()); err != nil {
			http.Error(w, "bad identity", http.StatusUnauthorized)
			return
		}
		doc, ok := docs[r.URL.RequestURI()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, doc)
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := run(context.Background(), config{BaseURL: srv.URL, IdentitySecret: secret, Command: []string{"costly-rules"}}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "p2 AT-23456789AB v7: ") || !strings.Contains(lines[0], "pages.exclude: ") || !strings.Contains(lines[0], "page_path.replacements[0].pattern: ") ||
		!strings.HasPrefix(lines[1], "p3: GET /internal/v1/properties/p3: 404") ||
		lines[2] != "2 properties checked, 1 with rule versions over the cost limit" {
		t.Fatalf("output:\n%s", out.String())
	}

	out.Reset()
	if err := run(context.Background(), config{BaseURL: srv.URL, IdentitySecret: secret, Command: []string{"refused-rules"}}, &out); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 ||
		!strings.HasPrefix(lines[0], "p2 AT-23456789AB v7: ") || !strings.Contains(lines[0], "pages.exclude: ") ||
		!strings.HasPrefix(lines[1], "p2 AT-23456789AB v8: page_path.replacements[0].replace: ") || !strings.Contains(lines[1], "write ${1} to refer to group 1") ||
		!strings.HasPrefix(lines[2], "p3: GET /internal/v1/properties/p3: 404") ||
		lines[3] != "2 properties checked, 1 with rule versions config-svc would now refuse" {
		t.Fatalf("output:\n%s", out.String())
	}
}
