package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cassandra"
	"github.com/acme/analytics/pkg/configclient"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/httpserver"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/migrate/migratetest"
	"github.com/acme/analytics/pkg/rules"
	"github.com/acme/analytics/pkg/tenant"
	"github.com/acme/analytics/report-svc/internal/query"
	"github.com/acme/analytics/report-svc/internal/reporttest"
	"github.com/acme/analytics/report-svc/internal/server"
	"github.com/gocql/gocql"
	"net/http/httptest"
)

const secret = "test-identity-secret-0123456789"

// fakeConfigSvc serves config-svc's internal property documents and an
// empty change feed, as config-svc does (configclient's wire format).
func fakeConfigSvc(t *testing.T, props ...configclient.Property) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /internal/v1/properties/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := tenant.FromRequest(r, []byte(secret), time.Now()); err != nil {
			http.Error(w, "unsigned", http.StatusUnauthorized)
			return
		}
		for _, p := range props {
			if p.PropertyID == r.PathValue("id") {
				_ = json.NewEncoder(w).Encode(p)
				return
			}
		}
		httpserver.WriteError(w, http.StatusNotFound, "not_found", "no property "+r.PathValue("id"))
	})
	mux.HandleFunc("GET /internal/v1/changes", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("since") != "" {
			select { // a long poll with nothing new
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		_ = json.NewEncoder(w).Encode(configclient.Changes{Seq: 0})
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// addrWriter passes log lines through and reports the HTTP address the
// service logs when it listens.
type addrWriter struct {
	w    *io.PipeWriter
	addr chan string
}

func newAddrWriter(t *testing.T) *addrWriter {
	r, w := io.Pipe()
	a := &addrWriter{w: w, addr: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if strings.Contains(sc.Text(), "failed") {
				t.Log(sc.Text())
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "http server listening" {
				a.addr <- line.Addr
			}
		}
	}()
	t.Cleanup(func() { w.Close() })
	return a
}

func (a *addrWriter) Write(p []byte) (int, error) { return a.w.Write(p) }

// TestRun runs both binaries' Run against the embedded CQL server and a
// config-svc stand-in, and reads a report through each.
func TestRun(t *testing.T) {
	ks := migratetest.Keyspace(t)
	ny, _ := time.LoadLocation("America/New_York")
	ds := reporttest.Generate(reporttest.Config{Seed: 9, Location: ny, Now: time.Now().UTC(), Days: 5, Clients: 40, Shards: 2, LiveClients: 5})
	setup, err := cassandra.Connect(ks)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	if err := reporttest.Write(context.Background(), setup, ds.Property, ds.Derive()); err != nil {
		t.Fatal(err)
	}
	other := gocql.MustRandomUUID().String()
	cfgSvc := fakeConfigSvc(t,
		configclient.Property{PropertyID: ds.Property.String(), TenantID: "t1", TimeZone: "America/New_York", ProcessingShards: 2, Rules: configclient.RuleVersion{Version: 1, Rules: rules.Defaults()}},
		configclient.Property{PropertyID: other, TenantID: "t2", TimeZone: "UTC", ProcessingShards: 1, Rules: configclient.RuleVersion{Version: 1, Rules: rules.Defaults()}},
	)

	for _, tt := range []struct {
		family *query.Family
		name   string
		path   string
		params string // besides property_id
	}{
		{query.Acquisition, "acquisition", "/v1/reports/acquisition/channel", "&range=today"},
		{query.Behavior, "behavior", "/v1/reports/behavior/pages", "&range=today"},
		{query.Behavior, "behavior", "/v1/reports/realtime", "&window=5"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			addr, stop := start(t, tt.family, tt.name, ks, cfgSvc.URL, io.Discard)
			get := func(path string, id *tenant.Identity) (int, string) {
				req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
				if id != nil {
					tenant.Sign(req.Header, *id, []byte(secret), time.Now())
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			waitReady(t, addr)
			owner := &tenant.Identity{TenantID: "t1", UserID: "u", Role: tenant.RoleViewer}
			s, body := get(tt.path+"?property_id="+ds.Property.String()+tt.params, owner)
			if s != 200 || !strings.Contains(body, `"freshness"`) {
				t.Errorf("report: %d %s", s, body)
			}
			if s, body := get(tt.path+"?property_id="+other, owner); s != 404 || !strings.Contains(body, "property_not_found") {
				t.Errorf("another tenant's property: %d %s", s, body)
			}
			if s, body := get(tt.path+"?property_id="+gocql.MustRandomUUID().String(), owner); s != 404 || !strings.Contains(body, "property_not_found") {
				t.Errorf("unknown property: %d %s", s, body)
			}
			if s, _ := get(tt.path+"?property_id="+ds.Property.String(), nil); s != 401 {
				t.Errorf("without identity: %d", s)
			}
			if _, body := get("/metrics", nil); !strings.Contains(body, "report_store_breaker_state") || !strings.Contains(body, "report_results_total") {
				t.Errorf("metrics lack the report metrics")
			}
			stop()
		})
	}
}

// start runs a report binary's Run on ks and the config-svc at
// configURL, logging to w as well, and returns its address once it
// listens and a stop that cancels it and checks its result.
func start(t *testing.T, family *query.Family, name string, ks *cassandra.Config, configURL string, w io.Writer) (string, func()) {
	t.Helper()
	var cfg server.Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg.RegisterFlags(fs, name, "127.0.0.1:0")
	if err := fs.Parse([]string{"-http-addr=127.0.0.1:0", "-consul-addr=", "-drain-delay=0s", "-identity-secret=" + secret,
		"-cassandra-hosts=" + ks.Hosts, "-cassandra-keyspace=" + ks.Keyspace, "-cassandra-consistency=ONE", "-config-svc-url=" + configURL}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := newAddrWriter(t)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, family, cfg, io.MultiWriter(logs, w)) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	select {
	case addr := <-logs.addr:
		return addr, stop
	case err := <-done:
		t.Fatalf("Run returned %v before listening", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not listening within 30s")
	}
	return "", nil
}

// waitReady polls /readyz at addr until it answers 200: the service
// listens before it has connected to Cassandra.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	eventually.NoError(t, 20*time.Second, "ready", func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d", resp.StatusCode)
		}
		return nil
	})
}

// TestRunWaitsForCassandra starts a report service while its store is
// down: it answers /healthz and is not ready, waits, and serves reports
// once the store is back, without a restart.
func TestRunWaitsForCassandra(t *testing.T) {
	srv := cqltest.Server(t)
	ks := migratetest.Keyspace(t)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	addr, stop := start(t, query.Behavior, "behavior", ks, fakeConfigSvc(t).URL, &logs)
	eventually.NoError(t, 15*time.Second, "a failed connect logged", func() error {
		if s := logs.String(); !strings.Contains(s, `"msg":"connect to cassandra failed; retrying"`) {
			return fmt.Errorf("the log so far:\n%s", s)
		}
		return nil
	})
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/v1/reports/realtime": 503} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s while waiting for the store: %d, want %d", path, resp.StatusCode, want)
		}
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, addr)
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/reports/realtime?property_id="+gocql.MustRandomUUID().String(), nil)
	tenant.Sign(req.Header, tenant.Identity{TenantID: "t1", UserID: "u", Role: tenant.RoleViewer}, []byte(secret), time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a report once the store is back: %d, want the API's 404 for an unknown property", resp.StatusCode)
	}
	stop()
}

func TestValidate(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-config-svc-url=http://x"}, "-identity-secret is required"},
		{[]string{"-identity-secret=short", "-config-svc-url=http://x"}, "at least 16 bytes"},
		{[]string{"-identity-secret=" + secret, "-consul-addr=", "-config-svc-url="}, "config-svc"},
		{[]string{"-identity-secret=" + secret, "-config-svc-url=http://x", "-breaker-failures=0"}, "-breaker-failures"},
		{[]string{"-identity-secret=" + secret, "-config-svc-url=http://x", "-store-timeout=0s"}, "-store-timeout"},
		{[]string{"-identity-secret=" + secret, "-config-svc-url=http://x"}, ""},
	}
	for _, tt := range tests {
		var cfg server.Config
		fs := flag.NewFlagSet("acquisition", flag.ContinueOnError)
		cfg.RegisterFlags(fs, "acquisition", "127.0.0.1:8084")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%v: Validate() = %v, want %q", tt.args, err, tt.want)
		}
	}
}
