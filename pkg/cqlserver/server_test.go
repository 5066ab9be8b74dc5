package cqlserver_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqlserver"
	"github.com/acme/analytics/pkg/cqltest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/gocql/gocql"
)

// These tests use the server's API (outages, durability) and therefore
// only run against the embedded server.

func startServer(t *testing.T, dir string) *cqlserver.Server {
	t.Helper()
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

func connect(t *testing.T, srv *cqlserver.Server, keyspace string) *gocql.Session {
	t.Helper()
	cc := cqltest.Cluster(srv.Addr())
	cc.Keyspace = keyspace
	cc.ReconnectInterval = 100 * time.Millisecond
	cc.Logger = quietLogger{} // outage tests make the driver log every failed dial
	s, err := cc.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type quietLogger struct{}

func (quietLogger) Print(...any)          {}
func (quietLogger) Printf(string, ...any) {}
func (quietLogger) Println(...any)        {}

// readFrame reads one response frame (v3+ header).
func readFrame(t *testing.T, c net.Conn) (version, opcode byte, body []byte) {
	t.Helper()
	var h [9]byte
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatal(err)
	}
	body = make([]byte, binary.BigEndian.Uint32(h[5:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return h[0], h[4], body
}

func TestProtocolVersionNegotiation(t *testing.T) {
	srv := cqltest.Server(t)
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// OPTIONS in protocol v5: the error must come back in v5 framing.
	if _, err := c.Write([]byte{0x05, 0, 0, 7, 0x05, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	version, opcode, body := readFrame(t, c)
	if version != 0x85 || opcode != 0x00 {
		t.Fatalf("response version %#x opcode %#x", version, opcode)
	}
	if code := binary.BigEndian.Uint32(body); code != 0x000A {
		t.Fatalf("error code %#x", code)
	}
	if msg := string(body[6:]); !strings.Contains(msg, "unsupported protocol version (5)") {
		t.Fatalf("message %q", msg)
	}
	// The same connection then works in v4.
	if _, err := c.Write([]byte{0x04, 0, 0, 8, 0x05, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	version, opcode, _ = readFrame(t, c)
	if version != 0x84 || opcode != 0x06 {
		t.Fatalf("v4 OPTIONS answered with version %#x opcode %#x", version, opcode)
	}
}

func TestStopRestart(t *testing.T) {
	srv := cqltest.Server(t)
	admin := connect(t, srv, "")
	mustExec(t, admin, `CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	mustExec(t, admin, `CREATE TABLE ks.kv (k int PRIMARY KEY, v text)`)
	admin.Close()
	s := connect(t, srv, "ks")
	defer s.Close()
	mustExec(t, s, `INSERT INTO kv (k, v) VALUES (1, 'before')`)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query(`SELECT v FROM kv WHERE k = 1`).Exec(); err == nil {
		t.Fatal("query succeeded while the server was stopped")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 10*time.Second, "a query after the restart", func() error {
		var v string
		if err := s.Query(`SELECT v FROM kv WHERE k = 1`).Scan(&v); err != nil {
			return err
		}
		if v != "before" {
			return fmt.Errorf("v = %q, want %q", v, "before")
		}
		return nil
	})
}

// TestPasswordAuthentication logs gocql in with PasswordAuthenticator,
// as Cassandra's own authenticator expects, and checks Cassandra's answers
// to wrong credentials and to a client without any.
func TestPasswordAuthentication(t *testing.T) {
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0", Credentials: map[string]string{"app": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	open := func(auth gocql.Authenticator) (*gocql.Session, error) {
		cc := cqltest.Cluster(srv.Addr())
		cc.Authenticator = auth
		cc.Logger = quietLogger{}
		return cc.CreateSession()
	}
	tests := []struct {
		name    string
		auth    gocql.Authenticator
		wantErr string // "" for a working session
	}{
		{"right password", gocql.PasswordAuthenticator{Username: "app", Password: "s3cret"}, ""},
		{"wrong password", gocql.PasswordAuthenticator{Username: "app", Password: "guess"}, "Provided username app and/or password are incorrect"},
		{"unknown user", gocql.PasswordAuthenticator{Username: "eve", Password: "s3cret"}, "Provided username eve and/or password are incorrect"},
		{"no credentials", nil, `authentication required (using "org.apache.cassandra.auth.PasswordAuthenticator")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := open(tt.auth)
			if tt.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("connected; want %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var v string
			if err := s.Query(`SELECT release_version FROM system.local`).Scan(&v); err != nil {
				t.Fatalf("query after logging in: %v", err)
			}
		})
	}

	// A request before logging in is refused, as Cassandra refuses it.
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	query := "SELECT release_version FROM system.local"
	body := binary.BigEndian.AppendUint32(nil, uint32(len(query)))
	body = append(body, query...)
	body = append(body, 0, 1, 0) // consistency ONE, no flags
	frame := append([]byte{0x04, 0, 0, 1, 0x07}, binary.BigEndian.AppendUint32(nil, uint32(len(body)))...)
	if _, err := c.Write(append(frame, body...)); err != nil {
		t.Fatal(err)
	}
	_, opcode, resp := readFrame(t, c)
	if opcode != 0x00 || binary.BigEndian.Uint32(resp) != 0x2100 {
		t.Fatalf("query before logging in: opcode %#x, body %q; want an Unauthorized error (0x2100)", opcode, resp)
	}
}

func TestSetUnavailable(t *testing.T) {
	srv := cqltest.Server(t)
	s := connect(t, srv, "")
	defer s.Close()
	srv.SetUnavailable(true)
	err := s.Query(`SELECT release_version FROM system.local`).Exec()
	var ue *gocql.RequestErrUnavailable
	if !errors.As(err, &ue) {
		t.Fatalf("got %T %v, want Unavailable", err, err)
	}
	srv.SetUnavailable(false)
	if err := s.Query(`SELECT release_version FROM system.local`).Exec(); err != nil {
		t.Fatal(err)
	}
}

// TestSetFault: a statement the hook fails before is not run; one it times
// out after is run (the lightweight transaction's row is there, and its
// timeout says CAS); the others, and every statement once the hook is
// removed, run as usual. A batch is failed as a whole.
func TestSetFault(t *testing.T) {
	srv := cqltest.Server(t)
	s := connect(t, srv, "")
	defer s.Close()
	mustExec(t, s, `CREATE KEYSPACE f WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	mustExec(t, s, `CREATE TABLE f.kv (k text PRIMARY KEY, v text)`)
	srv.SetFault(func(cql string) cqlserver.Fault {
		switch {
		case strings.Contains(cql, "'refused'"):
			return cqlserver.FailBefore
		case strings.Contains(cql, "IF NOT EXISTS"):
			return cqlserver.TimeoutAfter
		}
		return cqlserver.NoFault
	})
	var ue *gocql.RequestErrUnavailable
	if err := s.Query(`INSERT INTO f.kv (k, v) VALUES ('refused', 'x')`).Exec(); !errors.As(err, &ue) {
		t.Fatalf("failed before: got %T %v, want Unavailable", err, err)
	}
	_, err := s.Query(`INSERT INTO f.kv (k, v) VALUES (?, ?) IF NOT EXISTS`, "cas", "x").MapScanCAS(map[string]any{})
	var wt *gocql.RequestErrWriteTimeout
	if !errors.As(err, &wt) || wt.WriteType != "CAS" {
		t.Fatalf("timed out after: got %T %v, want a CAS write timeout", err, err)
	}
	b := s.NewBatch(gocql.LoggedBatch)
	b.Query(`INSERT INTO f.kv (k, v) VALUES ('batched', 'x')`)
	b.Query(`INSERT INTO f.kv (k, v) VALUES ('refused', 'x')`)
	if err := s.ExecuteBatch(b); !errors.As(err, &ue) {
		t.Fatalf("batch: got %T %v, want Unavailable", err, err)
	}
	mustExec(t, s, `INSERT INTO f.kv (k, v) VALUES ('plain', 'x')`)
	srv.SetFault(nil)
	mustExec(t, s, `INSERT INTO f.kv (k, v) VALUES ('refused', 'later')`)
	got := map[string]string{}
	iter := s.Query(`SELECT k, v FROM f.kv`).Iter()
	var k, v string
	for iter.Scan(&k, &v) {
		got[k] = v
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cas": "x", "plain": "x", "refused": "later"}
	if len(got) != len(want) || got["cas"] != "x" || got["plain"] != "x" || got["refused"] != "later" {
		t.Fatalf("rows %v, want %v (nothing of the failed statements or batch, the timed-out one written)", got, want)
	}
}

func writeSampleData(t *testing.T, s *gocql.Session) {
	t.Helper()
	mustExec(t, s, `CREATE KEYSPACE app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	mustExec(t, s, `CREATE TABLE app.rows (p text, c int, v text, l list<int>, m map<text, int>, PRIMARY KEY (p, c)) WITH CLUSTERING ORDER BY (c DESC)`)
	mustExec(t, s, `CREATE TABLE app.counts (k text PRIMARY KEY, n counter)`)
	mustExec(t, s, `CREATE TABLE app.gone (k int PRIMARY KEY)`)
	mustExec(t, s, `ALTER TABLE app.rows ADD extra text`)
	for i := 0; i < 50; i++ {
		mustExec(t, s, `INSERT INTO app.rows (p, c, v, l, m) VALUES (?, ?, ?, ?, ?)`, "a", i, "v", []int{i}, map[string]int{"x": i})
	}
	mustExec(t, s, `UPDATE app.rows SET l = l + [100], extra = 'e' WHERE p = 'a' AND c = 1`)
	mustExec(t, s, `DELETE FROM app.rows WHERE p = 'a' AND c >= 40`)
	mustExec(t, s, `UPDATE app.counts SET n = n + 7 WHERE k = 'hits'`)
	mustExec(t, s, `INSERT INTO app.gone (k) VALUES (1)`)
	mustExec(t, s, `TRUNCATE app.gone`)
}

func checkSampleData(t *testing.T, s *gocql.Session) {
	t.Helper()
	var n int
	if err := s.Query(`SELECT count(*) FROM app.rows WHERE p = 'a'`).Scan(&n); err != nil || n != 40 {
		t.Fatalf("rows: %d %v", n, err)
	}
	var l []int
	var extra string
	if err := s.Query(`SELECT l, extra FROM app.rows WHERE p = 'a' AND c = 1`).Scan(&l, &extra); err != nil || len(l) != 2 || l[1] != 100 || extra != "e" {
		t.Fatalf("row 1: %v %q %v", l, extra, err)
	}
	var first int
	if err := s.Query(`SELECT c FROM app.rows WHERE p = 'a' LIMIT 1`).Scan(&first); err != nil || first != 39 {
		t.Fatalf("clustering order after recovery: first c = %d %v", first, err)
	}
	var cnt int64
	if err := s.Query(`SELECT n FROM app.counts WHERE k = 'hits'`).Scan(&cnt); err != nil || cnt != 7 {
		t.Fatalf("counter %d %v", cnt, err)
	}
	if err := s.Query(`SELECT count(*) FROM app.gone`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("truncated table has %d rows, %v", n, err)
	}
}

func TestDurability(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	s := connect(t, srv, "")
	writeSampleData(t, s)
	s.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv = startServer(t, dir)
	defer srv.Close()
	s = connect(t, srv, "")
	defer s.Close()
	checkSampleData(t, s)
	// Writes after recovery are durable too.
	mustExec(t, s, `INSERT INTO app.rows (p, c, v) VALUES ('b', 1, 'after')`)
	s.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, dir)
	s = connect(t, srv, "")
	var v string
	if err := s.Query(`SELECT v FROM app.rows WHERE p = 'b' AND c = 1`).Scan(&v); err != nil || v != "after" {
		t.Fatalf("second restart: %q %v", v, err)
	}
	checkSampleData(t, s)
}

// A server restarted on its data directory keeps its host_id, as a
// Cassandra node does. With a new one at every start, gocql took the
// restarted server for a new node at the same address, and forgetting the
// old one (its policies remove hosts by address) could drop the address
// altogether: a service's session was left with "no hosts available in the
// pool" for good (found by TestAcceptanceWithStoreFaults).
func TestHostIDSurvivesRestart(t *testing.T) {
	hostID := func(srv *cqlserver.Server) gocql.UUID {
		t.Helper()
		s := connect(t, srv, "")
		defer s.Close()
		var id gocql.UUID
		if err := s.Query(`SELECT host_id FROM system.local`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	dir := t.TempDir()
	srv := startServer(t, dir)
	first := hostID(srv)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, dir)
	defer srv.Close()
	if again := hostID(srv); again != first {
		t.Errorf("host_id after a restart on the same data directory = %v, want %v", again, first)
	}
	other := startServer(t, t.TempDir())
	defer other.Close()
	if id := hostID(other); id == first {
		t.Errorf("a server on another data directory has the same host_id %v", id)
	}
}

// A write the server acknowledged survives a crash of its process (a
// SIGKILL, an OOM kill) whatever the group-commit interval: it is in the
// log file, which the kernel keeps, before it is answered. It was held in
// the process's buffer until the next sync (100ms), and the storage drill
// (TestAcceptanceWithStoreFaults) lost the flush processing had just
// written and committed when it killed the server with SIGKILL.
func TestAcknowledgedWritesSurviveACrash(t *testing.T) {
	dir := t.TempDir()
	srv, err := cqlserver.New(cqlserver.Config{Addr: "127.0.0.1:0", DataDir: dir, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s := connect(t, srv, "")
	defer s.Close()
	writeSampleData(t, s)

	// What the process's crash leaves: the files as they are, without a
	// sync or a close (everything but the lock, which dies with it).
	crashed := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	after := startServer(t, crashed)
	defer after.Close()
	s2 := connect(t, after, "")
	defer s2.Close()
	checkSampleData(t, s2)
}

// lastSegment returns the newest log segment of a data directory.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal-*.log"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segments: %v", err)
	}
	sort.Strings(segs)
	// The newest segment may be empty (opened at start); take the last
	// one with data.
	for i := len(segs) - 1; i >= 0; i-- {
		if fi, err := os.Stat(segs[i]); err == nil && fi.Size() > 0 {
			return segs[i]
		}
	}
	t.Fatal("all segments are empty")
	return ""
}

func TestTornLogTail(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	s := connect(t, srv, "")
	mustExec(t, s, `CREATE KEYSPACE app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	mustExec(t, s, `CREATE TABLE app.kv (k int PRIMARY KEY, v text)`)
	for i := 0; i < 20; i++ {
		mustExec(t, s, `INSERT INTO app.kv (k, v) VALUES (?, ?)`, i, "v")
	}
	s.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	seg := lastSegment(t, dir)
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("garbage after the last record", func(t *testing.T) {
		f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte{0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3}) // a header promising 256 bytes
		f.Close()
		srv := startServer(t, dir)
		s := connect(t, srv, "")
		var n int
		if err := s.Query(`SELECT count(*) FROM app.kv`).Scan(&n); err != nil || n != 20 {
			t.Fatalf("recovered %d rows, %v", n, err)
		}
		s.Close()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("last record cut short", func(t *testing.T) {
		// Recovery truncated the garbage; now cut into the last insert.
		if err := os.Truncate(seg, fi.Size()-3); err != nil {
			t.Fatal(err)
		}
		srv := startServer(t, dir)
		defer srv.Close()
		s := connect(t, srv, "")
		defer s.Close()
		var n int
		if err := s.Query(`SELECT count(*) FROM app.kv`).Scan(&n); err != nil || n != 19 {
			t.Fatalf("recovered %d rows, want the 19 before the torn record (%v)", n, err)
		}
		var missing string
		if err := s.Query(`SELECT v FROM app.kv WHERE k = 19`).Scan(&missing); !errors.Is(err, gocql.ErrNotFound) {
			t.Fatalf("torn record applied: %q %v", missing, err)
		}
	})
}

func TestDataDirErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cqlserver.New(cqlserver.Config{DataDir: file}); err == nil {
		t.Fatal("a regular file was accepted as data dir")
	}
	dir := t.TempDir()
	srv, err := cqlserver.New(cqlserver.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := cqlserver.New(cqlserver.Config{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server on one dir: %v", err)
	}
}
