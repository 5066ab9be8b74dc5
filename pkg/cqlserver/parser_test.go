package cqlserver

import (
	"reflect"
	"strings"
	"testing"
)

func TestLexer(t *testing.T) {
	toks, err := lex("SELECT \"Mixed\", 'it''s', -12, 1.5e3, 0xCAFE, 123e4567-e89b-12d3-a456-426614174000, ? -- comment\n/* block */ :name $$raw 'x'$$")
	if err != nil {
		t.Fatal(err)
	}
	type tk struct {
		kind tokenKind
		text string
	}
	var got []tk
	for _, x := range toks {
		got = append(got, tk{x.kind, x.text})
	}
	want := []tk{
		{tokIdent, "SELECT"}, {tokQuotedIdent, "Mixed"}, {tokPunct, ","}, {tokString, "it's"}, {tokPunct, ","},
		{tokInteger, "-12"}, {tokPunct, ","}, {tokFloat, "1.5e3"}, {tokPunct, ","}, {tokHex, "0xCAFE"}, {tokPunct, ","},
		{tokUUID, "123e4567-e89b-12d3-a456-426614174000"}, {tokPunct, ","}, {tokQMark, "?"}, {tokPunct, ":"},
		{tokIdent, "name"}, {tokString, "raw 'x'"}, {tokEOF, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if toks[15].line != 2 || toks[15].col != 13 {
		t.Fatalf(":name at %d:%d", toks[15].line, toks[15].col)
	}
}

// TestSyntaxErrors checks the positions (line:column, column 0-based as in
// Cassandra's ANTLR messages) and wording of syntax errors.
func TestSyntaxErrors(t *testing.T) {
	cases := []struct {
		stmt, want string
	}{
		{"SELEC * FROM t", "line 1:0 no viable alternative at input 'SELEC'"},
		{"SELECT * FRM t", "line 1:9 mismatched input 'FRM' expecting K_FROM (SELECT * [FRM]...)"},
		{"SELECT * FROM t WHERE", "line 1:21 no viable alternative at input '<EOF>'"},
		{"INSERT INTO t (a) VALUE (1)", "line 1:18 mismatched input 'VALUE' expecting K_VALUES"},
		{"SELECT * FROM t\nWHERE k = = 1", "line 2:10 no viable alternative at input '='"},
		{"CREATE TABLE t (k int PRIMARY KEY, v nosuchtype)", "line 1:37 Unknown type nosuchtype"},
		{"SELECT * FROM t;;", "line 1:16 extraneous input ';' expecting <EOF>"},
		{"SELECT * FROM select", "line 1:14 no viable alternative at input 'select'"},
		{"SELECT 'unterminated FROM t", "line 1:7 unterminated string literal"},
		{"SELECT * FROM t WHERE k = 1 ALLOW", "line 1:33 mismatched input '<EOF>' expecting K_FILTERING"},
		{"UPDATE t SET v = w + 1 WHERE k = 1", "line 1:17 Only expressions of the form X = X +/- <value> are supported."},
	}
	for _, c := range cases {
		_, err := parseCQL(c.stmt)
		if err == nil {
			t.Errorf("%q: no error", c.stmt)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q:\n got  %s\n want %s", c.stmt, err, c.want)
		}
	}
}

func TestParseStatements(t *testing.T) {
	valid := []string{
		`SELECT * FROM ks.t WHERE a = ? AND b IN (1, 2) AND c > 3 AND c <= 5 ORDER BY c DESC PER PARTITION LIMIT 2 LIMIT 10 ALLOW FILTERING`,
		`SELECT DISTINCT a, b FROM t`,
		`SELECT count(*) AS n, writetime(v), ttl(v), token(a, b) FROM t WHERE token(a, b) > -100 AND token(a, b) <= ?`,
		`SELECT * FROM t WHERE a = 1 AND (c, d) >= (1, 2) AND (c, d) < (?, ?)`,
		`SELECT * FROM t WHERE a = 1 AND tags CONTAINS 'x' AND m CONTAINS KEY 'k' ALLOW FILTERING`,
		`INSERT INTO t (a, b, "Quoted") VALUES (1, 'x', [1, 2]) IF NOT EXISTS USING TTL 10 AND TIMESTAMP 123`,
		`INSERT INTO t (a, m, s) VALUES (:a, {'k': 1, 'j': ?}, {})`,
		`UPDATE t USING TTL ? SET c = c + 1, l = [1] + l, m['k'] = 'v', s = s - {'x'}, n += 2 WHERE a = 1 IF v = 'x' AND w IN (1, 2)`,
		`UPDATE t SET c = c -1 WHERE a = 1 IF EXISTS`,
		`DELETE v, m['k'], l[0] FROM t USING TIMESTAMP 5 WHERE a = 1 AND c >= 2 IF EXISTS`,
		`BEGIN UNLOGGED BATCH USING TIMESTAMP 1 INSERT INTO t (a) VALUES (1); UPDATE t SET v = 2 WHERE a = 1 APPLY BATCH`,
		`CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = false`,
		`CREATE TABLE IF NOT EXISTS ks.t (a int, b text, c timeuuid, d frozen<map<text, list<int>>>, e set<text>, PRIMARY KEY ((a, b), c)) WITH CLUSTERING ORDER BY (c DESC) AND default_time_to_live = 60 AND compaction = {'class': 'LeveledCompactionStrategy'} AND comment = 'x'`,
		`ALTER TABLE t ADD x int`,
		`ALTER TABLE t ADD (x int, y text)`,
		`DROP TABLE IF EXISTS ks.t`,
		`DROP KEYSPACE ks;`,
		`TRUNCATE TABLE t`,
		`USE "MyKeyspace"`,
		`INSERT INTO t (a, f, g, h) VALUES (-NaN, Infinity, -Infinity, 1.5E-3) -- trailing comment`,
		`SELECT * FROM t WHERE a = now() AND b = toTimestamp(now())`,
	}
	for _, s := range valid {
		if _, err := parseCQL(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	p, err := parseCQL(`UPDATE t SET c = c -1 WHERE a = ?`)
	if err != nil {
		t.Fatal(err)
	}
	u := p.stmt.(*updateStmt)
	if a := u.assignments[0]; a.op != assignSub || a.value.(*literal).text != "1" {
		t.Fatalf("c = c -1 parsed as %+v", a)
	}
	if len(p.markers) != 1 {
		t.Fatalf("markers %d", len(p.markers))
	}
	p, err = parseCQL(`CREATE TABLE t (a int, b int, c int, v list<int>, PRIMARY KEY ((a, b), c)) WITH CLUSTERING ORDER BY (c DESC)`)
	if err != nil {
		t.Fatal(err)
	}
	ct := p.stmt.(*createTableStmt)
	if !reflect.DeepEqual(ct.partitionKey, []string{"a", "b"}) || !reflect.DeepEqual(ct.clustering, []string{"c"}) || !ct.clusteringOrder[0].desc {
		t.Fatalf("create table parsed as %+v", ct)
	}
	if ct.columns[3].typ.String() != "list<int>" {
		t.Fatalf("type %s", ct.columns[3].typ)
	}
}

func TestTableCQLRoundTrip(t *testing.T) {
	p, err := parseCQL(`CREATE TABLE ks.t (a int, "B" text, c timeuuid, v frozen<map<text, int>>, w set<text>, PRIMARY KEY ((a, "B"), c)) WITH CLUSTERING ORDER BY (c DESC) AND default_time_to_live = 7`)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := buildTable("ks", p.stmt.(*createTableStmt), [16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := parseCQL(tbl.cql())
	if err != nil {
		t.Fatalf("%s: %v", tbl.cql(), err)
	}
	tbl2, err := buildTable("ks", p2.stmt.(*createTableStmt), [16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	if tbl.cql() != tbl2.cql() {
		t.Fatalf("round trip changed the table:\n%s\n%s", tbl.cql(), tbl2.cql())
	}
}
