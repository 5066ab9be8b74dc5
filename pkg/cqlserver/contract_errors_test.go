package cqlserver_test

import (
	"strings"
	"testing"

	"github.com/acme/analytics/pkg/cqltest"
	"github.com/gocql/gocql"
)

// rawValue marshals to fixed bytes whatever the column type, to send
// values of the wrong size.
type rawValue []byte

func (r rawValue) MarshalCQL(gocql.TypeInfo) ([]byte, error) { return r, nil }

// TestRefusals checks that what Cassandra refuses is refused with the same
// error code and a message containing Cassandra's wording.
func TestRefusals(t *testing.T) {
	s, _ := cqltest.Session(t)
	mustExec(t, s, `CREATE TABLE r (a int, b int, c int, d int, v text, PRIMARY KEY ((a, b), c, d))`)
	mustExec(t, s, `CREATE TABLE kv (k int PRIMARY KEY, v text)`)
	const filtering = "use ALLOW FILTERING"
	cases := []struct {
		name   string
		stmt   string
		args   []any
		code   int
		substr []string
	}{
		{name: "filter on regular column", stmt: `SELECT * FROM r WHERE a = 1 AND b = 1 AND v = 'x'`, code: gocql.ErrCodeInvalid, substr: []string{filtering}},
		{name: "partial partition key", stmt: `SELECT * FROM r WHERE a = 1`, code: gocql.ErrCodeInvalid, substr: []string{filtering}},
		{name: "clustering without partition", stmt: `SELECT * FROM r WHERE c = 1`, code: gocql.ErrCodeInvalid, substr: []string{filtering}},
		{name: "skipped clustering column", stmt: `SELECT * FROM r WHERE a = 1 AND b = 1 AND d = 1`, code: gocql.ErrCodeInvalid,
			substr: []string{`cannot be restricted as preceding column "c" is not restricted`}},
		{name: "unknown keyspace", stmt: `SELECT * FROM nosuchks.t`, code: gocql.ErrCodeInvalid, substr: []string{"Keyspace nosuchks does not exist"}},
		{name: "unknown table", stmt: `SELECT * FROM nosuchtable`, code: gocql.ErrCodeInvalid, substr: []string{"nosuchtable does not exist", "unconfigured table nosuchtable"}},
		{name: "unknown column in selection", stmt: `SELECT nope FROM kv`, code: gocql.ErrCodeInvalid, substr: []string{"Undefined column name nope"}},
		{name: "unknown column in where", stmt: `SELECT * FROM kv WHERE nope = 1`, code: gocql.ErrCodeInvalid, substr: []string{"Undefined column name nope"}},
		{name: "unknown column in insert", stmt: `INSERT INTO kv (k, nope) VALUES (1, 2)`, code: gocql.ErrCodeInvalid, substr: []string{"Undefined column name nope"}},
		{name: "counter mixed with other columns", stmt: `CREATE TABLE bad (k int PRIMARY KEY, c counter, v text)`, code: gocql.ErrCodeInvalid,
			substr: []string{"Cannot mix counter and non counter columns"}},
		{name: "missing partition key part", stmt: `INSERT INTO r (a, c, d) VALUES (1, 2, 3)`, code: gocql.ErrCodeInvalid, substr: []string{"Some partition key parts are missing: b"}},
		{name: "missing clustering key", stmt: `INSERT INTO r (a, b, c, v) VALUES (1, 2, 3, 'x')`, code: gocql.ErrCodeInvalid, substr: []string{"Some clustering keys are missing: d"}},
		{name: "update missing clustering key", stmt: `UPDATE r SET v = 'x' WHERE a = 1 AND b = 2 AND c = 3`, code: gocql.ErrCodeInvalid, substr: []string{"Some clustering keys are missing: d"}},
		{name: "update key column", stmt: `UPDATE kv SET k = 2 WHERE k = 1`, code: gocql.ErrCodeInvalid, substr: []string{"PRIMARY KEY part k found in SET part"}},
		{name: "wrong value size", stmt: `INSERT INTO kv (k, v) VALUES (?, ?)`, args: []any{rawValue{0, 0, 0, 0, 0, 0, 0, 1}, "x"},
			code: gocql.ErrCodeInvalid, substr: []string{"Expected 4 or 0 byte int (8)"}},
		{name: "string literal for int", stmt: `INSERT INTO kv (k, v) VALUES ('one', 'x')`, code: gocql.ErrCodeInvalid, substr: []string{"Invalid STRING constant (one)"}},
		{name: "syntax error", stmt: `SELECT * FRM kv`, code: gocql.ErrCodeSyntax, substr: []string{"line 1:9"}},
		{name: "unknown statement", stmt: `SELEC * FROM kv`, code: gocql.ErrCodeSyntax, substr: []string{"line 1:0"}},
		{name: "table already exists", stmt: `CREATE TABLE kv (k int PRIMARY KEY)`, code: gocql.ErrCodeAlreadyExists, substr: []string{"kv"}},
		{name: "order by without partition key", stmt: `SELECT * FROM r ORDER BY c DESC`, code: gocql.ErrCodeInvalid, substr: []string{"ORDER BY is only supported when the partition key is restricted by an EQ or an IN"}},
		{name: "order by non-clustering column", stmt: `SELECT * FROM r WHERE a = 1 AND b = 1 ORDER BY v`, code: gocql.ErrCodeInvalid, substr: []string{"Order by"}},
		{name: "counter set", stmt: `UPDATE cnt SET n = 5 WHERE k = 1`, code: gocql.ErrCodeInvalid, substr: []string{"Cannot set the value of counter column n"}},
		{name: "insert into counter table", stmt: `INSERT INTO cnt (k, n) VALUES (1, 1)`, code: gocql.ErrCodeInvalid, substr: []string{"INSERT statements are not allowed on counter tables"}},
		{name: "not equal in where", stmt: `SELECT * FROM kv WHERE k = 1 AND v != 'x' ALLOW FILTERING`, code: gocql.ErrCodeInvalid, substr: []string{"Unsupported \"!=\" relation"}},
		{name: "negative ttl", stmt: `INSERT INTO kv (k, v) VALUES (1, 'x') USING TTL -1`, code: gocql.ErrCodeInvalid, substr: []string{"A TTL must be greater or equal to 0"}},
	}
	mustExec(t, s, `CREATE TABLE cnt (k int PRIMARY KEY, n counter)`)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requireError(t, s.Query(c.stmt, c.args...).Exec(), c.code, c.substr...)
		})
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	s, _ := cqltest.Session(t)
	err := s.Query("SELECT *\nFROM kv\nWHERE k = = 1").Exec()
	requireError(t, err, gocql.ErrCodeSyntax, "line 3:")
	if re, ok := err.(gocql.RequestError); ok && !strings.HasPrefix(re.Message(), "line 3:") {
		t.Fatalf("message %q", re.Message())
	}
}
