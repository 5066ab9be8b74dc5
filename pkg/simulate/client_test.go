package simulate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// SignUp again for a merchant whose shop is not on the first page of its
// properties finds it, and creates no second one.
func TestSignUpFindsTheShopOnAnyPage(t *testing.T) {
	var mu sync.Mutex
	var names []string // the merchant's properties, in the order the list pages them
	for i := range 250 {
		names = append(names, fmt.Sprintf("site %03d", i))
	}
	names = append(names, "Simulated shop")
	created := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.URL.Path == "/v1/signup":
			w.WriteHeader(http.StatusConflict)
		case r.URL.Path == "/v1/login":
			_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "token", "tenant_id": "tenant"})
		case r.Method == http.MethodGet && r.URL.Path == "/v1/properties":
			// As config-svc pages: limit (default 100), after the last
			// ID of the previous page, next_after while more follow; a
			// page may be shorter than limit (here at most 100).
			q := r.URL.Query()
			limit := 100
			if v := q.Get("limit"); v != "" {
				limit, _ = strconv.Atoi(v)
			}
			limit = min(limit, 100)
			from := 0
			if v := q.Get("after"); v != "" {
				from = slices.Index(names, v) + 1
			}
			to := min(from+limit, len(names))
			page := map[string]any{}
			var ps []map[string]string
			for _, n := range names[from:to] {
				ps = append(ps, map[string]string{"id": n, "name": n, "tracking_id": "AT-" + n})
			}
			page["properties"] = ps
			if to < len(names) {
				page["next_after"] = names[to-1]
			}
			_ = json.NewEncoder(w).Encode(page)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/properties":
			created++
			_ = json.NewEncoder(w).Encode(map[string]string{"id": "new", "name": "Simulated shop", "tracking_id": "AT-NEW"})
		case r.Method == http.MethodPut:
			w.WriteHeader(http.StatusOK)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()

	m, err := SignUp(context.Background(), srv.Client(), srv.URL, "merchant@example.com", Config{Host: "shop.example", Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if created != 0 || m.PropertyID != "Simulated shop" {
		t.Fatalf("created %d properties, uses %q; want the existing shop and none created", created, m.PropertyID)
	}
}

// SignUp signs up, and logs in when the address is taken, with Password:
// the one make dev prints for the demo merchant.
func TestSignUpUsesPassword(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{} // path → password sent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.URL.Path == "/v1/signup" || r.URL.Path == "/v1/login":
			var body struct{ Password string }
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				t.Errorf("%s: %v", r.URL.Path, err)
			}
			got[r.URL.Path] = body.Password
			if r.URL.Path == "/v1/signup" {
				w.WriteHeader(http.StatusConflict)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "token", "tenant_id": "tenant"})
		case r.Method == http.MethodGet && r.URL.Path == "/v1/properties":
			_ = json.NewEncoder(w).Encode(map[string]any{"properties": []map[string]string{{"id": "p", "name": "Simulated shop", "tracking_id": "AT-P"}}})
		case r.Method == http.MethodPut:
			w.WriteHeader(http.StatusOK)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()

	if _, err := SignUp(context.Background(), srv.Client(), srv.URL, "merchant@example.com", Config{Host: "shop.example", Location: time.UTC}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/v1/signup": Password, "/v1/login": Password}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("passwords sent: %v; want %v", got, want)
	}
}
