package cqlserver

import (
	"testing"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// exec runs a statement the way an unprepared QUERY message does.
func exec(t *testing.T, d *db, sess *session, query string, values ...[]byte) message.Message {
	t.Helper()
	c, err := d.compile(sess, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	var vals []*primitive.Value
	for _, v := range values {
		vals = append(vals, primitive.NewValue(v))
	}
	res, err := d.run(sess, c, &options{values: vals, pageSize: 100})
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return res
}

// TestUnpreparedPositionalValues covers QUERY messages that carry bound
// values without a PREPARE (drivers other than gocql send them).
func TestUnpreparedPositionalValues(t *testing.T) {
	d := newDB(nil)
	sess := &session{}
	exec(t, d, sess, `CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	exec(t, d, sess, `USE ks`)
	if sess.keyspace != "ks" {
		t.Fatalf("USE left keyspace %q", sess.keyspace)
	}
	exec(t, d, sess, `CREATE TABLE kv (k int PRIMARY KEY, v text)`)
	exec(t, d, sess, `INSERT INTO kv (k, v) VALUES (?, ?)`, int32Bytes(3), []byte("three"))
	res := exec(t, d, sess, `SELECT v FROM kv WHERE k = ?`, int32Bytes(3)).(*message.RowsResult)
	if len(res.Data) != 1 || string(res.Data[0][0]) != "three" {
		t.Fatalf("rows %v", res.Data)
	}
	if res.Metadata.Columns[0].Name != "v" {
		t.Fatalf("metadata %v", res.Metadata.Columns)
	}
	// A value of the wrong size is refused.
	c, _ := d.compile(sess, `INSERT INTO kv (k, v) VALUES (?, ?)`)
	_, err := d.run(sess, c, &options{values: []*primitive.Value{primitive.NewValue([]byte{1}), primitive.NewValue([]byte("x"))}})
	if err == nil || err.Error() != "Expected 4 or 0 byte int (1)" {
		t.Fatalf("got %v", err)
	}
}

// TestPreparedInvalidation checks that statements prepared before ALTER
// TABLE are reported unprepared afterwards, so drivers re-prepare them and
// get the new result metadata.
func TestPreparedInvalidation(t *testing.T) {
	d := newDB(nil)
	sess := &session{}
	exec(t, d, sess, `CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	exec(t, d, sess, `CREATE TABLE ks.kv (k int PRIMARY KEY, v text)`)
	c, err := d.prepare(sess, `SELECT * FROM ks.kv`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.preparedByID(c.id[:]); err != nil {
		t.Fatal(err)
	}
	exec(t, d, sess, `ALTER TABLE ks.kv ADD w int`)
	_, err = d.preparedByID(c.id[:])
	if ce, ok := err.(*cqlError); !ok || ce.code != primitive.ErrorCodeUnprepared {
		t.Fatalf("after ALTER: %v", err)
	}
	c2, err := d.prepare(sess, `SELECT * FROM ks.kv`)
	if err != nil {
		t.Fatal(err)
	}
	if len(c2.result) != 3 {
		t.Fatalf("re-prepared metadata has %d columns", len(c2.result))
	}
}

func TestPurgeExpired(t *testing.T) {
	d := newDB(nil)
	sess := &session{keyspace: ""}
	exec(t, d, sess, `CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	exec(t, d, sess, `CREATE TABLE ks.t (k int, c int, v text, PRIMARY KEY (k, c)) WITH gc_grace_seconds = 0`)
	exec(t, d, sess, `INSERT INTO ks.t (k, c, v) VALUES (1, 1, 'a') USING TTL 1`)
	exec(t, d, sess, `INSERT INTO ks.t (k, c, v) VALUES (1, 2, 'b')`)
	exec(t, d, sess, `INSERT INTO ks.t (k, c, v) VALUES (2, 1, 'c') USING TTL 1`)
	tbl, _ := d.lookupTable(tableRef{keyspace: "ks", name: "t"}, "")
	d.purgeExpired(time.Now()) // nothing has expired yet
	if n := len(tbl.store.parts); n != 2 {
		t.Fatalf("%d partitions before expiry", n)
	}
	d.purgeExpired(time.Now().Add(5 * time.Second))
	if n := len(tbl.store.parts); n != 1 {
		t.Fatalf("%d partitions after expiry, want 1", n)
	}
	p := tbl.store.lookup(partitionKeyBytes([][]byte{int32Bytes(1)}))
	if p == nil || p.rows.Len() != 1 {
		t.Fatalf("partition 1 keeps %v rows", p)
	}
}
