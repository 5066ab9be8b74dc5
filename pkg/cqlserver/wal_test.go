package cqlserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datastax/go-cassandra-native-protocol/message"
)

func countRows(t *testing.T, d *db, query string) int {
	t.Helper()
	res := exec(t, d, &session{}, query).(*message.RowsResult)
	return int(decodeSigned(res.Data[0][0]))
}

// TestSnapshotRecovery forces a snapshot between writes and checks that a
// restart loads the snapshot, replays the later log and ignores nothing.
func TestSnapshotRecovery(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d := srv.db
	sess := &session{}
	exec(t, d, sess, `CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	exec(t, d, sess, `CREATE TABLE ks.t (k int, c int, v text, s set<text>, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC)`)
	exec(t, d, sess, `CREATE TABLE ks.cnt (k int PRIMARY KEY, n counter)`)
	for i := 0; i < 100; i++ {
		exec(t, d, sess, `INSERT INTO ks.t (k, c, v, s) VALUES (?, ?, 'x', {'a'})`, int32Bytes(int32(i%5)), int32Bytes(int32(i)))
	}
	exec(t, d, sess, `UPDATE ks.cnt SET n = n + 3 WHERE k = 1`)
	exec(t, d, sess, `DELETE FROM ks.t WHERE k = 0`)
	if err := d.wal.snapshot(); err != nil {
		t.Fatal(err)
	}
	// After the snapshot: more data, a counter update, a schema change.
	exec(t, d, sess, `UPDATE ks.cnt SET n = n + 4 WHERE k = 1`)
	exec(t, d, sess, `ALTER TABLE ks.t ADD w int`)
	exec(t, d, sess, `INSERT INTO ks.t (k, c, w) VALUES (9, 1, 5)`)
	exec(t, d, sess, `UPDATE ks.t SET s = s + {'b'} WHERE k = 1 AND c = 1`)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.db"))
	segs, _ := filepath.Glob(filepath.Join(dir, "wal-*.log"))
	if len(snaps) != 1 || len(segs) != 1 {
		t.Fatalf("files after snapshot: %v %v", snaps, segs)
	}

	srv, err = New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d = srv.db
	if n := countRows(t, d, `SELECT count(*) FROM ks.t`); n != 81 {
		t.Fatalf("%d rows, want 80 + 1", n)
	}
	res := exec(t, d, sess, `SELECT n FROM ks.cnt WHERE k = 1`).(*message.RowsResult)
	if got := decodeSigned(res.Data[0][0]); got != 7 {
		t.Fatalf("counter %d, want 7 (no double counting across snapshot and log)", got)
	}
	res = exec(t, d, sess, `SELECT w FROM ks.t WHERE k = 9 AND c = 1`).(*message.RowsResult)
	if len(res.Data) != 1 || decodeSigned(res.Data[0][0]) != 5 {
		t.Fatalf("row after ALTER: %v", res.Data)
	}
	res = exec(t, d, sess, `SELECT s FROM ks.t WHERE k = 1 AND c = 1`).(*message.RowsResult)
	if elems, _ := splitCollection(res.Data[0][0]); len(elems) != 2 {
		t.Fatalf("set after recovery: %q", elems)
	}
	res = exec(t, d, sess, `SELECT c FROM ks.t WHERE k = 1 LIMIT 1`).(*message.RowsResult)
	if decodeSigned(res.Data[0][0]) != 96 {
		t.Fatalf("clustering order after recovery: first c = %d", decodeSigned(res.Data[0][0]))
	}
}

func TestCorruptSnapshotRefused(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, srv.db, &session{}, `CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	if err := srv.db.wal.snapshot(); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.db"))
	if err := os.Truncate(snaps[0], 5); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{DataDir: dir}); err == nil {
		t.Fatal("started from a corrupt snapshot")
	}
}

// A snapshot writes the whole state. Taken after every snapshotThreshold of
// log, a long-running server's snapshots came ever more often for their
// size (the local stack's, after 35 minutes of demo traffic: 96 MB every 20
// seconds, its CPU growing with the data). One is due once the log since
// the last has outgrown both the threshold and that snapshot, so what
// snapshots write stays about what is logged, whatever the state's size;
// the snapshot loaded at start counts as the last.
func TestSnapshotsKeepPaceWithTheState(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, sess := srv.db, &session{}
	exec(t, d, sess, `CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	exec(t, d, sess, `CREATE TABLE ks.t (k int PRIMARY KEY, v text)`)
	for i := range 200 {
		exec(t, d, sess, `INSERT INTO ks.t (k, v) VALUES (?, '`+strings.Repeat("v", 100)+`')`, int32Bytes(int32(i)))
	}
	w := d.wal
	if err := w.snapshot(); err != nil {
		t.Fatal(err)
	}
	snapSize := func() int64 {
		t.Helper()
		snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.db"))
		if len(snaps) != 1 {
			t.Fatalf("snapshots: %v", snaps)
		}
		fi, err := os.Stat(snaps[0])
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	size := snapSize()
	if size < 20_000 {
		t.Fatalf("snapshot of %d bytes; the test wants one over 20 kB", size)
	}
	for _, tt := range []struct {
		floor, logged int64
		due           bool
	}{
		{snapshotThreshold, snapshotThreshold, false},
		{snapshotThreshold, snapshotThreshold + 1, true}, // the state is smaller than the threshold
		{1 << 10, 2 << 10, false},                        // past the threshold, not past the state
		{1 << 10, size, false},
		{1 << 10, size + 1, true},
	} {
		w.mu.Lock() // the flush loop reads them
		w.snapFloor = tt.floor
		got := w.snapshotDue(tt.logged)
		w.mu.Unlock()
		if got != tt.due {
			t.Errorf("threshold %d, snapshot %d bytes, %d logged since: due %v, want %v", tt.floor, size, tt.logged, got, tt.due)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv, err = New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	w, size = srv.db.wal, snapSize()
	w.mu.Lock()
	w.snapFloor = 1 << 10
	notYet, due := w.snapshotDue(size), w.snapshotDue(size+1)
	w.mu.Unlock()
	if notYet || !due {
		t.Errorf("after a restart, with the snapshot loaded of %d bytes: due at its size %v, past it %v; want false, true", size, notYet, due)
	}
}
