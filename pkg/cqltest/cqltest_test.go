package cqltest

import (
	"regexp"
	"strings"
	"testing"
)

func TestKeyspaceName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]{1,48}$`)
	for _, name := range []string{"TestX", "TestSomething/with spaces & symbols", strings.Repeat("TestVeryLong", 10)} {
		a, b := keyspaceName(name), keyspaceName(name)
		if !valid.MatchString(a) {
			t.Errorf("%q -> invalid keyspace name %q", name, a)
		}
		if a == b {
			t.Errorf("%q -> same name twice: %q", name, a)
		}
	}
}

func TestSession(t *testing.T) {
	s, ks := Session(t)
	if err := s.Query(`CREATE TABLE kv (k int PRIMARY KEY, v text)`).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query(`INSERT INTO kv (k, v) VALUES (?, ?)`, 1, "x").Exec(); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := s.Query(`SELECT v FROM ` + ks + `.kv WHERE k = 1`).Scan(&got); err != nil || got != "x" {
		t.Fatalf("got %q, %v", got, err)
	}
	// A second session in the same test gets another keyspace.
	_, ks2 := Session(t)
	if ks2 == ks {
		t.Fatal("keyspace reused")
	}
}

func TestHostsFromEnv(t *testing.T) {
	t.Setenv(HostsEnv, " 10.0.0.1:9042, 10.0.0.2 ,")
	got := Hosts(t)
	if len(got) != 2 || got[0] != "10.0.0.1:9042" || got[1] != "10.0.0.2" {
		t.Fatalf("hosts %q", got)
	}
	if c := Cluster(got...); c.Port != 9042 || c.ProtoVersion != 4 {
		t.Fatalf("cluster port %d proto %d", c.Port, c.ProtoVersion)
	}
}

func TestServerSharedWithinTest(t *testing.T) {
	srv := Server(t)
	if Server(t) != srv {
		t.Fatal("Server returned a second server")
	}
	t.Setenv(HostsEnv, "10.0.0.1")
	if h := Hosts(t); len(h) != 1 || h[0] != srv.Addr() {
		t.Fatalf("Hosts = %v, want the test's server %s", h, srv.Addr())
	}
}

func TestOutagePattern(t *testing.T) {
	srv := Server(t)
	s, _ := Session(t)
	if err := s.Query(`CREATE TABLE kv (k int PRIMARY KEY)`).Exec(); err != nil {
		t.Fatal(err)
	}
	srv.SetUnavailable(true)
	if err := s.Query(`SELECT k FROM kv WHERE k = 1`).Exec(); err == nil {
		t.Fatal("query succeeded while the store was unavailable")
	}
	srv.SetUnavailable(false)
	if err := s.Query(`SELECT k FROM kv WHERE k = 1`).Exec(); err != nil {
		t.Fatal(err)
	}
}

func TestCleanupWithStoppedServer(t *testing.T) {
	srv := Server(t)
	Session(t)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Cleanup must neither hang nor fail with the server left stopped.
}
