package cqlserver_test

// The contract suite checks the CQL behaviour the product relies on. It is
// written against gocql only, through cqltest, so that it runs unchanged
// against the embedded server (the default) and against Apache Cassandra 4
// or 5 (CASSANDRA_HOSTS=host1,host2). Assertions stick to what Cassandra
// documents; every test owns a fresh keyspace.
//
// This file holds the helpers and the connection, schema and type tests;
// contract_query_test.go covers reads and paging, contract_write_test.go
// writes, TTL, LWT, batches, counters and collections, and
// contract_errors_test.go the refusals.

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/pkg/cqltest"
	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"
)

func mustExec(t testing.TB, s *gocql.Session, stmt string, values ...any) {
	t.Helper()
	if err := s.Query(stmt, values...).Exec(); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// requireError checks that err is a server error with the code and that
// its message contains one of the substrings (Cassandra versions word some
// messages differently).
func requireError(t testing.TB, err error, code int, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want code %#x", code)
	}
	var re gocql.RequestError
	if !errors.As(err, &re) {
		t.Fatalf("got %T %v, want a server error with code %#x", err, err, code)
	}
	if re.Code() != code {
		t.Fatalf("got code %#x (%s), want %#x", re.Code(), re.Message(), code)
	}
	if len(substrs) == 0 {
		return
	}
	for _, s := range substrs {
		if strings.Contains(re.Message(), s) {
			return
		}
	}
	t.Fatalf("message %q contains none of %q", re.Message(), substrs)
}

func TestConnectNegotiatesProtocol(t *testing.T) {
	hosts := cqltest.Hosts(t)
	cc := cqltest.Cluster(hosts...)
	cc.ProtoVersion = 0 // let gocql discover the version
	s, err := cc.CreateSession()
	if err != nil {
		t.Fatalf("connect with protocol discovery: %v", err)
	}
	defer s.Close()
	var version string
	if err := s.Query(`SELECT release_version FROM system.local`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version == "" {
		t.Fatal("empty release_version")
	}
}

func TestSystemTables(t *testing.T) {
	s, _ := cqltest.Session(t)
	row := map[string]any{}
	if err := s.Query(`SELECT * FROM system.local WHERE key = 'local'`).MapScan(row); err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"rpc_address", "data_center", "rack", "host_id", "tokens", "release_version", "partitioner", "cluster_name", "schema_version"} {
		if _, ok := row[col]; !ok {
			t.Errorf("system.local lacks %s", col)
		}
	}
	if p, _ := row["partitioner"].(string); !strings.HasSuffix(p, "Murmur3Partitioner") {
		t.Errorf("partitioner = %q", p)
	}
	if tokens, _ := row["tokens"].([]string); len(tokens) == 0 {
		t.Errorf("no tokens")
	}
	iter := s.Query(`SELECT peer, data_center, host_id, rpc_address, tokens FROM system.peers`).Iter()
	if _, err := iter.SliceMap(); err != nil {
		t.Fatalf("system.peers: %v", err)
	}
	var n int
	if err := s.Query(`SELECT count(*) FROM system_schema.keyspaces`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("system_schema.keyspaces: %d rows, %v", n, err)
	}
}

func TestSchemaStatements(t *testing.T) {
	s, ks := cqltest.Session(t)

	mustExec(t, s, `CREATE TABLE things (id int PRIMARY KEY, name text) WITH comment = 'x' AND gc_grace_seconds = 3600
		AND compaction = {'class': 'SizeTieredCompactionStrategy'}`)
	mustExec(t, s, `CREATE TABLE IF NOT EXISTS things (id int PRIMARY KEY, name text)`)
	err := s.Query(`CREATE TABLE things (id int PRIMARY KEY, name text)`).Exec()
	requireError(t, err, gocql.ErrCodeAlreadyExists, "already exist")
	var ae *gocql.RequestErrAlreadyExists
	if !errors.As(err, &ae) || ae.Keyspace != ks || ae.Table != "things" {
		t.Errorf("AlreadyExists = %+v", ae)
	}

	// ALTER TABLE ADD is what migrations use.
	mustExec(t, s, `ALTER TABLE things ADD extra bigint`)
	mustExec(t, s, `INSERT INTO things (id, name, extra) VALUES (?, ?, ?)`, 1, "one", int64(7))
	var name string
	var extra int64
	if err := s.Query(`SELECT name, extra FROM things WHERE id = ?`, 1).Scan(&name, &extra); err != nil {
		t.Fatal(err)
	}
	if name != "one" || extra != 7 {
		t.Fatalf("got %q %d", name, extra)
	}

	mustExec(t, s, `TRUNCATE things`)
	var n int
	if err := s.Query(`SELECT count(*) FROM things`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after truncate: %d rows, %v", n, err)
	}

	mustExec(t, s, `DROP TABLE things`)
	mustExec(t, s, `DROP TABLE IF EXISTS things`)
	requireError(t, s.Query(`DROP TABLE things`).Exec(), gocql.ErrCodeInvalid)
	requireError(t, s.Query(`SELECT * FROM things`).Exec(), gocql.ErrCodeInvalid, "does not exist", "unconfigured table")

	// Keyspaces.
	other := ks + "_b"
	var dc string
	if err := s.Query(`SELECT data_center FROM system.local`).Scan(&dc); err != nil {
		t.Fatal(err)
	}
	mustExec(t, s, fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = {'class': 'NetworkTopologyStrategy', '%s': 1} AND durable_writes = true`, other, dc))
	mustExec(t, s, fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, other))
	err = s.Query(fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, other)).Exec()
	requireError(t, err, gocql.ErrCodeAlreadyExists)
	mustExec(t, s, fmt.Sprintf(`CREATE TABLE %s.t (k int PRIMARY KEY)`, other))
	mustExec(t, s, fmt.Sprintf(`INSERT INTO %s.t (k) VALUES (1)`, other))
	mustExec(t, s, fmt.Sprintf(`DROP KEYSPACE %s`, other))
	mustExec(t, s, fmt.Sprintf(`DROP KEYSPACE IF EXISTS %s`, other))
	requireError(t, s.Query(fmt.Sprintf(`DROP KEYSPACE %s`, other)).Exec(), gocql.ErrCodeInvalid, "doesn't exist", "does not exist")
}

func TestKeyspaceMetadata(t *testing.T) {
	s, ks := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE rollups (property text, day date, dim text, bucket int, views bigint, tags set<text>,
		PRIMARY KEY ((property, day), dim, bucket)) WITH CLUSTERING ORDER BY (dim ASC, bucket DESC)`)
	md, err := s.KeyspaceMetadata(ks)
	if err != nil {
		if strings.Contains(err.Error(), "read_repair_chance") {
			t.Skip("gocql v1.7.0 cannot read Cassandra 4 system_schema.views:", err)
		}
		t.Fatal(err)
	}
	if !strings.Contains(md.StrategyClass, "SimpleStrategy") {
		t.Errorf("strategy = %q", md.StrategyClass)
	}
	tm := md.Tables["rollups"]
	if tm == nil {
		t.Fatalf("no table metadata; tables: %v", md.Tables)
	}
	var pk, ck []string
	for _, c := range tm.PartitionKey {
		pk = append(pk, c.Name)
	}
	for _, c := range tm.ClusteringColumns {
		ck = append(ck, c.Name+" "+c.ClusteringOrder)
	}
	if want := []string{"property", "day"}; !reflect.DeepEqual(pk, want) {
		t.Errorf("partition key %v, want %v", pk, want)
	}
	if want := []string{"dim asc", "bucket desc"}; !reflect.DeepEqual(ck, want) {
		t.Errorf("clustering %v, want %v", ck, want)
	}
	types := map[string]string{}
	for name, c := range tm.Columns {
		types[name] = c.Type.Type().String()
	}
	want := map[string]string{"property": "text", "day": "date", "dim": "text", "bucket": "int", "views": "bigint", "tags": "set"}
	for name, typ := range want {
		if types[name] != typ {
			t.Errorf("column %s type %q, want %q", name, types[name], typ)
		}
	}
}

// typeCase is one CQL type with a value to round-trip through gocql.
type typeCase struct {
	typ   string
	in    any
	out   any // pointer to scan into
	want  any // expected dereferenced value; nil means in
	equal func(a, b any) bool
}

func uuidFromTime(t time.Time) gocql.UUID { return gocql.UUIDFromTime(t) }

func TestTypesRoundTrip(t *testing.T) {
	s, _ := cqltest.Session(t)
	ts := time.UnixMilli(1700000000123).UTC()
	day := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	dec := inf.NewDec(123456, 3)
	vi, _ := new(big.Int).SetString("-123456789012345678901234567890", 10)
	uid := gocql.MustRandomUUID()
	tuid := uuidFromTime(ts)
	cases := []typeCase{
		{typ: "text", in: "héllo ✓", out: new(string)},
		{typ: "varchar", in: "", out: new(string)},
		{typ: "ascii", in: "plain", out: new(string)},
		{typ: "int", in: int32(-42), out: new(int32)},
		{typ: "bigint", in: int64(-1 << 40), out: new(int64)},
		{typ: "smallint", in: int16(-300), out: new(int16)},
		{typ: "tinyint", in: int8(-7), out: new(int8)},
		{typ: "boolean", in: true, out: new(bool)},
		{typ: "float", in: float32(1.5), out: new(float32)},
		{typ: "double", in: 2.25, out: new(float64)},
		{typ: "decimal", in: dec, out: new(*inf.Dec), equal: func(a, b any) bool { return a.(*inf.Dec).Cmp(b.(*inf.Dec)) == 0 }},
		{typ: "varint", in: vi, out: new(*big.Int), equal: func(a, b any) bool { return a.(*big.Int).Cmp(b.(*big.Int)) == 0 }},
		{typ: "timestamp", in: ts, out: new(time.Time), equal: func(a, b any) bool { return a.(time.Time).Equal(b.(time.Time)) }},
		{typ: "date", in: day, out: new(time.Time), equal: func(a, b any) bool { return a.(time.Time).Equal(b.(time.Time)) }},
		{typ: "time", in: 13*time.Hour + 5*time.Second + 7, out: new(time.Duration)},
		{typ: "uuid", in: uid, out: new(gocql.UUID)},
		{typ: "timeuuid", in: tuid, out: new(gocql.UUID)},
		{typ: "inet", in: net.ParseIP("10.1.2.3"), out: new(net.IP), equal: func(a, b any) bool { return a.(net.IP).Equal(b.(net.IP)) }},
		{typ: "inet", in: net.ParseIP("2001:db8::1"), out: new(net.IP), equal: func(a, b any) bool { return a.(net.IP).Equal(b.(net.IP)) }},
		{typ: "blob", in: []byte{0, 1, 2, 0xff}, out: new([]byte)},
		{typ: "list<int>", in: []int{3, 1, 2, 1}, out: new([]int)},
		{typ: "set<text>", in: []string{"b", "a", "b"}, out: new([]string), want: []string{"a", "b"}},
		{typ: "map<text, int>", in: map[string]int{"b": 2, "a": 1}, out: new(map[string]int)},
		{typ: "frozen<list<bigint>>", in: []int64{5, 4}, out: new([]int64)},
		{typ: "frozen<set<int>>", in: []int{9, -1}, out: new([]int), want: []int{-1, 9}},
		{typ: "frozen<map<int, text>>", in: map[int]string{2: "b", 1: "a"}, out: new(map[int]string)},
		{typ: "list<frozen<map<text, int>>>", in: []map[string]int{{"x": 1}, {"y": 2}}, out: new([]map[string]int)},
	}
	var cols []string
	for i, c := range cases {
		cols = append(cols, fmt.Sprintf("c%d %s", i, c.typ))
	}
	mustExec(t, s, fmt.Sprintf(`CREATE TABLE types (k int PRIMARY KEY, %s)`, strings.Join(cols, ", ")))
	for i, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			mustExec(t, s, fmt.Sprintf(`INSERT INTO types (k, c%d) VALUES (?, ?)`, i), i, c.in)
			if err := s.Query(fmt.Sprintf(`SELECT c%d FROM types WHERE k = ?`, i), i).Scan(c.out); err != nil {
				t.Fatal(err)
			}
			got := reflect.ValueOf(c.out).Elem().Interface()
			want := c.want
			if want == nil {
				want = c.in
			}
			eq := c.equal
			if eq == nil {
				eq = func(a, b any) bool { return reflect.DeepEqual(a, b) }
			}
			if !eq(got, want) {
				t.Fatalf("got %#v, want %#v", got, want)
			}
		})
	}
	// A column never written reads as null.
	var missing *int32
	if err := s.Query(`SELECT c3 FROM types WHERE k = 0`).Scan(&missing); err != nil || missing != nil {
		t.Fatalf("unset column: %v %v", missing, err)
	}
}

func TestLiterals(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE lits (k int PRIMARY KEY, t text, i int, b bigint, si smallint, ti tinyint, bo boolean,
		f float, d double, de decimal, vi varint, ts timestamp, dt date, tm time, u uuid, tu timeuuid, ip inet, bl blob,
		l list<int>, st set<text>, m map<text, int>)`)
	mustExec(t, s, `INSERT INTO lits (k, t, i, b, si, ti, bo, f, d, de, vi, ts, dt, tm, u, tu, ip, bl, l, st, m) VALUES (
		1, 'it''s', -5, 9007199254740993, -300, 12, true, 1.5, -2.5e3, 1.25, 123456789012345678901234567890,
		'2024-01-02 03:04:05+0000', '2024-02-29', '13:30:00.5', 123e4567-e89b-12d3-a456-426614174000,
		d2177dd0-eaa2-11de-a572-001b779c76e3, '192.168.0.1', 0xcafe, [1, 2, 3], {'b', 'a'}, {'k': 1, 'j': 2})`)
	var (
		tx           string
		i            int
		b            int64
		si           int16
		ti           int8
		bo           bool
		f            float32
		d            float64
		de           *inf.Dec
		vi           *big.Int
		ts, dt       time.Time
		tm           time.Duration
		u, tu        gocql.UUID
		ip           net.IP
		bl           []byte
		l            []int
		st           []string
		m            map[string]int
		wantVarint   = "123456789012345678901234567890"
		wantTS       = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
		wantDate     = time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
		wantTimeOfDy = 13*time.Hour + 30*time.Minute + 500*time.Millisecond
	)
	err := s.Query(`SELECT t, i, b, si, ti, bo, f, d, de, vi, ts, dt, tm, u, tu, ip, bl, l, st, m FROM lits WHERE k = 1`).
		Scan(&tx, &i, &b, &si, &ti, &bo, &f, &d, &de, &vi, &ts, &dt, &tm, &u, &tu, &ip, &bl, &l, &st, &m)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"text", tx, "it's"}, {"int", i, -5}, {"bigint", b, int64(9007199254740993)}, {"smallint", si, int16(-300)},
		{"tinyint", ti, int8(12)}, {"boolean", bo, true}, {"float", f, float32(1.5)}, {"double", d, -2500.0},
		{"decimal", de.String(), "1.25"}, {"varint", vi.String(), wantVarint}, {"timestamp", ts.UTC(), wantTS},
		{"date", dt.UTC(), wantDate}, {"time", tm, wantTimeOfDy}, {"uuid", u.String(), "123e4567-e89b-12d3-a456-426614174000"},
		{"timeuuid", tu.String(), "d2177dd0-eaa2-11de-a572-001b779c76e3"}, {"inet", ip.String(), "192.168.0.1"},
		{"blob", bl, []byte{0xca, 0xfe}}, {"list", l, []int{1, 2, 3}}, {"set", st, []string{"a", "b"}},
		{"map", m, map[string]int{"j": 2, "k": 1}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// null literals delete; the row stays through its primary key.
	mustExec(t, s, `UPDATE lits SET t = null, l = null WHERE k = 1`)
	var tp *string
	var lp []int
	if err := s.Query(`SELECT t, l FROM lits WHERE k = 1`).Scan(&tp, &lp); err != nil || tp != nil || lp != nil {
		t.Fatalf("after null: %v %v %v", tp, lp, err)
	}
}

// TestClusteringOrder checks that rows come back in Cassandra's per-type
// order of clustering keys.
func TestClusteringOrder(t *testing.T) {
	s, _ := cqltest.Session(t)
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	big1, _ := new(big.Int).SetString("99999999999999999999", 10)
	cases := []struct {
		typ    string
		desc   bool
		sorted []any // in expected order
		str    func(any) string
	}{
		{typ: "int", sorted: []any{int32(-100), int32(-1), int32(0), int32(5), int32(1 << 30)}},
		{typ: "bigint", sorted: []any{int64(-1 << 50), int64(-2), int64(3), int64(1 << 40)}},
		{typ: "text", sorted: []any{"B", "a", "ab", "b", "é"}},
		{typ: "double", sorted: []any{-1.5, 0.0, 2.5, 1e300}},
		{typ: "varint", sorted: []any{big.NewInt(-100), big.NewInt(0), big1}, str: func(v any) string { return v.(*big.Int).String() }},
		{typ: "boolean", sorted: []any{false, true}},
		{typ: "blob", sorted: []any{[]byte{0x00}, []byte{0x00, 0x01}, []byte{0x7f}, []byte{0x80}, []byte{0xff}}},
		{typ: "timestamp", sorted: []any{base.Add(-time.Hour), base, base.Add(time.Millisecond)}, str: func(v any) string { return v.(time.Time).UTC().String() }},
		{typ: "timeuuid", sorted: []any{uuidFromTime(base), uuidFromTime(base.Add(time.Second)), uuidFromTime(base.Add(time.Hour))}},
		{typ: "int", desc: true, sorted: []any{int32(7), int32(0), int32(-3)}},
		{typ: "text", desc: true, sorted: []any{"z", "b", "a"}},
	}
	for i, c := range cases {
		name := c.typ
		if c.desc {
			name += " desc"
		}
		t.Run(name, func(t *testing.T) {
			table := fmt.Sprintf("ord%d", i)
			stmt := fmt.Sprintf(`CREATE TABLE %s (k int, c %s, PRIMARY KEY (k, c))`, table, c.typ)
			if c.desc {
				stmt += ` WITH CLUSTERING ORDER BY (c DESC)`
			}
			mustExec(t, s, stmt)
			// Insert in reverse, then rotated, so storage order is not insertion order.
			for j := range c.sorted {
				v := c.sorted[(j*3+1)%len(c.sorted)]
				if len(c.sorted)%3 == 0 {
					v = c.sorted[len(c.sorted)-1-j]
				}
				mustExec(t, s, fmt.Sprintf(`INSERT INTO %s (k, c) VALUES (1, ?)`, table), v)
			}
			str := c.str
			if str == nil {
				str = func(v any) string { return fmt.Sprint(v) }
			}
			var want []string
			for _, v := range c.sorted {
				want = append(want, str(v))
			}
			iter := s.Query(fmt.Sprintf(`SELECT c FROM %s WHERE k = 1`, table)).Iter()
			var got []string
			for {
				v := reflect.New(reflect.TypeOf(c.sorted[0]))
				if !iter.Scan(v.Interface()) {
					break
				}
				got = append(got, str(v.Elem().Interface()))
			}
			if err := iter.Close(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("order %v, want %v", got, want)
			}
		})
	}
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// TestTokenAwareRouting uses the services' routing policy: token-aware
// routing reads the keyspace's replication from system_schema and routes
// by the partition key indexes of prepared statements.
func TestTokenAwareRouting(t *testing.T) {
	_, ks := cqltest.Session(t)
	cc := cqltest.Cluster(cqltest.Hosts(t)...)
	cc.Keyspace = ks
	cc.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	cc.SerialConsistency = gocql.LocalSerial
	s, err := cc.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustExec(t, s, `CREATE TABLE routed (a text, b int, c int, v text, PRIMARY KEY ((a, b), c))`)
	for i := 0; i < 20; i++ {
		mustExec(t, s, `INSERT INTO routed (a, b, c, v) VALUES (?, ?, ?, ?)`, "p", i%3, i, "v")
	}
	var n int
	if err := s.Query(`SELECT count(*) FROM routed WHERE a = ? AND b = ?`, "p", 1).Scan(&n); err != nil || n != 7 {
		t.Fatalf("count %d, %v", n, err)
	}
	applied, err := s.Query(`INSERT INTO routed (a, b, c, v) VALUES ('p', 1, 100, 'x') IF NOT EXISTS`).MapScanCAS(map[string]any{})
	if err != nil || !applied {
		t.Fatalf("LWT with LOCAL_SERIAL: %v %v", applied, err)
	}
}
